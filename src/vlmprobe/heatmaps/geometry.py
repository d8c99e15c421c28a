"""Geometry of a map: image -> model input -> map -> the original image's size.

Every image is resized whole to the model's input size (the size its preprocessing crops to), then
converted and normalised with the model's own mean/std. There is deliberately no centre crop: a
finding at the border must stay visible, and every map pixel must map back to an image pixel. The
map is computed at the input resolution and resized (bilinear) to the original image's size, so
annotation boxes in original pixel coordinates compare directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vlmprobe.errors import VlmprobeError


@dataclass(frozen=True)
class InputGeometry:
    size: tuple[int, int]
    """(height, width) the model sees."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str


def _as_hw(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    size = list(size)
    return (int(size[0]), int(size[-1]))


def input_geometry(encoder) -> InputGeometry:
    """Input size, normalisation and interpolation of the encoder's own preprocessing."""
    preprocess = encoder.preprocess
    steps = list(getattr(preprocess, "transforms", [preprocess]))
    size = mean = std = None
    interpolation = "bilinear"
    for step in steps:
        name = type(step).__name__
        if name == "ImageClassification":  # torchvision weights' transforms()
            size = _as_hw(step.crop_size)
            mean, std = tuple(step.mean), tuple(step.std)
            interpolation = step.interpolation.value
        elif name in {"CenterCrop", "CenterCropOrPad", "RandomCrop", "LongestSideCanvas"}:  # the last: FLAIR's square canvas
            size = _as_hw(step.size)
        elif name in {"Resize", "ResizeKeepRatio"}:
            if size is None and not isinstance(step.size, int) and len(step.size) == 2:
                size = _as_hw(step.size)
            elif size is None and isinstance(getattr(step, "size", None), int):
                size = _as_hw(step.size)
            mode = getattr(step, "interpolation", None)
            interpolation = getattr(mode, "value", str(mode or interpolation))
        elif name == "Normalize":
            mean, std = tuple(float(v) for v in step.mean), tuple(float(v) for v in step.std)
    if size is None:
        raise VlmprobeError(
            f"Model {encoder.model_id!r}: cannot tell its input size from its preprocessing ({steps}).",
            "set `image_size:` on the model.",
        )
    return InputGeometry(size=size, mean=mean or (0.0, 0.0, 0.0), std=std or (1.0, 1.0, 1.0), interpolation=str(interpolation))


def to_input(image, geometry: InputGeometry):
    """PIL RGB image -> normalised tensor (3, h, w): the whole image resized, no crop."""
    from PIL import Image

    resample = {"nearest": Image.Resampling.NEAREST, "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}.get(
        geometry.interpolation, Image.Resampling.BILINEAR
    )
    height, width = geometry.size
    resized = image.convert("RGB").resize((width, height), resample)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    array = (array - np.asarray(geometry.mean, dtype=np.float32)) / np.asarray(geometry.std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def resize_map(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map at input resolution -> (H, W) of the original image, bilinear (no overshoot: values stay in range), float32."""
    from PIL import Image

    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape == tuple(shape):
        return cam
    resized = Image.fromarray(cam, mode="F").resize((int(shape[1]), int(shape[0])), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


CROP_KEYS = ("crop_y0", "crop_x0", "crop_y1", "crop_x1")
"""Index columns of a maps file whose maps cover a centre crop of their image (protocol sadman2025)."""


def centre_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)``, in original pixels, of what a resize-the-short-side + centre-crop input shows: the
    centred square of side ``min(height, width)`` (to within a pixel of torchvision's rounding)."""
    side = min(int(height), int(width))
    y0, x0 = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))
    return y0, x0, y0 + side, x0 + side


def place_map(cam: np.ndarray, shape: tuple[int, int], box: Sequence[int] | None = None) -> np.ndarray:
    """A map at the original image's size: resized whole (``box`` None), or into the crop ``box`` it covers, zero
    outside it (the model saw nothing there)."""
    if box is None:
        return resize_map(cam, shape)
    y0, x0, y1, x1 = (int(v) for v in box)
    placed = np.zeros(tuple(int(v) for v in shape), dtype=np.float32)
    placed[y0:y1, x0:x1] = resize_map(cam, (y1 - y0, x1 - x0))
    return placed


def map_at_image_size(data: dict[str, Any], i: int) -> np.ndarray:
    """Map ``i`` of a maps file (:func:`vlmprobe.formats.maps.read_maps`) at its image's size (in its crop, where it has one)."""
    box = [int(data[key][i]) for key in CROP_KEYS] if all(key in data for key in CROP_KEYS) else None
    return place_map(data["maps"][i].astype(np.float32), (int(data["image_height"][i]), int(data["image_width"][i])), box)
