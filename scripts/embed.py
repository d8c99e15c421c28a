"""Snakemake entry point: manifest + model -> embedding table (see vlmprobe.embed)."""

from vlmprobe.embed import embed_manifest
from vlmprobe.runner import run_script, test_hold


def main(smk):
    runtime = smk.config.get("embedding", {})
    spec = dict(smk.params.spec)
    embed_manifest(
        manifest_path=smk.input.manifest,
        model_id=smk.wildcards.model,
        spec=spec,
        out_path=smk.output[0],
        device=runtime.get("device", "auto"),
        batch_size=runtime.get("batch_size", 64),
        num_workers=runtime.get("num_workers"),
        threads=smk.threads,
        precision=spec.get("precision", "auto"),
        chunk_images=runtime.get("chunk_images", 2048),
        # one file each where the model reads a pixel cache, an empty list where it decodes the images itself
        pixel_cache=(smk.input.pixel_cache, smk.input.pixel_index) if isinstance(smk.input.pixel_cache, str) else None,
        no_cache_reason=None if runtime.get("pixel_cache", True) else "`embedding: pixel_cache: false`",
        after_chunk=test_hold("VLMPROBE_TEST_HOLD_AFTER_CHUNKS", "chunks"),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
