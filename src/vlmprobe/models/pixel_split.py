"""A model's preprocessing split where the image becomes a tensor: geometry (uint8 pixels) | normalisation.

Everything before the tensor (colour conversion, resize, crop) yields uint8 pixels that do not depend on the
model's weights, so one decode can feed every model with the same geometry (the pixel cache,
:mod:`vlmprobe.models.pixel_cache`); what comes after (``/ 255``, ``(x - mean) / std``) is cheap and runs on the
device. :func:`split_preprocess` reads a family's own transform object, step by step, and describes its geometric
part as plain data (:class:`PixelSplit`); :func:`geometry_transform` rebuilds those same steps from the
description, and :func:`to_model` repeats the tensor part on a batch. The split is refused (the embedding
decodes afresh, as before) wherever it could not be exact: an unknown step, a step after ``Normalize``, an
output size that varies with the image.

Exactness rests on three facts, checked by ``tests/test_pixel_cache.py`` for every family: the rebuilt steps
are the very same torchvision classes with the same arguments; ``np.asarray`` of a PIL image holds the bytes
``ToTensor`` reads; and ``float(v) / 255`` then ``(x - mean) / std`` are elementwise float32 operations that
give the same bits for one image or a batch, in any memory layout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SPLIT_VERSION = 1
"""Bumped when the meaning of a geometry description changes: every cache made before is then refilled."""


@dataclass(frozen=True)
class PixelSplit:
    """The geometric part of a preprocessing (plain data) and the tensor part's constants."""

    geometry: tuple[dict[str, Any], ...]
    """The steps PIL RGB image -> uint8 pixels, as JSON-able dicts (:func:`geometry_transform` rebuilds them)."""
    height: int
    width: int
    channels: int
    """Channels of the geometry's output: 3, or 1 after a ``Grayscale(1)``."""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def key(self) -> str:
        """Everything the cached pixels depend on, from the model side (the files are the cache's own part)."""
        text = json.dumps({"version": SPLIT_VERSION, "geometry": list(self.geometry)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def channel_symmetric(self) -> bool:
        """Whether every step treats the channels alike, so a gray image stays gray (R = G = B) and can be kept as one
        channel: torchvision's resize, crop (zero fill) and grayscale do; a family's step says so itself."""
        return all(step.get("channel_symmetric", True) for step in self.geometry)

    @property
    def name(self) -> str:
        """A short, readable file name for this geometry: size, channels and a hash of the steps."""
        gray = "-gray" if self.channels == 1 else ""
        return f"{self.height}x{self.width}{gray}-{self.key[:10]}"

    def describe(self) -> dict[str, Any]:
        return {**self.geometry_params(), "key": self.key}

    def geometry_params(self) -> dict[str, Any]:
        """The geometric part alone, as JSON (the cache job's param; :meth:`from_geometry_params` reads it back)."""
        return {"geometry": [dict(step) for step in self.geometry], "size": [self.height, self.width], "channels": self.channels}

    @classmethod
    def from_geometry_params(cls, params: dict[str, Any]) -> PixelSplit:
        height, width = params["size"]
        return cls(tuple(dict(step) for step in params["geometry"]), int(height), int(width), int(params["channels"]))


class NotSplittable(Exception):
    """Why a preprocessing cannot be split exactly (the reason goes into the embedding table's metadata)."""


def _interpolation(mode: Any) -> str:
    return str(getattr(mode, "value", mode))


def _size(size: Any) -> list[int]:
    return [int(size)] if isinstance(size, int) else [int(value) for value in size]


def _describe_pil_step(step: Any, shape: list[int | None]) -> dict[str, Any] | None:
    """One geometric step on a PIL image as data (None for a step that changes nothing); ``shape`` ([H, W, C],
    None where unknown) is updated."""
    from torchvision import transforms

    kind = type(step)
    if kind is transforms.Resize:
        size = _size(step.size)
        # one number resizes the shorter side: the other follows the image's aspect ratio
        shape[0], shape[1] = size if len(size) == 2 else (None, None)
        return {"op": "resize", "size": size, "interpolation": _interpolation(step.interpolation), "max_size": step.max_size, "antialias": step.antialias}
    if kind is transforms.CenterCrop:
        height, width = _size(step.size) * (2 if len(_size(step.size)) == 1 else 1)
        shape[0], shape[1] = height, width
        return {"op": "center_crop", "size": [height, width]}
    if kind is transforms.Grayscale:
        shape[2] = int(step.num_output_channels)
        return {"op": "grayscale", "channels": int(step.num_output_channels)}
    if kind.__name__ == "MaybeConvertMode" and kind.__module__.startswith("open_clip"):
        if step.mode != "RGB":
            raise NotSplittable(f"open_clip converts to mode {step.mode!r}")
        if shape[2] == 3:
            return None  # load_image gives RGB and resizing and cropping keep it: the step does nothing
        shape[2] = 3
        return {"op": "rgb"}
    if hasattr(step, "geometry_step") and kind.__module__.startswith("vlmprobe."):
        # a family's own PIL step declares itself as data: rebuilt as Class(**arguments), size unknown after it
        declared = step.geometry_step()
        shape[0] = shape[1] = None
        return {
            "op": "class",
            "class": f"{kind.__module__}.{kind.__qualname__}",
            "arguments": declared["arguments"],
            "channel_symmetric": bool(declared.get("channel_symmetric", False)),
        }
    raise NotSplittable(f"step {step!r} ({kind.__module__}.{kind.__qualname__}) has no exact split")


def _is_to_tensor(step: Any) -> bool:
    from torchvision import transforms

    # timm's and open_clip's MaybeToTensor call F.to_tensor on a PIL image, exactly as ToTensor does
    return type(step) is transforms.ToTensor or (type(step).__name__ == "MaybeToTensor" and type(step).__module__.split(".")[0] in {"timm", "open_clip"})


def _constants(values: Any) -> tuple[float, ...]:
    """Normalize's mean or std (a sequence, a number, or a tensor as timm gives it) as floats that round back to
    the same float32 values ``F.normalize`` computes with."""
    import numpy as np

    return tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1))


