"""The UMAP grid file format: a long coordinate table (``sample_id``, ``row``, ``n_neighbors``, ``min_dist``,
``x``, ``y``; one row per (cell, sample)) and its provenance in the schema metadata.

Written by the umap stage (:mod:`vlmprobe.umap.grid_file`), read by it and by the explore stage, which
draws one cell in the browser without importing the umap stage.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError

METADATA_KEY = b"vlmprobe"


def read_grid_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance stored in a grid file's schema metadata ({} when there is none)."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def grid_cells(coords_path: str | os.PathLike[str]) -> tuple[list[int], list[float]]:
    """The ``n_neighbors`` and ``min_dist`` values of a written grid, each sorted."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(coords_path, columns=["n_neighbors", "min_dist"])
    except (OSError, ValueError) as error:
        raise VlmprobeError(f"UMAP grid {str(coords_path)!r} is missing or unreadable: {error}.", "re-run the workflow to rebuild it.") from error
    ks = sorted(int(k) for k in pc.unique(table.column("n_neighbors")).to_pylist())
    ms = sorted(float(m) for m in pc.unique(table.column("min_dist")).to_pylist())
    return ks, ms


def nearest_cell(coords_path: str | os.PathLike[str], n_neighbors: int, min_dist: float) -> tuple[int, float]:
    """The computed cell nearest to the wanted one (``n_neighbors`` values may have been dropped on a small table)."""
    ks, ms = grid_cells(coords_path)
    return min(ks, key=lambda k: abs(k - n_neighbors)), min(ms, key=lambda m: abs(m - min_dist))


def position_of(values: Sequence[float], wanted: float, name: str) -> int:
    """The index of ``wanted`` among a grid axis's ``values`` (compared to 1e-9), or an error naming the values there are."""
    for position, value in enumerate(values):
        if math.isclose(float(value), float(wanted), rel_tol=0, abs_tol=1e-9):
            return position
    raise VlmprobeError(
        f"UMAP grid has no {name}={wanted!r}; it has {list(values)}.",
        f"Choose one of the grid's {name} values (values >= the number of samples are dropped).",
    )


def read_cell(coords_path: str | os.PathLike[str], n_neighbors: int, min_dist: float) -> tuple[list[str], np.ndarray]:
    """``(sample_ids, xy)`` of one cell of a written grid, in the table's row order."""
    import polars as pl

    frame = pl.read_parquet(coords_path)
    ks = sorted(frame["n_neighbors"].unique().to_list())
    ms = sorted(frame["min_dist"].unique().to_list())
    k = ks[position_of(ks, n_neighbors, "n_neighbors")]
    m = ms[position_of(ms, min_dist, "min_dist")]
    cell = frame.filter((pl.col("n_neighbors") == k) & (pl.col("min_dist") == m))
    return cell["sample_id"].to_list(), cell.select("x", "y").to_numpy()
