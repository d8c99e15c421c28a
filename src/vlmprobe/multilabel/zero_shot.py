"""Zero-shot classification with a model's text tower over cached image embeddings.

For each class, prompts are made from templates (``"a chest X-ray showing {label}."``): each prompt is
encoded by the text tower and L2-normalised, the prompts of a class are averaged and the mean is
normalised again (CLIP's prompt ensembling). A sample's score for a class is the cosine similarity of
its image embedding (from the cached table: the model's ``encode_image`` output) with that class
embedding. Scores are threshold-free, so LRAP, coverage, ranking loss, ROC-AUC and AP do not depend on
the decision rule below; F1, precision, recall and exact match do.

Multi-label decision rules (``multilabel: zero_shot: rule``), with ``t`` the configured ``threshold``,
``s`` the model's logit scale (``exp(logit_scale)``, ~100 for trained CLIPs) and ``b`` its logit bias
(SigLIP models; 0 otherwise):

* ``sigmoid`` (default, t = 0.5): decide ``sigmoid(s * cos + b) >= t`` for each label independently.
  For CLIP-style models (``b = 0``) and ``t = 0.5`` this is ``cos >= 0``: contrastive training gives no
  calibrated per-label probability, and image-text cosines of such models are nearly all positive, so
  this rule predicts almost every label for every image -- the over-prediction the paper reports
  (exact match 0). ``predicted_labels_per_sample`` in the metrics makes it visible.
* ``softmax``: ``p = softmax(s * cos)`` over the labels; decide ``p >= t`` (e.g. ``t = 1 / n_labels``:
  labels above a uniform share), the top label always included.
* ``top1``: the single best label.
* ``cosine``: ``cos >= t`` directly.

Multi-class data always take the arg-max.

``protocol: sadman2025`` (:mod:`vlmprobe.multilabel.protocols`) scores as Sadman et al.'s notebook instead: one prompt per
class, the bare class name (``extract_text_embeddings(classes, ...)``), and the raw dot product of the
unnormalised image and text embeddings (``logits = img_emb @ txt_emb.T``: no normalisation, no logit scale),
row-min-max scaled; decided where the scaled score is > 0.5 (``templates``, ``rule`` and ``threshold`` are not
used).

Models without a text tower (every family but open_clip)
have no zero-shot setting; the workflow skips them and the summary names the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.base import NO_TEXT_TOWER
from vlmprobe.models.prompts import DEFAULT_TEMPLATES, class_text_embeddings, normalise, render_prompts

log = logging.getLogger(__name__)

RULES = ("sigmoid", "softmax", "top1", "cosine")
EMBED_SEED = 0
"""The torch seed the embed job sets before loading a model (``vlmprobe.embed.embed_manifest``'s default),
unless the table's metadata records another."""


def cosine_scores(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    if image_embeddings.shape[1] != text_embeddings.shape[1]:
        raise VlmprobeError(
            f"Image embeddings are {image_embeddings.shape[1]}-D but the text tower gives {text_embeddings.shape[1]}-D.",
            "the embedding table must come from the same open_clip model; delete it and re-run.",
        )
    return normalise(image_embeddings) @ normalise(text_embeddings).T


def cosine_scores_raw(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """Raw dot products of unnormalised embeddings (protocol sadman2025's zero-shot logits)."""
    if image_embeddings.shape[1] != text_embeddings.shape[1]:
        return cosine_scores(image_embeddings, text_embeddings)  # raises the dimension error
    return np.asarray(image_embeddings, dtype=np.float64) @ np.asarray(text_embeddings, dtype=np.float64).T


def decide(
    cosines: np.ndarray, multilabel: bool, rule: str = "sigmoid", threshold: float = 0.5, logit_scale: float = 100.0, logit_bias: float = 0.0
) -> np.ndarray:
    """0/1 decisions from cosine similarities (see the module docstring for the rules)."""
    from vlmprobe.formats.heads import sigmoid, softmax

    top = np.zeros(cosines.shape, dtype=bool)
    top[np.arange(len(cosines)), np.argmax(cosines, axis=1)] = True
    if not multilabel or rule == "top1":
        return top
    if rule == "sigmoid":
        return sigmoid(logit_scale * cosines + logit_bias) >= threshold
    if rule == "softmax":
        return (softmax(logit_scale * cosines) >= threshold) | top
    if rule == "cosine":
        return cosines >= threshold
    raise VlmprobeError(f"Unknown zero-shot rule {rule!r}.", f"set `multilabel: zero_shot: rule:` to one of {list(RULES)}.")


def describe_rule(rule: str, threshold: float, multilabel: bool, logit_scale: float, logit_bias: float) -> str:
    if not multilabel:
        return "argmax of cosine similarity (multi-class)"
    return {
        "sigmoid": f"sigmoid({logit_scale:.4g} * cosine + {logit_bias:.4g}) >= {threshold} per label",
        "softmax": f"softmax({logit_scale:.4g} * cosine) over labels >= {threshold}, top label always",
        "top1": "the single label of highest cosine similarity",
        "cosine": f"cosine >= {threshold} per label",
    }[rule]


def check_same_image_tower(encoder, image_path: str, stored: np.ndarray, embedding_path: str | Path) -> None:
    """Re-embed one image: the loaded model must be the one whose image tower made the table.

    Cosine >= 0.99 allows for the table having been made on a GPU in half precision.
    """
    import torch

    from vlmprobe.images import load_image

    with torch.inference_mode():
        batch = encoder.preprocess(load_image(image_path)).unsqueeze(0).to(next(encoder.image_module.parameters()).device)
        fresh = encoder.encode_image(batch).float().cpu().numpy()[0]
    cosine = float(normalise(fresh) @ normalise(stored))
    if cosine < 0.99:
        raise VlmprobeError(
            f"The model loaded for zero-shot does not reproduce the embedding table {str(embedding_path)!r} "
            f"(cosine {cosine:.3f} on {image_path!r}): its weights differ from the embed job's.",
            "delete the embedding table and re-run, so both come from the same weights.",
        )


def run_zero_shot_files(
    manifest_path: str | Path,
    embedding_path: str | Path,
    model_id: str,
    spec: dict[str, Any],
    predictions_path: str | Path,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    label_text: Mapping[str, str] | None = None,
    rule: str = "sigmoid",
    threshold: float = 0.5,
    device: str = "cpu",
    identity: dict[str, Any] | None = None,
    protocol: str = "vlmprobe",
) -> None:
    """The ``zero_shot`` job: class prompts through the text tower, scored against the cached image embeddings.

    Only the text tower runs (a few prompts per class); the images were embedded once by the embed job.
    """
    import torch

    from vlmprobe.formats.embeddings import aligned
    from vlmprobe.formats.predictions import Predictions, write_predictions
    from vlmprobe.models import load_encoder
    from vlmprobe.multilabel.protocols import (
        DECISION,
        check_protocol,
        row_minmax,
        row_minmax_decisions,
    )

    paper = check_protocol(protocol) == "sadman2025"
    if paper:
        templates, label_text = ("{label}",), None
    if rule not in RULES:
        raise VlmprobeError(f"Unknown zero-shot rule {rule!r}.", f"set `multilabel: zero_shot: rule:` to one of {list(RULES)}.")
    started = time.perf_counter()
    manifest, matrix, manifest_meta, embedding_meta = aligned(manifest_path, embedding_path, spec)
    classes = list(manifest_meta["classes"])
    multilabel = bool(manifest_meta.get("multilabel"))
    prompts = render_prompts(classes, templates, label_text, where=f"the templates of dataset {manifest_meta.get('dataset')!r}")
    # A model without pretrained weights is initialised from torch's RNG: seed it as the embed job did,
    # so that the text tower belongs to the image tower that made the table (checked below).
    torch.manual_seed(int(embedding_meta.get("seed", EMBED_SEED)))
    encoder = load_encoder(model_id, spec, device)
    if not encoder.has_text_tower:
        raise VlmprobeError(f"Model {model_id!r} has {NO_TEXT_TOWER}.", "leave it out of the zero-shot setting.")
    is_test = np.asarray(manifest["split"].to_list()) == "test"
    check_same_image_tower(encoder, manifest["path"][int(np.flatnonzero(is_test)[0])], matrix[np.flatnonzero(is_test)[0]], embedding_path)
    clip = encoder.extras.get("open_clip_model")
    logit_scale = float(clip.logit_scale.exp().item()) if clip is not None and hasattr(clip, "logit_scale") else 100.0
    bias = getattr(clip, "logit_bias", None)
    logit_bias = float(bias.item()) if bias is not None else 0.0

    def encode(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return encoder.encode_text(texts).float().cpu().numpy()

    if paper:
        text = np.asarray(encode(list(classes)), dtype=np.float64)  # the bare class names, as the manifest writes them
        cosines = row_minmax(cosine_scores_raw(matrix[is_test], text))
        predicted = row_minmax_decisions(cosines)
    else:
        text = class_text_embeddings(encode, prompts)
        cosines = cosine_scores(matrix[is_test], text)
        predicted = decide(cosines, multilabel, rule, threshold, logit_scale, logit_bias)
    seconds = time.perf_counter() - started
    log.info(
        "zero-shot %s: %d prompts, %d test samples, %.2f labels predicted per sample (true %.2f), %.1f s",
        model_id, sum(map(len, prompts)), int(is_test.sum()), predicted.sum(axis=1).mean(), manifest.filter(is_test)["labels"].list.len().mean(), seconds,
    )  # fmt: skip
    write_predictions(
        predictions_path,
        Predictions(
            sample_ids=[manifest["sample_id"][int(i)] for i in np.flatnonzero(is_test)],
            scores=cosines,
            predicted=predicted,
            classes=classes,
            metadata={
                **(identity or {}),
                "setting": "zs",
                "protocol": protocol,
                "multilabel": multilabel,
                "score_kind": "row-min-max scaled dot product" if paper else "cosine similarity",
                "decision": DECISION if paper else {
                    "rule": rule if multilabel else "argmax",
                    "threshold": float(threshold) if multilabel and rule != "top1" else None,
                    "description": describe_rule(rule, threshold, multilabel, logit_scale, logit_bias),
                },
                "wall_time_s": seconds,
                "details": {
                    "prompts": dict(zip(classes, prompts, strict=True)),
                    "logit_scale": logit_scale,
                    "logit_bias": logit_bias,
                    "text_embeddings": text.tolist(),
                    "embedding_table": str(embedding_path),
                },
            },
        ),
    )
