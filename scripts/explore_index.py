"""Snakemake entry point: every explorer page -> results/explore/index.html."""

from vlmprobe.explore.stage import explorer_index
from vlmprobe.runner import run_script


def main(smk):
    explorer_index(list(smk.params.entries), smk.output[0])


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
