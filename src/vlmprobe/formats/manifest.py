"""The manifest file format: one row per image (``sample_id``, ``path``, ``labels``, ``split``, ``fold``,
``boxes``, ``annotation_path``, ``meta_*``), provenance in the schema metadata; and its side table, the
group-aware split. Written by :mod:`vlmprobe.datasets`, read by every stage."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmprobe.errors import VlmprobeError

METADATA_KEY = b"vlmprobe"


def read_manifest(path: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """Return the manifest table and its provenance metadata."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise VlmprobeError(f"Manifest {str(path)!r} is missing or unreadable: {error}.", "re-run the workflow to rebuild it.") from error
    metadata = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    return table, metadata


def read_group_split(path: str | Path, sample_ids: list[str]) -> tuple[list[str], list[int | None], dict[str, Any]]:
    """``group_split``, ``group_fold`` in the order of ``sample_ids`` (the manifest's), and the split's record."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise VlmprobeError(f"Group split {str(path)!r} is missing or unreadable: {error}.", "re-run the workflow to rebuild it.") from error
    if table.column("sample_id").to_pylist() != list(sample_ids):
        raise VlmprobeError(
            f"Group split {str(path)!r} lists other samples than its manifest.",
            "delete it and re-run the workflow so it is rebuilt from the current manifest.",
        )
    info = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    return table.column("group_split").to_pylist(), table.column("group_fold").to_pylist(), info


def label_matrix(labels: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """(n, C) boolean matrix: ``[i, c]`` is true when sample ``i`` carries ``classes[c]``."""
    index = {name: column for column, name in enumerate(classes)}
    matrix = np.zeros((len(labels), len(classes)), dtype=bool)
    for row, names in enumerate(labels):
        for name in names:
            if name not in index:
                raise VlmprobeError(f"Label {name!r} of sample row {row} is not one of the classes {list(classes)}.", "rebuild the manifest and re-run.")
            matrix[row, index[name]] = True
    return matrix
