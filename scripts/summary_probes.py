"""Snakemake entry point: every probes result (and the linear probe's) -> summary tables, rank stability and figures."""

from vlmprobe.probes.summary import write_probes_summary
from vlmprobe.runner import run_script


def main(smk):
    write_probes_summary(
        list(smk.input.results),
        list(smk.input.linear_probe),
        table_path=smk.output.table,
        csv_path=smk.output.csv,
        markdown_path=smk.output.markdown,
        html_path=smk.output.html,
        figure_path=smk.output.figure,
        few_shot_path=smk.output.few_shot,
        ranks_path=smk.output.ranks,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
