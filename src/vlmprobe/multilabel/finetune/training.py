"""Training: epochs in a seeded order, validation on the held-out fold, early stopping, a checkpoint per epoch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.multilabel.finetune.checkpoints import head_state, save_checkpoint, save_torch, trainable_state
from vlmprobe.multilabel.finetune.model import Run
from vlmprobe.multilabel.finetune.rows import Rows
from vlmprobe.multilabel.finetune.settings import MAX_GRAD_NORM, MIN_IMPROVEMENT

log = logging.getLogger(__name__)


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def train(
    run: Run,
    rows: Rows,
    state: dict[str, Any],
    resume_dir: Path,
    fingerprint: str,
    seed: int,
    model_id: str,
    session_start: float,
    progress: bool,
    after_epoch: Callable[[int], None] | None,
) -> float:
    """Epochs until ``epochs`` or early stopping, each one checkpointed; updates ``state``, returns the training
    seconds (of this and earlier sessions)."""
    settings = run.settings
    last_path, best_path = resume_dir / "last.pt", resume_dir / "best.pt"
    elapsed_before = float(state["elapsed_s"])
    while state["epoch"] < settings.epochs and state["bad_epochs"] < settings.patience:
        epoch = int(state["epoch"])
        epoch_start = time.perf_counter()
        train_loss = train_epoch(run, epoch, seed, model_id, progress)
        val_loss, val_ap = validate(run, rows)
        score = val_ap if settings.monitor == "average_precision" else -val_loss  # higher is better
        improved = score > state["best_score"] + MIN_IMPROVEMENT
        state["epoch"] = epoch + 1
        if improved:
            state.update(best_score=score, best_epoch=epoch + 1, bad_epochs=0)
            save_torch(best_path, {"encoder": trainable_state(run.module, run.prefix), "head": head_state(run.head), "epoch": epoch + 1})
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
        save_checkpoint(last_path, run, state, fingerprint)
        if after_epoch is not None:
            after_epoch(epoch + 1)
    return elapsed_before + (time.perf_counter() - session_start)


def train_epoch(run: Run, epoch: int, seed: int, model_id: str, progress: bool) -> float:
    """One pass over the training rows in the order of epoch ``epoch``; returns the mean training loss."""
    import torch
    from tqdm import tqdm

    settings, module, head, device = run.settings, run.module, run.head, run.device
    module.train()
    head.train()
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    if run.paper:  # the notebook re-creates AdamW (and its cosine schedule) at the start of every epoch
        run.optimizer = run.new_optimizer()
    optimizer, scaler = run.optimizer, run.scaler
    drop_last = len(run.train_data) > settings.batch_size and not run.paper
    loader = torch.utils.data.DataLoader(
        run.train_data, batch_size=settings.batch_size, shuffle=True, generator=generator, drop_last=drop_last, **run.loader_options
    )
    total, seen, batch_losses = 0.0, 0, []
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
        batch_losses.append(float(loss.item()))
        bar.set_postfix(loss=f"{total / seen:.4f}")
    if run.paper:  # the notebook's _train_epoch: np.mean of the batch losses (its loss curve)
        return float(np.mean(batch_losses)) if batch_losses else 0.0
    return total / max(seen, 1)


def validate(run: Run, rows: Rows) -> tuple[float, float]:
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
            with run.autocast(training=False):
                logits.append(head(module(images.to(run.device, non_blocking=True)).float()).float())
            wanted.append(batch_targets.to(run.device))
    logits_all, wanted_all = torch.cat(logits), torch.cat(wanted)
    if run.paper:  # the notebook's mean of per-batch mean losses
        loss = float(np.mean([criterion(a, b).item() for a, b in zip(logits, wanted, strict=True)]))
    else:
        loss = float(criterion(logits_all, wanted_all).item())
    scores = torch.sigmoid(logits_all) if rows.multilabel else torch.softmax(logits_all, dim=1)
    return loss, mean_average_precision(rows.indicator[rows.is_val], scores.cpu().numpy().astype(np.float64))

