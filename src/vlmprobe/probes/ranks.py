"""Rank stability: how much a dataset's model ranking changes from one probe to another.

For two probes' scores of the same models: Kendall's tau-b (:func:`scipy.stats.kendalltau`, ties counted as
neither concordant nor discordant) and the pairs of models that swap order (A above B under one probe, below
under the other). tau = 1: the same order; -1: reversed. With fewer than two models there is nothing to rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def swapped_pairs(models: Sequence[str], first: Sequence[float], second: Sequence[float]) -> list[tuple[str, str]]:
    """Pairs (a, b) with a strictly above b under ``first`` and strictly below under ``second``."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    upper = np.triu(np.ones((a.size, a.size), dtype=bool), 1)
    order_a = np.sign(a[:, None] - a[None, :])
    order_b = np.sign(b[:, None] - b[None, :])
    rows, columns = np.nonzero(upper & (order_a * order_b < 0))
    return [(models[i], models[j]) if order_a[i, j] > 0 else (models[j], models[i]) for i, j in zip(rows, columns)]


def rank_agreement(models: Sequence[str], first: Sequence[float], second: Sequence[float]) -> dict[str, Any]:
    """Kendall tau-b, its p (scipy's exact / asymptotic test), the number of pairs and the swapped pairs."""
    from scipy.stats import kendalltau

    keep = np.isfinite(np.asarray(first, dtype=np.float64)) & np.isfinite(np.asarray(second, dtype=np.float64))
    names = [m for m, k in zip(models, keep) if k]
    a = np.asarray(first, dtype=np.float64)[keep]
    b = np.asarray(second, dtype=np.float64)[keep]
    n_pairs = names.__len__() * (len(names) - 1) // 2
    if len(names) < 2:
        return {"n_models": len(names), "n_pairs": 0, "tau": None, "p_value": None, "swapped": []}
    result = kendalltau(a, b)
    tau = float(result.statistic) if np.isfinite(result.statistic) else None
    p_value = float(result.pvalue) if np.isfinite(result.pvalue) else None
    return {"n_models": len(names), "n_pairs": n_pairs, "tau": tau, "p_value": p_value, "swapped": [f"{x} > {y}" for x, y in swapped_pairs(names, a, b)]}
