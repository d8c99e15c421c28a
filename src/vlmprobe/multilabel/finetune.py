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

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.models import FAMILIES, family_of
from vlmprobe.models.finetuned import load_trainable

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_POS_WEIGHT = 100.0
MAX_GRAD_NORM = 1.0
MIN_IMPROVEMENT = 1e-4
EMBED_SEED = 0
"""The torch seed of the embed job (``vlmprobe.embed.embed_manifest``'s default) when it loads a model."""


@dataclass(frozen=True)
class FinetuneSettings:
    epochs: int = 10
    patience: int = 3
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    image_size: int | None = None
    validation_fold: int = 0
    threshold: str | float = "tuned"
    monitor: str = "average_precision"
    protocol: str = "vlmprobe"

    @classmethod
    def from_config(cls, block: dict[str, Any]) -> FinetuneSettings:
        known = {name: block[name] for name in cls.__dataclass_fields__ if name in block}
        return cls(**known)


@dataclass(frozen=True)
class FinetuneOutputs:
    encoder: Path
    head: Path
    info: Path
    embeddings: Path
    predictions: Path

    @property
    def resume_dir(self) -> Path:
        return Path(self.info).parent / "resume"


class SimulatedInterruption(RuntimeError):
    """Raised by the test hook ``stop_after_epoch`` right after that epoch's checkpoint is written."""


def trainable_prefix(encoder) -> str:
    """State-dict keys of ``encoder.image_module`` that fine-tuning trains and saves."""
    return "clip.visual." if "open_clip_model" in encoder.extras else ""


def _fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class _LabelledImages:
    """Map-style dataset: (preprocessed image, target) from manifest paths."""

    def __init__(self, paths: list[str], targets, preprocess):
        self.paths, self.targets, self.preprocess = paths, targets, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from vlmprobe.images import load_image

        return self.preprocess(load_image(self.paths[index])), self.targets[index]


def _save_torch(path: Path, payload: dict[str, Any]) -> None:
    import torch

    from vlmprobe.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load_torch(path: Path) -> dict[str, Any] | None:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint means: start afresh
        log.warning("checkpoint %s is unreadable (%s: %s); starting afresh", path, type(error).__name__, str(error)[:200])
        return None


def _trainable_state(module, prefix: str) -> dict[str, Any]:
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items() if key.startswith(prefix)}


