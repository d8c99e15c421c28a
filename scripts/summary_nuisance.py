"""Snakemake entry point: every nuisance result -> summary table, Markdown, HTML and figure."""

from vlmprobe.nuisance.summary import write_nuisance_summary
from vlmprobe.runner import run_script


def main(smk):
    write_nuisance_summary(
        list(smk.input.results),
        table_path=smk.output.table,
        csv_path=smk.output.csv,
        markdown_path=smk.output.markdown,
        html_path=smk.output.html,
        figure_path=smk.output.figure,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
