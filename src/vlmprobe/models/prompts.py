"""Zero-shot class embeddings: class names rendered into prompt templates, through a model's text tower.
Shared by zero-shot classification (multilabel) and zero-shot Grad-CAM (heatmaps)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from vlmprobe.errors import VlmprobeError

DEFAULT_TEMPLATES = (
    "a medical image showing {label}.",
    "an image of {label}.",
    "{label}.",
)


def label_phrase(label: str, label_text: Mapping[str, str] | None = None) -> str:
    if label_text and label in label_text:
        return str(label_text[label])
    return label.replace("_", " ")


def render_prompts(classes: Sequence[str], templates: Sequence[str], label_text: Mapping[str, str] | None = None, where: str = "templates") -> list[list[str]]:
    """Prompts per class: every template with ``{label}`` replaced by the class's phrase."""
    if not templates:
        raise VlmprobeError(f"Zero-shot {where} is empty.", "give at least one template such as 'a chest X-ray showing {label}.'.")
    missing = [template for template in templates if "{label}" not in template]
    if missing:
        raise VlmprobeError(f"Zero-shot template(s) {missing} in {where} have no '{{label}}' placeholder.", "write '{label}' where the class name goes.")
    unknown = sorted(set(label_text or {}) - set(classes))
    if unknown:
        raise VlmprobeError(
            f"Zero-shot label_text of {where} names label(s) {unknown} that the dataset does not have.", f"use only these labels: {list(classes)}."
        )
    return [[template.replace("{label}", label_phrase(name, label_text)) for template in templates] for name in classes]


def normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def class_text_embeddings(encode_text: Callable[[list[str]], np.ndarray], prompts: Sequence[Sequence[str]]) -> np.ndarray:
    """(C, d) unit vectors: the normalised mean of each class's normalised prompt embeddings."""
    flat = [prompt for group in prompts for prompt in group]
    encoded = normalise(encode_text(flat))
    out, start = [], 0
    for group in prompts:
        out.append(encoded[start : start + len(group)].mean(axis=0))
        start += len(group)
    return normalise(np.stack(out))