def _head_state(head) -> dict[str, Any]:
    return {key: value.detach().cpu().clone() for key, value in head.state_dict().items()}


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
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """``threads``: torch CPU threads (default: all cores); ``num_workers``: image-decoding processes
    (default 0 on CPU, up to 8 on CUDA); ``stop_after_epoch``: test hook, raises
    :class:`SimulatedInterruption` once that epoch's checkpoint is written."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, before CUDA starts
    from vlmprobe.models.encode import embed_images

    settings, paper, spec_used = _checked_settings(model_id, spec, settings)
    started = time.perf_counter()
    rows = _read_rows(manifest_path, settings)
    device, num_workers, amp_dtype = _configure_torch(device, threads, num_workers, spec_used)
    run = _build_run(model_id, spec_used, rows, settings, paper, seed, device, amp_dtype, num_workers)
    fingerprint = _training_fingerprint(model_id, spec_used, settings, seed, rows)
    state = _resume_state(run, outputs.resume_dir, fingerprint, model_id)
    log.info(
        "fine-tuning %s on %s: %d train / %d validation (fold %d) / %d test images, %d trainable parameters, device %s%s",
        model_id, rows.meta.get("dataset"), int(rows.is_train.sum()), int(rows.is_val.sum()), settings.validation_fold, int(rows.is_test.sum()),
        sum(p.numel() for p in run.trainable) + sum(p.numel() for p in run.head.parameters()), device,
        f", autocast {amp_dtype}" if amp_dtype is not None else "",
    )  # fmt: skip
    session_start = time.perf_counter()
    train_seconds = _train(run, rows, state, outputs.resume_dir, fingerprint, seed, model_id, session_start, progress, stop_after_epoch)
    stopped_early = state["epoch"] < settings.epochs

    _load_best(run, outputs.resume_dir)
    embed_start = time.perf_counter()
    matrix = embed_images(run.encoder, rows.paths, device, settings.batch_size, num_workers, spec_used.get("precision", "auto"), progress=progress)
    embed_seconds = time.perf_counter() - embed_start
    linear, scores, predicted, decision = _test_decisions(run, rows, matrix)
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
        "precision": "fp32" if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
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
    _write_outputs(outputs, run, rows, info, linear, matrix, scores, predicted, spec, identity)
    shutil.rmtree(outputs.resume_dir, ignore_errors=True)
    log.info("fine-tuned %s: best epoch %s of %d, %.1f s in all", model_id, state["best_epoch"], state["epoch"], wall_seconds)
    return info


# ------------------------------------------------------------------------------------------------
# Settings and data


def _checked_settings(model_id: str, spec: dict[str, Any], settings: FinetuneSettings) -> tuple[FinetuneSettings, bool, dict[str, Any]]:
    """``(settings, paper, spec_used)``: the settings this run uses (protocol sadman2025 replaces the configured
    ones), whether it follows that protocol, and the spec the encoder is built with (``image_size`` override)."""
    from dataclasses import replace

    from vlmprobe.models import check_spec
    from vlmprobe.multilabel.protocols import FINETUNE, check_protocol

    paper = check_protocol(settings.protocol) == "sadman2025"
    if paper:
        settings = replace(settings, **{key: FINETUNE[key] for key in ("epochs", "patience", "batch_size", "lr", "head_lr", "weight_decay", "monitor")})
    if settings.monitor not in ("average_precision", "loss"):
        raise VlmprobeError(f"Unknown early-stopping monitor {settings.monitor!r}.", "set `multilabel: finetune: monitor:` to average_precision or loss.")
    if not family_of(model_id, spec).trainable:
        trainable = sorted(name for name, family in FAMILIES.items() if family.trainable)
        raise VlmprobeError(
            f"Model {model_id!r} (family {spec.get('family')!r}) cannot be fine-tuned: its family declares no trainable image tower.",
            f"fine-tune only models of the families {trainable} (`multilabel: finetune: models:`).",
        )
    spec_used = dict(spec, image_size=int(settings.image_size)) if settings.image_size else dict(spec)
    check_spec(model_id, spec_used)
    return settings, paper, spec_used


@dataclass
class _Rows:
    """The manifest as fine-tuning sees it: every sample's labels, and which rows train, validate and test."""

    meta: dict[str, Any]
    classes: list[str]
    multilabel: bool
    sample_ids: list[str]
    paths: list[str]
    labels: list[Any]
    split: np.ndarray
    fold: np.ndarray
    indicator: np.ndarray
    is_train: np.ndarray
    is_val: np.ndarray
    is_test: np.ndarray


def _read_rows(manifest_path: str | Path, settings: FinetuneSettings) -> _Rows:
    """The training rows outside ``validation_fold`` train, that fold validates, the test split is scored."""
    from vlmprobe.formats.manifest import label_matrix, read_manifest

    table, manifest_meta = read_manifest(manifest_path)
    classes = list(manifest_meta["classes"])
    labels = table.column("labels").to_pylist()
    split = np.asarray(table.column("split").to_pylist())
    fold = np.asarray([-1 if value is None else value for value in table.column("fold").to_pylist()])
    indicator = label_matrix(labels, classes)
    is_val = (split == "train") & (fold == settings.validation_fold)
    if not is_val.any():
        raise VlmprobeError(
            f"Fold {settings.validation_fold} of {str(manifest_path)!r} is empty, so fine-tuning has no validation data.",
            f"set `multilabel: finetune: validation_fold:` to one of 0..{int(manifest_meta.get('n_folds', 5)) - 1}.",
        )
    return _Rows(
        meta=manifest_meta,
        classes=classes,
        multilabel=bool(manifest_meta.get("multilabel")),
        sample_ids=table.column("sample_id").to_pylist(),
        paths=table.column("path").to_pylist(),
        labels=labels,
        split=split,
        fold=fold,
        indicator=indicator,
        is_train=(split == "train") & ~is_val,
        is_val=is_val,
        is_test=split == "test",
    )


# ------------------------------------------------------------------------------------------------
# Model, loss and optimiser


