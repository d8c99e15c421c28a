"""The UMAP stage: one grid job per embedding table, and a cross-model summary per dataset.

The computation is :mod:`vlmprobe.umap.grid`, its files :mod:`vlmprobe.umap.grid_file`, the pictures
:mod:`vlmprobe.umap.figures`; this module only connects them to the workflow's files: colour labels from
the manifest (multi-label datasets by a chosen label or "normal / one finding / several"), outputs
written atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from vlmprobe.io import save_figure

log = logging.getLogger(__name__)


def colour_labels(manifest: pl.DataFrame, classes: Sequence[str], multilabel: bool, colour_by: str | None) -> list[str]:
    labels = manifest["labels"].to_list()
    if not multilabel:
        return [names[0] for names in labels]
    from vlmprobe.formats.manifest import label_matrix
    from vlmprobe.umap.figures import multilabel_colour_labels

    return multilabel_colour_labels(label_matrix(labels, classes), classes, colour_by, normal_class="normal")


def grid_for_table(
    manifest_path: str | Path,
    embedding_path: str | Path,
    coords_path: str | Path,
    quality_path: str | Path,
    figure_path: str | Path,
    n_neighbors: Sequence[int],
    min_dists: Sequence[float],
    seed: int,
    n_jobs: int,
    colour_by: str | None = None,
    trust_subsample: int = 2000,
    title: str = "",
    expected_spec: dict[str, Any] | None = None,
) -> None:
    from vlmprobe.formats.embeddings import aligned
    from vlmprobe.umap.figures import plot_grid
    from vlmprobe.umap.grid import compute_grid
    from vlmprobe.umap.grid_file import write_grid

    manifest, matrix, manifest_meta, _ = aligned(manifest_path, embedding_path, expected_spec)
    colours = colour_labels(manifest, manifest_meta["classes"], manifest_meta["multilabel"], colour_by)
    names = sorted(set(colours))
    codes = np.array([names.index(c) for c in colours], dtype=np.int64)
    result = compute_grid(matrix, n_neighbors, min_dists, seed=seed, n_jobs=n_jobs, quality_labels=codes, trust_subsample=trust_subsample)
    for k in result.dropped_n_neighbors:
        log.info("n_neighbors=%d dropped: not below the %d samples of this table", k, len(colours))
    write_grid(result, manifest["sample_id"].to_list(), coords_path, quality_path, extra={"colour_by": colour_by, "colour_labels": names})
    save_figure(figure_path, plot_grid(result, colours, title, seed=seed))


def nearest(values: Sequence[float], wanted: float) -> float:
    return min(values, key=lambda value: abs(value - wanted))


def dataset_summary(
    manifest_path: str | Path,
    coords_paths: dict[str, str],
    quality_paths: dict[str, str],
    figure_path: str | Path,
    n_neighbors: int,
    min_dist: float,
    colour_by: str | None,
    title: str,
    seed: int = 0,
) -> None:
    """All models of one dataset side by side at one cell (the poster's comparison), quality in each panel."""
    from vlmprobe.formats.manifest import read_manifest
    from vlmprobe.umap.figures import plot_models_at_cell
    from vlmprobe.umap.grid_file import read_cell

    table, meta = read_manifest(manifest_path)
    manifest = pl.from_arrow(table)
    colours = dict(zip(manifest["sample_id"].to_list(), colour_labels(manifest, meta["classes"], meta["multilabel"], colour_by)))
    per_model, quality = {}, {}
    for model, coords_path in coords_paths.items():
        frame = pl.read_parquet(quality_paths[model])
        k = int(nearest(frame["n_neighbors"].unique().to_list(), n_neighbors))
        m = nearest(frame["min_dist"].unique().to_list(), min_dist)
        ids, xy = read_cell(coords_path, k, m)
        per_model[model] = (xy, [colours[i] for i in ids])
        row = frame.filter((pl.col("n_neighbors") == k) & (pl.col("min_dist") == m)).row(0, named=True)
        quality[model] = (row["trustworthiness"], row["silhouette"])
    save_figure(figure_path, plot_models_at_cell(per_model, n_neighbors, min_dist, title, quality=quality, seed=seed))


def nuisance_grid_figure(
    manifest_path: str | Path,
    coords_path: str | Path,
    quality_path: str | Path,
    figure_path: str | Path,
    column: str,
    title: str,
    seed: int = 0,
) -> None:
    """A written grid redrawn with its points coloured by the manifest column ``column`` (a ``meta_*``
    nuisance; missing values as ``missing``). Each panel's S is the silhouette of the nuisance's values (rows
    without one left out) on that layout; T stays the grid's trustworthiness."""
    from vlmprobe.errors import VlmprobeError
    from vlmprobe.formats.manifest import read_manifest
    from vlmprobe.umap.figures import plot_grid
    from vlmprobe.umap.grid_file import read_grid

    table, _ = read_manifest(manifest_path)
    manifest = pl.from_arrow(table)
    if column not in manifest.columns:
        raise VlmprobeError(
            f"Manifest {str(manifest_path)!r} has no column {column!r} to colour the UMAP grid by.",
            f"name one of its columns ({', '.join(c for c in manifest.columns if c.startswith('meta_'))}) under the dataset's `nuisances`.",
        )
    values = dict(zip(manifest["sample_id"].to_list(), manifest[column].to_list()))
    ids, result = read_grid(coords_path, quality_path)
    colours = ["missing" if values.get(i) in (None, "") else str(values[i]) for i in ids]
    names = sorted({c for i, c in zip(ids, colours) if values.get(i) not in (None, "")})
    codes = np.array([names.index(c) if values.get(i) not in (None, "") else -1 for i, c in zip(ids, colours)], dtype=np.int64)
    result.quality = rescored_silhouette(result, codes)
    figure = plot_grid(result, colours, title, legend_title=column.removeprefix("meta_"), seed=seed, silhouette_of=f"the {column} values")
    save_figure(figure_path, figure)


def rescored_silhouette(result: Any, codes: np.ndarray) -> pl.DataFrame:
    """The grid's quality table with ``silhouette`` recomputed per cell for other labels (``codes``, -1 = none)."""
    from vlmprobe.umap.quality import layout_silhouette

    scores = {(k, m): layout_silhouette(result.coords[a, b], codes) for a, k in enumerate(result.n_neighbors) for b, m in enumerate(result.min_dists)}
    cells = zip(result.quality["n_neighbors"].to_list(), result.quality["min_dist"].to_list())
    return result.quality.with_columns(pl.Series("silhouette", [scores.get(cell, float("nan")) for cell in cells], pl.Float64))
