"""The files of a UMAP grid: the long coordinate table and the quality table (Parquet), with provenance.

The coordinate table's format (and its readers for one cell) is core, :mod:`vlmprobe.formats.umap_grid`, so
that other stages read it without importing this one.

Written by the ``umap_grid`` rule, read back by the umap stage to draw one cell of several models side by
side or to redraw a grid coloured by something else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.umap_grid import METADATA_KEY, read_cell, read_grid_metadata
from vlmprobe.umap.grid import GridResult

__all__ = ["METADATA_KEY", "read_cell", "read_grid", "read_grid_metadata", "write_grid"]


def write_grid(result: GridResult, sample_ids: Sequence[str], coords_path: str | os.PathLike[str], quality_path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> None:
    """Write the long coordinate table and the quality table (Parquet, atomically) with provenance."""
    from vlmprobe.io import write_parquet

    # Timings and the worker count do not change the numbers; leaving them out keeps reruns byte-identical.
    provenance = {key: value for key, value in result.params.items() if key not in ("seconds", "n_jobs")}
    metadata = {METADATA_KEY: json.dumps({**provenance, **(extra or {})}, sort_keys=True, default=str).encode()}
    coords = result.long_table(sample_ids).to_arrow()
    write_parquet(coords_path, coords.replace_schema_metadata(metadata))
    write_parquet(quality_path, result.quality.to_arrow().replace_schema_metadata(metadata))


def read_grid(coords_path: str | os.PathLike[str], quality_path: str | os.PathLike[str]) -> tuple[list[str], GridResult]:
    """``(sample_ids, GridResult)`` of a written grid (the inverse of :func:`write_grid`), to redraw it."""
    import polars as pl

    frame = pl.read_parquet(coords_path).sort("n_neighbors", "min_dist", maintain_order=True)
    ks = sorted(frame["n_neighbors"].unique().to_list())
    ms = sorted(frame["min_dist"].unique().to_list())
    first = frame.filter((pl.col("n_neighbors") == ks[0]) & (pl.col("min_dist") == ms[0]))
    ids = first["sample_id"].to_list()
    coords = np.empty((len(ks), len(ms), len(ids), 2))
    for i, k in enumerate(ks):
        for j, m in enumerate(ms):
            cell = frame.filter((pl.col("n_neighbors") == k) & (pl.col("min_dist") == m))
            if cell["sample_id"].to_list() != ids:
                raise VlmprobeError(f"UMAP grid {str(coords_path)!r} has cells with different samples.", "delete it and re-run the workflow.")
            coords[i, j] = cell.select("x", "y").to_numpy()
    params = read_grid_metadata(coords_path)
    return ids, GridResult(ks, ms, coords, pl.read_parquet(quality_path), [], params)
