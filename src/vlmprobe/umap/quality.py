"""Quality of one UMAP layout, so a reader can tell a faithful cell from a pretty one.

``trustworthiness`` is scikit-learn's definition (cosine distances in the input space, Euclidean in the
layout) on a fixed subsample, with the input-space ranks computed once for all cells of a grid;
``silhouette`` is scikit-learn's silhouette score of the class labels on the 2-D coordinates (same subsample).

The rank table and the trustworthiness sum follow scikit-learn's ``sklearn.manifold.trustworthiness``
(BSD-3-Clause, Copyright (c) 2007-2026 The scikit-learn developers; see THIRD_PARTY_NOTICES.md).
"""

from __future__ import annotations

import math

import numpy as np

from vlmprobe.umap.neighbours import METRIC


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


def layout_silhouette(layout: np.ndarray, labels: np.ndarray | None) -> float:
    """scikit-learn's silhouette score of ``labels`` (negative = left out) on a 2-D layout; NaN when undefined
    (no labels, fewer than two classes, or as many classes as labelled points)."""
    from sklearn.metrics import silhouette_score

    if labels is None:
        return math.nan
    known = labels >= 0
    n_classes = np.unique(labels[known]).size
    if n_classes < 2 or n_classes > known.sum() - 1:
        return math.nan
    return float(silhouette_score(layout[known], labels[known], metric="euclidean"))
