"""Metrics of the multi-label study (seeds ``000_*`` / ``001_*``), with bootstrap confidence intervals.

Three families of numbers are computed for one setting (zero-shot, linear probe, fine-tuning) on the
test split of a manifest:

* **Embedding space** (from an embedding table, no model): inter- and intra-class distances, their ratio,
  silhouette, Davies-Bouldin and Fisher ratio, :mod:`vlmprobe.multilabel.separation` says how.

* **Classification** from per-label scores and 0/1 decisions (scikit-learn's functions): F1 (macro:
  unweighted mean of per-label F1; micro: from pooled counts; samples: mean of per-sample F1),
  precision and recall (macro), exact match (subset accuracy), Hamming loss, LRAP, coverage error,
  label ranking loss, ROC-AUC and average precision (macro over the labels where they are defined, and
  micro), per-label precision / recall / F1 / support / ROC-AUC / AP, and the number of labels predicted
  per sample beside the true number (over-prediction shows as ``predicted_labels_per_sample`` far above
  ``true_labels_per_sample``). Zero-division (a label never predicted) counts as 0, scikit-learn's
  ``zero_division=0``.

  Multi-class data use the same code on one-hot matrices (one predicted label per sample): exact match
  is then accuracy, micro F1 equals accuracy, LRAP is the mean reciprocal rank of the true class.

* **Bootstrap intervals** for every metric in :data:`HEADLINE`: ``n_resamples`` resamples of the test
  samples with replacement (seeded, so every setting of a dataset sees the *same* resamples), basic
  (reverse-percentile) intervals (:func:`bootstrap_intervals` says why not plain percentiles or BCa).
  A resample where a metric is undefined (a label without positives for macro F1 / AP, without positives
  or negatives for ROC-AUC, a class without samples for the distances) is skipped for that metric, and
  ``n_valid`` says how many resamples counted. Under protocol ``sadman2025`` each test sample belongs to ONE
  class for the distances, and an ordinary resample misses a rare one most of the time (IU-Xray's test split
  has classes of 1-3 samples), so the resamples that remain would be a biased remainder: there the distances
  are resampled *within* the classes (each class keeps its size, :func:`vlmprobe.multilabel.protocols.
  stratified_bootstrap_weights`), every resample counts, and the interval says so (``resampling``).

  For speed a resample is represented by its multiplicity weights and every metric is evaluated for a
  block of resamples at once in NumPy (:func:`weighted_metrics`); the tests check these against
  scikit-learn (with ``sample_weight``) on resamples, and :func:`evaluate` re-checks the unit-weight
  value against the scikit-learn point estimate on every call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.manifest import label_matrix
from vlmprobe.formats.predictions import read_predictions
from vlmprobe.multilabel.separation import class_distances, l2_normalise, separation_scores, weighted_distances
from vlmprobe.stats import bootstrap_weights

log = logging.getLogger(__name__)

DIRECTIONS: dict[str, int] = {
    # +1: higher is better, -1: lower is better, 0: descriptive
    "inter_class_distance": 1,
    "intra_class_distance": -1,
    "distance_ratio": 1,
    "inter_class_distance_l2": 1,
    "intra_class_distance_l2": -1,
    "distance_ratio_l2": 1,
    "silhouette": 1,
    "davies_bouldin": -1,
    "fisher_ratio": 1,
    "f1_macro": 1,
    "f1_micro": 1,
    "f1_samples": 1,
    "precision_macro": 1,
    "recall_macro": 1,
    "exact_match": 1,
    "hamming_loss": -1,
    "lrap": 1,
    "coverage_error": -1,
    "label_ranking_loss": -1,
    "roc_auc_macro": 1,
    "roc_auc_micro": 1,
    "average_precision_macro": 1,
    "average_precision_micro": 1,
    "predicted_labels_per_sample": 0,
    "true_labels_per_sample": 0,
    "wall_time_s": -1,
}

HEADLINE: tuple[str, ...] = (
    "inter_class_distance",
    "intra_class_distance",
    "distance_ratio",
    "f1_macro",
    "f1_micro",
    "f1_samples",
    "precision_macro",
    "recall_macro",
    "exact_match",
    "hamming_loss",
    "lrap",
    "coverage_error",
    "label_ranking_loss",
    "roc_auc_macro",
    "roc_auc_micro",
    "average_precision_macro",
    "average_precision_micro",
    "predicted_labels_per_sample",
)
"""Metrics given a bootstrap confidence interval."""

_CHECK_TOLERANCE = 1e-6


# ------------------------------------------------------------------------------------------------
# Classification (point estimates: scikit-learn)
# ------------------------------------------------------------------------------------------------


def defined_labels(indicator: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels with >= 1 positive: AP defined, labels with positives and negatives: ROC-AUC defined)."""
    positives = indicator.sum(axis=0)
    has_positive = positives > 0
    return has_positive, has_positive & (positives < indicator.shape[0])