def split_preprocess(transform: Any) -> PixelSplit:
    """Split a family's preprocessing (PIL RGB image -> float tensor) at the tensor; raises :class:`NotSplittable`."""
    from torchvision import transforms
    from torchvision.transforms._presets import ImageClassification

    if isinstance(transform, ImageClassification):
        return _split_image_classification(transform)
    steps = list(transform.transforms) if type(transform) is transforms.Compose else [transform]
    shape: list[int | None] = [None, None, 3]
    geometry = []
    position = 0
    while position < len(steps) and not _is_to_tensor(steps[position]):
        described = _describe_pil_step(steps[position], shape)
        if described is not None:
            geometry.append(described)
        position += 1
    if position == len(steps):
        raise NotSplittable("the preprocessing has no ToTensor step")
    tail = steps[position + 1 :]
    mean = std = None
    if tail:
        normalise = tail[0]
        if type(normalise) is not transforms.Normalize or len(tail) > 1:
            raise NotSplittable(f"steps after ToTensor other than one Normalize: {tail!r}")
        if normalise.inplace:
            raise NotSplittable("an in-place Normalize")
        mean, std = _constants(normalise.mean), _constants(normalise.std)
    if shape[0] is None or shape[1] is None:
        raise NotSplittable("the geometry's output size varies with the image (no crop or fixed-size resize)")
    return PixelSplit(tuple(geometry), int(shape[0]), int(shape[1]), int(shape[2]), mean, std)


