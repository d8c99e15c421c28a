"""Paired comparisons: is model A really better than model B on this dataset, or is it test-set noise?

Every pair of models of a dataset is scored on the *same* test samples, so their difference is judged
with paired statistics (the samples both get right or both get wrong say nothing about which is better):

* **Effect.** The difference of the summary's own numbers. Linear probe: the poster's mean over the k
  fold models of the test accuracy / macro F1 (``results/summary/linear_probe.*``; the job checks that it
  reproduces them). Multi-label study: exact match, samples-F1 and macro F1 of one setting
  (``results/summary/multilabel.*``), each (model, setting) of a dataset being one entry.
* **Interval.** Paired bootstrap: ``n_resamples`` resamples of the test samples with replacement, the
  same resampled rows for both entries (and for all k fold models of each); the interval is the central
  ``confidence`` share of the resampled differences (percentile interval: for a difference of two
  accuracies, a linear statistic, the basic and percentile intervals coincide up to skew). The resamples
  are :func:`vlmprobe.stats.bootstrap_weights` (seeded by the config's ``seed``), the ones the
  multi-label study's intervals use, so every pair of a dataset sees the same resamples. The fold models
  are kept fixed: the interval is the uncertainty from the finite test set, which is what decides whether
  a difference measured on that test set is real; the spread from re-training (the fold models' std in
  the summary) is not in it.
* **Test.** A paired randomisation test of "A and B are exchangeable on every sample": each sample's
  predictions of A and B (all k fold predictions together) are swapped with probability 1/2.
  For a metric that is a mean of a per-sample score on a lattice -- accuracy (the fraction of the k fold
  models right on the sample, in steps of 1/k) and exact match -- the swap flips the sign of the
  per-sample difference, and the two-sided p is computed *exactly* (:func:`sign_flip_exact`, a
  convolution of binomials); with one prediction per sample (k = 1, exact match) that is exactly the
  exact binomial McNemar test (:func:`mcnemar_exact`). Macro F1 and samples-F1 are not on a lattice (macro
  F1 is not even a mean over samples): Monte Carlo with ``n_permutations`` swaps, ``p = (1 + #{|Δ*| >=
  |Δ|}) / (1 + n_permutations)`` (never 0). Identical predictions give Δ = 0 and p = 1.
* **Multiple comparisons.** Holm's step-down correction, family = all pairs of one dataset for one
  metric (one panel of the matrix figure; m = n(n-1)/2 tests for n entries); ``significant`` means the
  Holm-adjusted p is below ``alpha``. Datasets and metrics are separate families: they answer separate
  questions (this ranking on this dataset by this metric).

Everything is a matrix product: an entry's metric is a function of column sums of a per-sample feature
matrix ``F`` (n x q), so a bootstrap resample with multiplicities ``w`` is ``w @ F`` and a swap pattern
``s`` gives ``c_A + s @ (F_B - F_A)`` -- no resample is ever materialised.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError

log = logging.getLogger(__name__)

_TIE = 1e-9  # |Δ*| >= |Δ| - _TIE counts as "at least as extreme" (sums in another order differ in the last bits)
_BLOCK = 1000  # resamples / swap patterns per matrix product


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values: ``max_{j <= i} min(1, (m - j + 1) p_(j))`` in ascending order of p."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="mergesort")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p: ``min(1, 2 P(X <= min(b, c)))``, ``X ~ Binomial(b + c, 1/2)``.

    ``b``, ``c``: samples only A gets right, only B gets right.
    """
    from scipy.stats import binom

    n = int(b) + int(c)
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(int(b), int(c)), n, 0.5)))


