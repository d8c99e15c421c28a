"""Snakemake entry point: every heatmap scores table -> summary table, Markdown and metric heatmaps (vlmprobe.heatmaps.scores)."""

from vlmprobe.heatmaps.summary import write_heatmap_summary
from vlmprobe.runner import run_script


def main(smk):
    write_heatmap_summary(
        list(smk.input.scores),
        table_path=smk.output.table,
        markdown_path=smk.output.markdown,
        figure_path=smk.output.figure,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
