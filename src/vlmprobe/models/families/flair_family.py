"""``flair``: FLAIR (Silva-Rodríguez et al. 2025, fundus images), the authors' release read as published.

The authors' model (jusiro/FLAIR ``flair/modeling/model.py``) is a torchvision ResNet-50 with ``fc`` made
``Identity`` (``VisionModel``, model.py:329-333) and a bias-free 2048 -> 512 ``projection_head_vision.projection``
(model.py:346-348); its weights ``flair_resnet.pth`` are ``FLAIRModel.state_dict()`` as ``torch.save`` writes it (model.py:138),
and since 2025 ``jusiro2/FLAIR`` on the hub holds the same keys as ``model.safetensors`` (PyTorchModelHubMixin,
README.md:40). Keys: ``vision_model.model.*`` (the trunk), ``vision_model.projection_head_vision.projection.weight``,
``text_model.*`` and ``logit_scale`` (never loaded here). Spec keys:

- ``name``: ``resnet_v1`` (the released weights; ``resnet_v2`` is the same ResNet-50 with other ImageNet init);
- ``pretrained``: ``flair_resnet.pth`` or the hub's ``model.safetensors``;
- ``output``: ``pooled`` (default: the 2048-D ResNet features, what the authors' linear probe runs with
  ``--project_features False --norm_features False``, README.md:116, i.e. ``ProjectionLayer`` passing the
  features through, model.py:403-413) or ``projected`` (the 512-D image embedding of their zero-shot:
  L2-normalised features, projection, L2-normalised again, model.py:405-411);
- ``image_size`` (default 512, ``FLAIRModel(image_size=512)``, model.py:31).

Preprocessing as the authors' ``LoadImage`` and ``ImageScaling`` (flair/pretraining/data/transforms.py:37-39,
77-86; the same steps in ``FLAIRModel.preprocess_image``, model.py:235-258): RGB / 255 with **no** mean/std,
then, in floating point, the longest side resized to 512 keeping the aspect ratio (``int(side / scale)``,
bilinear, antialiased) and zero padding at the right and bottom to 512 x 512. The resize runs on the
[0, 1] tensor as theirs does, so this preprocessing has no uint8 geometric stage to share.
"""

from __future__ import annotations

import functools
from typing import Any

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.base import Encoder, ModelFamily, describe_transform, register_family

OUTPUTS = ("pooled", "projected")
VISION_TYPES = ("resnet_v1", "resnet_v2")
RELEASE = "FLAIR's weights (flair_resnet.pth from jusiro/FLAIR, or model.safetensors from the hub's jusiro2/FLAIR)"
REQUIRED = ("vision_model.model.conv1.weight", "vision_model.model.layer4.", "vision_model.projection_head_vision.projection.weight")


class LongestSideCanvas:
    """FLAIR's ``ImageScaling(canvas=True)`` on a (C, H, W) float tensor: the longest side to ``size`` with
    the aspect kept (bilinear, antialiased), then zeros at the right and bottom up to ``size`` x ``size``."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, image):
        import torch
        from torchvision.transforms import functional

        height, width = image.shape[-2:]
        scale = max(height, width) / self.size
        image = functional.resize(image, [int(height / scale), int(width / scale)], antialias=True)
        return torch.nn.functional.pad(image, (0, self.size - image.shape[-1], 0, self.size - image.shape[-2], 0, 0))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, interpolation=bilinear, antialias=True, pad=right/bottom zeros)"


@functools.cache
def _tower_class():
    import torch

    class FlairVision(torch.nn.Module):
        """The authors' ``VisionModel`` keys (``model.*``, ``projection_head_vision.projection``) -> ``output``."""

        def __init__(self, output: str):
            super().__init__()
            import torchvision

            self.output = output
            self.model = torchvision.models.resnet50(weights=None)
            self.model.fc = torch.nn.Identity()
            self.projection_head_vision = torch.nn.Module()
            self.projection_head_vision.projection = torch.nn.Linear(2048, 512, bias=False)

        def forward(self, pixel_values):
            features = self.model(pixel_values)
            if self.output == "pooled":
                return features
            features = features / features.norm(dim=-1, keepdim=True)
            projected = self.projection_head_vision.projection(features)
            return projected / projected.norm(dim=-1, keepdim=True)

    return FlairVision


@register_family
class FlairFamily(ModelFamily):
    name = "flair"
    trainable = True

    def check(self, model_id: str, spec: dict[str, Any]) -> None:
        from vlmprobe.models.layouts import checkpoint_shapes, require_file, require_keys

        if spec.get("name") not in VISION_TYPES:
            raise VlmprobeError(f"Model {model_id!r}: FLAIR `name: {spec.get('name')}` is not one of {list(VISION_TYPES)}.", "set `name: resnet_v1` (the released weights).")
        if spec.get("output", "pooled") not in OUTPUTS:
            raise VlmprobeError(f"Model {model_id!r}: FLAIR `output: {spec.get('output')}` is not one of {list(OUTPUTS)}.", "use `pooled` (the authors' linear-probe features) or `projected`.")
        path = require_file(model_id, spec, (".pth", ".safetensors"), RELEASE)
        require_keys(model_id, path, checkpoint_shapes(path, spec.get("checkpoint_key")), REQUIRED, RELEASE)

    def input_files(self, spec: dict[str, Any]) -> list[str]:
        from vlmprobe.models.layouts import existing

        return existing(self.weight_files(spec))

    def preprocess_without_weights(self, model_id: str, spec: dict[str, Any]) -> Any:
        """Declared so the plan can say why FLAIR reads no pixel cache: the resize runs on floats, after ToTensor."""
        from torchvision import transforms

        return transforms.Compose([transforms.ToTensor(), LongestSideCanvas(int(spec.get("image_size", 512)))])  # [0, 1], no mean/std

    def load(self, model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
        from vlmprobe.models.checkpoints import load_checkpoint_into, sha256

        output = spec.get("output", "pooled")
        tower = _tower_class()(output)
        fit = load_checkpoint_into(tower, spec["pretrained"], f"FLAIR {spec['name']}", key=spec.get("checkpoint_key")).as_metadata()
        size = int(spec.get("image_size", 512))
        preprocess = self.preprocess_without_weights(model_id, spec)
        return Encoder(
            model_id=model_id,
            family=self.name,
            spec=spec,
            image_module=tower.eval().to(device),
            preprocess=preprocess,
            preprocess_info={"transform": describe_transform(preprocess), "output": output, "image_size": size},
            embed_dim=2048 if output == "pooled" else 512,
            checkpoint_sha256=sha256(spec["pretrained"]),
            checkpoint_fit=fit,
            extras={"architecture": f"FLAIR {spec['name']} (torchvision resnet50)"},
        )

    def cam_layer(self, encoder: Encoder) -> tuple[Any, Any, str]:
        return encoder.image_module.model.layer4[-1], None, "flair: ResNet-50 layer4[-1]"
