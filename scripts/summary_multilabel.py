"""Snakemake entry point: every multi-label study result -> summary table, CSV and Markdown (vlmprobe.multilabel.summary)."""

import logging

from vlmprobe.multilabel.summary import write_multilabel_summary
from vlmprobe.runner import run_script


def main(smk):
    for entry in smk.params.skipped:
        logging.getLogger("vlmprobe").info("skipped %s for %s on %s: %s", entry["setting"], entry["model"], entry["dataset"], entry["reason"])
    write_multilabel_summary(
        list(smk.input.results),
        table_path=smk.output.table,
        csv_path=smk.output.csv,
        markdown_path=smk.output.markdown,
        skipped=list(smk.params.skipped),
        analyses_dirs=list(smk.input.analyses),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
