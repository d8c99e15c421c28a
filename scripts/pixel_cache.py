"""Snakemake entry point: manifest + geometry -> the dataset's pixel cache (see vlmprobe.models.pixel_cache)."""

from vlmprobe.models.pixel_cache import fill_cache
from vlmprobe.models.pixel_split import PixelSplit
from vlmprobe.runner import run_script


def main(smk):
    fill_cache(
        manifest_path=smk.input.manifest,
        split=PixelSplit.from_geometry_params(smk.params.geometry),
        out_pixels=smk.output.pixels,
        out_index=smk.output.index,
        workers=max(0, smk.threads),
        progress=smk.config.get("embedding", {}).get("progress", True),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
