"""Full fine-tuning of an image encoder with a linear head (the study's ``ft`` setting).

Protocol
--------
* **Data.** The manifest's training rows minus one cross-validation fold (``validation_fold``) train;
  that fold validates (early stopping, decision thresholds); the test split is only scored at the end.
  Images go through the model's own preprocessing (``image_size`` may override the input resolution);
  there is no augmentation (flipping a radiograph moves the heart).
* **Model.** The encoder's image tower, all of it unfrozen (for open_clip models: ``visual``; the text
  tower is left out and frozen), and a linear head on its embedding.
* **Loss.** Multi-label: binary cross-entropy with logits, each label's positives weighted by
  ``n_negative / n_positive`` of the training rows (capped at 100) so rare labels count. Multi-class:
  cross-entropy with balanced class weights ``n / (C * n_c)``.
* **Optimiser.** AdamW (``lr`` for the encoder, ``head_lr`` for the freshly initialised head, weight decay
  ``weight_decay``), constant learning rate, gradient norm clipped at 1.
* **Early stopping** on the validation fold's mean average precision over labels (``monitor:
  average_precision``, threshold-free and what an imbalanced multi-label task is judged by; the weighted
  loss rises as soon as the model grows over-confident, while its ranking still improves) or on the
  validation loss (``monitor: loss``): training ends after ``patience`` epochs without an improvement (by
  more than 1e-4), or after ``epochs``; the weights of the best epoch are kept.
* **Mixed precision** on CUDA (bfloat16 where supported, else float16 with loss scaling; the model's
  ``precision: fp32`` turns it off); float32 on CPU.
* **Decisions.** Multi-label: per-label thresholds maximising F1 on the validation fold's probabilities
  (``threshold: <number>`` fixes one instead). Multi-class: arg-max.
* **Determinism.** Training randomness derives from ``seed``: the head's initialisation, the order of the
  training samples in epoch ``e`` (its own generator, seeded by ``(seed, e)``). A model without pretrained
  weights starts from the embed job's initialisation (torch seed :data:`EMBED_SEED`), i.e. from the very
  encoder that the zs and lp settings see. On CPU two runs -- or a
  run killed and resumed -- give bit-identical weights; on CUDA deterministic algorithms are requested
  (``warn_only``), so kernels without one may still differ in the last bits.
* **Resuming.** After every epoch ``resume/last.pt`` (encoder, head, optimiser, loss scaler, RNG state,
  early-stopping state, history) and, when the epoch improved, ``resume/best.pt`` are written atomically.
  A re-run of a killed job continues after the last finished epoch if the checkpoint's fingerprint (model
  spec, settings, seed, training rows) matches, and starts afresh otherwise. Both files are plain
  containers of tensors and numbers, read back with ``torch.load(weights_only=True)``; the folder is
  removed when the job finishes.

Protocol ``sadman2025`` (``multilabel: protocol: sadman2025``, Sadman et al.'s notebook, see
:data:`vlmprobe.multilabel.protocols.FINETUNE`): the training rows outside ``validation_fold`` train, that fold validates;
10 epochs, patience 5 on the validation BCE (mean of batch means), batches of 24 (last batch kept),
unweighted BCE, the head's weight Xavier-uniform, AdamW over encoder and head at a constant 1e-5 (weight decay
1e-2) re-created at the start of every epoch, no gradient clipping; test decisions: row-min-max scaled logits
> 0.5 (the stored scores are the scaled logits). These values replace the configured ones.

Outputs (paths from the workflow)
---------------------------------
* ``encoder.safetensors``: the fine-tuned image tower's state dict -- the keys of
  ``encoder.image_module.state_dict()`` under :func:`trainable_prefix` (open_clip: ``clip.visual.``;
  other families: all keys), parameters and buffers. Metadata: ``model_id``, ``spec`` (JSON, the spec
  the encoder must be built with, ``image_size`` override included), ``prefix``, ``format``.
  :func:`load_finetuned` rebuilds the encoder from it.
* ``head.safetensors``: the linear head (:class:`vlmprobe.multilabel.linear_probe.LinearHead` format: ``weight``
  (C, D), ``bias`` (C,), ``thresholds`` (C,) for multi-label, ``classes`` in the metadata), applied to the
  encoder's embedding: ``logits = image_module(x) @ weight.T + bias``.
* ``embeddings.parquet``: an embedding table (:mod:`vlmprobe.formats.embeddings` format) of the fine-tuned encoder for
  every manifest sample; metadata ``finetuned: true``, ``spec`` = the configured model spec.
* ``ft.predictions.parquet``: test-split scores (probabilities) and decisions (:class:`vlmprobe.formats.predictions.Predictions`).
* ``finetune.json``: settings, per-epoch history, best epoch, thresholds, timings, devices.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vlmprobe.multilabel.finetune.checkpoints import load_best, resume_state, training_fingerprint
from vlmprobe.multilabel.finetune.model import build_run, configure_torch, trainable_prefix
from vlmprobe.multilabel.finetune.outputs import decide_test_split, write_outputs
from vlmprobe.multilabel.finetune.rows import read_rows
from vlmprobe.multilabel.finetune.settings import (
    EMBED_SEED,
    FORMAT_VERSION,
    FinetuneOutputs,
    FinetuneSettings,
    checked_settings,
)
from vlmprobe.multilabel.finetune.training import train
from vlmprobe.multilabel.protocols import FINETUNE

__all__ = ["EMBED_SEED", "FORMAT_VERSION", "FinetuneOutputs", "FinetuneSettings", "run_finetune", "trainable_prefix"]

log = logging.getLogger(__name__)


def run_finetune(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Fine-tune, then write the five outputs; returns the ``finetune.json`` payload.

    Arguments as :func:`_run_finetune`. The process-wide torch settings it changes (threads,
    deterministic algorithms) are restored afterwards, so a test session or notebook is left as it was.
    """
    import torch

    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        return _run_finetune(*args, **kwargs)
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])


