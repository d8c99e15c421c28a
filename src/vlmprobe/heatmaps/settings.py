"""The three settings a map is drawn in, each a model wrapped as a scorer (:mod:`vlmprobe.heatmaps.scorers`).

The score a map attributes is what the setting decides with:

=================  =========================================================================================
setting            target score of label *l* (one output of a *scorer*: batch -> (B, n_labels))
=================  =========================================================================================
zs (zero-shot)     cosine similarity of the image embedding with label *l*'s prompt embedding (the prompt
                   ensemble of :mod:`vlmprobe.multilabel.zero_shot`): :class:`ZeroShotScorer`
lp (linear probe)  the probe's logit ``embedding @ W[l] + b[l]``: the multi-label study's probe head (its
                   standardisation folded in) on top of the frozen encoder: :class:`HeadScorer`
ft (fine-tuned)    the fine-tuned head's logit on the fine-tuned encoder
                   (:func:`vlmprobe.models.finetuned.load_finetuned`): :class:`HeadScorer`
=================  =========================================================================================

Under ``protocol: sadman2025`` zs scores as Sadman et al.'s notebook: the raw dot product of the unnormalised image
embedding with the unnormalised text embedding of the bare class name (:class:`DotProductScorer`,
:mod:`vlmprobe.heatmaps.protocol`); lp and ft are the same head logits (the notebook's ``ClassifierOutputTarget``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vlmprobe.errors import VlmprobeError
from vlmprobe.heatmaps.scorers import DotProductScorer, HeadScorer, ZeroShotScorer

SETTINGS = ("zs", "lp", "ft")
"""The multi-label study's settings, named as there: zero-shot, linear probe, fine-tuned."""


@dataclass
class SettingModel:
    """What a setting attributes: the scorer, the encoder inside it, and the labels of its outputs."""

    scorer: torch.nn.Module
    encoder: Any
    classes: list[str]
    provenance: dict[str, Any]


def zero_shot_embeddings(encoder, classes: Sequence[str], options: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Unit class embeddings (n_labels, D) from the zero-shot study's prompts (``templates``, ``label_text``)."""
    from vlmprobe.models.prompts import DEFAULT_TEMPLATES, class_text_embeddings, render_prompts

    templates = options.get("templates") or DEFAULT_TEMPLATES
    prompts = render_prompts(list(classes), templates, options.get("label_text"), where="the zero-shot templates")

    def encode(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return encoder.encode_text(texts).float().cpu().numpy()

    return class_text_embeddings(encode, prompts), {"prompts": dict(zip(classes, prompts, strict=True)), "score": "cosine similarity"}


def bare_name_embeddings(encoder, classes: Sequence[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """The notebook's ``extract_text_embeddings(classes, ...)``: one unnormalised embedding per bare class name."""
    with torch.inference_mode():
        embeddings = encoder.encode_text(list(classes)).float().cpu().numpy()
    return embeddings, {"prompts": {name: [name] for name in classes}, "score": "raw dot product of unnormalised embeddings (sadman2025)"}


def build_setting(
    setting: str,
    model_id: str,
    spec: dict[str, Any],
    classes: Sequence[str],
    device: str,
    head_path: str | None = None,
    encoder_path: str | None = None,
    zero_shot: dict[str, Any] | None = None,
    protocol: str = "vlmprobe",
) -> SettingModel:
    """Load the model of ``setting`` and wrap it as a scorer.

    zs: the configured encoder and its text tower over ``classes`` (the manifest's labels);
    lp: the configured encoder + the probe head at ``head_path``; ft: the fine-tuned
    encoder at ``encoder_path`` + its head at ``head_path``. Heads carry their own class order.
    """
    from vlmprobe.formats.heads import load_head
    from vlmprobe.models import load_encoder
    from vlmprobe.models.finetuned import linear_layer

    if setting not in SETTINGS:
        raise VlmprobeError(f"Unknown heatmap setting {setting!r}.", f"use one of {list(SETTINGS)}.")
    if setting == "zs":
        encoder = load_encoder(model_id, spec, device)
        if not encoder.has_text_tower:
            raise VlmprobeError(
                f"Model {model_id!r} ({encoder.family}) has no text tower, so it has no zero-shot setting.",
                "leave zs out of `heatmaps: settings` for it (the workflow skips non-open_clip models).",
            )
        if protocol == "sadman2025":
            embeddings, info = bare_name_embeddings(encoder, classes)
            return SettingModel(DotProductScorer(encoder.image_module, embeddings).to(device), encoder, list(classes), info)
        embeddings, info = zero_shot_embeddings(encoder, classes, zero_shot or {})
        return SettingModel(ZeroShotScorer(encoder.image_module, embeddings).to(device), encoder, list(classes), info)
    if head_path is None:
        raise VlmprobeError(f"Setting {setting!r} of model {model_id!r} needs a head file.", "give the probe's / fine-tuned model's head.safetensors.")
    head = load_head(head_path)
    if setting == "lp":
        encoder = load_encoder(model_id, spec, device)
        info = {"head": str(head_path), "source": head.source}
    else:
        from vlmprobe.models.finetuned import load_finetuned

        if encoder_path is None:
            raise VlmprobeError(f"Setting ft of model {model_id!r} needs the fine-tuned encoder file.", "give encoder.safetensors of its finetune job.")
        tuned = load_finetuned(encoder_path, head_path, device)
        encoder = tuned.encoder
        info = {"head": str(head_path), "encoder": str(encoder_path), "spec_used": tuned.metadata.get("spec")}
    if head.weight.shape[1] != encoder.embed_dim:
        raise VlmprobeError(
            f"Head {str(head_path)!r} expects {head.weight.shape[1]}-D embeddings but model {model_id!r} gives {encoder.embed_dim}-D.",
            "re-run the job that wrote the head (it was made for another model).",
        )
    return SettingModel(HeadScorer(encoder.image_module, linear_layer(head)).to(device), encoder, list(head.classes), info)
