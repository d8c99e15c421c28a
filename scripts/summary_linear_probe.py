"""Snakemake entry point: every linear-probe result -> summary table, Markdown and heatmap."""

import logging

from vlmprobe.linear_probe.summary import write_linear_probe_summary
from vlmprobe.runner import run_script


def main(smk):
    for dataset in smk.params.skipped_multilabel:
        logging.getLogger("vlmprobe").info("dataset %s is multi-label: no seed-002 linear probe (see the multi-label study)", dataset)
    write_linear_probe_summary(
        list(smk.input.results),
        table_path=smk.output.table,
        csv_path=smk.output.csv,
        markdown_path=smk.output.markdown,
        heatmap_path=smk.output.heatmap,
        html_path=smk.output.html,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
