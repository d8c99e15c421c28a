"""Inputs of the multi-label study's tests: synthetic-cxr manifests, and fine-tuning with test defaults."""

from __future__ import annotations

from vlmprobe.datasets.manifest import build_manifest, write_manifest
from vlmprobe.datasets.records import Box, Record
from vlmprobe.datasets.synthetic_cxr import generate_synthetic_cxr
from vlmprobe.multilabel.finetune import FinetuneOutputs, run_finetune

# every finding common enough for a 5-fold split of 80 images
PREVALENCE = {"opacity": 0.3, "cardiomegaly": 0.25, "effusion": 0.2, "nodule": 0.2, "pneumothorax": 0.2}


def synthetic_manifest(folder, n_images, image_size, prevalence=PREVALENCE, seed=0):
    """A multi-label synthetic-cxr manifest (20 % test, 5 folds) of ``n_images`` generated radiographs under ``folder``."""
    generated = generate_synthetic_cxr(folder / "images", n_images, image_size, seed, prevalence)
    records = [Record(sample_id=r["sample_id"], path=r["path"], labels=tuple(r["labels"]), boxes=tuple(Box(**b) for b in r["boxes"])) for r in generated]
    table = build_manifest("synthetic-cxr", {"kind": "synthetic-cxr"}, records, True, seed=seed, test_fraction=0.2, n_folds=5)
    path = folder / "manifest.parquet"
    write_manifest(path, table)
    return path


def finetune_outputs(folder):
    return FinetuneOutputs(
        encoder=folder / "encoder.safetensors",
        head=folder / "head.safetensors",
        info=folder / "finetune.json",
        embeddings=folder / "embeddings.parquet",
        predictions=folder / "ft.predictions.parquet",
    )


class Interrupted(RuntimeError):
    """Raised by :func:`interrupt_after`: a fine-tuning run stopped at a known point, its checkpoint written."""


def interrupt_after(epoch):
    """An ``after_epoch`` hook for :func:`run_finetune` that stops the run once ``epoch``'s checkpoint is written."""

    def hook(finished):
        if finished >= epoch:
            raise Interrupted(f"stopped after epoch {finished}")

    return hook


def finetune(manifest, spec, folder, settings, **kwargs):
    """Fine-tune model ``tiny`` into ``folder`` on the CPU, seed 0, one thread, quietly."""
    kwargs = {"seed": 0, "device": "cpu", "threads": 1, "progress": False, "identity": {"dataset": "synthetic-cxr"}} | kwargs
    return run_finetune(manifest, "tiny", spec, finetune_outputs(folder), settings, **kwargs)