def sign_flip_exact(steps: Sequence[int]) -> float:
    """Exact two-sided p of the paired sign-flip test on integer per-sample differences ``steps``.

    Under the null every sample's difference keeps or flips its sign with probability 1/2; ``p =
    P(|sum_i e_i |steps_i|| >= |sum_i steps_i|)``. The null distribution is the convolution over the
    distinct values ``v`` (with multiplicity ``m``) of ``v (2X - m)``, ``X ~ Binomial(m, 1/2)``. With
    steps in {-1, 0, 1} this is :func:`mcnemar_exact`.
    """
    from scipy.stats import binom

    steps = np.asarray(steps, dtype=np.int64)
    sizes = np.abs(steps[steps != 0])
    if sizes.size == 0:
        return 1.0
    observed = abs(int(steps.sum()))
    total = int(sizes.sum())
    distribution = np.zeros(2 * total + 1)  # index = sum + total
    distribution[total] = 1.0
    for value, count in zip(*np.unique(sizes, return_counts=True)):
        value, count = int(value), int(count)
        kernel = np.zeros(2 * value * count + 1)
        kernel[:: 2 * value] = binom.pmf(np.arange(count + 1), count, 0.5)
        distribution = np.convolve(distribution, kernel)[value * count : value * count + distribution.size]
    sums = np.arange(-total, total + 1)
    return float(min(1.0, distribution[np.abs(sums) >= observed].sum()))


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


# ------------------------------------------------------------------------------------------------
# Metrics as functions of column sums of per-sample features
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """``value(counts (R, q), total (R,)) -> (R,)``: the metric from column sums of the features.

    ``lattice``: the features are one per-sample score in steps of ``1 / lattice`` and the metric is its
    mean, so the exact sign-flip test applies (None: Monte Carlo swaps).
    """

    name: str
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    lattice: int | None = None


def _mean_value(counts: np.ndarray, total: np.ndarray) -> np.ndarray:
    return counts[:, 0] / total


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def single_label_features(labels: np.ndarray, folds: np.ndarray, n_classes: int) -> tuple[dict[str, np.ndarray], dict[str, Metric]]:
    """Features and metrics of the linear probe's k fold models: mean over folds of accuracy / macro F1.

    Macro F1 of one fold model is scikit-learn's default (the probe's): classes present in the true or
    predicted labels of the (resampled) test set, zero_division = 0; then the mean over the folds.
    """
    labels = np.asarray(labels, dtype=np.int64)
    folds = np.asarray(folds, dtype=np.int64)
    n, k = folds.shape
    correct = folds == labels[:, None]
    onehot_pred = folds[:, :, None] == np.arange(n_classes)[None, None, :]  # (n, k, C)
    onehot_true = labels[:, None] == np.arange(n_classes)[None, :]  # (n, C)
    true_pos = onehot_pred & onehot_true[:, None, :]
    features = {
        "accuracy": correct.mean(axis=1, keepdims=True),
        "macro_f1": np.concatenate(
            [true_pos.reshape(n, -1), onehot_pred.reshape(n, -1), onehot_true], axis=1
        ).astype(np.float64),
    }

    def macro_f1(counts: np.ndarray, total: np.ndarray) -> np.ndarray:
        r = counts.shape[0]
        tp = counts[:, : k * n_classes].reshape(r, k, n_classes)
        predicted = counts[:, k * n_classes : 2 * k * n_classes].reshape(r, k, n_classes)
        true = counts[:, 2 * k * n_classes :].reshape(r, 1, n_classes)
        present = (predicted + true) > 0
        f1 = _ratio(2 * tp, predicted + true)
        per_fold = (f1 * present).sum(axis=2) / np.maximum(present.sum(axis=2), 1)
        return per_fold.mean(axis=1)

    metrics = {"accuracy": Metric("accuracy", _mean_value, lattice=k), "macro_f1": Metric("macro_f1", macro_f1)}
    return features, metrics


