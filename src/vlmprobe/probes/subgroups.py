"""Subgroup gaps: a probe's test accuracy and balanced accuracy per value of a ``meta_*`` attribute, the worst
group and the gap, with a bootstrap interval (the audit FairMedFM runs on medical foundation models).

For one attribute: every value with at least ``min_group_size`` test rows is a group (smaller ones are listed
but not ranked: their accuracy is noise); numeric attributes with more than ``max_levels`` values (age) are cut
into ``bins`` quantile bins first; rows without a value are left out. Per metric, the *worst* and the *best*
group are the ones with the lowest and highest value on the test set, and the gap is best − worst. Its
interval is a percentile bootstrap of the test rows (:func:`vlmprobe.stats.bootstrap_weights`) with the two
groups' identities held fixed, so a gap that is only noise has an interval that reaches 0 (or below) and a
real one does not. Each resample is one matrix product of the multiplicities with per-(group, class) indicators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MISSING = {"", "none", "nan", "null"}


def attribute_groups(values: Sequence[Any], max_levels: int = 20, bins: int = 4) -> tuple[list[str | None], str]:
    """The group label of every row (None: no value) and how it was made (``values`` or ``quantile bins``)."""
    text = [None if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip().lower() in MISSING else str(v) for v in values]
    present = [v for v in text if v is not None]
    if len(set(present)) <= max_levels:
        return text, "values"
    try:
        numbers = np.asarray([float(v) if v is not None else np.nan for v in text])
    except ValueError:
        return text, "values"  # many categories: reported as they are (the small ones are not ranked)
    edges = np.unique(np.nanquantile(numbers, np.linspace(0, 1, bins + 1)))
    cut = np.clip(np.searchsorted(edges, numbers, side="right") - 1, 0, edges.size - 2)
    labels = [f"[{edges[i]:g}, {edges[i + 1]:g}{']' if i == edges.size - 2 else ')'}" for i in range(edges.size - 1)]
    return [None if np.isnan(n) else labels[int(c)] for n, c in zip(numbers, cut)], f"{edges.size - 1} quantile bins"


def subgroup_gaps(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: Sequence[str | None],
    n_classes: int,
    *,
    min_group_size: int = 10,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Per group: n, accuracy, balanced accuracy; per metric: worst and best group, gap and its interval."""
    from vlmprobe.stats import bootstrap_weights

    kept = np.asarray([g is not None for g in groups])
    y_true = np.asarray(y_true, dtype=np.int64)[kept]
    y_pred = np.asarray(y_pred, dtype=np.int64)[kept]
    labels = [g for g in groups if g is not None]
    names = sorted(set(labels))
    code = np.asarray([names.index(g) for g in labels], dtype=np.int64) if labels else np.zeros(0, np.int64)
    n, n_groups = y_true.size, len(names)
    correct = (y_true == y_pred).astype(np.float64)
    in_group = (code[:, None] == np.arange(n_groups)[None, :]).astype(np.float64)  # (n, G)
    in_cell = in_group[:, :, None] * (y_true[:, None, None] == np.arange(n_classes)[None, None, :])  # (n, G, C)
    features = np.concatenate([in_group, in_group * correct[:, None], in_cell.reshape(n, -1), (in_cell * correct[:, None, None]).reshape(n, -1)], axis=1)

    def metrics(sums: np.ndarray) -> dict[str, np.ndarray]:
        """Per-group accuracy and balanced accuracy from column sums (R, q) of the features."""
        r = sums.shape[0]
        size, right = sums[:, :n_groups], sums[:, n_groups : 2 * n_groups]
        cells = sums[:, 2 * n_groups : 2 * n_groups + n_groups * n_classes].reshape(r, n_groups, n_classes)
        cells_right = sums[:, 2 * n_groups + n_groups * n_classes :].reshape(r, n_groups, n_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = right / size
            recall = cells_right / cells
            balanced = np.nanmean(np.where(cells > 0, recall, np.nan), axis=2) if n_classes else np.full((r, n_groups), np.nan)
        return {"accuracy": accuracy, "balanced_accuracy": balanced}

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a group that lost a class in a resample
        observed = metrics(features.sum(axis=0)[None, :])
        sizes = in_group.sum(axis=0)
        ranked = sizes >= min_group_size
        result: dict[str, Any] = {
            "groups": [
                {"group": name, "n": int(sizes[g]), "ranked": bool(ranked[g]), **{m: float(observed[m][0, g]) for m in observed}}
                for g, name in enumerate(names)
            ],
            "n_rows": int(n),
            "min_group_size": int(min_group_size),
        }
        if ranked.sum() < 2:
            result["gaps"] = {}
            result["note"] = f"fewer than two groups with >= {min_group_size} test rows"
            return result
        weights = bootstrap_weights(n, n_resamples, seed).astype(np.float64) if n_resamples > 0 else np.zeros((0, n))
        resampled = metrics(weights @ features) if n_resamples > 0 else None
        gaps = {}
        for metric, values in observed.items():
            value = np.where(ranked, values[0], np.nan)
            candidates = np.flatnonzero(np.isfinite(value))
            order = candidates[np.argsort(value[candidates], kind="stable")]
            worst, best = int(order[0]), int(order[-1])  # two different groups, also when all are tied
            gap = float(value[best] - value[worst])
            low = high = None
            if resampled is not None:
                boot = resampled[metric][:, best] - resampled[metric][:, worst]
                boot = boot[np.isfinite(boot)]
                if boot.size:
                    tail = (1.0 - confidence) / 2.0
                    low, high = (float(q) for q in np.quantile(boot, [tail, 1.0 - tail]))
            gaps[metric] = {"worst": names[worst], "worst_value": float(value[worst]), "best": names[best], "best_value": float(value[best]), "gap": gap, "low": low, "high": high}
    result["gaps"] = gaps
    return result
