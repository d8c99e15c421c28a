"""Inputs of an explorer page written from scratch: images (one .npz), manifest, a UMAP grid file, probe predictions.

Class ``c`` images are a solid colour (red, green, blue, ...) with a white square whose place encodes the
sample's index, so a screenshot shows which thumbnail is which. Points of class ``c`` sit in a blob around
``(10 c, 0)`` of the layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from vlmprobe.formats.predictions import ProbePredictions, write_probe_predictions
from vlmprobe.images import npz_reference

COLOURS = [(220, 40, 40), (40, 170, 60), (40, 80, 220), (230, 200, 30), (150, 60, 200)]


def write_explorer_inputs(folder: str | Path, n: int = 120, n_classes: int = 3, seed: int = 0, image_px: int = 24,
                          cells: tuple[tuple[int, float], ...] = ((15, 0.1), (5, 0.5))) -> dict[str, Path]:  # fmt: skip
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = [f"class_{c}" for c in range(n_classes)]
    label_of = np.arange(n) % n_classes
    images = np.zeros((n, image_px, image_px, 3), np.uint8)
    for i in range(n):
        images[i] = COLOURS[label_of[i] % len(COLOURS)]
        row, col = divmod(i % 16, 4)
        step = image_px // 4
        images[i, row * step : row * step + step // 2, col * step : col * step + step // 2] = 255
    np.savez(folder / "images.npz", images=images)
    ids = [f"s{i:05d}" for i in range(n)]
    split = ["test" if i % 5 == 0 else "train" for i in range(n)]
    manifest = pa.table(
        {
            "sample_id": ids,
            "path": [npz_reference(folder / "images.npz", "images", i) for i in range(n)],
            "labels": [[classes[c]] for c in label_of],
            "split": split,
            "fold": [None if s == "test" else i % 5 for i, s in enumerate(split)],
            "meta_site": [["north", "south", "east"][i % 3 if i % 7 else 0] for i in range(n)],
            "meta_age": [float(20 + (i * 37) % 61) for i in range(n)],
            "meta_patient": [f"p{i // 4:04d}" for i in range(n)],
        }
    )
    manifest = manifest.replace_schema_metadata({b"vlmprobe": json.dumps({"classes": classes, "multilabel": False})})
    pq.write_table(manifest, folder / "manifest.parquet")
    frames = []
    for k, m in cells:
        xy = np.stack([label_of * 10.0, np.zeros(n)], axis=1) + rng.normal(scale=1.5 + m, size=(n, 2))
        frames.append(pl.DataFrame({"sample_id": ids, "row": np.arange(n), "n_neighbors": np.full(n, k, np.int32), "min_dist": np.full(n, m), "x": xy[:, 0], "y": xy[:, 1]}))
    pl.concat(frames).write_parquet(folder / "coords.parquet")
    test = [i for i in range(n) if split[i] == "test"]
    truth = label_of[test]
    final = np.where(np.arange(len(test)) % 3 == 0, (truth + 1) % n_classes, truth)
    write_probe_predictions(
        folder / "predictions.parquet",
        ProbePredictions([ids[i] for i in test], truth, np.stack([final] * 5, axis=1), final, classes),
    )
    return {
        "manifest": folder / "manifest.parquet",
        "coords": folder / "coords.parquet",
        "predictions": folder / "predictions.parquet",
        "thumbnails": folder / "explore" / "thumbnails",
        "page": folder / "explore" / "model.html",
        "index": folder / "index.html",
    }
