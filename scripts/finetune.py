"""Snakemake entry point: manifest + model -> fine-tuned encoder, head, embeddings and test predictions (vlmprobe.multilabel.finetune)."""

from pathlib import Path

from vlmprobe.multilabel.finetune import FinetuneOutputs, FinetuneSettings, run_finetune
from vlmprobe.runner import run_script, test_hold


def main(smk):
    # runtime knobs (they do not change the numbers on a given device) come from the config, not params
    runtime = smk.config.get("multilabel", {}).get("finetune", {})
    run_finetune(
        manifest_path=smk.input.manifest,
        model_id=smk.wildcards.model,
        spec=dict(smk.params.spec),
        outputs=FinetuneOutputs(
            encoder=Path(smk.output.encoder),
            head=Path(smk.output.head),
            info=Path(smk.output.info),
            embeddings=Path(smk.output.embeddings),
            predictions=Path(smk.output.predictions),
        ),
        settings=FinetuneSettings.from_config(dict(smk.params.settings)),
        seed=smk.params.seed,
        device=runtime.get("device", "auto"),
        num_workers=runtime.get("num_workers"),
        threads=smk.threads,
        progress=runtime.get("progress", True),
        identity={"dataset": smk.wildcards.dataset, "model": smk.wildcards.model},
        after_epoch=test_hold("VLMPROBE_TEST_HOLD_AFTER_EPOCH", "epochs"),
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
