"""``pixels``: the resized image itself as the embedding, an honest no-weights baseline.

A model that does no better than raw pixels on a dataset has learned nothing useful for it.
``image_size`` (default 32) and ``grayscale`` (default true; medical images are mostly gray) set the
vector: 32 x 32 gray pixels -> 1,024-D, scaled to [0, 1].
"""

from __future__ import annotations

from typing import Any

from vlmprobe.errors import VlmprobeError
from vlmprobe.models.base import (
    Encoder,
    ModelFamily,
    describe_transform,
    register_family,
)


def _transform(spec: dict[str, Any]):
    from torchvision import transforms

    size = int(spec.get("image_size", 32))
    steps = [transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR, antialias=True)]
    if spec.get("grayscale", True):
        steps.append(transforms.Grayscale(num_output_channels=1))
    steps.append(transforms.ToTensor())
    return transforms.Compose(steps)


@register_family
class PixelsFamily(ModelFamily):
    name = "pixels"
    has_layers = False  # the resized image itself: nothing to attribute, nothing to train

    def check(self, model_id: str, spec: dict[str, Any]) -> None:
        return None

    def preprocess_without_weights(self, model_id: str, spec: dict[str, Any]) -> Any:
        return _transform(spec)

    def load(self, model_id: str, spec: dict[str, Any], device: str = "cpu") -> Encoder:
        import torch

        size = int(spec.get("image_size", 32))
        grayscale = bool(spec.get("grayscale", True))
        preprocess = _transform(spec)
        channels = 1 if grayscale else 3
        return Encoder(
            model_id=model_id,
            family=self.name,
            spec=spec,
            image_module=torch.nn.Flatten().to(device),
            preprocess=preprocess,
            preprocess_info={"image_size": size, "grayscale": grayscale, "transform": describe_transform(preprocess)},
            embed_dim=channels * size * size,
        )

    def cam_layer(self, encoder: Encoder) -> tuple[Any, Any, str]:
        raise VlmprobeError(
            f"Model {encoder.model_id!r} is the pixels baseline: it has no layers, so no Grad-CAM map.",
            "leave it out of `heatmaps: models`.",
        )
