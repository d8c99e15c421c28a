"""``cxr_clip``: CXR-CLIP (You et al., MICCAI 2023; kakaobrain/cxr-clip, now Soombit-ai/cxr-clip), read as released.

The released files ``swint_{m,mc,mcc}.tar`` and ``r50_{m,mc,mcc}.tar`` (README.md:29-36) are the trainer's
container ``{"model", "optimizer", "scheduler", "config", "epoch", "train_loss"}`` (cxrclip/trainer.py:161-171),
whose ``config`` may hold OmegaConf objects (read as inert data, :mod:`vlmprobe.models.inert_pickle`). In
``model`` (``CXRClip.state_dict()``, cxrclip/model/clip.py:14-33):

- ``name: swin_tiny``: ``image_encoder.image_encoder.*`` = a transformers ``SwinModel`` of
  ``microsoft/swin-tiny-patch4-window7-224`` (configs/model/clip_swin_clinical.yaml:4-8; ``HuggingfaceImageEncoder``,
  cxrclip/model/modules/image_encoder.py:19-21), built here from the default ``SwinConfig`` (that checkpoint's
  architecture; ``swin_config:`` overrides its fields);
- ``name: resnet50``: ``image_encoder.resnet.*`` = torchvision ``resnet50`` without ``fc``
  (image_encoder.py:48-77; its SyncBatchNorm has BatchNorm's keys);
- ``image_projection.projection.*``: the ``linear`` projection head 768/2048 -> 512
  (configs/model/clip_swin_clinical.yaml:20-23, clip_resnet_clinical.yaml:19-22, cxrclip/model/modules/projection.py:23-29; an ``mlp`` head's
  ``fc`` / ``layer_norm`` keys are recognised too); ``text_encoder.*``, ``text_projection.*`` and ``logit_scale``
  are not read into the image encoder.

``output``: ``first_token`` (Swin default) is the authors' ``encode_image``: ``last_hidden_state[:, 0]``,
the first token of the final layer-normed Swin stage (cxrclip/model/clip.py:46-54), also the feature their
linear probe trains on (cxrclip/model/image_classification.py:42-50 with ``freeze_backbone_weights: true``,
configs/finetune_10.yaml); ``pooled`` (ResNet default, the only ResNet feature there: clip.py:49-50) is the
average-pooled features (Swin's ``pooler_output``); ``projected`` is the CLIP image embedding, the
authors' feature through ``image_projection`` and L2-normalised (clip.py:79-83).

Preprocessing as the authors' evaluation transform (configs/transform/clahe.yaml ``test:``, loaded by
cxrclip/data/data_utils.py:28-45, applied at :48-68 on ``Image.open(path).convert("RGB")``): torchvision
``Resize(224)`` (shortest side, bilinear) and ``CenterCrop(224)``, then ``ToTensor`` and ``Normalize`` with
mean = std = 0.5 for Swin ("huggingface", data_utils.py:57-59) or the ImageNet statistics for ResNet
(data_utils.py:61-63, chosen for ``resnet`` at cxrclip/trainer.py:47-50 and evaluator.py:36-39).
"""

from __future__ import annotations

import functools
from typing import Any

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.base import Encoder, ModelFamily, describe_transform, register_family

