"""UMAP grids: every (n_neighbors, min_dist) projection of one embedding table, fast and checkable.

The poster (shared/seeds/002_*) looks at each embedding table through UMAP with ``metric="cosine"`` over a
grid of ``n_neighbors`` x ``min_dist``. Fitting ``umap.UMAP(...).fit_transform`` once per cell repeats most of
the work fifty times. :func:`compute_grid` produces the same projections while doing each piece of work once:

1. **Neighbours, once per table** (:mod:`vlmprobe.umap.neighbours`): exact cosine neighbours for the largest
   ``n_neighbors``; every smaller ``n_neighbors`` uses the first ``k`` columns.
2. **Fuzzy graph and spectral initialisation, once per n_neighbors** (:func:`vlmprobe.umap.layout.prepare`,
   umap-learn's own functions): none of them depends on ``min_dist``.
3. **Layouts, all min_dist values of one n_neighbors together** (:mod:`vlmprobe.umap.layout`): one pass over
   the shared SGD schedule updates every ``min_dist`` layout in turn ("lockstep"); ``engine="umap"`` runs
   umap-learn's own optimiser per cell instead, the reference the fast kernel is measured against.
4. **Processes, not threads** (:mod:`vlmprobe.umap.workers`). A seeded layout runs on one thread, so
   parallelism comes from long-lived worker processes (``spawn``: safe whatever the parent has loaded). Work
   is handed out per n_neighbors, largest first.

Seeds: the layouts of n_neighbors ``k`` draw from ``numpy.random.RandomState(seed)`` exactly as
``umap.UMAP(n_neighbors=k, random_state=seed)`` does on an exact neighbour graph (spectral initialisation,
its noise, then the SGD generator state), and the spectral initialisation's eigensolver restarts, which
umap-learn leaves unseeded, come from a generator seeded by ``seed`` too (:mod:`vlmprobe.umap.spectral`).
So cell ``(k, min_dist)`` is a pure function of the data, ``seed``, ``k`` and ``min_dist``: the same bytes
in one process or two, in any order, with any ``n_jobs``, whichever other cells were computed with it.

Quality, per cell (:mod:`vlmprobe.umap.quality`): trustworthiness and the silhouette of the class labels, on a
fixed subsample. The grid's files are :mod:`vlmprobe.umap.grid_file`.

Worker processes are started with ``spawn``, which re-imports the calling script in every worker: a script
that calls :func:`compute_grid` with ``n_jobs > 1`` must keep its top-level code under
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.umap_grid import position_of
from vlmprobe.umap.layout import (
    ENGINES,
    LEARNING_RATE,
    LOCAL_CONNECTIVITY,
    N_COMPONENTS,
    NEGATIVE_SAMPLE_RATE,
    REPULSION_STRENGTH,
    SET_OP_MIX_RATIO,
    SPREAD,
    prepare,
)
from vlmprobe.umap.neighbours import METRIC, exact_cosine_knn
from vlmprobe.umap.quality import input_rank_table, trust_subsample_indices
from vlmprobe.umap.workers import forget_quality_context, init_worker, run_layouts, started, write_prepared, write_quality_inputs

log = logging.getLogger(__name__)

POSTER_N_NEIGHBORS = (3, 5, 10, 15, 25, 50, 100, 200, 500, 1000)
POSTER_MIN_DISTS = (0.1, 0.25, 0.5, 0.75, 1.0)


# --------------------------------------------------------------------------------------------------
# Grid parameters and input


def valid_n_neighbors(values: Sequence[int], n_samples: int) -> tuple[list[int], list[int]]:
    """Split ``values`` into those usable on ``n_samples`` points and those dropped (``>= n_samples``).

    Returns ``(kept, dropped)``, both sorted and without repeats. Dropping is logged, not an error: a
    small dataset simply has fewer rows in its grid.
    """
    checked = []
    for value in values:
        if isinstance(value, bool) or not float(value).is_integer() or int(value) < 2:
            raise VlmprobeError(
                f"umap n_neighbors value {value!r} is not an integer >= 2.",
                "Use whole numbers of at least 2 in umap.n_neighbors (config.yaml, or the dataset's umap override).",
            )
        checked.append(int(value))
    unique = sorted(set(checked))
    kept = [k for k in unique if k < n_samples]
    dropped = [k for k in unique if k >= n_samples]
    if dropped:
        log.info(
            "UMAP grid: n_neighbors %s dropped: UMAP needs n_neighbors < the number of samples (%d).",
            ", ".join(map(str, dropped)),
            n_samples,
        )
    return kept, dropped


def _checked_min_dists(values: Sequence[float]) -> list[float]:
    checked = []
    for value in values:
        value = float(value)
        if not (0.0 <= value <= SPREAD):
            raise VlmprobeError(
                f"umap min_dist value {value!r} is outside [0, {SPREAD}] (UMAP needs 0 <= min_dist <= spread).",
                "Use min_dist values between 0 and 1 in umap.min_dist.",
            )
        checked.append(value)
    if not checked:
        raise VlmprobeError("umap.min_dist is empty.", "Give at least one min_dist value.")
    return sorted(set(checked))


def _checked_embeddings(embeddings: np.ndarray) -> np.ndarray:
    data = np.ascontiguousarray(embeddings, dtype=np.float32)
    if data.ndim != 2 or data.shape[0] < 3:
        raise VlmprobeError(
            f"UMAP grid needs an (n_samples, dim) matrix with at least 3 rows, got shape {data.shape}.",
            "Check that the embedding table is not empty.",
        )
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise VlmprobeError(
            f"Embedding rows {rows[:10].tolist()} ({rows.size} in all) contain NaN or Inf; cosine UMAP is undefined.",
            "Recompute the embedding table (delete it and re-run its rule).",
        )
    norms = np.linalg.norm(data, axis=1)
    if (norms == 0).any():
        rows = np.flatnonzero(norms == 0)
        raise VlmprobeError(
            f"Embedding rows {rows[:10].tolist()} ({rows.size} in all) are all zeros; cosine distance is undefined.",
            "Check the model's output for these images (a blank image or a broken encoder) and recompute the table.",
        )
    return data


# --------------------------------------------------------------------------------------------------
# The result


@dataclass
class GridResult:
    """All cells of one grid. ``coords[i, j]`` is the ``(n_samples, 2)`` layout for
    ``n_neighbors[i]`` and ``min_dists[j]``; rows follow the input's row order."""

    n_neighbors: list[int]
    min_dists: list[float]
    coords: np.ndarray
    quality: Any  # polars DataFrame: n_neighbors, min_dist, trustworthiness, silhouette
    dropped_n_neighbors: list[int]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.coords.shape[2])

    def cell(self, n_neighbors: int, min_dist: float) -> np.ndarray:
        """The ``(n_samples, 2)`` layout of one cell."""
        i = position_of(self.n_neighbors, n_neighbors, "n_neighbors")
        j = position_of(self.min_dists, min_dist, "min_dist")
        return self.coords[i, j]

    def long_table(self, sample_ids: Sequence[str] | None = None):
        """Long format, one row per (cell, sample): ``sample_id`` (or ``row``), n_neighbors, min_dist, x, y."""
        import polars as pl

        n_k, n_m, n = self.coords.shape[:3]
        if sample_ids is not None and len(sample_ids) != n:
            raise ValueError(f"{len(sample_ids)} sample ids for {n} rows")
        ids = pl.Series("sample_id", list(sample_ids), dtype=pl.String) if sample_ids is not None else None
        row = np.tile(np.arange(n, dtype=np.int64), n_k * n_m)
        frame = pl.DataFrame(
            {
                "row": row,
                "n_neighbors": np.repeat(np.asarray(self.n_neighbors, dtype=np.int32), n_m * n),
                "min_dist": np.tile(np.repeat(np.asarray(self.min_dists, dtype=np.float64), n), n_k),
                "x": self.coords[..., 0].reshape(-1),
                "y": self.coords[..., 1].reshape(-1),
            }
        )
        if ids is None:
            return frame
        return frame.with_columns(pl.Series("sample_id", ids.gather(row))).select(
            "sample_id", "n_neighbors", "min_dist", "x", "y"
        )


