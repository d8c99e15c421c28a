"""Snakemake entry point: a dataset's images -> thumbnail sprite sheets shared by every model's explorer page."""

from vlmprobe.explore.stage import thumbnails_for_dataset
from vlmprobe.runner import run_script


def main(smk):
    thumbnails_for_dataset(smk.input.manifest, smk.output[0], size=smk.params.thumbnails["size"], quality=smk.params.thumbnails["quality"])


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
