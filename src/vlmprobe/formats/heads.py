"""The probe-head file format (safetensors): a linear head over embeddings with its decision rule.
Written by the multi-label linear probe and by fine-tuning, read by Grad-CAM."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings (tanh form)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum for stability."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(shifted - shifted.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def apply_thresholds(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return np.asarray(scores) >= np.asarray(thresholds)[None, :]


def argmax_decisions(scores: np.ndarray) -> np.ndarray:
    """One-hot decisions of the highest score per row (multi-class)."""
    decided = np.zeros(scores.shape, dtype=bool)
    decided[np.arange(len(scores)), np.argmax(scores, axis=1)] = True
    return decided


@dataclass
class LinearHead:
    """``logits = embedding @ weight.T + bias``; probabilities by sigmoid (multi-label) or softmax.

    Stored as safetensors with tensors ``weight`` (C, d) float32, ``bias`` (C,) float32 and, for
    multi-label heads, ``thresholds`` (C,) float32 (decide ``probability >= threshold``); the string
    metadata holds ``classes`` (JSON list, the column order), ``multilabel`` ("true"/"false"),
    ``activation`` ("sigmoid"/"softmax"), ``source`` ("linear_probe"/"finetune") and ``details`` (JSON).
    :func:`vlmprobe.models.finetuned.linear_layer` makes a ``torch.nn.Linear`` of it (kept there: this module runs in
    the torch-free analysis environment).
    """

    weight: np.ndarray
    bias: np.ndarray
    classes: list[str]
    multilabel: bool
    thresholds: np.ndarray | None = None
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(embeddings, dtype=np.float64) @ self.weight.T.astype(np.float64) + self.bias.astype(np.float64)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        logits = self.logits(embeddings)
        return sigmoid(logits) if self.multilabel else softmax(logits)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        if self.multilabel:
            return apply_thresholds(probabilities, self.thresholds if self.thresholds is not None else np.full(len(self.classes), 0.5))
        return argmax_decisions(probabilities)


def save_head(path: str | Path, head: LinearHead) -> None:
    from vlmprobe.io import write_safetensors

    tensors = {"weight": np.ascontiguousarray(head.weight, dtype=np.float32), "bias": np.ascontiguousarray(head.bias, dtype=np.float32)}
    if head.thresholds is not None:
        tensors["thresholds"] = np.ascontiguousarray(head.thresholds, dtype=np.float32)
    metadata = {
        "classes": json.dumps(list(head.classes)),
        "multilabel": "true" if head.multilabel else "false",
        "activation": "sigmoid" if head.multilabel else "softmax",
        "source": head.source,
        "details": json.dumps(head.details, sort_keys=True, default=str),
    }
    write_safetensors(path, tensors, metadata)


def load_head(path: str | Path) -> LinearHead:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise VlmprobeError(f"Head file {str(path)!r} does not exist.", "re-run the workflow (multilabel_lp or finetune) to create it.")
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return LinearHead(
        weight=tensors["weight"],
        bias=tensors["bias"],
        thresholds=tensors.get("thresholds"),
        classes=json.loads(metadata.get("classes", "[]")),
        multilabel=metadata.get("multilabel") == "true",
        source=metadata.get("source", ""),
        details=json.loads(metadata.get("details", "{}")),
    )
