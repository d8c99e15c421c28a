"""Small generated grayscale images, and class folders of them, for datasets a probe can learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, value: int, size=(24, 24), mode="L") -> Path:
    """A noisy image of mean brightness ``value`` (seeded by it), saved in ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = np.clip(rng.normal(value, 20, size=(size[1], size[0])), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").convert(mode).save(path)
    return path


def make_folder_dataset(root: Path, classes: int, per_class: int, offset: int = 0) -> Path:
    """An image folder ``root/class<c>/<i>.png`` whose classes differ in brightness."""
    for c in range(classes):
        for i in range(per_class):
            write_image(root / f"class{c}" / f"{i:02d}.png", (offset + 60 * c + 3 * i) % 256)
    return root
