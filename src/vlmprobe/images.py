"""Decoding images from any source a manifest can name, converted correctly to 8-bit RGB.

Medical images arrive as 16-bit grayscale PNGs, palette images, RGBA screenshots, or rows of a
MedMNIST ``.npz`` array. Every model in this project sees the same conversion of them, so it lives
here and nowhere else.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlmprobe.errors import VlmprobeError

NPZ_SEPARATOR = "::"
"""A manifest path ``/data/x.npz::train_images::12`` names row 12 of array ``train_images``."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm"})


def npz_reference(npz_path: str | os.PathLike[str], array: str, index: int) -> str:
    return f"{Path(npz_path)}{NPZ_SEPARATOR}{array}{NPZ_SEPARATOR}{index}"


@functools.lru_cache(maxsize=4)
def _npz_array(npz_path: str, array: str) -> np.ndarray:
    with np.load(npz_path, allow_pickle=False) as archive:
        return archive[array]


def _rescale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map an integer or float image onto 0..255 by its own range (16-bit scans rarely use all 16 bits)."""
    values = values.astype(np.float64)
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: 16-bit and float by range, palette and alpha flattened on black."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        return Image.fromarray(_rescale_to_uint8(np.asarray(image)), mode="L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in {"RGBA", "LA", "PA", "La", "RGBa"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def array_to_image(values: np.ndarray) -> Image.Image:
    """A MedMNIST-style array row (H, W), (H, W, 1) or (H, W, 3) as an RGB image."""
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.dtype != np.uint8:
        values = _rescale_to_uint8(values)
    if values.ndim == 2:
        return Image.fromarray(values, mode="L").convert("RGB")
    if values.ndim == 3 and values.shape[-1] == 3:
        return Image.fromarray(values, mode="RGB")
    raise VlmprobeError(f"Image array of shape {values.shape} is neither (H, W), (H, W, 1) nor (H, W, 3).")


def load_image(path: str) -> Image.Image:
    """Decode the image a manifest ``path`` names, fully (truncation surfaces here), as RGB."""
    from vlmprobe.dicom import load_dicom_image, parse_reference

    if parse_reference(path) is not None:  # a .dcm file or a DICOM frame reference: displayed as a viewer does
        return load_dicom_image(path)
    if NPZ_SEPARATOR in path:
        npz_path, array, index = path.split(NPZ_SEPARATOR)
        try:
            return array_to_image(_npz_array(npz_path, array)[int(index)])
        except (OSError, KeyError, IndexError, ValueError) as error:
            raise VlmprobeError(
                f"Cannot read image {path!r}: {error}.",
                "check that the .npz file is complete and holds that array (re-download it if not).",
            ) from error
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except FileNotFoundError as error:
        raise VlmprobeError(f"Image file {path!r} does not exist.", "restore the file or rebuild the manifest.") from error
    except Image.DecompressionBombError as error:
        # not an OSError: a header claiming billions of pixels is refused before any memory is allocated
        raise VlmprobeError(
            f"Image file {path!r} claims more pixels than Pillow will decode ({error}).",
            "downscale the image (or check that it is not corrupt), or leave it out with `on_bad_image: skip`.",
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise VlmprobeError(
            f"Image file {path!r} is not a readable image ({type(error).__name__}: {error}).",
            "replace or delete the file (it may be truncated, empty or not an image), then re-run.",
        ) from error
