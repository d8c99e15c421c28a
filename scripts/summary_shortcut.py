"""Snakemake entry point: every shortcut curve -> summary table, Markdown and figure."""

from vlmprobe.nuisance.summary import write_shortcut_summary
from vlmprobe.runner import run_script


def main(smk):
    write_shortcut_summary(
        list(smk.input.results),
        table_path=smk.output.table,
        csv_path=smk.output.csv,
        markdown_path=smk.output.markdown,
        figure_path=smk.output.figure,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
