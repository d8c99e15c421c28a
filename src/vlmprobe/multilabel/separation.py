"""Embedding-space measures of the multi-label study: how well an embedding table separates the classes.

Computed from an embedding table (no model) on the test samples. Class centroids are means of the samples
that carry a label, a multi-label sample counting once for each of its labels.

- ``inter_class_distance``: mean Euclidean distance between the centroids of every pair of classes;
- ``intra_class_distance``: for each class, the mean distance of its samples to its centroid, then the
  mean over classes (each class weighs the same, however rare);
- ``distance_ratio``: inter / intra (scale-free, higher = better separated);
- the same three on L2-normalised embeddings (suffix ``_l2``), comparable across settings whose
  embeddings have different scales;
- ``silhouette`` and ``davies_bouldin`` (scikit-learn) on the test samples that carry exactly one
  label (a sample in two clusters has no single cluster), classes with fewer than two such samples left
  out;
- ``fisher_ratio``: trace of the between-class scatter over trace of the within-class scatter,
  ``sum_c n_c |mu_c - mu|^2 / sum_c sum_{i in c} |x_i - mu_c|^2`` over (sample, label) pairs
  (= scikit-learn's Calinski-Harabasz score x (k - 1) / (N - k)).

Distances are Euclidean on the embeddings as stored (raw encoder outputs), as in the paper, whose
values (~20-30) are far above the range of normalised vectors (at most 2).

:func:`weighted_distances` gives the three distances for a block of bootstrap resamples at once (their
multiplicity weights), for :mod:`vlmprobe.multilabel.metrics`' intervals.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def class_centroids(embeddings: np.ndarray, indicator: np.ndarray) -> np.ndarray:
    """(C, d) centroids; a multi-label sample contributes to the centroid of each of its labels."""
    counts = indicator.sum(axis=0)
    if (counts == 0).any():
        raise ValueError("every class needs at least one sample to have a centroid")
    return (indicator.T.astype(np.float64) @ embeddings.astype(np.float64)) / counts[:, None]


def class_distances(embeddings: np.ndarray, indicator: np.ndarray) -> dict[str, float]:
    """Inter-class distance, intra-class distance and their ratio (see the module docstring)."""
    from sklearn.metrics import pairwise_distances

    x = np.asarray(embeddings, dtype=np.float64)
    centroids = class_centroids(x, indicator)
    n_classes = centroids.shape[0]
    pairs = pairwise_distances(centroids)[np.triu_indices(n_classes, k=1)]
    inter = float(pairs.mean()) if pairs.size else math.nan
    to_centroid = pairwise_distances(x, centroids)  # (n, C)
    per_class = [(to_centroid[indicator[:, c], c]).mean() for c in range(n_classes)]
    intra = float(np.mean(per_class))
    return {
        "inter_class_distance": inter,
        "intra_class_distance": intra,
        "distance_ratio": inter / intra if intra > 0 else math.nan,
    }


def l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def fisher_ratio(embeddings: np.ndarray, indicator: np.ndarray) -> float:
    """tr(S_B) / tr(S_W) over (sample, label) pairs."""
    x = np.asarray(embeddings, dtype=np.float64)
    rows, columns = np.nonzero(indicator)
    points, groups = x[rows], columns
    overall = points.mean(axis=0)
    between = within = 0.0
    for c in np.unique(groups):
        members = points[groups == c]
        centroid = members.mean(axis=0)
        between += len(members) * float(np.sum((centroid - overall) ** 2))
        within += float(np.sum((members - centroid) ** 2))
    return between / within if within > 0 else math.nan


def separation_scores(embeddings: np.ndarray, indicator: np.ndarray) -> dict[str, Any]:
    """Silhouette and Davies-Bouldin on single-label samples, Fisher ratio on (sample, label) pairs."""
    from sklearn.metrics import davies_bouldin_score, silhouette_score

    x = np.asarray(embeddings, dtype=np.float64)
    single = indicator.sum(axis=1) == 1
    groups = np.argmax(indicator, axis=1)
    keep = single.copy()
    for c in range(indicator.shape[1]):
        members = single & (groups == c)
        if members.sum() < 2:
            keep &= ~members
    n_clusters = len(np.unique(groups[keep])) if keep.any() else 0
    result: dict[str, Any] = {"separation_n_samples": int(keep.sum()), "separation_n_classes": n_clusters}
    if n_clusters >= 2 and keep.sum() > n_clusters:
        result["silhouette"] = float(silhouette_score(x[keep], groups[keep], metric="euclidean"))
        result["davies_bouldin"] = float(davies_bouldin_score(x[keep], groups[keep]))
    else:
        result["silhouette"] = result["davies_bouldin"] = None
    result["fisher_ratio"] = fisher_ratio(x, indicator)
    return result


def weighted_distances(embeddings: np.ndarray, indicator: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Inter/intra-class distance and ratio for each row of ``weights`` (B, n); NaN where a class is empty."""
    x = np.asarray(embeddings, dtype=np.float64)
    y = indicator.astype(np.float64)
    w = weights.astype(np.float64)
    counts = w @ y  # (B, C)
    complete = (counts > 0).all(axis=1)
    safe_counts = np.where(counts > 0, counts, 1.0)
    centroids = np.einsum("bn,nc,nd->bcd", w, y, x, optimize=True) / safe_counts[:, :, None]
    squared_norms = np.einsum("bcd,bcd->bc", centroids, centroids)
    gram = np.einsum("bcd,bed->bce", centroids, centroids)
    between = np.sqrt(np.clip(squared_norms[:, :, None] + squared_norms[:, None, :] - 2 * gram, 0.0, None))
    upper = np.triu_indices(y.shape[1], k=1)
    inter = between[:, upper[0], upper[1]].mean(axis=1)
    x_norms = np.einsum("nd,nd->n", x, x)
    to_centroid = np.sqrt(np.clip(x_norms[None, :, None] - 2 * np.einsum("nd,bcd->bnc", x, centroids, optimize=True) + squared_norms[:, None, :], 0.0, None))
    intra_per_class = np.einsum("bn,nc,bnc->bc", w, y, to_centroid, optimize=True) / safe_counts
    intra = intra_per_class.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = inter / intra
    nan = np.full(len(w), np.nan)
    return {
        "inter_class_distance": np.where(complete, inter, nan),
        "intra_class_distance": np.where(complete, intra, nan),
        "distance_ratio": np.where(complete & (intra > 0), ratio, nan),
    }