def classification_metrics(indicator: np.ndarray, scores: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Every classification metric of the study for one setting, by scikit-learn."""
    from sklearn import metrics as m

    y, s, p = indicator.astype(int), np.asarray(scores, dtype=np.float64), predicted.astype(int)
    ap_labels, auc_labels = defined_labels(indicator)
    result: dict[str, Any] = {
        "f1_macro": m.f1_score(y, p, average="macro", zero_division=0),
        "f1_micro": m.f1_score(y, p, average="micro", zero_division=0),
        "f1_samples": m.f1_score(y, p, average="samples", zero_division=0),
        "precision_macro": m.precision_score(y, p, average="macro", zero_division=0),
        "recall_macro": m.recall_score(y, p, average="macro", zero_division=0),
        "exact_match": m.accuracy_score(y, p),
        "hamming_loss": m.hamming_loss(y, p),
        "lrap": m.label_ranking_average_precision_score(y, s),
        "coverage_error": m.coverage_error(y, s),
        "label_ranking_loss": m.label_ranking_loss(y, s),
        "roc_auc_macro": m.roc_auc_score(y[:, auc_labels], s[:, auc_labels], average="macro") if auc_labels.any() else None,
        "roc_auc_micro": m.roc_auc_score(y, s, average="micro") if 0 < y.sum() < y.size else None,
        "average_precision_macro": m.average_precision_score(y[:, ap_labels], s[:, ap_labels], average="macro") if ap_labels.any() else None,
        "average_precision_micro": m.average_precision_score(y, s, average="micro") if y.sum() > 0 else None,
        "predicted_labels_per_sample": float(p.sum(axis=1).mean()),
        "true_labels_per_sample": float(y.sum(axis=1).mean()),
        "roc_auc_n_labels": int(auc_labels.sum()),
    }
    return {key: (float(value) if isinstance(value, (float, np.floating)) else value) for key, value in result.items()}


def per_label_metrics(indicator: np.ndarray, scores: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    from sklearn import metrics as m

    y, s, p = indicator.astype(int), np.asarray(scores, dtype=np.float64), predicted.astype(int)
    precision, recall, f1, support = m.precision_recall_fscore_support(y, p, average=None, zero_division=0)
    ap_labels, auc_labels = defined_labels(indicator)
    rows = []
    for c, name in enumerate(classes):
        rows.append(
            {
                "label": name,
                "support": int(support[c]),
                "prevalence": float(y[:, c].mean()),
                "predicted_positive_rate": float(p[:, c].mean()),
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "roc_auc": float(m.roc_auc_score(y[:, c], s[:, c])) if auc_labels[c] else None,
                "average_precision": float(m.average_precision_score(y[:, c], s[:, c])) if ap_labels[c] else None,
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------
# Weighted (bootstrap) versions, vectorised over a block of resamples
# ------------------------------------------------------------------------------------------------


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def per_sample_ranking(indicator: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample LRAP, coverage and ranking loss: scikit-learn's values are their means (ties as there)."""
    y = indicator.astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_labels = y.shape[1]
    n_true = y.sum(axis=1)
    at_least = s[:, None, :] >= s[:, :, None]  # [i, j, k]: label k scored at least as high as label j
    rank = at_least.sum(axis=2)
    true_above = (at_least & y[:, None, :]).sum(axis=2)
    trivial = (n_true == 0) | (n_true == n_labels)
    lrap = np.where(trivial, 1.0, _divide((true_above / rank * y).sum(axis=1), n_true))
    lowest_true = np.where(y, s, np.inf).min(axis=1)
    coverage = np.where(n_true == 0, 0.0, (s >= lowest_true[:, None]).sum(axis=1))
    # pairs (true j, false k) with s_k >= s_j: ties count as mis-ordered, as in scikit-learn
    misordered = (at_least & y[:, :, None] & ~y[:, None, :]).sum(axis=(1, 2))
    ranking_loss = np.where(trivial, 0.0, _divide(misordered, n_true * (n_labels - n_true)))
    return {"lrap": lrap, "coverage_error": coverage, "label_ranking_loss": ranking_loss}


def _tie_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by descending score and the start of each group of equal scores in that order."""
    order = np.argsort(-scores, kind="mergesort")
    ordered = scores[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ordered)) + 1])
    return order, starts


def weighted_auc_ap(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision of one binary problem for each row of ``weights`` (B, n).

    Matches ``roc_auc_score`` / ``average_precision_score`` with ``sample_weight``: AUC is the weighted
    Mann-Whitney statistic (ties count one half), AP the sum over distinct thresholds of recall gain
    times precision. NaN where undefined (no positive, or for AUC no negative, weight).
    """
    order, starts = _tie_groups(np.asarray(scores, dtype=np.float64))
    pos = positive[order].astype(np.float64)
    w = weights[:, order].astype(np.float64)
    group_pos = np.add.reduceat(w * pos, starts, axis=1)  # (B, G), groups in descending score
    group_neg = np.add.reduceat(w * (1.0 - pos), starts, axis=1)
    total_pos = group_pos.sum(axis=1)
    total_neg = group_neg.sum(axis=1)
    neg_below = total_neg[:, None] - np.cumsum(group_neg, axis=1)
    auc_numerator = (group_pos * (neg_below + 0.5 * group_neg)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.where((total_pos > 0) & (total_neg > 0), auc_numerator / (total_pos * total_neg), np.nan)
    true_pos = np.cumsum(group_pos, axis=1)
    predicted_pos = true_pos + np.cumsum(group_neg, axis=1)
    precision = _divide(true_pos, predicted_pos)
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = np.where(total_pos > 0, (group_pos * precision).sum(axis=1) / total_pos, np.nan)
    return auc, ap


def weighted_classification(
    indicator: np.ndarray, scores: np.ndarray, predicted: np.ndarray, weights: np.ndarray, ranking: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """The classification metrics of :data:`HEADLINE` for each row of ``weights`` (B, n); NaN = undefined."""
    y = indicator.astype(np.float64)
    p = predicted.astype(np.float64)
    w = weights.astype(np.float64)
    total = w.sum(axis=1)
    n_labels = y.shape[1]
    true_count = w @ y  # (B, C) weighted positives per label
    pred_count = w @ p
    true_pos = w @ (y * p)
    needs_positive = indicator.any(axis=0)  # labels that have positives in the full test set
    positives_kept = (true_count[:, needs_positive] > 0).all(axis=1)
    per_label_f1 = _divide(2 * true_pos, true_count + pred_count)
    out: dict[str, np.ndarray] = {
        "f1_macro": np.where(positives_kept, per_label_f1.mean(axis=1), np.nan),
        "precision_macro": np.where(positives_kept, _divide(true_pos, pred_count).mean(axis=1), np.nan),
        "recall_macro": np.where(positives_kept, _divide(true_pos, true_count).mean(axis=1), np.nan),
        "f1_micro": _divide(2 * true_pos.sum(axis=1), true_count.sum(axis=1) + pred_count.sum(axis=1)),
    }
    per_sample_f1 = _divide(2 * (y * p).sum(axis=1), y.sum(axis=1) + p.sum(axis=1))
    out["f1_samples"] = (w @ per_sample_f1) / total
    out["exact_match"] = (w @ (y == p).all(axis=1).astype(np.float64)) / total
    out["hamming_loss"] = (w @ (y != p).mean(axis=1)) / total
    out["predicted_labels_per_sample"] = (w @ p.sum(axis=1)) / total
    ranking = ranking if ranking is not None else per_sample_ranking(indicator, scores)
    for name, values in ranking.items():
        out[name] = (w @ values) / total
    ap_labels, auc_labels = defined_labels(indicator)
    aucs, aps = [], []
    for c in range(n_labels):
        auc, ap = weighted_auc_ap(indicator[:, c], scores[:, c], w)
        if auc_labels[c]:
            aucs.append(auc)
        if ap_labels[c]:
            aps.append(ap)
    # a label undefined in a resample makes the macro mean undefined there (NaN propagates)
    out["roc_auc_macro"] = np.mean(aucs, axis=0) if aucs else np.full(len(w), np.nan)
    out["average_precision_macro"] = np.mean(aps, axis=0) if aps else np.full(len(w), np.nan)
    flat_weights = np.repeat(w, n_labels, axis=1)
    out["roc_auc_micro"], out["average_precision_micro"] = weighted_auc_ap(indicator.reshape(-1), np.asarray(scores, np.float64).reshape(-1), flat_weights)
    return out


def weighted_metrics(indicator, scores, predicted, embeddings, weights, ranking=None, distance_indicator=None) -> dict[str, np.ndarray]:
    """Every :data:`HEADLINE` metric for each resample (row of ``weights``); the distances group samples by
    ``distance_indicator`` when given (one class per sample: protocol sadman2025), else by their labels."""
    out = weighted_classification(indicator, scores, predicted, weights, ranking)
    if embeddings is not None:
        out.update(weighted_distances(embeddings, indicator if distance_indicator is None else distance_indicator, weights))
    return out


BOUNDS: dict[str, tuple[float, float]] = {
    name: (0.0, 1.0)
    for name in (
        "f1_macro",
        "f1_micro",
        "f1_samples",
        "precision_macro",
        "recall_macro",
        "exact_match",
        "hamming_loss",
        "lrap",
        "label_ranking_loss",
        "roc_auc_macro",
        "roc_auc_micro",
        "average_precision_macro",
        "average_precision_micro",
    )
} | {"inter_class_distance": (0.0, math.inf), "intra_class_distance": (0.0, math.inf), "distance_ratio": (0.0, math.inf)}
"""Natural ranges: interval ends are clipped to them (coverage error and label counts: [0, number of labels])."""
DISTANCES = ("inter_class_distance", "intra_class_distance", "distance_ratio")


def bootstrap_intervals(
    indicator: np.ndarray,
    scores: np.ndarray,
    predicted: np.ndarray,
    embeddings: np.ndarray | None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    block: int | None = None,
    distance_indicator: np.ndarray | None = None,
    distance_strata: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """Basic (reverse-percentile) bootstrap intervals of every :data:`HEADLINE` metric.

    ``{name: {low, high, n_valid, n_resamples, bias}}`` with ``low = 2 t - q_hi`` and ``high = 2 t - q_lo``,
    ``t`` the estimate and ``q`` the quantiles of the resampled values; ``bias`` is their mean minus ``t``.

    Why not plain percentiles: the plug-in class distances are biased in small classes (a centroid of
    few noisy samples sits far from the others and close to its own samples), and resampling doubles
    that bias, so percentile intervals sit beside the truth. In a simulation with a known population
    (120 test samples, 6 labels with prevalence 6-40 %), percentile intervals covered the true
    inter-/intra-class distance and ratio in 0-6 % of 80 replicates and BCa in 1-14 % (its correction
    needs quantiles beyond the resampled range), while basic intervals covered 95-99 %; for F1, exact
    match, LRAP, coverage and ROC-AUC all three covered 90-96 %, and for macro AP basic 89 % against
    75 % for percentiles. A basic interval may exclude the estimate itself: that says the estimate is
    biased (see ``bias``), not that the interval is wrong.

    ``distance_strata`` (a class per sample, protocol sadman2025): the distance metrics are resampled within
    those classes instead, so no resample loses a class. Wherever a metric's resamples are not all defined,
    ``n_valid`` says how many counted; a distance whose resamples are not all defined gets no interval
    (``low`` / ``high`` None, ``note`` "not estimable"): the defined ones are those that kept every class, a
    biased remainder.
    """
    from vlmprobe.multilabel.protocols import stratified_bootstrap_weights

    if n_resamples <= 0:
        return {}
    n, n_labels = indicator.shape
    ranking = per_sample_ranking(indicator, scores)
    if block is None:
        # keep the (block, n, C) and (block, C, d) intermediates to ~64 MB each
        d = embeddings.shape[1] if embeddings is not None else 1
        block = max(1, int(8e6 // max(1, n * n_labels * 2, n_labels * d)))

    def evaluate_rows(weights: np.ndarray) -> dict[str, np.ndarray]:
        values: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(weights), block):
            chunk = weighted_metrics(indicator, scores, predicted, embeddings, weights[start : start + block], ranking, distance_indicator)
            for name, array in chunk.items():
                values.setdefault(name, []).append(array)
        return {name: np.concatenate(arrays) for name, arrays in values.items()}

    point = evaluate_rows(np.ones((1, n), dtype=np.int32))
    resampled = evaluate_rows(bootstrap_weights(n, n_resamples, seed))
    if distance_strata is not None and embeddings is not None:
        within = evaluate_rows(stratified_bootstrap_weights(distance_strata, n_resamples, seed))
        resampled.update({name: within[name] for name in DISTANCES})
    tail = (1.0 - confidence) / 2.0
    intervals = {}
    for name in HEADLINE:
        if name not in resampled:
            continue
        values = resampled[name]
        valid = values[np.isfinite(values)]
        estimate = float(point[name][0])
        entry: dict[str, Any] = {"n_valid": int(valid.size), "n_resamples": int(n_resamples), "low": None, "high": None, "bias": None}
        if name in DISTANCES and distance_strata is not None:
            entry["resampling"] = "within the single-class groups (each keeps its size)"
        if name in DISTANCES and valid.size < n_resamples:
            entry["note"] = f"not estimable: {n_resamples - valid.size} of {n_resamples} resamples missed a class"
        elif valid.size and math.isfinite(estimate):
            q_low, q_high = np.quantile(valid, [tail, 1.0 - tail])
            lower, upper = BOUNDS.get(name, (0.0, float(n_labels)))
            entry.update(
                low=float(np.clip(2 * estimate - q_high, lower, upper)),
                high=float(np.clip(2 * estimate - q_low, lower, upper)),
                bias=float(valid.mean() - estimate),
            )
        intervals[name] = entry
    return intervals


# ------------------------------------------------------------------------------------------------
# One setting, end to end
# ------------------------------------------------------------------------------------------------


def evaluate(
    indicator: np.ndarray,
    scores: np.ndarray,
    predicted: np.ndarray,
    classes: Sequence[str],
    embeddings: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    protocol: str = "vlmprobe",
    priority: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Point estimates, per-label table and bootstrap intervals of one setting on its test samples.

    ``protocol: sadman2025`` computes the embedding-space scores with one class per sample (the first
    positive in ``priority`` order, :mod:`vlmprobe.multilabel.protocols`); the classification metrics are the same
    functions for both protocols (what differs there is the scores and decisions a setting wrote).

    BLAS runs single-threaded: the bootstrap's matrix products are small and many, where thread
    synchronisation costs more than it saves.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _evaluate(indicator, scores, predicted, classes, embeddings, n_resamples, seed, confidence, protocol, priority)


def _evaluate(indicator, scores, predicted, classes, embeddings, n_resamples, seed, confidence, protocol="vlmprobe", priority=None) -> dict[str, Any]:
    from vlmprobe.multilabel.protocols import (
        check_protocol,
        first_positive,
        single_class_distances,
        single_class_indicator,
        single_class_separation,
    )

    indicator = np.asarray(indicator, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=bool)
    if not (indicator.shape == scores.shape == predicted.shape) or indicator.shape[1] != len(classes):
        raise ValueError(f"shapes differ: labels {indicator.shape}, scores {scores.shape}, decisions {predicted.shape}, {len(classes)} classes")
    if not np.isfinite(scores).all():
        raise VlmprobeError("The scores of this setting contain NaN or Inf.", "re-run the setting; for fine-tuning on GPU try `precision: fp32`.")
    metrics = classification_metrics(indicator, scores, predicted)
    distance_indicator = groups = None
    if embeddings is not None and check_protocol(protocol) == "sadman2025":
        embeddings = np.asarray(embeddings, dtype=np.float64)
        groups = first_positive(indicator, priority)
        distance_indicator = single_class_indicator(indicator, priority)
        metrics.update(single_class_distances(embeddings, groups))
        normalised = class_distances(l2_normalise(embeddings), distance_indicator)
        metrics.update({f"{key}_l2": value for key, value in normalised.items()})
        metrics.update(single_class_separation(embeddings, groups))
    elif embeddings is not None:
        embeddings = np.asarray(embeddings, dtype=np.float64)
        metrics.update(class_distances(embeddings, indicator))
        normalised = class_distances(l2_normalise(embeddings), indicator)
        metrics.update({f"{key}_l2": value for key, value in normalised.items()})
        metrics.update(separation_scores(embeddings, indicator))
    _check_weighted_against_point(indicator, scores, predicted, embeddings, metrics, distance_indicator)
    return {
        "metrics": metrics,
        "per_label": per_label_metrics(indicator, scores, predicted, classes),
        "confidence_intervals": bootstrap_intervals(
            indicator, scores, predicted, embeddings, n_resamples, seed, confidence, distance_indicator=distance_indicator, distance_strata=groups
        ),
        "bootstrap": {"n_resamples": int(n_resamples), "seed": int(seed), "confidence": float(confidence), "method": "basic", "unit": "test sample"},
    }


def _check_weighted_against_point(indicator, scores, predicted, embeddings, metrics, distance_indicator=None) -> None:
    """The fast bootstrap code at unit weights must reproduce the scikit-learn point estimates."""
    unit = weighted_metrics(indicator, scores, predicted, embeddings, np.ones((1, indicator.shape[0])), distance_indicator=distance_indicator)
    for name, array in unit.items():
        expected, got = metrics.get(name), float(array[0])
        if expected is None:
            continue
        if not math.isclose(expected, got, rel_tol=_CHECK_TOLERANCE, abs_tol=_CHECK_TOLERANCE):
            raise AssertionError(f"bootstrap implementation of {name} gives {got} at unit weights, scikit-learn {expected}")


# ------------------------------------------------------------------------------------------------
# One setting, from its files
# ------------------------------------------------------------------------------------------------


def evaluate_files(
    manifest_path: str | Path,
    predictions_path: str | Path,
    embedding_path: str | Path,
    expected_spec: dict[str, Any] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    protocol: str | None = None,
) -> dict[str, Any]:
    """Metrics of one setting from its predictions, the manifest (labels) and an embedding table.

    ``protocol`` (None: the one recorded in the predictions, which the workflow uses) chooses how the
    embedding-space scores group the samples; given, it must be the one that wrote the predictions.

    The predictions must cover exactly the manifest's test samples; the embedding rows of those samples
    give the embedding-space metrics.
    """
    from vlmprobe.formats.embeddings import aligned

    manifest, matrix, manifest_meta, embedding_meta = aligned(manifest_path, embedding_path, expected_spec)
    predictions = read_predictions(predictions_path)
    classes = list(manifest_meta["classes"])
    if predictions.classes != classes:
        raise VlmprobeError(
            f"Predictions {str(predictions_path)!r} are for classes {predictions.classes}, the manifest has {classes}.",
            "delete the predictions and re-run (the dataset changed after they were made).",
        )
    test_rows = np.flatnonzero(np.asarray(manifest["split"].to_list()) == "test")
    test_ids = [manifest["sample_id"][int(row)] for row in test_rows]
    if predictions.sample_ids != test_ids:
        raise VlmprobeError(
            f"Predictions {str(predictions_path)!r} do not cover the test split of {str(manifest_path)!r} in order "
            f"({len(predictions.sample_ids)} rows, {len(test_ids)} test samples).",
            "delete the predictions and re-run.",
        )
    written_by = predictions.metadata.get("protocol", "vlmprobe")
    protocol = written_by if protocol is None else protocol
    if written_by != protocol:
        raise VlmprobeError(
            f"Predictions {str(predictions_path)!r} were made with protocol {written_by!r}, the metrics job runs {protocol!r}.",
            "delete the predictions and re-run (`multilabel: protocol:` changed after they were made).",
        )
    from vlmprobe.multilabel.protocols import class_priority

    labels = manifest["labels"].to_list()
    indicator = label_matrix([labels[int(row)] for row in test_rows], classes)
    priority = class_priority(classes, manifest_meta.get("spec"))
    result = evaluate(indicator, predictions.scores, predictions.predicted, classes, matrix[test_rows], n_resamples, seed, confidence, protocol, priority)
    if predictions.metadata.get("wall_time_s") is not None:
        result["metrics"]["wall_time_s"] = float(predictions.metadata["wall_time_s"])
    result.update(
        classes=classes,
        multilabel=bool(manifest_meta.get("multilabel")),
        n_test=len(test_ids),
        n_train=int(len(manifest) - len(test_ids)),
        setting=predictions.metadata.get("setting"),
        protocol=protocol,
        split_protocol=manifest_meta.get("split_protocol", "vlmprobe"),
        decision=predictions.metadata.get("decision"),
        score_kind=predictions.metadata.get("score_kind"),
        details=predictions.metadata.get("details", {}),
        embedding_source={"table": str(embedding_path), "finetuned": bool(embedding_meta.get("finetuned", False)), "model_id": embedding_meta.get("model_id")},
    )
    return json_safe(result)


def json_safe(value: Any) -> Any:
    """NaN / Inf -> None and NumPy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
