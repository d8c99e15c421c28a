"""Snakemake entry point: manifest + the dataset's `group:` column -> its group-aware split (see vlmprobe.datasets.manifest)."""

from vlmprobe.datasets.manifest import make_group_split
from vlmprobe.runner import run_script


def main(smk):
    make_group_split(smk.input.manifest, smk.params.column, smk.output[0])


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