ARCHITECTURES = {
    "swin_tiny": {"prefix": "image_encoder.image_encoder.", "outputs": ("first_token", "pooled", "projected"), "default": "first_token",
                  "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "release": "a CXR-CLIP Swin-T checkpoint (swint_m.tar, swint_mc.tar or swint_mcc.tar)"},
    "resnet50": {"prefix": "image_encoder.resnet.", "outputs": ("pooled", "projected"), "default": "pooled",
                 "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "release": "a CXR-CLIP ResNet-50 checkpoint (r50_m.tar, r50_mc.tar or r50_mcc.tar)"},
}
SWIN_CONFIG_KEYS = frozenset({"image_size", "patch_size", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio"})


def _head(shapes: dict[str, tuple[int, ...]]):
    """The image projection head the checkpoint holds: ``linear`` or ``mlp`` (cxrclip/model/modules/projection.py)."""
    import torch

    out_dim, in_dim = shapes["image_projection.projection.weight"]
    head = torch.nn.Module()
    head.projection = torch.nn.Linear(in_dim, out_dim)
    if "image_projection.fc.weight" in shapes:  # MLPProjectionHead, projection.py:4-20
        head.gelu = torch.nn.GELU()
        head.fc = torch.nn.Linear(out_dim, out_dim)
        head.layer_norm = torch.nn.LayerNorm(out_dim)
    return head


def _swin_renames(state: dict[str, Any], module: Any) -> dict[str, Any]:
    """The released Swin keys (transformers 4: ``attention.self.query``, ``intermediate.dense``, ...) under the
    names of the installed transformers, by transformers' own ``swin`` renaming (its ``conversion_mapping``)."""
    import re

    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    renames = [(r.source_patterns[0], r.target_patterns[0]) for r in get_checkpoint_conversion_mapping("swin") or []]
    renamed = {}
    for key, value in state.items():
        if key.startswith("image_encoder.image_encoder."):
            for source, target in renames:
                key = re.sub(source, target, key)
        renamed[key] = value
    return renamed


@functools.cache
def _tower_class():
    import torch

    class CxrClipImage(torch.nn.Module):
        """``CXRClip``'s image half under its own keys: ``image_encoder.<image_encoder|resnet>``, ``image_projection``."""

        def __init__(self, name: str, output: str, head, swin_config: dict[str, Any]):
            super().__init__()
            self.name, self.output = name, output
            self.image_encoder = torch.nn.Module()
            if name == "swin_tiny":
                from transformers import SwinConfig, SwinModel

                self.image_encoder.image_encoder = SwinModel(SwinConfig(**swin_config))
            else:
                import torchvision

                resnet = torchvision.models.resnet50(weights=None)
                del resnet.fc  # image_encoder.py:58
                self.image_encoder.resnet = resnet
            self.image_projection = head

        def features(self, pixel_values):
            if self.name == "resnet50":
                r = self.image_encoder.resnet  # the authors' ResNet50.forward, image_encoder.py:61-77
                x = r.maxpool(r.relu(r.bn1(r.conv1(pixel_values))))
                return torch.flatten(r.avgpool(r.layer4(r.layer3(r.layer2(r.layer1(x))))), 1)
            out = self.image_encoder.image_encoder(pixel_values=pixel_values)
            return out.pooler_output if self.output == "pooled" else out.last_hidden_state[:, 0]

        def forward(self, pixel_values):
            features = self.features(pixel_values)
            if self.output != "projected":
                return features
            head = self.image_projection
            projected = head.projection(features)
            if hasattr(head, "fc"):
                projected = head.layer_norm(head.fc(head.gelu(projected)) + projected)
            return projected / projected.norm(dim=1, keepdim=True)

    return CxrClipImage


@register_family
class CxrClipFamily(ModelFamily):
    name = "cxr_clip"
    trainable = True

    def _settings(self, model_id: str, spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
        name = spec.get("name")
        if name not in ARCHITECTURES:
            raise VlmprobeError(f"Model {model_id!r}: CXR-CLIP `name: {name}` is not one of {sorted(ARCHITECTURES)}.", "use swin_tiny (swint_*.tar) or resnet50 (r50_*.tar).")
        settings = ARCHITECTURES[name]
        output = spec.get("output", settings["default"])
        if output not in settings["outputs"]:
            raise VlmprobeError(f"Model {model_id!r}: CXR-CLIP {name} has no `output: {output}`.", f"use one of {list(settings['outputs'])} (default {settings['default']}, the authors' feature).")
        unknown = sorted(set(spec.get("swin_config") or {}) - SWIN_CONFIG_KEYS)
        if unknown or (spec.get("swin_config") and name != "swin_tiny"):
            raise VlmprobeError(f"Model {model_id!r}: `swin_config` keys {unknown or sorted(spec['swin_config'])} do not apply.", f"swin_tiny only, with keys among {sorted(SWIN_CONFIG_KEYS)}.")
        return settings, output

    def check(self, model_id: str, spec: dict[str, Any]) -> None:
        from vlmprobe.models.layouts import checkpoint_shapes, require_file, require_keys

        settings, _ = self._settings(model_id, spec)
        path = require_file(model_id, spec, (".tar", ".pt", ".pth"), settings["release"])
        shapes = checkpoint_shapes(path, spec.get("checkpoint_key"))
        require_keys(model_id, path, shapes, (settings["prefix"], "image_projection.projection.weight"), settings["release"])

    def input_files(self, spec: dict[str, Any]) -> list[str]:
        from vlmprobe.models.layouts import existing

        return existing(self.weight_files(spec))

    def preprocess_without_weights(self, model_id: str, spec: dict[str, Any]) -> Any:
        """The authors' evaluation transform (configs/transform/clahe.yaml ``test:``), from the spec alone."""
        from torchvision import transforms

        settings, _ = self._settings(model_id, spec)
        size = int(spec.get("image_size", 224))
        return transforms.Compose(
            [
                transforms.Resize(size),  # bilinear, shortest side (configs/transform/clahe.yaml test:)
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize(settings["mean"], settings["std"]),
            ]
        )

    def load(self, model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
        from vlmprobe.models.checkpoints import load_checkpoint_into, sha256
        from vlmprobe.models.layouts import checkpoint_shapes

        _, output = self._settings(model_id, spec)
        head = _head(checkpoint_shapes(spec["pretrained"], spec.get("checkpoint_key")))
        tower = _tower_class()(spec["name"], output, head, dict(spec.get("swin_config") or {}))
        fit = load_checkpoint_into(
            tower, spec["pretrained"], f"CXR-CLIP {spec['name']}",
            filter_fn=_swin_renames if spec["name"] == "swin_tiny" else None,
            key=spec.get("checkpoint_key"),
        ).as_metadata()
        size = int(spec.get("image_size", 224))
        preprocess = self.preprocess_without_weights(model_id, spec)
        tower = tower.eval().to(device)
        import torch

        with torch.no_grad():
            embed_dim = int(tower(torch.zeros(1, 3, size, size, device=device)).shape[-1])
        return Encoder(
            model_id=model_id,
            family=self.name,
            spec=spec,
            image_module=tower,
            preprocess=preprocess,
            preprocess_info={"transform": describe_transform(preprocess), "output": output, "image_size": size},
            embed_dim=embed_dim,
            checkpoint_sha256=sha256(spec["pretrained"]),
            checkpoint_fit=fit,
            extras={"architecture": f"CXR-CLIP {spec['name']}"},
        )

    def cam_layer(self, encoder: Encoder) -> tuple[Any, Any, str]:
        from vlmprobe.models.cam_layers import TokenGrid

        tower = encoder.image_module
        if tower.name == "resnet50":
            return tower.image_encoder.resnet.layer4[-1], None, "cxr_clip: ResNet-50 layer4[-1]"
        # the last block's input norm, before its window attention mixes the tokens (the ViT rule of cam_layers):
        # after the final norm only the first token would get a gradient from the first-token feature
        block = tower.image_encoder.image_encoder.encoder.layers[-1].blocks[-1]
        return block.layernorm_before, TokenGrid(0), "cxr_clip: Swin encoder.layers[-1].blocks[-1].layernorm_before"
