"""Shared fixtures: small generated datasets and tiny model specs, all offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]

TINY_VIT = {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": None}
TINY_RN = {"family": "open_clip", "name": "vlmprobe-rn-tiny", "pretrained": None}
PIXELS = {"family": "pixels", "image_size": 16}


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: needs a real single-node SLURM cluster (started by the test)")
    config.addinivalue_line("markers", "workflow: runs Snakemake end to end")


def write_image(path: Path, value: int, size=(24, 24), mode="L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = np.clip(rng.normal(value, 20, size=(size[1], size[0])), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").convert(mode).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three classes of 12 grayscale images each, brightness-coded so a probe can learn them."""
    root = tmp_path / "folder"
    for class_index, name in enumerate(["benign", "malignant", "normal"]):
        for i in range(12):
            write_image(root / name / f"img{i:02d}.png", 40 + 80 * class_index + i)
    return root
