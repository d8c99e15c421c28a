"""A tiny study for end-to-end runs of the real workflow: 90 synthetic 16x16 images, two models.

The dataset is a MedMNIST-style ``.npz`` (three classes drawn as dark bars in different
orientations plus noise), so the manifest, embedding, probe, UMAP and summary stages all have
real work to do in seconds. The models are the ``pixels`` baseline and a tiny random-initialised
open_clip ViT, which exercises the torch path without weights.

The ``shared_dataset`` and ``local_run`` fixtures (tests/conftest.py) build it once per test session:
the SLURM test compares a cluster run against the local one, the report test reads its report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from . import REPO
from .workflow import write_config

CLASSES = 3
PER_CLASS = 30
SIZE = 16


def write_dataset(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(CLASSES):
        for _ in range(PER_CLASS):
            image = rng.normal(200, 20, size=(SIZE, SIZE))
            offset = rng.integers(3, SIZE - 3)
            if label == 0:
                image[offset - 1 : offset + 2, :] -= 120  # horizontal bar
            elif label == 1:
                image[:, offset - 1 : offset + 2] -= 120  # vertical bar
            else:
                for i in range(SIZE):  # diagonal bar
                    image[i, max(0, i - 1) : i + 2] -= 120
            images.append(np.clip(image, 0, 255).astype(np.uint8))
            labels.append(label)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, train_images=np.stack(images), train_labels=np.array(labels, dtype=np.int64))


def tiny_study_config(workdir: Path, dataset: Path) -> Path:
    """The repository's config.yaml with the study's dataset and models, 3 folds and one small UMAP grid."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    return write_config(
        workdir,
        {"bars": {"kind": "npz", "path": str(dataset), "label_names": ["horizontal", "vertical", "diagonal"]}},
        {"pixels": {"family": "pixels", "image_size": SIZE}, "vit-tiny": {"family": "open_clip", "name": "vlmprobe-vit-tiny", "pretrained": None}},
        base=base,
        split={**base.get("split", {}), "n_folds": 3},
        embedding={**base.get("embedding", {}), "device": "cpu", "batch_size": 32},
        # One small UMAP grid: 2 x 1 layouts instead of the poster's 10 x 5.
        umap={**base.get("umap", {}), "n_neighbors": [5, 15], "min_dist": [0.5]},
    )