def _split_image_classification(preset: Any) -> PixelSplit:
    """torchvision's weights transforms (``ImageClassification.forward``): resize and centre crop on the PIL image,
    ``pil_to_tensor``, ``convert_image_dtype`` (``/ 255``), normalise."""
    crop = _size(preset.crop_size)
    height, width = crop * (2 if len(crop) == 1 else 1)
    steps = (
        {"op": "resize", "size": _size(preset.resize_size), "interpolation": _interpolation(preset.interpolation), "max_size": None, "antialias": preset.antialias},
        {"op": "center_crop", "size": [height, width]},
    )
    return PixelSplit(steps, height, width, 3, _constants(preset.mean), _constants(preset.std))


def geometry_transform(geometry: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> Callable[[Any], Any]:
    """PIL RGB image -> uint8 array (H, W, C): the geometric steps rebuilt from their description."""
    import numpy as np
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    built = []
    for step in geometry:
        op = step["op"]
        if op == "resize":
            size = step["size"][0] if len(step["size"]) == 1 else step["size"]
            built.append(transforms.Resize(size, interpolation=InterpolationMode(step["interpolation"]), max_size=step["max_size"], antialias=step["antialias"]))
        elif op == "center_crop":
            built.append(transforms.CenterCrop(step["size"]))
        elif op == "grayscale":
            built.append(transforms.Grayscale(num_output_channels=step["channels"]))
        elif op == "class":
            import importlib

            module, _, name = step["class"].rpartition(".")
            if not module.startswith("vlmprobe."):
                raise ValueError(f"geometry step class {step['class']!r} is not vlmprobe's")
            built.append(getattr(importlib.import_module(module), name)(**step["arguments"]))
        elif op == "rgb":
            built.append(lambda image: image.convert("RGB") if image.mode != "RGB" else image)
        else:
            raise ValueError(f"unknown geometry step {step!r}")

    def pil_steps(image):
        for transform in built:
            image = transform(image)
        pixels = np.asarray(image, dtype=np.uint8)
        return pixels[..., None] if pixels.ndim == 2 else pixels

    return pil_steps


def to_model(pixels: Any, split: PixelSplit, device: str) -> Any:
    """A batch of cached uint8 pixels (B, H, W, C stored) -> the model's float input (B, C, H, W), channels-last.

    ``C stored`` is 1 for a gray source kept as one channel: it is repeated to the 3 channels the
    geometry gives (equal, since every geometric step treats the channels alike). The arithmetic is
    ``ToTensor``'s / ``convert_image_dtype``'s ``float(v) / 255`` and ``Normalize``'s ``(x - mean) / std``.
    """
    import torch

    batch = pixels.to(device, non_blocking=True).permute(0, 3, 1, 2)
    if batch.shape[1] != split.channels:
        batch = batch.expand(-1, split.channels, -1, -1)
    # a 0-dim tensor on the batch's device, not the number 255: CUDA divides by a CPU scalar as a multiplication by
    # its reciprocal (a bit off in some pixels), by a device tensor exactly as the CPU's ToTensor does
    batch = batch.to(torch.float32).div(torch.tensor(255.0, dtype=torch.float32, device=batch.device))
    if split.mean is not None:
        mean = torch.as_tensor(split.mean, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
        std = torch.as_tensor(split.std, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
        batch = batch.sub(mean).div(std)
    return batch.contiguous(memory_format=torch.channels_last)


def planned_split(model_id: str, spec: dict[str, Any]) -> tuple[PixelSplit | None, str | None]:
    """(the model's split, known before it loads, or None; why there is none): what the job plan groups models by."""
    from vlmprobe.models.base import family_of

    family = family_of(model_id, spec)
    try:
        transform = family.preprocess_without_weights(model_id, spec)
    except Exception as error:  # noqa: BLE001 - a bad spec is check_model's to report, with its fix; here it only means no cache
        return None, f"preprocessing unknown before the model loads ({type(error).__name__}: {str(error)[:200]})"
    if transform is None:
        return None, f"family {family.name!r} declares no preprocessing before the model loads (ModelFamily.preprocess_without_weights)"
    try:
        return split_preprocess(transform), None
    except NotSplittable as error:
        return None, f"preprocessing not split exactly: {error}"
