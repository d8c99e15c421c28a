"""``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, 10 classes), no download."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from vlmprobe.datasets.records import DatasetContext, Record
from vlmprobe.io import atomic_path


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    image_dir = ctx.data_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    size = int(spec.get("image_size", 32))
    records = []
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        path = image_dir / f"digit-{index:04d}.png"
        # 0..16 ink levels to 8-bit, ink dark on light paper like a scan; upsampled so every model sees the same pixels
        gray = np.round(255 - pixels * (255 / 16)).astype(np.uint8)
        with atomic_path(path, fsync=False) as tmp:  # a killed job never leaves a truncated image under the final name
            Image.fromarray(gray, mode="L").resize((size, size), Image.Resampling.BICUBIC).save(tmp, format="PNG")
        records.append(Record(sample_id=f"digit-{index:04d}", path=str(path.resolve()), labels=(str(int(target)),)))
    return records
