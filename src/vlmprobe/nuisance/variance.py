"""Variance shares: how much of an embedding's variance a categorical target explains, and linear CKA.

Computed on all rows with a value, train and test: a description of the table, not a prediction.
``r2``: the share of the embedding's total variance (centred, in its own units - no standardisation, a
dimension counts by its variance) explained by a least-squares linear map from the target's one-hot
coding; for a one-hot coding this is exactly the between-class sum of squares over the total sum of
squares (multivariate eta squared), so an embedding built as ``class mean + noise`` has ``r2`` =
between-class variance / total variance. ``r2_adjusted`` = ``1 - (1 - r2) (n - 1) / (n - p - 1)`` (``p``:
rank of the centred coding, ``K - 1`` for one-hot), whose expectation over random labellings is about 0,
as ``r2``'s is ``p / (n - 1)``. For a nuisance, ``r2_unique`` = R²(diagnosis ⊕ nuisance) − R²(diagnosis)
on the same rows: the variance the nuisance explains beyond the diagnosis (a shortcut correlated with the
diagnosis shares its variance with it; an independent one adds its own). ``cka``: linear CKA (Kornblith
et al., 2019) between the centred embedding and the centred coding, a scale-free similarity in [0, 1]
beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _centred_basis(coding: np.ndarray) -> np.ndarray:
    """An orthonormal basis (n, p) of the column space of the centred ``coding`` (p = its rank)."""
    coding = np.asarray(coding, dtype=np.float64)
    if coding.ndim == 1:
        coding = coding[:, None]
    centred = coding - coding.mean(axis=0)
    if centred.shape[1] == 0:
        return np.zeros((coding.shape[0], 0))
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return np.zeros((coding.shape[0], 0))
    keep = s > s[0] * max(centred.shape) * np.finfo(np.float64).eps
    return u[:, keep]


def one_hot(values: Sequence[Any]) -> np.ndarray:
    """``(n, K)`` 0/1 coding of categorical ``values`` (categories in sorted order)."""
    categories = sorted(set(values))
    index = {value: i for i, value in enumerate(categories)}
    coding = np.zeros((len(values), len(categories)))
    coding[np.arange(len(values)), [index[value] for value in values]] = 1.0
    return coding


def variance_share(x: np.ndarray, coding: np.ndarray) -> tuple[float, int]:
    """``(r2, p)``: share of the centred ``x``'s total variance explained by a linear map from ``coding``.

    ``r2 = |Q^T Xc|_F^2 / |Xc|_F^2`` with ``Q`` an orthonormal basis of the centred coding's columns (rank ``p``);
    for a one-hot coding this is the between-class over the total sum of squares.
    """
    xc = np.asarray(x, dtype=np.float64)
    xc = xc - xc.mean(axis=0)
    total = float(np.einsum("ij,ij->", xc, xc))
    basis = _centred_basis(coding)
    if total == 0.0 or basis.shape[1] == 0:
        return 0.0, int(basis.shape[1])
    explained = basis.T @ xc
    return float(np.einsum("ij,ij->", explained, explained) / total), int(basis.shape[1])


def adjusted_r2(r2: float, n: int, p: int) -> float | None:
    """``1 - (1 - r2) (n - 1) / (n - p - 1)``: about 0 in expectation for an unrelated coding of rank ``p``."""
    if n - p - 1 <= 0:
        return None
    return float(1.0 - (1.0 - r2) * (n - 1) / (n - p - 1))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al., 2019) of two representations of the same rows, centred here.

    ``|Yc^T Xc|_F^2 / (|Xc^T Xc|_F |Yc^T Yc|_F)``; the Gram norms are computed on the smaller side.
    """
    xc = np.asarray(x, dtype=np.float64)
    yc = np.asarray(y, dtype=np.float64)
    if yc.ndim == 1:
        yc = yc[:, None]
    xc = xc - xc.mean(axis=0)
    yc = yc - yc.mean(axis=0)

    def gram_norm(m: np.ndarray) -> float:
        gram = m.T @ m if m.shape[1] <= m.shape[0] else m @ m.T
        return float(np.linalg.norm(gram))

    denominator = gram_norm(xc) * gram_norm(yc)
    if denominator == 0.0:
        return 0.0
    cross = yc.T @ xc
    return float(np.einsum("ij,ij->", cross, cross) / denominator)