# --------------------------------------------------------------------------------------------------
# The grid


def _package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": sys.version.split()[0]}
    for name in ("umap-learn", "numpy", "scipy", "scikit-learn", "numba", "pynndescent"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    return versions


def _min_dist_chunks(min_dists: list[float], n_rows: int, n_jobs: int) -> list[list[int]]:
    # One task per n_neighbors keeps the lockstep sharing; split a row only when there are fewer rows than
    # workers (a split changes nothing in the result, it only repeats the cheap shared schedule).
    pieces = max(1, min(len(min_dists), math.ceil(n_jobs / max(1, n_rows))))
    return [chunk.tolist() for chunk in np.array_split(np.arange(len(min_dists)), pieces) if chunk.size]


def _done(result: dict[str, Any], tasks_left: dict[int, int], scratch: Path) -> dict[str, Any]:
    # Free the scratch space of an n_neighbors as soon as all its layouts are back (large tables: GBs).
    k = result["n_neighbors"]
    tasks_left[k] -= 1
    if tasks_left[k] == 0:
        shutil.rmtree(scratch / f"k{k}", ignore_errors=True)
    return result


def compute_grid(
    embeddings: np.ndarray,
    n_neighbors: Sequence[int],
    min_dists: Sequence[float],
    seed: int,
    n_jobs: int,
    quality_labels: np.ndarray | None = None,
    trust_subsample: int = 2000,
    *,
    trust_n_neighbors: int = 10,
    n_epochs: int | None = None,
    engine: str = "lockstep",
    knn: tuple[np.ndarray, np.ndarray] | None = None,
    scratch_dir: str | os.PathLike[str] | None = None,
) -> GridResult:
    """UMAP (cosine) of ``embeddings`` for every ``n_neighbors`` x ``min_dists`` cell, with quality scores.

    ``quality_labels``: an integer class per sample for the silhouette score (negative = leave out), or None.
    ``trust_subsample``: quality is measured on at most this many points (a fixed, seeded subsample).
    ``n_epochs``: None keeps umap-learn's rule (500 up to 10,000 points, else 200).
    ``engine``: "lockstep" (fast, see :mod:`vlmprobe.umap.layout`) or "umap" (umap-learn's own optimiser per cell).
    ``knn``: optional precomputed ``(indices, distances)``, sorted, self first, at least max(n_neighbors)
    columns; by default exact cosine neighbours are computed.
    ``n_jobs``: worker processes (1 = everything in this process).
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise VlmprobeError(
            "compute_grid was called while a UMAP worker process was starting: the calling script re-ran in the worker.",
            "Put the script's top-level code under `if __name__ == \"__main__\":` (spawned workers re-import it).",
        )
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    began = time.perf_counter()
    data = _checked_embeddings(embeddings)
    n = data.shape[0]
    kept, dropped = valid_n_neighbors(n_neighbors, n)
    if not kept:
        raise VlmprobeError(
            f"No n_neighbors value of the UMAP grid {sorted(set(map(int, n_neighbors)))} is below the number of samples ({n}).",
            "Add smaller n_neighbors values for this dataset (its umap override in config.yaml).",
        )
    mds = _checked_min_dists(min_dists)
    labels = _checked_quality_labels(quality_labels, n)
    n_jobs = max(1, int(n_jobs))

    from umap.umap_ import find_ab_params

    curve = {m: tuple(float(v) for v in find_ab_params(SPREAD, m)) for m in mds}
    scratch = Path(tempfile.mkdtemp(prefix="vlmprobe-umap-", dir=scratch_dir))
    pool: ProcessPoolExecutor | None = None
    timings: dict[str, float] = {}
    try:
        # Quality inputs first: workers load them on their first task.
        t = time.perf_counter()
        subsample, trust_k = _quality_subsample(scratch, data, labels, trust_subsample, trust_n_neighbors, seed)
        timings["quality_setup"] = time.perf_counter() - t
        if n_jobs > 1:
            # Start the workers now: their start-up (imports, kernel load) overlaps the neighbour search.
            pool = ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker)
            for _ in range(n_jobs):
                pool.submit(started)
        t = time.perf_counter()
        knn_indices, knn_distances = _neighbours(data, knn, max(kept), n_jobs)
        timings["knn"] = time.perf_counter() - t
        cells = _layout_cells(pool, scratch, data, knn_indices, knn_distances, kept, mds, curve, seed, n_epochs, engine, n_jobs)
        timings.update(cells.timings)
    except BrokenProcessPool as error:
        raise VlmprobeError(
            f"A UMAP worker process died ({error}). Usual causes: out of memory, or a calling script whose "
            "top-level code is not under `if __name__ == \"__main__\":` (spawned workers re-import it).",
            "Give the job more memory or fewer threads, or guard the script's top-level code.",
        ) from error
    finally:
        forget_quality_context()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(scratch, ignore_errors=True)

    timings["total"] = time.perf_counter() - began
    params = {
        "seed": int(seed),
        "metric": METRIC,
        "n_components": N_COMPONENTS,
        "n_neighbors": kept,
        "min_dist": mds,
        "dropped_n_neighbors": dropped,
        "n_samples": n,
        "n_epochs": cells.n_epochs,
        "spread": SPREAD,
        "learning_rate": LEARNING_RATE,
        "repulsion_strength": REPULSION_STRENGTH,
        "negative_sample_rate": NEGATIVE_SAMPLE_RATE,
        "set_op_mix_ratio": SET_OP_MIX_RATIO,
        "local_connectivity": LOCAL_CONNECTIVITY,
        "init": "spectral",
        "neighbours": "exact" if knn is None else "given",
        "engine": engine,
        "curve_a_b": {str(m): list(curve[m]) for m in mds},
        "edges": {str(k): cells.edges[k] for k in kept},
        "spectral_init": {str(k): cells.spectral[k] for k in kept},
        "trust_n_neighbors": trust_k,
        "trust_subsample": int(subsample.size),
        "silhouette": "sklearn silhouette_score on the 2-D layout, same subsample" if labels is not None else None,
        "n_jobs": n_jobs,
        "seconds": {name: round(value, 3) for name, value in timings.items()},
        "versions": _package_versions(),
    }
    log.info(
        "UMAP grid: %d x %d cells on %d points in %.1f s (neighbours %.1f s, layouts %.1f s wall on %d process(es)).",
        len(kept), len(mds), n, timings["total"], timings["knn"], timings["layouts_wall"], n_jobs,
    )  # fmt: skip
    return GridResult(kept, mds, cells.coords, _quality_table(kept, mds, cells.scores), dropped, params)


def _checked_quality_labels(quality_labels: np.ndarray | None, n: int) -> np.ndarray | None:
    if quality_labels is None:
        return None
    labels = np.asarray(quality_labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"quality_labels must be {n} integers, got shape {labels.shape} dtype {labels.dtype}")
    return labels


def _quality_subsample(
    scratch: Path, data: np.ndarray, labels: np.ndarray | None, trust_subsample: int, trust_n_neighbors: int, seed: int
) -> tuple[np.ndarray, int]:
    """Draw the seeded quality subsample and write its input ranks and labels for the workers; returns
    ``(subsample, trust_k)``, ``trust_k`` 0 where the subsample is too small for trustworthiness at ``trust_n_neighbors``."""
    from threadpoolctl import threadpool_limits

    subsample = trust_subsample_indices(data.shape[0], int(trust_subsample), seed)
    trust_k = int(trust_n_neighbors) if trust_n_neighbors < subsample.size / 2 else 0
    if trust_k != trust_n_neighbors:
        log.info("UMAP quality: %d points are too few for trustworthiness at %d neighbours; left out.", subsample.size, trust_n_neighbors)
    # One BLAS thread: the input distances' last bits (hence ties in the ranks) must not depend on n_jobs.
    with threadpool_limits(limits=1):
        ranks = input_rank_table(data[subsample])
    write_quality_inputs(scratch, ranks, subsample, trust_k, None if labels is None else labels[subsample])
    return subsample, trust_k


def _neighbours(data: np.ndarray, knn: tuple[np.ndarray, np.ndarray] | None, k_max: int, n_jobs: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine neighbours (``k_max`` columns), or the given ones after a shape check."""
    if knn is None:
        return exact_cosine_knn(data, k_max, n_threads=n_jobs)
    knn_indices, knn_distances = (np.asarray(a) for a in knn)
    n = data.shape[0]
    if knn_indices.shape != knn_distances.shape or knn_indices.shape[0] != n or knn_indices.shape[1] < k_max:
        raise ValueError(f"knn arrays {knn_indices.shape} must be ({n}, >= {k_max})")
    return knn_indices, knn_distances


@dataclass
class _Cells:
    """Every cell's layout and quality scores, and what the layouts were made with."""

    coords: np.ndarray  # (n_neighbors, min_dist, n_samples, 2)
    scores: dict[tuple[int, int], tuple[float, float]]  # (row, column) -> (trustworthiness, silhouette)
    edges: dict[int, int]  # n_neighbors -> edges of its fuzzy graph
    spectral: dict[int, dict[str, int]]  # n_neighbors -> graph components and seeded eigensolver restarts
    n_epochs: int | None
    timings: dict[str, float]


def _layout_cells(
    pool: ProcessPoolExecutor | None,
    scratch: Path,
    data: np.ndarray,
    knn_indices: np.ndarray,
    knn_distances: np.ndarray,
    kept: list[int],
    mds: list[float],
    curve: dict[float, tuple[float, ...]],
    seed: int,
    n_epochs: int | None,
    engine: str,
    n_jobs: int,
) -> _Cells:
    """Prepare each n_neighbors (graph, initialisation) and lay out its min_dist cells, in ``pool``'s workers or here."""
    from threadpoolctl import threadpool_limits

    n = data.shape[0]
    futures: list[Future] = []
    results: list[dict[str, Any]] = []
    edges: dict[int, int] = {}
    spectral: dict[int, dict[str, int]] = {}
    epochs_used = None
    t = time.perf_counter()
    prepare_seconds = 0.0
    tasks_left: dict[int, int] = {}
    # Largest n_neighbors first: the slowest tasks start first, the small ones fill in at the end.
    for k in sorted(kept, reverse=True):
        tp = time.perf_counter()
        # One BLAS thread here and in every worker (init_worker): results must not depend on n_jobs.
        with threadpool_limits(limits=1):
            prepared = prepare(data, knn_indices, knn_distances, k, seed, n_epochs)
        prepare_seconds += time.perf_counter() - tp
        epochs_used = prepared.n_epochs
        edges[k] = prepared.n_edges
        spectral[k] = {"graph_components": prepared.graph_components, "eigensolver_restarts": prepared.eigensolver_restarts}
        folder = scratch / f"k{k}"
        folder.mkdir()
        write_prepared(folder, prepared)
        del prepared
        chunks = _min_dist_chunks(mds, len(kept), n_jobs)
        tasks_left[k] = len(chunks)
        for cells in chunks:
            task = {
                "folder": str(folder),
                "scratch": str(scratch),
                "n_neighbors": k,
                "cells": cells,
                "a": [curve[mds[c]][0] for c in cells],
                "b": [curve[mds[c]][1] for c in cells],
                "n_epochs": epochs_used,
                "engine": engine,
            }
            if pool is None:
                with threadpool_limits(limits=1):
                    results.append(_done(run_layouts(task), tasks_left, scratch))
            else:
                futures.append(pool.submit(run_layouts, task))
    for future in as_completed(futures):
        results.append(_done(future.result(), tasks_left, scratch))
    timings = {
        "prepare": prepare_seconds,
        "layouts_wall": time.perf_counter() - t,
        "layouts_cpu": sum(r["layout_seconds"] for r in results),
        "quality_cpu": sum(r["quality_seconds"] for r in results),
    }
    coords = np.full((len(kept), len(mds), n, N_COMPONENTS), np.nan, dtype=np.float32)
    scores: dict[tuple[int, int], tuple[float, float]] = {}
    row_of = {k: i for i, k in enumerate(kept)}
    for r in results:
        i = row_of[r["n_neighbors"]]
        for c, layout, score in zip(r["cells"], r["layouts"], r["scores"]):
            coords[i, c] = layout
            scores[(i, c)] = score
    return _Cells(coords=coords, scores=scores, edges=edges, spectral=spectral, n_epochs=epochs_used, timings=timings)


def _quality_table(kept: list[int], mds: list[float], scores: dict[tuple[int, int], tuple[float, float]]):
    """One row per cell: n_neighbors, min_dist, trustworthiness, silhouette."""
    import polars as pl

    return pl.DataFrame(
        {
            "n_neighbors": [k for k in kept for _ in mds],
            "min_dist": [m for _ in kept for m in mds],
            "trustworthiness": [scores[(i, j)][0] for i in range(len(kept)) for j in range(len(mds))],
            "silhouette": [scores[(i, j)][1] for i in range(len(kept)) for j in range(len(mds))],
        },
        schema={"n_neighbors": pl.Int32, "min_dist": pl.Float64, "trustworthiness": pl.Float64, "silhouette": pl.Float64},
    )
