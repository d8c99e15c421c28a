"""Snakemake entry point: manifest + model (+ probe head / fine-tuned weights) -> Grad-CAM maps, overlays and scores (vlmprobe.heatmaps.stage)."""

from vlmprobe.heatmaps.stage import run_heatmaps
from vlmprobe.runner import run_script


def main(smk):
    # runtime knobs (they change no number) come from the config, not params
    runtime = smk.config.get("heatmaps", {})
    options = dict(smk.params.options)
    run_heatmaps(
        manifest_path=smk.input.manifest,
        dataset=smk.wildcards.dataset,
        model_id=smk.wildcards.model,
        spec=dict(smk.params.spec),
        setting=smk.wildcards.setting,
        out_dir=smk.output.maps_dir,
        scores_path=smk.output.scores,
        head_path=getattr(smk.input, "head", None) or None,
        encoder_path=getattr(smk.input, "encoder", None) or None,
        zero_shot=dict(smk.params.zero_shot) if smk.params.zero_shot else None,
        method=options["method"],
        layer_override=options["target_layer"],
        max_annotated=options["max_annotated"],
        n_random=options["n_random"],
        seed=smk.params.seed,
        threshold=options["iou_threshold"],
        threshold_rule=options["threshold_rule"],
        rows_per_page=runtime.get("rows_per_page", 8),
        device=runtime.get("device", "auto"),
        batch_size=runtime.get("batch_size", 16),
        protocol=options.get("protocol", "vlmprobe"),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
