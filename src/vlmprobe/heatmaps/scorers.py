"""Scorers: the module Grad-CAM differentiates, one per setting: a batch of model inputs -> (B, n_labels) scores.

Which scorer each setting uses, and what its score means, is in :mod:`vlmprobe.heatmaps.settings`.
"""

from __future__ import annotations

import numpy as np
import torch


class ZeroShotScorer(torch.nn.Module):
    """Zero-shot: ``scale * normalise(image_module(x)) @ class_embeddings.T`` (cosine similarities for scale 1).

    ``class_embeddings`` (n_labels, D): each label's unit prompt embedding
    (:func:`vlmprobe.models.prompts.class_text_embeddings`). A positive scale does not change a Grad-CAM map
    (the maps are min-max scaled), so the default 1 keeps the score the zero-shot study reports.
    """

    def __init__(self, image_module, class_embeddings, scale: float = 1.0):
        super().__init__()
        self.image_module = image_module
        self.register_buffer("class_embeddings", torch.as_tensor(np.asarray(class_embeddings), dtype=torch.float32))
        self.scale = float(scale)

    def forward(self, images):
        features = self.image_module(images).float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return self.scale * features @ self.class_embeddings.T


class DotProductScorer(torch.nn.Module):
    """Zero-shot as Sadman et al.'s notebook scores it: ``image_module(x) @ text_embeddings.T``, both unnormalised.

    The notebook's ``SimilarityTarget`` (``(img_emb @ txt.T)[0, cls]``) on the bare class names' text embeddings
    (protocol ``sadman2025``, :mod:`vlmprobe.heatmaps.protocol`). ``class_embeddings`` keeps the name the title
    probabilities read.
    """

    def __init__(self, image_module, text_embeddings):
        super().__init__()
        self.image_module = image_module
        self.register_buffer("class_embeddings", torch.as_tensor(np.asarray(text_embeddings), dtype=torch.float32))

    def forward(self, images):
        return self.image_module(images).float() @ self.class_embeddings.T


class HeadScorer(torch.nn.Module):
    """A linear head on the encoder: ``head(image_module(x))`` -- the linear probe (frozen encoder, the
    probe's weights with its standardisation folded in) and the fine-tuned model (fine-tuned encoder and
    head) alike; both heads are :class:`vlmprobe.formats.heads.LinearHead` files
    (:func:`vlmprobe.models.finetuned.linear_layer` makes the ``torch.nn.Linear``)."""

    def __init__(self, image_module, head):
        super().__init__()
        self.image_module = image_module
        self.head = head

    def forward(self, images):
        return self.head(self.image_module(images)).float()


def scores_of(scorer, inputs, batch_size: int = 32, device: str = "cpu") -> np.ndarray:
    """Scorer outputs (N, n_labels) for a stack of inputs, without gradients."""
    outputs = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            outputs.append(scorer(inputs[start : start + batch_size].to(device)).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)