def _configure_torch(device: str, threads: int | None, num_workers: int | None, spec_used: dict[str, Any]) -> tuple[str, int, Any]:
    """``(device, num_workers, autocast dtype or None)``; sets torch's threads and deterministic algorithms."""
    import torch

    from vlmprobe.runtime import autocast_dtype, resolve_device

    device = resolve_device(device)
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if num_workers is None:
        num_workers = 0 if device == "cpu" else min(8, threads - 1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return device, num_workers, autocast_dtype(device, spec_used.get("precision", "auto"))


@dataclass
class _Run:
    """The model being fine-tuned and everything a training or validation step needs."""

    settings: FinetuneSettings
    paper: bool
    device: str
    amp_dtype: Any
    encoder: Any
    module: Any  # encoder.image_module, the part that trains
    prefix: str
    trainable: list[Any]
    head: Any
    criterion: Any
    loss_weights: dict[str, Any]
    train_data: _LabelledImages
    val_data: _LabelledImages
    loader_options: dict[str, Any]
    optimizer: Any = None
    scaler: Any = None

    def new_optimizer(self):
        import torch

        return torch.optim.AdamW(
            [{"params": self.trainable, "lr": self.settings.lr}, {"params": list(self.head.parameters()), "lr": self.settings.head_lr}],
            weight_decay=self.settings.weight_decay,
        )

    def autocast(self):
        import torch

        if self.amp_dtype is not None:
            return torch.autocast(device_type="cuda", dtype=self.amp_dtype)
        return torch.autocast(device_type="cpu", enabled=False)


def _build_run(
    model_id: str,
    spec_used: dict[str, Any],
    rows: _Rows,
    settings: FinetuneSettings,
    paper: bool,
    seed: int,
    device: str,
    amp_dtype: Any,
    num_workers: int,
) -> _Run:
    """Encoder (its trainable tower unfrozen), a fresh head, the loss, AdamW and the loss scaler."""
    import torch

    from vlmprobe.models import load_encoder

    # the starting weights of a model without pretrained ones are those the embed job gets (its seed 0),
    # so fine-tuning starts from the encoder that zs and lp see; ``seed`` drives the training itself
    torch.manual_seed(EMBED_SEED)
    encoder = load_encoder(model_id, spec_used, device)
    module = encoder.image_module
    prefix = trainable_prefix(encoder)
    trainable = []
    for name, parameter in module.named_parameters():
        parameter.requires_grad_(name.startswith(prefix))
        if name.startswith(prefix):
            trainable.append(parameter)
    torch.manual_seed(seed)  # the head's initialisation does not depend on how much the model consumed
    head = torch.nn.Linear(encoder.embed_dim, len(rows.classes)).to(device)
    if paper:
        torch.nn.init.xavier_uniform_(head.weight)
    criterion, targets, loss_weights = _loss(rows, paper, device)

    def subset(mask: np.ndarray) -> _LabelledImages:
        chosen = np.flatnonzero(mask)
        return _LabelledImages([rows.paths[i] for i in chosen], targets[torch.as_tensor(chosen)], encoder.preprocess)

    run = _Run(
        settings=settings,
        paper=paper,
        device=device,
        amp_dtype=amp_dtype,
        encoder=encoder,
        module=module,
        prefix=prefix,
        trainable=trainable,
        head=head,
        criterion=criterion,
        loss_weights=loss_weights,
        train_data=subset(rows.is_train),
        val_data=subset(rows.is_val),
        loader_options={"num_workers": num_workers, "pin_memory": device.startswith("cuda"), "persistent_workers": False},
    )
    run.optimizer = run.new_optimizer()
    run.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return run


def _loss(rows: _Rows, paper: bool, device: str) -> tuple[Any, Any, dict[str, Any]]:
    """``(criterion, targets of every manifest row, loss weights for finetune.json)``, weights from the training rows."""
    import torch

    train_indicator = rows.indicator[rows.is_train]
    if paper:
        criterion = torch.nn.BCEWithLogitsLoss() if rows.multilabel else torch.nn.CrossEntropyLoss()
        targets = torch.as_tensor(rows.indicator, dtype=torch.float32) if rows.multilabel else torch.as_tensor(np.argmax(rows.indicator, axis=1), dtype=torch.long)
        return criterion, targets, {"unweighted": True}
    if rows.multilabel:
        positives = train_indicator.sum(axis=0)
        pos_weight = np.clip((len(train_indicator) - positives) / np.maximum(positives, 1), 1.0 / MAX_POS_WEIGHT, MAX_POS_WEIGHT)
        criterion = torch.nn.BCEWithLogitsLoss(pos_weight=torch.as_tensor(pos_weight, dtype=torch.float32, device=device))
        targets = torch.as_tensor(rows.indicator, dtype=torch.float32)
        return criterion, targets, {"pos_weight": dict(zip(rows.classes, map(float, pos_weight), strict=True))}
    counts = train_indicator.sum(axis=0)
    class_weight = len(train_indicator) / (len(rows.classes) * np.maximum(counts, 1))
    criterion = torch.nn.CrossEntropyLoss(weight=torch.as_tensor(class_weight, dtype=torch.float32, device=device))
    targets = torch.as_tensor(np.argmax(rows.indicator, axis=1), dtype=torch.long)
    return criterion, targets, {"class_weight": dict(zip(rows.classes, map(float, class_weight), strict=True))}


# ------------------------------------------------------------------------------------------------
# Training: epochs, validation, early stopping


def _train(
    run: _Run,
    rows: _Rows,
    state: dict[str, Any],
    resume_dir: Path,
    fingerprint: str,
    seed: int,
    model_id: str,
    session_start: float,
    progress: bool,
    stop_after_epoch: int | None,
) -> float:
    """Epochs until ``epochs`` or early stopping, each one checkpointed; updates ``state``, returns the training
    seconds (of this and earlier sessions)."""
    settings = run.settings
    last_path, best_path = resume_dir / "last.pt", resume_dir / "best.pt"
    elapsed_before = float(state["elapsed_s"])
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        epoch = int(state["epoch"])
        epoch_start = time.perf_counter()
        train_loss = _train_epoch(run, epoch, seed, model_id, progress)
        val_loss, val_ap = _validate(run, rows)
        score = val_ap if settings.monitor == "average_precision" else -val_loss  # higher is better
        improved = score > state["best_score"] + MIN_IMPROVEMENT
        state["epoch"] = epoch + 1
        if improved:
            state.update(best_score=score, best_epoch=epoch + 1, bad_epochs=0)
            _save_torch(best_path, {"encoder": _trainable_state(run.module, run.prefix), "head": _head_state(run.head), "epoch": epoch + 1})
        else:
            state["bad_epochs"] += 1
        seconds = time.perf_counter() - epoch_start
        state["history"] = [
            *state["history"],
            {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_average_precision": val_ap, "seconds": seconds},
        ]
        state["elapsed_s"] = elapsed_before + (time.perf_counter() - session_start)
        log.info("epoch %d/%d: train loss %.4f, validation loss %.4f, validation mean AP %.4f%s (%.1f s)",
                 epoch + 1, settings.epochs, train_loss, val_loss, val_ap, " *" if improved else "", seconds)  # fmt: skip
        _save_checkpoint(last_path, run, state, fingerprint)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            raise SimulatedInterruption(f"stopped after epoch {epoch + 1} (test hook)")
    return elapsed_before + (time.perf_counter() - session_start)


def _train_epoch(run: _Run, epoch: int, seed: int, model_id: str, progress: bool) -> float:
    """One pass over the training rows in the order of epoch ``epoch``; returns the mean training loss."""
    import torch
    from tqdm import tqdm

    settings, module, head, device = run.settings, run.module, run.head, run.device
    module.train()
    head.train()
    generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    if run.paper:  # the notebook re-creates AdamW (and its cosine schedule) at the start of every epoch
        run.optimizer = run.new_optimizer()
    optimizer, scaler = run.optimizer, run.scaler
    drop_last = len(run.train_data) > settings.batch_size and not run.paper
    loader = torch.utils.data.DataLoader(
        run.train_data, batch_size=settings.batch_size, shuffle=True, generator=generator, drop_last=drop_last, **run.loader_options
    )
    total, seen = 0.0, 0
    bar = tqdm(loader, desc=f"finetune {model_id} epoch {epoch + 1}/{settings.epochs}", unit="batch", disable=not progress, mininterval=5, leave=False)
    for images, batch_targets in bar:
        images, batch_targets = images.to(device, non_blocking=True), batch_targets.to(device, non_blocking=True)
        with run.autocast():
            logits = head(module(images).float())
        loss = run.criterion(logits.float(), batch_targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if not run.paper:
            torch.nn.utils.clip_grad_norm_([*run.trainable, *head.parameters()], MAX_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
        total += float(loss.item()) * len(images)
        seen += len(images)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(seen, 1)


def _validate(run: _Run, rows: _Rows) -> tuple[float, float]:
    """``(loss, mean average precision over labels)`` on the validation fold."""
    import torch

    from vlmprobe.multilabel.linear_probe import mean_average_precision

    module, head, criterion = run.module, run.head, run.criterion
    module.eval()
    head.eval()
    logits, wanted = [], []
    loader = torch.utils.data.DataLoader(run.val_data, batch_size=run.settings.batch_size, shuffle=False, **run.loader_options)
    with torch.inference_mode():
        for images, batch_targets in loader:
            with run.autocast():
                logits.append(head(module(images.to(run.device, non_blocking=True)).float()).float())
            wanted.append(batch_targets.to(run.device))
    logits_all, wanted_all = torch.cat(logits), torch.cat(wanted)
    if run.paper:  # the notebook's mean of per-batch mean losses
        loss = float(np.mean([criterion(a, b).item() for a, b in zip(logits, wanted, strict=True)]))
    else:
        loss = float(criterion(logits_all, wanted_all).item())
    scores = torch.sigmoid(logits_all) if rows.multilabel else torch.softmax(logits_all, dim=1)
    return loss, mean_average_precision(rows.indicator[rows.is_val], scores.cpu().numpy().astype(np.float64))


# ------------------------------------------------------------------------------------------------
# Resume checkpoints


def _training_fingerprint(model_id: str, spec_used: dict[str, Any], settings: FinetuneSettings, seed: int, rows: _Rows) -> str:
    """What a checkpoint must have been made with to be resumed: model, settings, seed and training rows."""
    return _fingerprint(
        {
            "format": FORMAT_VERSION,
            "model_id": model_id,
            "spec": spec_used,
            "settings": asdict(settings),
            "seed": seed,
            "classes": rows.classes,
            "rows": hashlib.sha256(json.dumps([rows.sample_ids, rows.labels, rows.fold.tolist(), rows.split.tolist()]).encode()).hexdigest(),
        }
    )


def _resume_state(run: _Run, resume_dir: Path, fingerprint: str, model_id: str) -> dict[str, Any]:
    """The early-stopping state to start from: a matching ``last.pt`` restores the run (weights, optimiser,
    scaler, RNG) after its last finished epoch; any other checkpoint is removed and training starts afresh."""
    import torch

    last_path, best_path = resume_dir / "last.pt", resume_dir / "best.pt"
    state: dict[str, Any] = {"epoch": 0, "best_epoch": None, "best_score": -math.inf, "bad_epochs": 0, "history": [], "elapsed_s": 0.0, "resumed_at": []}
    checkpoint = _load_torch(last_path) if last_path.is_file() else None
    if checkpoint is not None and checkpoint.get("fingerprint") == fingerprint:
        load_trainable(run.module, checkpoint["encoder"], run.prefix, str(last_path))
        run.head.load_state_dict(checkpoint["head"])
        run.optimizer.load_state_dict(checkpoint["optimizer"])
        run.scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if run.device.startswith("cuda") and checkpoint.get("cuda_rng"):
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        state = {key: checkpoint[key] for key in state}
        state["resumed_at"] = [*state["resumed_at"], state["epoch"]]
        log.info("resuming %s from %s after epoch %d", model_id, last_path, state["epoch"])
    elif checkpoint is not None or best_path.exists():
        log.info("ignoring the checkpoint in %s: it was made with other settings or data", resume_dir)
        shutil.rmtree(resume_dir, ignore_errors=True)
    return state


def _save_checkpoint(path: Path, run: _Run, state: dict[str, Any], fingerprint: str) -> None:
    """``last.pt``: everything :func:`_resume_state` needs to continue after this epoch."""
    import torch

    _save_torch(
        path,
        {
            **state,
            "fingerprint": fingerprint,
            "encoder": _trainable_state(run.module, run.prefix),
            "head": _head_state(run.head),
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if run.device.startswith("cuda") else [],
        },
    )


def _load_best(run: _Run, resume_dir: Path) -> None:
    """Put the weights of the best epoch (``best.pt``) back into the model, in evaluation mode."""
    best_path = resume_dir / "best.pt"
    best = _load_torch(best_path)
    if best is None:
        raise VlmprobeError(f"Fine-tuning left no best checkpoint in {str(resume_dir)!r}.", "delete that folder and re-run the finetune job.")
    load_trainable(run.module, best["encoder"], run.prefix, str(best_path))
    run.head.load_state_dict(best["head"])
    run.module.eval()


# ------------------------------------------------------------------------------------------------
# Decisions and outputs


def _test_decisions(run: _Run, rows: _Rows, matrix: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    """``(head, scores of every row, test-split decisions, decision record)`` from the fine-tuned embeddings."""
    from vlmprobe.formats.heads import LinearHead, apply_thresholds, argmax_decisions
    from vlmprobe.multilabel.linear_probe import f1_optimal_thresholds
    from vlmprobe.multilabel.protocols import DECISION, row_minmax, row_minmax_decisions

    settings, classes, is_test = run.settings, rows.classes, rows.is_test
    linear = LinearHead(
        weight=run.head.weight.detach().cpu().double().numpy(),
        bias=run.head.bias.detach().cpu().double().numpy(),
        classes=classes,
        multilabel=rows.multilabel,
        source="finetune",
    )
    probabilities = linear.probabilities(matrix)
    if run.paper and rows.multilabel:
        probabilities = row_minmax(linear.logits(matrix))
        predicted = row_minmax_decisions(probabilities[is_test])
        decision = DECISION
    elif rows.multilabel:
        if settings.threshold == "tuned":
            linear.thresholds = f1_optimal_thresholds(rows.indicator[rows.is_val], probabilities[rows.is_val])
        else:
            linear.thresholds = np.full(len(classes), float(settings.threshold))
        predicted = apply_thresholds(probabilities[is_test], linear.thresholds)
        decision = {
            "rule": "per-label threshold" if settings.threshold == "tuned" else "fixed threshold",
            "description": (
                "sigmoid probability >= threshold; thresholds maximise F1 on the validation fold"
                if settings.threshold == "tuned"
                else f"sigmoid probability >= {float(settings.threshold)} for every label"
            ),
            "thresholds": dict(zip(classes, map(float, linear.thresholds), strict=True)),
        }
    else:
        predicted = argmax_decisions(probabilities[is_test])
        decision = {"rule": "argmax", "description": "the class of highest softmax probability"}
    return linear, probabilities, predicted, decision


def _write_outputs(
    outputs: FinetuneOutputs,
    run: _Run,
    rows: _Rows,
    info: dict[str, Any],
    linear: Any,
    matrix: np.ndarray,
    scores: np.ndarray,
    predicted: np.ndarray,
    spec: dict[str, Any],
    identity: dict[str, Any] | None,
) -> None:
    """The five outputs (module docstring), ``finetune.json`` last."""
    from vlmprobe.formats.embeddings import write_embeddings
    from vlmprobe.formats.heads import LinearHead, save_head
    from vlmprobe.formats.predictions import Predictions, write_predictions
    from vlmprobe.io import write_json
    from vlmprobe.models.checkpoints import sha256
    from vlmprobe.runtime import package_versions

    model_id, spec_used, is_test = info["model_id"], info["spec_used"], rows.is_test
    paper_scores = run.paper and rows.multilabel
    _write_encoder(outputs.encoder, _trainable_state(run.module, run.prefix), model_id, spec_used, run.prefix)
    save_head(outputs.head, LinearHead(**{**linear.__dict__, "details": {"model_id": model_id, "best_epoch": info["best_epoch"], **(identity or {})}}))
    write_embeddings(
        outputs.embeddings,
        rows.sample_ids,
        matrix,
        {
            "model_id": model_id,
            "spec": spec,
            "family": spec.get("family"),
            "finetuned": True,
            "finetune_spec": spec_used,
            "checkpoint_sha256": sha256(outputs.encoder),
            "preprocess": run.encoder.preprocess_info,
            "dataset": rows.meta.get("dataset"),
            "device": run.device,
            "precision": info["precision"],
            "batch_size": run.settings.batch_size,
            "versions": package_versions(),
        },
    )
    write_predictions(
        outputs.predictions,
        Predictions(
            sample_ids=[rows.sample_ids[i] for i in np.flatnonzero(is_test)],
            scores=scores[is_test],
            predicted=predicted,
            classes=rows.classes,
            metadata={
                **(identity or {}),
                "setting": "ft",
                "protocol": run.settings.protocol,
                "multilabel": rows.multilabel,
                "score_kind": "row-min-max scaled logit" if paper_scores else "probability",
                "decision": info["decision"],
                "wall_time_s": info["wall_time_s"],
                "details": {
                    key: info[key]
                    for key in (
                        "settings",
                        "epochs_run",
                        "best_epoch",
                        "stopped_early",
                        "train_time_s",
                        "embed_time_s",
                        "device",
                        "precision",
                        "loss",
                        "loss_weights",
                    )
                },
            },
        ),
    )
    write_json(outputs.info, json.loads(json.dumps(info, default=_plain)))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _write_encoder(path: Path, state: dict[str, Any], model_id: str, spec: dict[str, Any], prefix: str) -> None:
    from vlmprobe.io import write_safetensors

    metadata = {"model_id": model_id, "spec": json.dumps(spec, sort_keys=True), "prefix": prefix, "format": f"vlmprobe-finetune-{FORMAT_VERSION}"}
    write_safetensors(path, {key: value.contiguous() for key, value in state.items()}, metadata)


