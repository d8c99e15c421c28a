"""The attribution-map file format (``maps.npz``): raw maps at the model's input resolution, one index entry per map,
and the job's provenance. Written by the heatmaps stage, read by its settings-comparison figure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlmprobe.io import atomic_path


def write_maps(path, maps: np.ndarray, index: dict[str, Sequence[Any]], provenance: dict[str, Any]) -> None:
    """Raw maps (N, h, w) at the model's input resolution, float16, with one index entry per map."""
    arrays = {"maps": np.asarray(maps, dtype=np.float16)}
    for key, values in index.items():
        values = list(values)
        arrays[key] = np.asarray(values, dtype=str) if values and isinstance(values[0], str) else np.asarray(values)
    arrays["provenance"] = np.asarray(json.dumps(provenance, sort_keys=True, default=str))
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def read_maps(path) -> dict[str, Any]:
    """The arrays of a ``maps.npz`` (maps, sample_id, label, target_kind, score, image_height,
    image_width) and its provenance dict. :func:`vlmprobe.heatmaps.geometry.map_at_image_size` gives map ``i``
    at its image's size."""
    with np.load(path, allow_pickle=False) as archive:
        data = {key: archive[key] for key in archive.files}
    data["provenance"] = json.loads(str(data["provenance"]))
    return data