def multilabel_features(indicator: np.ndarray, predicted: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Metric]]:
    """Features and metrics of one multi-label setting: exact match, samples-F1, macro F1 (as vlmprobe.multilabel.metrics).

    Macro F1 is the mean over all labels of ``2 TP / (#true + #predicted)`` (0 where both are 0:
    scikit-learn's zero_division = 0); a resample that loses every positive of a label that has positives
    in the test set is undefined for it (NaN, left out), as in the study's own intervals.
    """
    y = np.asarray(indicator, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    n_labels = y.shape[1]
    needs_positive = y.any(axis=0)
    per_sample_f1 = _ratio(2.0 * (y & p).sum(axis=1), y.sum(axis=1) + p.sum(axis=1))
    features = {
        "exact_match": (y == p).all(axis=1, keepdims=True).astype(np.float64),
        "f1_samples": per_sample_f1[:, None],
        "f1_macro": np.concatenate([y & p, p, y], axis=1).astype(np.float64),
    }

    def macro_f1(counts: np.ndarray, total: np.ndarray) -> np.ndarray:
        tp, pred, true = counts[:, :n_labels], counts[:, n_labels : 2 * n_labels], counts[:, 2 * n_labels :]
        kept = (true[:, needs_positive] > 0).all(axis=1)
        return np.where(kept, _ratio(2 * tp, true + pred).mean(axis=1), np.nan)

    metrics = {
        "exact_match": Metric("exact_match", _mean_value, lattice=1),
        "f1_samples": Metric("f1_samples", _mean_value),
        "f1_macro": Metric("f1_macro", macro_f1),
    }
    return features, metrics


# ------------------------------------------------------------------------------------------------
# One pair, and every pair of one dataset
# ------------------------------------------------------------------------------------------------


def point_value(metric: Metric, features: np.ndarray) -> float:
    return float(metric.value(features.sum(axis=0)[None, :], np.array([features.shape[0]], dtype=np.float64))[0])


def bootstrap_values(metric: Metric, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The metric on every resample (row of the multiplicity matrix ``weights``)."""
    out = []
    for start in range(0, len(weights), _BLOCK):
        w = weights[start : start + _BLOCK].astype(np.float64)
        out.append(metric.value(w @ features, w.sum(axis=1)))
    return np.concatenate(out) if out else np.zeros(0)


def _pair_seed(seed: int, *names: str) -> np.random.SeedSequence:
    """Swap patterns depend on the pair's names, not on its position (adding a model changes no other p)."""
    return np.random.SeedSequence(seed, spawn_key=(0x5A9, *(zlib.crc32(name.encode()) for name in names)))


def permutation_p(metric: Metric, features_a: np.ndarray, features_b: np.ndarray, n_permutations: int, seed: np.random.SeedSequence) -> float:
    """Monte Carlo paired swap test: ``(1 + #{|Δ*| >= |Δ|}) / (1 + n_permutations)``; 1 when A and B agree everywhere."""
    discordant = np.flatnonzero((features_a != features_b).any(axis=1))
    if discordant.size == 0 or n_permutations <= 0:
        return 1.0
    n = features_a.shape[0]
    counts_a, counts_b = features_a.sum(axis=0), features_b.sum(axis=0)
    total = np.array([float(n)])
    observed = abs(float(metric.value(counts_a[None], total)[0] - metric.value(counts_b[None], total)[0]))
    change = (features_b - features_a)[discordant]
    rng = np.random.default_rng(seed)
    extreme = 0
    valid = 0
    for start in range(0, n_permutations, _BLOCK):
        size = min(_BLOCK, n_permutations - start)
        swaps = rng.integers(0, 2, size=(size, discordant.size)).astype(np.float64)
        moved = swaps @ change
        totals = np.full(size, float(n))
        delta = metric.value(counts_a + moved, totals) - metric.value(counts_b - moved, totals)
        finite = np.isfinite(delta)
        valid += int(finite.sum())
        extreme += int((np.abs(delta[finite]) >= observed - _TIE).sum())
    return (1 + extreme) / (1 + valid)


@dataclass
class Entry:
    """One model (or model/setting) of a dataset: its per-metric features on the shared test samples."""

    name: str
    features: dict[str, np.ndarray]
    reference: dict[str, float] | None = None  # the summary's own value per metric, to check against


def compare_entries(
    dataset: str,
    entries: Sequence[Entry],
    metrics: dict[str, Metric],
    *,
    n_resamples: int = 1000,
    n_permutations: int = 10000,
    confidence: float = 0.95,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (metric, pair) of the entries of one dataset, Holm-corrected within each metric.

    Each pair is oriented so that ``a`` has the higher value (the summary's better one), so
    ``difference`` >= 0 and the question is whether the summary's ordering is real.
    """
    from vlmprobe.stats import bootstrap_weights

    if len(entries) < 2:
        return []
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate entries {names}")
    n = next(iter(entries[0].features.values())).shape[0]
    weights = bootstrap_weights(n, n_resamples, seed) if n_resamples > 0 else np.zeros((0, n), np.int32)
    rows: list[dict[str, Any]] = []
    for metric_name, metric in metrics.items():
        values, resampled = {}, {}
        for entry in entries:
            features = entry.features[metric_name]
            values[entry.name] = point_value(metric, features)
            resampled[entry.name] = bootstrap_values(metric, features, weights)
            reference = (entry.reference or {}).get(metric_name)
            if reference is not None and not math.isclose(reference, values[entry.name], rel_tol=1e-9, abs_tol=1e-9):
                raise VlmprobeError(
                    f"Paired comparison, dataset {dataset!r}: {entry.name} {metric_name} from its predictions is "
                    f"{values[entry.name]!r}, its result file says {reference!r}.",
                    "delete that entry's predictions and result and re-run (they come from different runs).",
                )
        family = []
        for i, first in enumerate(entries):
            for second in entries[i + 1 :]:
                a, b = (first, second) if values[first.name] >= values[second.name] else (second, first)
                fa, fb = a.features[metric_name], b.features[metric_name]
                difference = values[a.name] - values[b.name]
                boot = resampled[a.name] - resampled[b.name]
                low, high = percentile_interval(boot, confidence)
                row: dict[str, Any] = {
                    "dataset": dataset,
                    "metric": metric_name,
                    "a": a.name,
                    "b": b.name,
                    "a_value": values[a.name],
                    "b_value": values[b.name],
                    "difference": difference,
                    "low": low,
                    "high": high,
                    "n_test": int(n),
                    "n_discordant": int((fa != fb).any(axis=1).sum()),
                    "a_better": None,
                    "b_better": None,
                    "n_valid": int(np.isfinite(boot).sum()),
                    "n_resamples": int(n_resamples),
                }
                if metric.lattice is not None:
                    steps = np.rint(metric.lattice * (fa[:, 0] - fb[:, 0])).astype(np.int64)
                    row.update(
                        a_better=int((steps > 0).sum()),
                        b_better=int((steps < 0).sum()),
                        p_value=sign_flip_exact(steps),
                        test="exact McNemar" if metric.lattice == 1 else f"exact sign-flip (McNemar-type, {metric.lattice} fold models)",
                        n_permutations=None,
                    )
                else:
                    row.update(
                        p_value=permutation_p(metric, fa, fb, n_permutations, _pair_seed(seed, dataset, metric_name, a.name, b.name)),
                        test="paired permutation (Monte Carlo)",
                        n_permutations=int(n_permutations),
                    )
                family.append(row)
        adjusted = holm([row["p_value"] for row in family])
        for row, p_holm in zip(family, adjusted):
            row.update(p_holm=float(p_holm), family_size=len(family), significant=bool(p_holm < alpha), stars=stars(float(p_holm), alpha))
        rows += family
    return rows


def stars(p_holm: float, alpha: float) -> str:
    """'***' below alpha/50, '**' below alpha/5, '*' below alpha (0.001 / 0.01 / 0.05 for alpha = 0.05)."""
    for mark, level in (("***", alpha / 50), ("**", alpha / 5), ("*", alpha)):
        if p_holm < level:
            return mark
    return ""


# ------------------------------------------------------------------------------------------------
# From the workflow's files
# ------------------------------------------------------------------------------------------------

COLUMNS = {
    "dataset": "String", "metric": "String", "a": "String", "b": "String",
    "a_value": "Float64", "b_value": "Float64", "difference": "Float64", "low": "Float64", "high": "Float64",
    "p_value": "Float64", "p_holm": "Float64", "significant": "Boolean", "stars": "String", "test": "String",
    "family_size": "Int64", "n_test": "Int64", "n_discordant": "Int64", "a_better": "Int64", "b_better": "Int64",
    "n_valid": "Int64", "n_resamples": "Int64", "n_permutations": "Int64",
}


def _table(rows: list[dict[str, Any]]):
    import polars as pl

    schema = {name: getattr(pl, kind) for name, kind in COLUMNS.items()}
    return pl.DataFrame([{name: row.get(name) for name in COLUMNS} for row in rows], schema=schema)


def _same_samples(dataset: str, reference: tuple[str, list[str]], other: tuple[str, list[str]]) -> None:
    if reference[1] != other[1]:
        raise VlmprobeError(
            f"Paired comparison, dataset {dataset!r}: {other[0]} was scored on other test samples than {reference[0]} "
            f"({len(other[1])} vs {len(reference[1])} rows).",
            "re-run both from the same manifest (delete their predictions so they are recomputed).",
        )


def compare_linear_probe_files(entries: Sequence[dict[str, str]], **settings: Any):
    """Every pair of models per dataset from the linear probe's predictions (``{dataset, model, predictions, result}``).

    ``result`` (optional) is the probe's JSON: the fold-mean accuracy and macro F1 recomputed from the
    predictions must equal its summary, or the files are from different runs.
    """
    from vlmprobe.formats.predictions import read_probe_predictions

    rows: list[dict[str, Any]] = []
    for dataset in dict.fromkeys(entry["dataset"] for entry in entries):
        chosen, first, metrics = [], None, None
        for entry in (e for e in entries if e["dataset"] == dataset):
            predictions = read_probe_predictions(entry["predictions"])
            key = (entry["model"], predictions.sample_ids)
            if first is None:
                first = key
            _same_samples(dataset, first, key)
            features, metrics = single_label_features(predictions.labels, predictions.folds, len(predictions.classes))
            reference = None
            if entry.get("result"):
                summary = json.loads(Path(entry["result"]).read_text())["summary"]["test"]
                reference = {"accuracy": summary["accuracy"]["mean"], "macro_f1": summary["macro_f1"]["mean"]}
            chosen.append(Entry(entry["model"], features, reference))
        rows += compare_entries(dataset, chosen, metrics or {}, **settings)
    return _table(rows)


def compare_multilabel_files(entries: Sequence[dict[str, str]], manifests: dict[str, str], **settings: Any):
    """Every pair of (model, setting) per dataset of the multi-label study (``{dataset, model, setting, predictions, result}``)."""
    from vlmprobe.formats.manifest import label_matrix, read_manifest
    from vlmprobe.formats.predictions import read_predictions

    rows: list[dict[str, Any]] = []
    for dataset in dict.fromkeys(entry["dataset"] for entry in entries):
        manifest, meta = read_manifest(manifests[dataset])
        split = manifest.column("split").to_pylist()
        test_rows = [i for i, value in enumerate(split) if value == "test"]
        ids = manifest.column("sample_id").to_pylist()
        all_labels = manifest.column("labels").to_pylist()
        test_ids = [ids[i] for i in test_rows]
        classes = list(meta["classes"])
        indicator = label_matrix([all_labels[i] for i in test_rows], classes)
        chosen, metrics = [], None
        for entry in (e for e in entries if e["dataset"] == dataset):
            name = f"{entry['model']}/{entry['setting']}"
            predictions = read_predictions(entry["predictions"])
            _same_samples(dataset, ("the manifest's test split", test_ids), (name, predictions.sample_ids))
            if predictions.classes != classes:
                raise VlmprobeError(
                    f"Paired comparison, dataset {dataset!r}: {name} predicts classes {predictions.classes}, the manifest has {classes}.",
                    "delete those predictions and re-run.",
                )
            features, metrics = multilabel_features(indicator, predictions.predicted)
            reference = None
            if entry.get("result"):
                result = json.loads(Path(entry["result"]).read_text())["metrics"]
                reference = {key: result.get(key) for key in ("exact_match", "f1_samples", "f1_macro")}
            chosen.append(Entry(name, features, reference))
        rows += compare_entries(dataset, chosen, metrics or {}, **settings)
    return _table(rows)


# ------------------------------------------------------------------------------------------------
# Tables and the model x model matrix
# ------------------------------------------------------------------------------------------------

METRIC_LABELS = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "exact_match": "exact match",
    "f1_samples": "samples-F1",
    "f1_macro": "macro F1",
}


def _points(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:+.1f}"


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def verdict(row: dict[str, Any]) -> str:
    if row["significant"]:
        return f"real: {row['a']} > {row['b']}"
    if row["n_discordant"] == 0:
        return "no sample differs"
    return "not significant"


def table_rows(table) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "metric", "better (a)", "a", "worse (b)", "b", "a − b (points)", "95% CI", "p", "Holm p", "verdict", "test"]
    rows = []
    for row in table.sort(["dataset", "metric", "difference"], descending=[False, False, True]).iter_rows(named=True):
        rows.append(
            [
                row["dataset"], METRIC_LABELS.get(row["metric"], row["metric"]),
                row["a"], f"{row['a_value'] * 100:.1f}%", row["b"], f"{row['b_value'] * 100:.1f}%",
                _points(row["difference"]) + row["stars"], f"[{_points(row['low'])}, {_points(row['high'])}]",
                _p(row["p_value"]), _p(row["p_holm"]), verdict(row), row["test"],
            ]
        )
    return header, rows


def note(confidence: float, alpha: float, what: str) -> str:
    return (
        f"{what} Pairs oriented so that a has the higher value; a − b in percentage points with its paired-bootstrap "
        f"{confidence:.0%} interval (the test samples resampled jointly for both; not adjusted for multiplicity). p: exact McNemar / sign-flip test "
        "(accuracy, exact match) or Monte Carlo paired permutation test (F1). Holm-corrected over every pair of a "
        f"dataset, per metric; real = Holm p < {alpha:g} (* < {alpha:g}, ** < {alpha / 5:g}, *** < {alpha / 50:g})."
    )


def matrix_figure(table, title: str):
    """Per (dataset, metric) panel: entries x entries, cell = row − column in points, Holm stars."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import polars as pl

    from vlmprobe.figures import metric_heatmap

    panels = table.select("dataset", "metric").unique(maintain_order=True).rows()
    datasets = list(dict.fromkeys(dataset for dataset, _ in panels))
    metrics = list(dict.fromkeys(metric for _, metric in panels))
    if not panels:
        figure, ax = plt.subplots(figsize=(4, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "fewer than two models: nothing to compare", ha="center", va="center")
        return figure
    sizes = [len(set(table.filter(pl.col("dataset") == d)["a"].to_list() + table.filter(pl.col("dataset") == d)["b"].to_list())) for d in datasets]
    side = min(max(3.5, 0.6 * max(sizes) + 2.5), 14)
    figure, axes = plt.subplots(len(datasets), len(metrics), figsize=(side * len(metrics) * 1.15, side * len(datasets)), squeeze=False, layout="constrained")
    for i, dataset in enumerate(datasets):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            part = table.filter((pl.col("dataset") == dataset) & (pl.col("metric") == metric))
            if part.is_empty():
                ax.axis("off")
                continue
            value = {row["a"]: row["a_value"] for row in part.iter_rows(named=True)} | {row["b"]: row["b_value"] for row in part.iter_rows(named=True)}
            order = sorted(value, key=lambda name: -value[name])
            cells = []
            for row in part.iter_rows(named=True):
                for first, second, sign in ((row["a"], row["b"], 1), (row["b"], row["a"], -1)):
                    points = sign * row["difference"] * 100 + 0.0  # + 0.0: no "-0.0"
                    cells.append({"row": first, "column": second, "difference": points, "text": (f"{points:+.1f}" if points else "0.0") + row["stars"]})
            long = pl.DataFrame(cells)
            limit = max(float(long["difference"].abs().max()), 1e-6)
            metric_heatmap(
                long, row="row", column="column", value="difference", annotations="text",
                title=f"{dataset}: {METRIC_LABELS.get(metric, metric)}", row_order=order, column_order=order,
                vmin=-limit, vmax=limit, cmap="RdBu", colorbar_label="row − column (points)", ax=ax,
            )
            ax.set_xlabel("")
            ax.set_ylabel("")
    figure.suptitle(title)
    return figure


def write_comparison(table, table_path, csv_path, markdown_path, html_path, figure_path, *, title: str, note_text: str) -> None:
    from vlmprobe.io import save_figure, write_parquet, write_text
    from vlmprobe.tables import html_table, markdown_table

    write_parquet(table_path, table)
    write_text(csv_path, table.write_csv())
    header, rows = table_rows(table)
    write_text(markdown_path, f"# {title}\n\n{note_text}\n\n" + (markdown_table(header, rows) if rows else "Fewer than two entries per dataset: nothing to compare.\n"))
    write_text(html_path, html_table(title, header, rows, note_text))
    save_figure(figure_path, matrix_figure(table, title), bbox_inches="tight")
