"""Loading what the multi-label study's ``finetune`` job wrote: the fine-tuned image tower and its head."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmprobe.errors import VlmprobeError


def load_trainable(module, state: dict[str, Any], prefix: str, where: str) -> None:
    expected = {key for key in module.state_dict() if key.startswith(prefix)}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise VlmprobeError(
            f"Fine-tuned weights {where!r} do not fit the encoder: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}.",
            "rebuild the encoder with the spec stored in the file's metadata, or re-run the finetune job.",
        )
    module.load_state_dict(state, strict=False)


@dataclass
class FineTuned:
    encoder: Any
    """:class:`vlmprobe.models.Encoder` with the fine-tuned image tower loaded (eval mode)."""
    head: Any
    """:class:`vlmprobe.multilabel.linear_probe.LinearHead` (:func:`linear_layer` makes a ``torch.nn.Linear`` of it)."""
    metadata: dict[str, Any] = field(default_factory=dict)


def load_finetuned(encoder_path: str | Path, head_path: str | Path, device: str = "cpu") -> FineTuned:
    """Rebuild a fine-tuned encoder and its head from the ``finetune`` job's two safetensors files."""
    from safetensors import safe_open

    from vlmprobe.formats.heads import load_head
    from vlmprobe.models import load_encoder
    from vlmprobe.models.checkpoints import load_state_dict

    encoder_path = Path(encoder_path)
    if not encoder_path.is_file():
        raise VlmprobeError(f"Fine-tuned encoder {str(encoder_path)!r} does not exist.", "run the workflow's finetune job first.")
    with safe_open(str(encoder_path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if not str(metadata.get("format", "")).startswith("vlmprobe-finetune-"):
        raise VlmprobeError(
            f"{str(encoder_path)!r} is not a vlmprobe fine-tuned encoder (no format metadata).", "point at the finetune job's encoder.safetensors."
        )
    spec = json.loads(metadata["spec"])
    encoder = load_encoder(metadata["model_id"], spec, device)
    load_trainable(encoder.image_module, load_state_dict(encoder_path), metadata.get("prefix", ""), str(encoder_path))
    encoder.image_module.eval()
    return FineTuned(encoder=encoder, head=load_head(head_path), metadata={**metadata, "spec": spec})


def linear_layer(head) -> Any:
    """A ``torch.nn.Linear`` computing the logits of a :class:`~vlmprobe.multilabel.linear_probe.LinearHead`."""
    import torch

    layer = torch.nn.Linear(head.weight.shape[1], head.weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(head.weight, dtype=torch.float32))
        layer.bias.copy_(torch.as_tensor(head.bias, dtype=torch.float32))
    return layer
