"""The spine-only study of the fault and determinism tests: one two-class image folder, a tiny config with
every optional stage switched off but a small UMAP grid (SPINE_UMAP), embedded in chunks of four images."""

from __future__ import annotations

from pathlib import Path

import yaml

from . import REPO
from .images import write_image
from .workflow import write_config

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CHUNK = 4  # images per saved chunk, = the batch size: a chunk per batch
# The spine's one optional stage: a UMAP grid at the poster's small n_neighbors, where umap-learn's own
# spectral initialisation is not reproducible (docs/umap.md, "Same seed, same layout"), so the
# determinism test covers it.
SPINE_UMAP = {"enabled": True, "n_neighbors": [3, 5], "min_dist": [0.1, 1.0]}


def spine_folder(root: Path, per_class: int = 8) -> Path:
    """Classes ``a`` and ``b``, ``per_class`` images each, far apart in brightness."""
    for c, name in enumerate(("a", "b")):
        for i in range(per_class):
            write_image(root / name / f"{i:02d}.png", 40 + 110 * c + 4 * i)
    return root


def spine_config(workdir: Path, models: dict, name: str = "config.yaml", **extra) -> Path:
    """A tiny config running only the spine: every optional stage with an `enabled` switch is off."""
    schema = yaml.safe_load(SCHEMA.read_text())
    switched_off = {
        stage: {"enabled": False}
        for stage, block in schema["properties"].items()
        if isinstance(block, dict) and "enabled" in block.get("properties", {}) and stage != "linear_probe"
    }
    embedding = {"batch_size": CHUNK, "num_workers": 0, "chunk_images": CHUNK}
    sections = {"embedding": embedding, **switched_off, **extra}
    return write_config(workdir, {"alpha": {"kind": "imagefolder", "root": "data/alpha"}}, models, name=name, **sections)
