"""The worker side of a UMAP grid, and the private scratch folder through which the parent hands work over.

The parent (:func:`vlmprobe.umap.grid.compute_grid`) writes the quality inputs once
(:func:`write_quality_inputs`) and one sub-folder per n_neighbors (:func:`write_prepared`) into a
``tempfile.mkdtemp()`` folder; each task (:func:`run_layouts`) loads what it needs from there, in a pool
process or in the parent itself for ``n_jobs=1``. Pool processes are started with ``spawn`` and find these
functions by their module path.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numba
import numpy as np

from vlmprobe.umap.layout import Prepared, optimize_layouts, warm_kernel
from vlmprobe.umap.quality import layout_silhouette, trustworthiness_from_ranks

log = logging.getLogger(__name__)

PREPARED_ARRAYS = ("head", "tail", "epochs_per_sample", "start", "rng_state", "disconnected")


# --------------------------------------------------------------------------------------------------
# Parent side: the scratch folder


def write_quality_inputs(scratch: Path, ranks: np.ndarray, subsample: np.ndarray, trust_n_neighbors: int, labels: np.ndarray | None) -> None:
    """The arrays every cell's quality needs (subsampled), for :class:`QualityContext` to load."""
    np.save(scratch / "ranks.npy", ranks)
    np.save(scratch / "subsample.npy", subsample)
    np.save(scratch / "trust_n_neighbors.npy", np.array(trust_n_neighbors))
    if labels is not None:
        np.save(scratch / "labels.npy", labels)


def write_prepared(folder: Path, prepared: Prepared) -> None:
    """The shared arrays of one n_neighbors, for :func:`run_layouts` to load."""
    for name in PREPARED_ARRAYS:
        np.save(folder / f"{name}.npy", getattr(prepared, name))


# --------------------------------------------------------------------------------------------------
# Worker side: runs in the pool's processes, or in-process for n_jobs=1


class QualityContext:
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
        return trust, layout_silhouette(sub, self.labels)


_CONTEXT: QualityContext | None = None


def _context(scratch: str) -> QualityContext:
    global _CONTEXT
    if _CONTEXT is None or _CONTEXT.scratch != Path(scratch):
        _CONTEXT = QualityContext(Path(scratch))
    return _CONTEXT


def forget_quality_context() -> None:
    """Drop this process's cached quality arrays (the parent calls it when a grid is done)."""
    global _CONTEXT
    _CONTEXT = None


def init_worker() -> None:
    """Pool initializer: one thread per process (the layouts are the parallelism), kernel compiled/loaded."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    numba.set_num_threads(1)
    warm_kernel()
    import sklearn.metrics  # noqa: F401 - imported now so the first task does not pay for it
    import sklearn.neighbors  # noqa: F401


def started() -> int:
    """A no-op task: submitted once per worker so the pool starts its processes at once."""
    return os.getpid()


def run_layouts(task: dict[str, Any]) -> dict[str, Any]:
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
    optimize_layouts(layouts, head, tail, epochs_per_sample, a, b, rng_state, start, n_epochs, task["engine"])
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
