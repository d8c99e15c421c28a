"""Snakemake entry point: manifest + model -> fine-tuned encoder, head, embeddings and test predictions (vlmprobe.multilabel.finetune)."""

import logging
import os
import time
from pathlib import Path

from vlmprobe.multilabel.finetune import FinetuneOutputs, FinetuneSettings, run_finetune
from vlmprobe.runner import run_script

# Test hook (tests/test_faults.py): with this variable set to N the job holds after epoch N's checkpoint until
# it is killed, so the test kills Snakemake mid-training at a known point rather than by winning a race.
HOLD_AFTER_EPOCH = "VLMPROBE_TEST_HOLD_AFTER_EPOCH"


def hold_after(epoch: int):
    def hook(finished: int) -> None:
        if finished >= epoch:
            logging.getLogger(__name__).warning("%s=%d: holding after epoch %d until killed", HOLD_AFTER_EPOCH, epoch, finished)
            while True:
                time.sleep(60)

    return hook


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
        after_epoch=hold_after(int(os.environ[HOLD_AFTER_EPOCH])) if HOLD_AFTER_EPOCH in os.environ else None,
    )


run_script(main, snakemake)  # noqa: F821 - injected by Snakemake
