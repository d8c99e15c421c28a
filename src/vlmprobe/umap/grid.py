"""UMAP grids: every (n_neighbors, min_dist) projection of one embedding table, fast and checkable.

The poster (shared/seeds/002_*) looks at each embedding table through UMAP with ``metric="cosine"`` over a
grid of ``n_neighbors`` x ``min_dist``. Fitting ``umap.UMAP(...).fit_transform`` once per cell repeats most of
the work fifty times. :func:`compute_grid` produces the same projections while doing each piece of work once:

1. **Neighbours, once per table.** Exact cosine neighbours for the largest ``n_neighbors``, from blocked
   matrix products of the L2-normalised rows (cosine distance = 1 - dot product). Every smaller
   ``n_neighbors`` uses the first ``k`` columns. This is also what umap-learn itself does for fewer than
   4,096 points (an exact distance matrix); above that it switches to approximate NN-descent, so here the
   graph is exact at every size. We never hand a wide kNN to ``umap.UMAP(precomputed_knn=...)``: with fewer
   than 4,096 points umap-learn up to at least 0.5.12 keeps *all* the columns it is given and silently
   builds a wider graph than ``n_neighbors`` asks for. Slicing to exactly ``k`` columns and calling
   umap-learn's ``fuzzy_simplicial_set`` ourselves avoids that quirk whatever the installed version.
2. **Fuzzy graph and spectral initialisation, once per n_neighbors**, with umap-learn's own functions
   (``fuzzy_simplicial_set``, the edge pruning of ``simplicial_set_embedding``, ``spectral_layout``,
   ``noisy_scale_coords``, ``make_epochs_per_sample``): none of them depends on ``min_dist``.
3. **Layouts, all min_dist values of one n_neighbors together.** The SGD layout is what remains, and it
   dominates. For one graph the edge-sampling schedule and the negative-sample draws do not depend on
   ``min_dist`` (only the curve parameters ``a``, ``b`` from ``find_ab_params`` do), so one pass over the
   schedule updates every ``min_dist`` layout in turn ("lockstep"). The layouts are independent
   computations, so the CPU overlaps them, and each one is exactly what it would be if run alone.
   The kernel is umap-learn's ``optimize_layout_euclidean`` (same schedule, same Tausworthe generator and
   per-sample seeding, same gradients, clipping at 4, learning-rate decay, ``move_other``) in float32
   arithmetic. ``engine="umap"`` runs umap-learn's own ``optimize_layout_euclidean`` per cell instead: given
   the same neighbours it reproduces ``umap.UMAP(...).fit_transform`` bit for bit (a test checks this) and
   is the reference the fast kernel is measured against.
4. **Processes, not threads.** A seeded layout runs on one thread, so parallelism comes from long-lived
   worker processes (``spawn``: safe whatever the parent has loaded). Work is handed out per
   n_neighbors, largest first.

Seeds: the layouts of n_neighbors ``k`` draw from ``numpy.random.RandomState(seed)`` exactly as
``umap.UMAP(n_neighbors=k, random_state=seed)`` does on an exact neighbour graph (spectral initialisation,
its noise, then the SGD generator state), so cell ``(k, min_dist)`` depends only on the data, ``seed``,
``k`` and ``min_dist``, never on ``n_jobs`` or on which other cells were computed with it.

Quality, per cell (so a reader can tell a faithful cell from a pretty one):
``trustworthiness`` is scikit-learn's definition (cosine distances in the input space, Euclidean in the
layout) on a fixed subsample, with the input-space ranks computed once for all cells; ``silhouette`` is
scikit-learn's silhouette score of the class labels on the 2-D coordinates (same subsample).

Worker processes are started with ``spawn``, which re-imports the calling script in every worker: a script
that calls :func:`compute_grid` with ``n_jobs > 1`` must keep its top-level code under
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import json
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

import numba
import numpy as np

from vlmprobe.errors import VlmprobeError

log = logging.getLogger(__name__)

METRIC = "cosine"
N_COMPONENTS = 2
# umap.UMAP defaults, kept as they are so that each cell means what the naive fit means.
SPREAD = 1.0
LEARNING_RATE = 1.0
REPULSION_STRENGTH = 1.0
NEGATIVE_SAMPLE_RATE = 5
SET_OP_MIX_RATIO = 1.0
LOCAL_CONNECTIVITY = 1.0
DISCONNECTION_DISTANCE = 2.0  # umap.umap_.DISCONNECTION_DISTANCES["cosine"]
ENGINES = ("lockstep", "umap")

POSTER_N_NEIGHBORS = (3, 5, 10, 15, 25, 50, 100, 200, 500, 1000)
POSTER_MIN_DISTS = (0.1, 0.25, 0.5, 0.75, 1.0)

# Bytes of scratch memory one block of the exact-neighbour search may use (similarities, argpartition).
KNN_BLOCK_BYTES = 256 * 2**20
METADATA_KEY = b"vlmprobe"


# --------------------------------------------------------------------------------------------------
# Grid parameters


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


# --------------------------------------------------------------------------------------------------
# Exact cosine neighbours


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


def exact_cosine_knn(
    embeddings: np.ndarray, n_neighbors: int, block_bytes: int = KNN_BLOCK_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``n_neighbors`` nearest neighbours under cosine distance, each point first (distance 0).

    Returns ``(indices int32, distances float32)``, both ``(n, n_neighbors)`` and sorted by distance, in the
    layout umap-learn's exact path produces. Pairs at distance >= 2 (opposite directions) are marked
    disconnected (index -1, distance inf), as umap-learn does for cosine.
    """
    data = np.asarray(embeddings, dtype=np.float32)
    n = data.shape[0]
    k = int(n_neighbors)
    if not 1 <= k <= n:
        raise ValueError(f"n_neighbors={k} must be between 1 and the number of points ({n})")
    unit = data / np.linalg.norm(data, axis=1, keepdims=True).astype(np.float32)
    # Per block row: the similarity row (4 bytes), argpartition's int64 result (8) and a copy (4).
    rows_per_block = int(max(1, min(n, block_bytes // (16 * n))))
    indices = np.empty((n, k), dtype=np.int32)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        similarity = unit[start:stop] @ unit.T
        local = np.arange(stop - start)
        # The point itself must come first, whatever rounding does to its own similarity.
        similarity[local, start + local] = np.inf
        if k < n:
            top = np.argpartition(similarity, n - k, axis=1)[:, n - k :]
        else:
            top = np.broadcast_to(np.arange(n), (stop - start, n))
        top_similarity = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_similarity, axis=1, kind="stable")
        block_indices = np.take_along_axis(top, order, axis=1)
        block_distances = 1.0 - np.take_along_axis(top_similarity, order, axis=1)
        block_distances[:, 0] = 0.0
        np.maximum(block_distances, 0.0, out=block_distances)  # rounding can give -1e-7
        indices[start:stop] = block_indices
        distances[start:stop] = block_distances
    disconnected = distances >= DISCONNECTION_DISTANCE
    if disconnected.any():
        indices[disconnected] = -1
        distances[disconnected] = np.inf
    return indices, distances


# --------------------------------------------------------------------------------------------------
# Quality scores


def trust_subsample_indices(n_samples: int, size: int, seed: int) -> np.ndarray:
    """The fixed subsample every cell's quality is measured on: all points, or ``size`` drawn with ``seed``."""
    if n_samples <= size:
        return np.arange(n_samples)
    return np.sort(np.random.RandomState(seed).choice(n_samples, size=size, replace=False))


def input_rank_table(data: np.ndarray, metric: str = METRIC) -> np.ndarray:
    """Rank of every point in every other point's input-space neighbour list (1 = nearest, self last).

    This is the ``inverted_index`` of scikit-learn's ``trustworthiness``, computed the same way, once for
    all cells of a grid instead of once per cell.
    """
    from sklearn.metrics import pairwise_distances

    n = data.shape[0]
    dist = pairwise_distances(data, metric=metric)
    np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1)
    ranks = np.zeros((n, n), dtype=np.int32)
    ranks[np.arange(n)[:, None], order] = np.arange(1, n + 1, dtype=np.int32)
    return ranks


def trustworthiness_from_ranks(ranks: np.ndarray, layout: np.ndarray, n_neighbors: int) -> float:
    """scikit-learn's ``trustworthiness`` given :func:`input_rank_table` of the same points."""
    from sklearn.neighbors import NearestNeighbors

    n = ranks.shape[0]
    if n_neighbors >= n / 2:
        raise ValueError(f"trustworthiness n_neighbors ({n_neighbors}) should be less than n_samples / 2 ({n / 2})")
    layout_neighbours = NearestNeighbors(n_neighbors=n_neighbors).fit(layout).kneighbors(return_distance=False)
    excess = ranks[np.arange(n)[:, None], layout_neighbours].astype(np.int64) - n_neighbors
    penalty = float(excess[excess > 0].sum())
    return 1.0 - penalty * (2.0 / (n * n_neighbors * (2.0 * n - 3.0 * n_neighbors - 1.0)))


def _silhouette(layout: np.ndarray, labels: np.ndarray | None) -> float:
    from sklearn.metrics import silhouette_score

    if labels is None:
        return math.nan
    known = labels >= 0
    n_classes = np.unique(labels[known]).size
    if n_classes < 2 or n_classes > known.sum() - 1:
        return math.nan
    return float(silhouette_score(layout[known], labels[known], metric="euclidean"))


# --------------------------------------------------------------------------------------------------
# The layout kernel


@numba.njit("i4(i8[::1])", cache=True, nogil=True)
def _tau_rand_int(state):
    """umap.utils.tau_rand_int, line for line (a test checks they agree): a Tausworthe generator."""
    state[0] = (((state[0] & 4294967294) << 12) & 0xFFFFFFFF) ^ ((((state[0] << 13) & 0xFFFFFFFF) ^ state[0]) >> 19)
    state[1] = (((state[1] & 4294967288) << 4) & 0xFFFFFFFF) ^ ((((state[1] << 2) & 0xFFFFFFFF) ^ state[1]) >> 25)
    state[2] = (((state[2] & 4294967280) << 17) & 0xFFFFFFFF) ^ ((((state[2] << 3) & 0xFFFFFFFF) ^ state[2]) >> 11)
    return state[0] ^ state[1] ^ state[2]


@numba.njit(fastmath=True, cache=True, nogil=True)
def _optimize_lockstep(
    layouts,
    head,
    tail,
    epochs_per_sample,
    a,
    b,
    rng_state_per_sample,
    n_epochs,
    gamma,
    initial_alpha,
    negative_sample_rate,
):
    """umap-learn's ``optimize_layout_euclidean`` (2-D, ``move_other=True``) for several layouts at once.

    ``layouts`` is ``(n_layouts, n_vertices, 2)`` float32, updated in place; layout ``c`` uses curve
    parameters ``a[c]``, ``b[c]``. The edge schedule and the negative-sample draws are shared (they do not
    depend on ``a``, ``b``), so every layout gets exactly the updates it would get alone.
    """
    n_layouts = layouts.shape[0]
    n_vertices = layouts.shape[1]
    two = np.float32(2.0)
    one = np.float32(1.0)
    clip = np.float32(4.0)
    eps_distance = np.float32(0.001)
    attract = np.empty(n_layouts, dtype=np.float32)
    repel = np.empty(n_layouts, dtype=np.float32)
    for c in range(n_layouts):
        attract[c] = -two * a[c] * b[c]
        repel[c] = two * np.float32(gamma) * b[c]
    epochs_per_negative_sample = epochs_per_sample / negative_sample_rate
    epoch_of_next_negative_sample = epochs_per_negative_sample.copy()
    epoch_of_next_sample = epochs_per_sample.copy()
    alpha = np.float32(initial_alpha)
    for n in range(n_epochs):
        for i in range(epochs_per_sample.shape[0]):
            if epoch_of_next_sample[i] > n:
                continue
            j = head[i]
            k = tail[i]
            for c in range(n_layouts):
                dx = layouts[c, j, 0] - layouts[c, k, 0]
                dy = layouts[c, j, 1] - layouts[c, k, 1]
                dist_squared = dx * dx + dy * dy
                if dist_squared > 0.0:
                    power = dist_squared ** b[c]
                    grad_coeff = attract[c] * (power / dist_squared) / (a[c] * power + one)
                    gx = min(max(grad_coeff * dx, -clip), clip) * alpha
                    gy = min(max(grad_coeff * dy, -clip), clip) * alpha
                    layouts[c, j, 0] += gx
                    layouts[c, j, 1] += gy
                    layouts[c, k, 0] -= gx
                    layouts[c, k, 1] -= gy
            epoch_of_next_sample[i] += epochs_per_sample[i]
            n_neg_samples = int((n - epoch_of_next_negative_sample[i]) / epochs_per_negative_sample[i])
            for _ in range(n_neg_samples):
                k = _tau_rand_int(rng_state_per_sample[j]) % n_vertices
                for c in range(n_layouts):
                    dx = layouts[c, j, 0] - layouts[c, k, 0]
                    dy = layouts[c, j, 1] - layouts[c, k, 1]
                    dist_squared = dx * dx + dy * dy
                    if dist_squared > 0.0:
                        grad_coeff = repel[c] / ((eps_distance + dist_squared) * (a[c] * dist_squared ** b[c] + one))
                        layouts[c, j, 0] += min(max(grad_coeff * dx, -clip), clip) * alpha
                        layouts[c, j, 1] += min(max(grad_coeff * dy, -clip), clip) * alpha
            epoch_of_next_negative_sample[i] += n_neg_samples * epochs_per_negative_sample[i]
        alpha = np.float32(initial_alpha * (1.0 - (float(n) / float(n_epochs))))


def _per_sample_rng_state(rng_state: np.ndarray, start: np.ndarray) -> np.ndarray:
    # As in umap.layouts.optimize_layout_euclidean: the generator state, offset per point by the bits of
    # its initial x coordinate.
    return np.full((start.shape[0], len(rng_state)), rng_state, dtype=np.int64) + start[:, 0].astype(np.float64).view(
        np.int64
    ).reshape(-1, 1)


# --------------------------------------------------------------------------------------------------
# Per-n_neighbors preparation (parent process, umap-learn's functions)


@dataclass
class _Prepared:
    n_neighbors: int
    head: np.ndarray
    tail: np.ndarray
    epochs_per_sample: np.ndarray
    start: np.ndarray  # (n, 2) float32: the normalised spectral initialisation every min_dist starts from
    rng_state: np.ndarray  # (3,) int64
    disconnected: np.ndarray  # (n,) bool: no edge at all; umap-learn reports NaN coordinates for these
    n_epochs: int
    n_edges: int


def _default_n_epochs(n_samples: int) -> int:
    # simplicial_set_embedding's rule for n_epochs=None.
    return 500 if n_samples <= 10000 else 200


def _prepare(data: np.ndarray, knn_indices: np.ndarray, knn_distances: np.ndarray, k: int, seed: int, n_epochs: int | None) -> _Prepared:
    """Everything of one n_neighbors that does not depend on min_dist, as umap.UMAP.fit computes it."""
    from umap.distances import named_distances
    from umap.spectral import spectral_layout
    from umap.umap_ import (
        INT32_MAX,
        INT32_MIN,
        fuzzy_simplicial_set,
        make_epochs_per_sample,
        noisy_scale_coords,
    )

    # Copies of exactly k columns: umap-learn writes into the kNN arrays it is given, and a wider kNN
    # would change the graph (see the module docstring).
    indices = np.ascontiguousarray(knn_indices[:, :k])
    distances = np.ascontiguousarray(knn_distances[:, :k])
    graph, _, _ = fuzzy_simplicial_set(
        data, k, None, METRIC, {}, indices, distances, False, SET_OP_MIX_RATIO, LOCAL_CONNECTIVITY, True
    )
    disconnected = np.asarray(graph.sum(axis=1)).ravel() == 0
    # The rest follows umap.umap_.simplicial_set_embedding line by line.
    graph = graph.tocoo()
    graph.sum_duplicates()
    default_epochs = _default_n_epochs(graph.shape[0])
    epochs = default_epochs if n_epochs is None else int(n_epochs)
    prune_epochs = epochs if epochs > 10 else default_epochs
    graph.data[graph.data < (graph.data.max() / float(prune_epochs))] = 0.0
    graph.eliminate_zeros()
    random_state = np.random.RandomState(seed)
    init = spectral_layout(data, graph, N_COMPONENTS, random_state, metric=named_distances[METRIC], metric_kwds={})
    init = noisy_scale_coords(init, random_state, max_coord=10, noise=0.0001)
    epochs_per_sample = make_epochs_per_sample(graph.data, epochs)
    rng_state = random_state.randint(INT32_MIN, INT32_MAX, 3).astype(np.int64)
    start = (10.0 * (init - np.min(init, 0)) / (np.max(init, 0) - np.min(init, 0))).astype(np.float32, order="C")
    return _Prepared(
        n_neighbors=k,
        head=graph.row,
        tail=graph.col,
        epochs_per_sample=epochs_per_sample,
        start=start,
        rng_state=rng_state,
        disconnected=disconnected,
        n_epochs=epochs,
        n_edges=int(graph.nnz),
    )


# --------------------------------------------------------------------------------------------------
# Worker side: runs in the pool's processes, or in-process for n_jobs=1


class _QualityContext:
    """The arrays every cell's quality needs, loaded once per process from the scratch folder."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.subsample = np.load(scratch / "subsample.npy")
        self.ranks = np.load(scratch / "ranks.npy", mmap_mode="r")
        labels_path = scratch / "labels.npy"
        self.labels = np.load(labels_path) if labels_path.exists() else None
        self.trust_n_neighbors = int(np.load(scratch / "trust_n_neighbors.npy"))

    def scores(self, layout: np.ndarray) -> tuple[float, float]:
        sub = layout[self.subsample]
        if not np.isfinite(sub).all():
            # Only points umap-learn leaves unplaced (no edge at all: every neighbour at cosine distance 2).
            log.warning("UMAP quality: %d subsample point(s) have no coordinates; scores left empty.", int((~np.isfinite(sub).all(axis=1)).sum()))
            return math.nan, math.nan
        trust = math.nan
        if self.trust_n_neighbors > 0:
            trust = trustworthiness_from_ranks(np.asarray(self.ranks), sub, self.trust_n_neighbors)
        return trust, _silhouette(sub, self.labels)


_CONTEXT: _QualityContext | None = None


def _context(scratch: str) -> _QualityContext:
    global _CONTEXT
    if _CONTEXT is None or _CONTEXT.scratch != Path(scratch):
        _CONTEXT = _QualityContext(Path(scratch))
    return _CONTEXT


def _init_worker() -> None:
    """Pool initializer: one thread per process (the layouts are the parallelism), kernel compiled/loaded."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    numba.set_num_threads(1)
    _warm_kernel()
    import sklearn.metrics  # noqa: F401 - imported now so the first task does not pay for it
    import sklearn.neighbors  # noqa: F401


def _warm_kernel() -> None:
    tiny = np.zeros((1, 3, 2), dtype=np.float32)
    tiny[0, :, 0] = [0.0, 1.0, 2.0]
    _optimize_lockstep(
        tiny,
        np.array([0, 1], dtype=np.int32),
        np.array([1, 2], dtype=np.int32),
        np.ones(2),
        np.ones(1, dtype=np.float32),
        np.ones(1, dtype=np.float32),
        np.ones((3, 3), dtype=np.int64),
        2,
        1.0,
        1.0,
        5.0,
    )


def _started() -> int:
    return os.getpid()


def _run_layouts(task: dict[str, Any]) -> dict[str, Any]:
    """Lay out one n_neighbors for the given min_dist values and score each layout."""
    began = time.perf_counter()
    folder = Path(task["folder"])
    head = np.load(folder / "head.npy")
    tail = np.load(folder / "tail.npy")
    epochs_per_sample = np.load(folder / "epochs_per_sample.npy")
    start = np.load(folder / "start.npy")
    rng_state = np.load(folder / "rng_state.npy")
    disconnected = np.load(folder / "disconnected.npy")
    a = np.asarray(task["a"], dtype=np.float64)
    b = np.asarray(task["b"], dtype=np.float64)
    n_epochs = int(task["n_epochs"])
    layouts = np.repeat(start[None], len(a), axis=0)
    if task["engine"] == "lockstep":
        _optimize_lockstep(
            layouts,
            head,
            tail,
            epochs_per_sample,
            a.astype(np.float32),
            b.astype(np.float32),
            _per_sample_rng_state(rng_state, start),
            n_epochs,
            REPULSION_STRENGTH,
            LEARNING_RATE,
            float(NEGATIVE_SAMPLE_RATE),
        )
    else:
        from umap.layouts import optimize_layout_euclidean

        for c in range(len(a)):
            layout = np.ascontiguousarray(layouts[c])
            optimize_layout_euclidean(
                layout,
                layout,
                head,
                tail,
                n_epochs,
                layout.shape[0],
                epochs_per_sample,
                a[c],
                b[c],
                rng_state.copy(),
                gamma=REPULSION_STRENGTH,
                initial_alpha=LEARNING_RATE,
                negative_sample_rate=NEGATIVE_SAMPLE_RATE,
                parallel=False,
                verbose=False,
                densmap=False,
                densmap_kwds={},
                tqdm_kwds={"disable": True},
                move_other=True,
            )
            layouts[c] = layout
    layouts[:, disconnected] = np.nan
    laid_out = time.perf_counter()
    context = _context(task["scratch"])
    scores = [context.scores(layouts[c]) for c in range(len(a))]
    return {
        "n_neighbors": task["n_neighbors"],
        "cells": task["cells"],
        "layouts": layouts,
        "scores": scores,
        "layout_seconds": laid_out - began,
        "quality_seconds": time.perf_counter() - laid_out,
    }


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
        i = _position(self.n_neighbors, n_neighbors, "n_neighbors")
        j = _position(self.min_dists, min_dist, "min_dist")
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


def _position(values: Sequence[float], wanted: float, name: str) -> int:
    for position, value in enumerate(values):
        if math.isclose(float(value), float(wanted), rel_tol=0, abs_tol=1e-9):
            return position
    raise VlmprobeError(
        f"UMAP grid has no {name}={wanted!r}; it has {list(values)}.",
        f"Choose one of the grid's {name} values (values >= the number of samples are dropped).",
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
    ``engine``: "lockstep" (fast, see the module docstring) or "umap" (umap-learn's own optimiser per cell).
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
    labels = None
    if quality_labels is not None:
        labels = np.asarray(quality_labels)
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"quality_labels must be {n} integers, got shape {labels.shape} dtype {labels.dtype}")
    n_jobs = max(1, int(n_jobs))

    from threadpoolctl import threadpool_limits
    from umap.umap_ import find_ab_params

    curve = {m: tuple(float(v) for v in find_ab_params(SPREAD, m)) for m in mds}
    scratch = Path(tempfile.mkdtemp(prefix="vlmprobe-umap-", dir=scratch_dir))
    pool: ProcessPoolExecutor | None = None
    timings: dict[str, float] = {}
    try:
        # Quality inputs first: workers load them on their first task.
        t = time.perf_counter()
        subsample = trust_subsample_indices(n, int(trust_subsample), seed)
        trust_k = int(trust_n_neighbors) if trust_n_neighbors < subsample.size / 2 else 0
        if trust_k != trust_n_neighbors:
            log.info("UMAP quality: %d points are too few for trustworthiness at %d neighbours; left out.", subsample.size, trust_n_neighbors)
        with threadpool_limits(limits=n_jobs):
            np.save(scratch / "ranks.npy", input_rank_table(data[subsample]))
        np.save(scratch / "subsample.npy", subsample)
        np.save(scratch / "trust_n_neighbors.npy", np.array(trust_k))
        if labels is not None:
            np.save(scratch / "labels.npy", labels[subsample])
        timings["quality_setup"] = time.perf_counter() - t

        if n_jobs > 1:
            # Start the workers now: their start-up (imports, kernel load) overlaps the neighbour search.
            pool = ProcessPoolExecutor(
                max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
            )
            for _ in range(n_jobs):
                pool.submit(_started)

        t = time.perf_counter()
        k_max = max(kept)
        if knn is None:
            with threadpool_limits(limits=n_jobs):
                knn_indices, knn_distances = exact_cosine_knn(data, k_max)
        else:
            knn_indices, knn_distances = (np.asarray(a) for a in knn)
            if knn_indices.shape != knn_distances.shape or knn_indices.shape[0] != n or knn_indices.shape[1] < k_max:
                raise ValueError(f"knn arrays {knn_indices.shape} must be ({n}, >= {k_max})")
        timings["knn"] = time.perf_counter() - t

        layouts = np.full((len(kept), len(mds), n, N_COMPONENTS), np.nan, dtype=np.float32)
        scores: dict[tuple[int, int], tuple[float, float]] = {}
        futures: list[Future] = []
        results: list[dict[str, Any]] = []
        edges: dict[int, int] = {}
        epochs_used = None
        t = time.perf_counter()
        prepare_seconds = 0.0
        tasks_left: dict[int, int] = {}
        # Largest n_neighbors first: the slowest tasks start first, the small ones fill in at the end.
        for k in sorted(kept, reverse=True):
            tp = time.perf_counter()
            with threadpool_limits(limits=1 if pool is not None else n_jobs):
                prepared = _prepare(data, knn_indices, knn_distances, k, seed, n_epochs)
            prepare_seconds += time.perf_counter() - tp
            epochs_used = prepared.n_epochs
            edges[k] = prepared.n_edges
            folder = scratch / f"k{k}"
            folder.mkdir()
            for name in ("head", "tail", "epochs_per_sample", "start", "rng_state", "disconnected"):
                np.save(folder / f"{name}.npy", getattr(prepared, name))
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
                    results.append(_done(_run_layouts(task), tasks_left, scratch))
                else:
                    futures.append(pool.submit(_run_layouts, task))
        for future in as_completed(futures):
            results.append(_done(future.result(), tasks_left, scratch))
        timings["prepare"] = prepare_seconds
        timings["layouts_wall"] = time.perf_counter() - t
        timings["layouts_cpu"] = sum(r["layout_seconds"] for r in results)
        timings["quality_cpu"] = sum(r["quality_seconds"] for r in results)
        row_of = {k: i for i, k in enumerate(kept)}
        for r in results:
            i = row_of[r["n_neighbors"]]
            for c, layout, score in zip(r["cells"], r["layouts"], r["scores"]):
                layouts[i, c] = layout
                scores[(i, c)] = score
    except BrokenProcessPool as error:
        raise VlmprobeError(
            f"A UMAP worker process died ({error}). Usual causes: out of memory, or a calling script whose "
            "top-level code is not under `if __name__ == \"__main__\":` (spawned workers re-import it).",
            "Give the job more memory or fewer threads, or guard the script's top-level code.",
        ) from error
    finally:
        global _CONTEXT
        _CONTEXT = None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(scratch, ignore_errors=True)

    import polars as pl

    quality = pl.DataFrame(
        {
            "n_neighbors": [k for k in kept for _ in mds],
            "min_dist": [m for _ in kept for m in mds],
            "trustworthiness": [scores[(i, j)][0] for i in range(len(kept)) for j in range(len(mds))],
            "silhouette": [scores[(i, j)][1] for i in range(len(kept)) for j in range(len(mds))],
        },
        schema={"n_neighbors": pl.Int32, "min_dist": pl.Float64, "trustworthiness": pl.Float64, "silhouette": pl.Float64},
    )
    timings["total"] = time.perf_counter() - began
    params = {
        "seed": int(seed),
        "metric": METRIC,
        "n_components": N_COMPONENTS,
        "n_neighbors": kept,
        "min_dist": mds,
        "dropped_n_neighbors": dropped,
        "n_samples": n,
        "n_epochs": epochs_used,
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
        "edges": {str(k): edges[k] for k in kept},
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
    )
    return GridResult(kept, mds, layouts, quality, dropped, params)


# --------------------------------------------------------------------------------------------------
# Files


def write_grid(result: GridResult, sample_ids: Sequence[str], coords_path: str | os.PathLike[str], quality_path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> None:
    """Write the long coordinate table and the quality table (Parquet, atomically) with provenance."""
    from vlmprobe.io import write_parquet

    # Timings and the worker count do not change the numbers; leaving them out keeps reruns byte-identical.
    provenance = {key: value for key, value in result.params.items() if key not in ("seconds", "n_jobs")}
    metadata = {METADATA_KEY: json.dumps({**provenance, **(extra or {})}, sort_keys=True, default=str).encode()}
    coords = result.long_table(sample_ids).to_arrow()
    write_parquet(coords_path, coords.replace_schema_metadata(metadata))
    write_parquet(quality_path, result.quality.to_arrow().replace_schema_metadata(metadata))


def read_grid_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def read_cell(coords_path: str | os.PathLike[str], n_neighbors: int, min_dist: float) -> tuple[list[str], np.ndarray]:
    """``(sample_ids, xy)`` of one cell of a written grid, in the table's row order."""
    import polars as pl

    frame = pl.read_parquet(coords_path)
    ks = sorted(frame["n_neighbors"].unique().to_list())
    ms = sorted(frame["min_dist"].unique().to_list())
    k = ks[_position(ks, n_neighbors, "n_neighbors")]
    m = ms[_position(ms, min_dist, "min_dist")]
    cell = frame.filter((pl.col("n_neighbors") == k) & (pl.col("min_dist") == m))
    return cell["sample_id"].to_list(), cell.select("x", "y").to_numpy()


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
