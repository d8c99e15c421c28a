"""Resume checkpoints of a fine-tuning run (``resume/last.pt``, ``resume/best.pt``).

Written atomically after every epoch, read back with ``torch.load(weights_only=True)``, resumed only when their
fingerprint matches the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.finetuned import load_trainable
from vlmprobe.multilabel.finetune.model import Run
from vlmprobe.multilabel.finetune.rows import Rows
from vlmprobe.multilabel.finetune.settings import FORMAT_VERSION, FinetuneSettings

log = logging.getLogger(__name__)


def sha256_of_json(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def save_torch(path: Path, payload: dict[str, Any]) -> None:
    import torch

    from vlmprobe.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_torch(path: Path) -> dict[str, Any] | None:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint means: start afresh
        log.warning("checkpoint %s is unreadable (%s: %s); starting afresh", path, type(error).__name__, str(error)[:200])
        return None


def trainable_state(module, prefix: str) -> dict[str, Any]:
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items() if key.startswith(prefix)}


def head_state(head) -> dict[str, Any]:
    return {key: value.detach().cpu().clone() for key, value in head.state_dict().items()}


def training_fingerprint(model_id: str, spec_used: dict[str, Any], settings: FinetuneSettings, seed: int, rows: Rows) -> str:
    """What a checkpoint must have been made with to be resumed: model, settings, seed and training rows."""
    return sha256_of_json(
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


def resume_state(run: Run, resume_dir: Path, fingerprint: str, model_id: str) -> dict[str, Any]:
    """The early-stopping state to start from: a matching ``last.pt`` restores the run (weights, optimiser,
    scaler, RNG) after its last finished epoch; any other checkpoint is removed and training starts afresh."""
    import torch

    last_path, best_path = resume_dir / "last.pt", resume_dir / "best.pt"
    state: dict[str, Any] = {"epoch": 0, "best_epoch": None, "best_score": -math.inf, "bad_epochs": 0, "history": [], "elapsed_s": 0.0, "resumed_at": []}
    checkpoint = load_torch(last_path) if last_path.is_file() else None
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


def save_checkpoint(path: Path, run: Run, state: dict[str, Any], fingerprint: str) -> None:
    """``last.pt``: everything :func:`resume_state` needs to continue after this epoch."""
    import torch

    save_torch(
        path,
        {
            **state,
            "fingerprint": fingerprint,
            "encoder": trainable_state(run.module, run.prefix),
            "head": head_state(run.head),
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if run.device.startswith("cuda") else [],
        },
    )


def load_best(run: Run, resume_dir: Path) -> None:
    """Put the weights of the best epoch (``best.pt``) back into the model, in evaluation mode."""
    best_path = resume_dir / "best.pt"
    best = load_torch(best_path)
    if best is None:
        raise VlmprobeError(f"Fine-tuning left no best checkpoint in {str(resume_dir)!r}.", "delete that folder and re-run the finetune job.")
    load_trainable(run.module, best["encoder"], run.prefix, str(best_path))
    run.head.load_state_dict(best["head"])
    run.module.eval()

