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
* ``ft.predictions.parquet``: test-split scores (probabilities) and decisions (:class:`vlmprobe.multilabel.metrics.Predictions`).
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
    from dataclasses import replace

    import torch
    from tqdm import tqdm

    from vlmprobe.formats.embeddings import write_embeddings
    from vlmprobe.formats.heads import LinearHead, apply_thresholds, argmax_decisions, save_head
    from vlmprobe.formats.manifest import label_matrix, read_manifest
    from vlmprobe.formats.predictions import Predictions, write_predictions
    from vlmprobe.models import check_spec, load_encoder
    from vlmprobe.models.encode import embed_images
    from vlmprobe.multilabel.linear_probe import f1_optimal_thresholds, mean_average_precision
    from vlmprobe.multilabel.protocols import (
        DECISION,
        FINETUNE,
        check_protocol,
        row_minmax,
        row_minmax_decisions,
    )
    from vlmprobe.runtime import autocast_dtype, package_versions, resolve_device

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
    started = time.perf_counter()
    table, manifest_meta = read_manifest(manifest_path)
    classes = list(manifest_meta["classes"])
    multilabel = bool(manifest_meta.get("multilabel"))
    sample_ids = table.column("sample_id").to_pylist()
    paths = table.column("path").to_pylist()
    labels = table.column("labels").to_pylist()
    split = np.asarray(table.column("split").to_pylist())
    fold = np.asarray([-1 if value is None else value for value in table.column("fold").to_pylist()])
    indicator = label_matrix(labels, classes)
    is_val = (split == "train") & (fold == settings.validation_fold)
    is_train = (split == "train") & ~is_val
    is_test = split == "test"
    if not is_val.any():
        raise VlmprobeError(
            f"Fold {settings.validation_fold} of {str(manifest_path)!r} is empty, so fine-tuning has no validation data.",
            f"set `multilabel: finetune: validation_fold:` to one of 0..{int(manifest_meta.get('n_folds', 5)) - 1}.",
        )

    device = resolve_device(device)
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if num_workers is None:
        num_workers = 0 if device == "cpu" else min(8, threads - 1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    amp_dtype = autocast_dtype(device, spec_used.get("precision", "auto"))

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
    head = torch.nn.Linear(encoder.embed_dim, len(classes)).to(device)
    if paper:
        torch.nn.init.xavier_uniform_(head.weight)

    train_indicator = indicator[is_train]
    if paper:
        criterion = torch.nn.BCEWithLogitsLoss() if multilabel else torch.nn.CrossEntropyLoss()
        targets = torch.as_tensor(indicator, dtype=torch.float32) if multilabel else torch.as_tensor(np.argmax(indicator, axis=1), dtype=torch.long)
        loss_weights = {"unweighted": True}
    elif multilabel:
        positives = train_indicator.sum(axis=0)
        pos_weight = np.clip((len(train_indicator) - positives) / np.maximum(positives, 1), 1.0 / MAX_POS_WEIGHT, MAX_POS_WEIGHT)
        criterion = torch.nn.BCEWithLogitsLoss(pos_weight=torch.as_tensor(pos_weight, dtype=torch.float32, device=device))
        targets = torch.as_tensor(indicator, dtype=torch.float32)
        loss_weights = {"pos_weight": dict(zip(classes, map(float, pos_weight), strict=True))}
    else:
        counts = train_indicator.sum(axis=0)
        class_weight = len(train_indicator) / (len(classes) * np.maximum(counts, 1))
        criterion = torch.nn.CrossEntropyLoss(weight=torch.as_tensor(class_weight, dtype=torch.float32, device=device))
        targets = torch.as_tensor(np.argmax(indicator, axis=1), dtype=torch.long)
        loss_weights = {"class_weight": dict(zip(classes, map(float, class_weight), strict=True))}

    def new_optimizer():
        return torch.optim.AdamW(
            [{"params": trainable, "lr": settings.lr}, {"params": list(head.parameters()), "lr": settings.head_lr}],
            weight_decay=settings.weight_decay,
        )

    optimizer = new_optimizer()
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def subset(mask: np.ndarray) -> _LabelledImages:
        rows = np.flatnonzero(mask)
        return _LabelledImages([paths[i] for i in rows], targets[torch.as_tensor(rows)], encoder.preprocess)

    train_data, val_data = subset(is_train), subset(is_val)
    loader_options = {"num_workers": num_workers, "pin_memory": device.startswith("cuda"), "persistent_workers": False}

    def autocast():
        return torch.autocast(device_type="cuda", dtype=amp_dtype) if amp_dtype is not None else torch.autocast(device_type="cpu", enabled=False)

    def validate() -> tuple[float, float]:
        module.eval()
        head.eval()
        logits, wanted = [], []
        loader = torch.utils.data.DataLoader(val_data, batch_size=settings.batch_size, shuffle=False, **loader_options)
        with torch.inference_mode():
            for images, batch_targets in loader:
                with autocast():
                    logits.append(head(module(images.to(device, non_blocking=True)).float()).float())
                wanted.append(batch_targets.to(device))
        logits_all, wanted_all = torch.cat(logits), torch.cat(wanted)
        if paper:  # the notebook's mean of per-batch mean losses
            loss = float(np.mean([criterion(a, b).item() for a, b in zip(logits, wanted, strict=True)]))
        else:
            loss = float(criterion(logits_all, wanted_all).item())
        scores = torch.sigmoid(logits_all) if multilabel else torch.softmax(logits_all, dim=1)
        return loss, mean_average_precision(indicator[is_val], scores.cpu().numpy().astype(np.float64))

    fingerprint = _fingerprint(
        {
            "format": FORMAT_VERSION,
            "model_id": model_id,
            "spec": spec_used,
            "settings": asdict(settings),
            "seed": seed,
            "classes": classes,
            "rows": hashlib.sha256(json.dumps([sample_ids, labels, fold.tolist(), split.tolist()]).encode()).hexdigest(),
        }
    )
    resume_dir = outputs.resume_dir
    last_path, best_path = resume_dir / "last.pt", resume_dir / "best.pt"
    state: dict[str, Any] = {"epoch": 0, "best_epoch": None, "best_score": -math.inf, "bad_epochs": 0, "history": [], "elapsed_s": 0.0, "resumed_at": []}
    checkpoint = _load_torch(last_path) if last_path.is_file() else None
    if checkpoint is not None and checkpoint.get("fingerprint") == fingerprint:
        load_trainable(module, checkpoint["encoder"], prefix, str(last_path))
        head.load_state_dict(checkpoint["head"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if device.startswith("cuda") and checkpoint.get("cuda_rng"):
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        state = {key: checkpoint[key] for key in state}
        state["resumed_at"] = [*state["resumed_at"], state["epoch"]]
        log.info("resuming %s from %s after epoch %d", model_id, last_path, state["epoch"])
    elif checkpoint is not None or best_path.exists():
        log.info("ignoring the checkpoint in %s: it was made with other settings or data", resume_dir)
        shutil.rmtree(resume_dir, ignore_errors=True)

    log.info(
        "fine-tuning %s on %s: %d train / %d validation (fold %d) / %d test images, %d trainable parameters, device %s%s",
        model_id, manifest_meta.get("dataset"), int(is_train.sum()), int(is_val.sum()), settings.validation_fold, int(is_test.sum()),
        sum(p.numel() for p in trainable) + sum(p.numel() for p in head.parameters()), device,
        f", autocast {amp_dtype}" if amp_dtype is not None else "",
    )  # fmt: skip
    session_start = time.perf_counter()
    elapsed_before = float(state["elapsed_s"])
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        epoch = int(state["epoch"])
        epoch_start = time.perf_counter()
        module.train()
        head.train()
        generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
        if paper:  # the notebook re-creates AdamW (and its cosine schedule) at the start of every epoch
            optimizer = new_optimizer()
        drop_last = len(train_data) > settings.batch_size and not paper
        loader = torch.utils.data.DataLoader(
            train_data, batch_size=settings.batch_size, shuffle=True, generator=generator, drop_last=drop_last, **loader_options
        )
        total, seen = 0.0, 0
        bar = tqdm(loader, desc=f"finetune {model_id} epoch {epoch + 1}/{settings.epochs}", unit="batch", disable=not progress, mininterval=5, leave=False)
        for images, batch_targets in bar:
            images, batch_targets = images.to(device, non_blocking=True), batch_targets.to(device, non_blocking=True)
            with autocast():
                logits = head(module(images).float())
            loss = criterion(logits.float(), batch_targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if not paper:
                torch.nn.utils.clip_grad_norm_([*trainable, *head.parameters()], MAX_GRAD_NORM)
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.item()) * len(images)
            seen += len(images)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        val_loss, val_ap = validate()
        score = val_ap if settings.monitor == "average_precision" else -val_loss  # higher is better
        improved = score > state["best_score"] + MIN_IMPROVEMENT
        state["epoch"] = epoch + 1
        if improved:
            state.update(best_score=score, best_epoch=epoch + 1, bad_epochs=0)
            _save_torch(
                best_path,
                {"encoder": _trainable_state(module, prefix), "head": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}, "epoch": epoch + 1},
            )
        else:
            state["bad_epochs"] += 1
        seconds = time.perf_counter() - epoch_start
        state["history"] = [
            *state["history"],
            {"epoch": epoch + 1, "train_loss": total / max(seen, 1), "val_loss": val_loss, "val_average_precision": val_ap, "seconds": seconds},
        ]
        state["elapsed_s"] = elapsed_before + (time.perf_counter() - session_start)
        log.info("epoch %d/%d: train loss %.4f, validation loss %.4f, validation mean AP %.4f%s (%.1f s)",
                 epoch + 1, settings.epochs, total / max(seen, 1), val_loss, val_ap, " *" if improved else "", seconds)  # fmt: skip
        _save_torch(
            last_path,
            {
                **state,
                "fingerprint": fingerprint,
                "encoder": _trainable_state(module, prefix),
                "head": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if device.startswith("cuda") else [],
            },
        )
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            raise SimulatedInterruption(f"stopped after epoch {epoch + 1} (test hook)")
    train_seconds = elapsed_before + (time.perf_counter() - session_start)
    stopped_early = state["epoch"] < settings.epochs

    best = _load_torch(best_path)
    if best is None:
        raise VlmprobeError(f"Fine-tuning left no best checkpoint in {str(resume_dir)!r}.", "delete that folder and re-run the finetune job.")
    load_trainable(module, best["encoder"], prefix, str(best_path))
    head.load_state_dict(best["head"])
    module.eval()

    embed_start = time.perf_counter()
    matrix = embed_images(encoder, paths, device, settings.batch_size, num_workers, spec_used.get("precision", "auto"), progress=progress)
    embed_seconds = time.perf_counter() - embed_start
    linear = LinearHead(
        weight=head.weight.detach().cpu().double().numpy(),
        bias=head.bias.detach().cpu().double().numpy(),
        classes=classes,
        multilabel=multilabel,
        source="finetune",
    )
    probabilities = linear.probabilities(matrix)
    if paper and multilabel:
        probabilities = row_minmax(linear.logits(matrix))
        predicted = row_minmax_decisions(probabilities[is_test])
        decision = DECISION
    elif multilabel:
        if settings.threshold == "tuned":
            linear.thresholds = f1_optimal_thresholds(indicator[is_val], probabilities[is_val])
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
    wall_seconds = train_seconds + (time.perf_counter() - embed_start) + (session_start - started)

    info: dict[str, Any] = {
        **(identity or {}),
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "spec": spec,
        "spec_used": spec_used,
        "trainable_prefix": prefix,
        "classes": classes,
        "multilabel": multilabel,
        "settings": asdict(settings),
        "seed": seed,
        "device": device,
        "precision": "fp32" if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        "n_train": int(is_train.sum()),
        "n_validation": int(is_val.sum()),
        "n_test": int(is_test.sum()),
        "loss": ("BCEWithLogitsLoss" if multilabel else "CrossEntropyLoss"),
        "loss_weights": loss_weights,
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
    _write_encoder(outputs.encoder, _trainable_state(module, prefix), model_id, spec_used, prefix)
    save_head(outputs.head, LinearHead(**{**linear.__dict__, "details": {"model_id": model_id, "best_epoch": state["best_epoch"], **(identity or {})}}))
    from vlmprobe.models.checkpoints import sha256

    write_embeddings(
        outputs.embeddings,
        sample_ids,
        matrix,
        {
            "model_id": model_id,
            "spec": spec,
            "family": spec.get("family"),
            "finetuned": True,
            "finetune_spec": spec_used,
            "checkpoint_sha256": sha256(outputs.encoder),
            "preprocess": encoder.preprocess_info,
            "dataset": manifest_meta.get("dataset"),
            "device": device,
            "precision": info["precision"],
            "batch_size": settings.batch_size,
            "versions": package_versions(),
        },
    )
    write_predictions(
        outputs.predictions,
        Predictions(
            sample_ids=[sample_ids[i] for i in np.flatnonzero(is_test)],
            scores=probabilities[is_test],
            predicted=predicted,
            classes=classes,
            metadata={
                **(identity or {}),
                "setting": "ft",
                "protocol": settings.protocol,
                "multilabel": multilabel,
                "score_kind": "row-min-max scaled logit" if paper and multilabel else "probability",
                "decision": decision,
                "wall_time_s": wall_seconds,
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
    from vlmprobe.io import write_json

    write_json(outputs.info, json.loads(json.dumps(info, default=_plain)))
    shutil.rmtree(resume_dir, ignore_errors=True)
    log.info("fine-tuned %s: best epoch %s of %d, %.1f s in all", model_id, state["best_epoch"], state["epoch"], wall_seconds)
    return info


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


