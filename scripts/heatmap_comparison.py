"""Snakemake entry point: one (dataset, model)'s maps in every setting -> the side-by-side figure (vlmprobe.heatmaps.stage)."""

import logging

from vlmprobe.heatmaps.stage import write_settings_comparison
from vlmprobe.runner import run_script


def main(smk):
    maps_dirs = dict(zip(smk.params.settings, smk.input.maps_dirs, strict=True))
    n_rows = write_settings_comparison(
        manifest_path=smk.input.manifest,
        maps_dirs=maps_dirs,
        out_path=smk.output[0],
        dataset=smk.wildcards.dataset,
        model_id=smk.wildcards.model,
        n_rows=smk.config.get("heatmaps", {}).get("comparison_rows", 6),
    )
    logging.getLogger("vlmprobe").info("settings %s side by side for %d annotated (image, label) pairs", list(maps_dirs), n_rows)


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
