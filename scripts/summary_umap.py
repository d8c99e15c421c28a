"""Snakemake entry point: every UMAP quality table -> one summary table."""

from vlmprobe.runner import run_script
from vlmprobe.umap.summary import umap_quality_summary


def main(smk):
    keys = [tuple(key) for key in smk.params.tables]
    umap_quality_summary(
        dict(zip(keys, smk.input.quality)),
        table_path=smk.output.table,
        csv_path=smk.output.csv,
        markdown_path=smk.output.markdown,
        html_path=smk.output.html,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