def _run_finetune(
    manifest_path: str | Path,
    model_id: str,
    spec: dict[str, Any],
    outputs: FinetuneOutputs,
    settings: FinetuneSettings,
    seed: int = 0,
    device: str = "auto",
    num_workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    identity: dict[str, Any] | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """``threads``: torch CPU threads (default: all cores); ``num_workers``: image-decoding processes
    (default 0 on CPU, up to 8 on CUDA); ``after_epoch``: called with the epoch's number right after its
    checkpoint is written (the tests interrupt or hold a run there, to resume it)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, before CUDA starts
    from vlmprobe.models.encode import embed_images

    settings, paper, spec_used = checked_settings(model_id, spec, settings)
    started = time.perf_counter()
    rows = read_rows(manifest_path, settings)
    device, num_workers, amp_dtype = configure_torch(device, threads, num_workers, spec_used)
    if paper:  # the notebook: fp16 autocast + GradScaler for training steps on CUDA, whatever the model's `precision`
        import torch

        amp_dtype = torch.float16 if device.startswith("cuda") else None
    run = build_run(model_id, spec_used, rows, settings, paper, seed, device, amp_dtype, num_workers)
    fingerprint = training_fingerprint(model_id, spec_used, settings, seed, rows)
    state = resume_state(run, outputs.resume_dir, fingerprint, model_id)
    log.info(
        "fine-tuning %s on %s: %d train / %d validation (fold %d) / %d test images, %d trainable parameters, device %s%s",
        model_id, rows.meta.get("dataset"), int(rows.is_train.sum()), int(rows.is_val.sum()), settings.validation_fold, int(rows.is_test.sum()),
        sum(p.numel() for p in run.trainable) + sum(p.numel() for p in run.head.parameters()), device,
        f", autocast {amp_dtype}" if amp_dtype is not None else "",
    )  # fmt: skip
    session_start = time.perf_counter()
    train_seconds = train(run, rows, state, outputs.resume_dir, fingerprint, seed, model_id, session_start, progress, after_epoch)
    stopped_early = state["epoch"] < settings.epochs

    load_best(run, outputs.resume_dir)
    embed_start = time.perf_counter()
    precision = "fp32" if paper else spec_used.get("precision", "auto")  # the notebook's extract_vit_embeddings: no autocast
    matrix = embed_images(run.encoder, rows.paths, device, settings.batch_size, num_workers, precision, progress=progress)
    embed_seconds = time.perf_counter() - embed_start
    linear, scores, predicted, decision = decide_test_split(run, rows, matrix)
    wall_seconds = train_seconds + (time.perf_counter() - embed_start) + (session_start - started)

    info: dict[str, Any] = {
        **(identity or {}),
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "spec": spec,
        "spec_used": spec_used,
        "trainable_prefix": run.prefix,
        "classes": rows.classes,
        "multilabel": rows.multilabel,
        "settings": asdict(settings),
        "seed": seed,
        "device": device,
        "precision": "fp32" if amp_dtype is None else FINETUNE["precision"] if paper else str(amp_dtype).removeprefix("torch."),
        "n_train": int(rows.is_train.sum()),
        "n_validation": int(rows.is_val.sum()),
        "n_test": int(rows.is_test.sum()),
        "loss": ("BCEWithLogitsLoss" if rows.multilabel else "CrossEntropyLoss"),
        "loss_weights": run.loss_weights,
        "epochs_run": int(state["epoch"]),
        "best_epoch": state["best_epoch"],
        "best_validation_score": {
            "monitor": settings.monitor,
            "value": state["best_score"] if settings.monitor == "average_precision" else -state["best_score"],
        },
        "stopped_early": bool(stopped_early),
        "resumed_after_epochs": list(state["resumed_at"]),
        "history": state["history"],
        "decision": decision,
        "train_time_s": train_seconds,
        "embed_time_s": embed_seconds,
        "wall_time_s": wall_seconds,
        "files": {key: str(value) for key, value in asdict(outputs).items()},
    }
    write_outputs(outputs, run, rows, info, linear, matrix, scores, predicted, spec, identity)
    shutil.rmtree(outputs.resume_dir, ignore_errors=True)
    log.info("fine-tuned %s: best epoch %s of %d, %.1f s in all", model_id, state["best_epoch"], state["epoch"], wall_seconds)
    return info

