"""The multi-label study's linear probe (seeds ``000_*`` / ``001_*``): frozen embeddings -> per-label scores.

Protocol, on one cached embedding table (no model is loaded):

* **Features** are standardized (``StandardScaler``, fitted on the training rows of each fit only).
* **Multi-label** data: one-vs-rest logistic regression, one binary classifier per label, each with
  ``class_weight='balanced'`` (positives weigh ``n / (2 n_pos)``), so a rare label is not ignored.
  **Multi-class** data: one multinomial (softmax / cross-entropy) logistic regression with balanced class
  weights; the decision is the arg-max.
* **Solver**: Newton-CG (:data:`SOLVER`), up to 2,000 iterations.
* **Regularisation** ``C`` is chosen from a small grid by the manifest's cross-validation folds of the
  training rows: each fold's model scores its held-out fold (out-of-fold predictions), and the ``C`` with
  the best mean average precision over labels wins (threshold-free, robust to imbalance; ties -> the
  smaller ``C``).
* **Thresholds** (multi-label): for each label, the probability threshold that maximises F1 on the
  out-of-fold predictions of the chosen ``C`` -- training folds only, the test split is never looked at.
  ``threshold: <number>`` uses that fixed probability for every label instead.
* The final model is refitted on all training rows and scores the test split.

The fitted probe is saved as a *linear head on the raw embedding* (standardization folded into the
weights), the same format as the fine-tuning head: see :func:`save_head` / :func:`load_head`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.heads import LinearHead, apply_thresholds, argmax_decisions, save_head

log = logging.getLogger(__name__)

DEFAULT_C_GRID = (0.01, 0.1, 1.0)
MAX_ITER = 2000
SOLVER = "newton-cg"
"""Newton-CG solves the same convex problem as scikit-learn's default lbfgs in ~10 Newton steps; lbfgs
needed hundreds of iterations on folds with fewer samples than features (1,024-D pixels, 384 rows) and
took 6x the CPU time for the same optimum."""
PARALLEL_MIN_WORK = 20_000_000
"""Folds are fitted in parallel worker processes only above this many (rows x features x labels): a
worker's start-up (importing scikit-learn) costs more than a small probe."""


# ------------------------------------------------------------------------------------------------
# Decisions
# ------------------------------------------------------------------------------------------------


def f1_optimal_thresholds(indicator: np.ndarray, scores: np.ndarray, fallback: float = 0.5) -> np.ndarray:
    """Per label, the score threshold ``t`` (decide ``score >= t``) with the highest F1 on these samples.

    Candidates are the observed scores (``precision_recall_curve``); among equal F1 the higher threshold
    wins (fewer false positives). A label without positives gets ``fallback``.
    """
    from sklearn.metrics import precision_recall_curve

    thresholds = np.full(indicator.shape[1], float(fallback))
    for c in range(indicator.shape[1]):
        y = indicator[:, c].astype(int)
        if y.sum() == 0:
            log.warning("label column %d has no positives where thresholds are tuned; using %.3f", c, fallback)
            continue
        precision, recall, candidates = precision_recall_curve(y, scores[:, c])
        precision, recall = precision[:-1], recall[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        best = np.flatnonzero(f1 == f1.max())[-1]  # candidates ascend: the last maximum is the highest threshold
        thresholds[c] = float(candidates[best])
    return thresholds


def mean_average_precision(indicator: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    present = indicator.any(axis=0)
    return float(average_precision_score(indicator[:, present].astype(int), scores[:, present], average="macro"))


# ------------------------------------------------------------------------------------------------
# The probe
# ------------------------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    test_scores: np.ndarray
    """(n_test, C) probabilities: sigmoid per label (multi-label) or softmax (multi-class)."""
    test_predicted: np.ndarray
    thresholds: np.ndarray | None
    """Per-label decision thresholds (multi-label), None for arg-max decisions."""
    C: float
    cv_average_precision: dict[float, float]
    weight: np.ndarray
    """(C, d) weights on the raw (unstandardized) embedding."""
    bias: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)


def _estimator(C: float, multilabel: bool, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logistic = LogisticRegression(C=C, class_weight="balanced", max_iter=MAX_ITER, random_state=seed, solver=SOLVER)
    return make_pipeline(StandardScaler(), OneVsRestClassifier(logistic) if multilabel else logistic)


def _target(indicator: np.ndarray, multilabel: bool) -> np.ndarray:
    return indicator.astype(int) if multilabel else np.argmax(indicator, axis=1)


def _raw_space_head(pipeline, multilabel: bool, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold the scaler into the linear model: logits = x @ weight.T + bias on raw embeddings."""
    scaler, model = pipeline[0], pipeline[-1]
    if multilabel:
        coef = np.vstack([estimator.coef_ for estimator in model.estimators_])
        intercept = np.concatenate([estimator.intercept_ for estimator in model.estimators_])
    else:
        coef, intercept = model.coef_, model.intercept_
        if coef.shape[0] == 1 and n_classes == 2:  # binary: one decision function for the second class
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = coef / scaler.scale_[None, :]
    bias = intercept - weight @ scaler.mean_
    return weight.astype(np.float64), bias.astype(np.float64)


def fit_probe(
    train_x: np.ndarray,
    train_indicator: np.ndarray,
    train_folds: Sequence[int],
    test_x: np.ndarray,
    multilabel: bool,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    threshold: str | float = "tuned",
    seed: int = 0,
    n_jobs: int = 1,
) -> ProbeResult:
    """Choose C on the folds, tune thresholds on out-of-fold predictions, refit, score the test rows.

    BLAS runs single-threaded here: the matrices of one logistic regression are small, and a
    multi-threaded BLAS spends 10-20x more time synchronising threads than computing (measured: 8.8 s
    against 0.7 s of CPU for 30 fits on 384 x 64 features); ``n_jobs`` parallelises over folds instead.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_probe(train_x, train_indicator, train_folds, test_x, multilabel, c_grid, threshold, seed, n_jobs)


def _fit_probe(train_x, train_indicator, train_folds, test_x, multilabel, c_grid, threshold, seed, n_jobs) -> ProbeResult:
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    folds = np.asarray(train_folds)
    if len(np.unique(folds)) < 2:
        raise VlmprobeError("The training rows of the manifest have fewer than two CV folds.", "rebuild the manifest with `split: n_folds: 5`.")
    cv = PredefinedSplit(folds)
    if train_x.size * train_indicator.shape[1] < PARALLEL_MIN_WORK:
        n_jobs = 1
    target = _target(train_indicator, multilabel)
    out_of_fold: dict[float, np.ndarray] = {}
    cv_ap: dict[float, float] = {}
    for C in sorted(float(c) for c in c_grid):
        out_of_fold[C] = cross_val_predict(_estimator(C, multilabel, seed), train_x, target, cv=cv, method="predict_proba", n_jobs=n_jobs)
        cv_ap[C] = mean_average_precision(train_indicator, out_of_fold[C])
        log.info("C=%g: out-of-fold mean average precision %.4f", C, cv_ap[C])
    best_C = max(cv_ap, key=lambda c: (cv_ap[c], -c))
    final = _estimator(best_C, multilabel, seed).fit(train_x, target)
    test_scores = np.asarray(final.predict_proba(test_x), dtype=np.float64)
    if multilabel:
        if threshold == "tuned":
            thresholds = f1_optimal_thresholds(train_indicator, out_of_fold[best_C])
        else:
            thresholds = np.full(train_indicator.shape[1], float(threshold))
        predicted = apply_thresholds(test_scores, thresholds)
    else:
        thresholds = None
        predicted = argmax_decisions(test_scores)
    weight, bias = _raw_space_head(final, multilabel, train_indicator.shape[1])
    return ProbeResult(
        test_scores=test_scores,
        test_predicted=predicted,
        thresholds=thresholds,
        C=best_C,
        cv_average_precision=cv_ap,
        weight=weight,
        bias=bias,
    )


# ------------------------------------------------------------------------------------------------
# Linear heads on raw embeddings: the linear probe's and the fine-tuning's, one format
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Files in, files out
# ------------------------------------------------------------------------------------------------


def run_probe_files(
    manifest_path: str | Path,
    embedding_path: str | Path,
    expected_spec: dict[str, Any] | None,
    predictions_path: str | Path,
    head_path: str | Path,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    threshold: str | float = "tuned",
    n_jobs: int = 1,
    identity: dict[str, Any] | None = None,
    protocol: str = "vlmprobe",
    validation_fold: int = 0,
) -> ProbeResult:
    """The ``multilabel_lp`` job: manifest + cached embeddings -> test predictions and the probe's head.

    ``protocol: sadman2025`` trains the notebook's linear head instead (:func:`run_paper_probe`), validating on
    fold ``validation_fold`` of the training rows."""
    from vlmprobe.formats.embeddings import aligned
    from vlmprobe.formats.manifest import label_matrix
    from vlmprobe.formats.predictions import Predictions, write_predictions
    from vlmprobe.multilabel.protocols import check_protocol

    started = time.perf_counter()
    manifest, matrix, manifest_meta, _ = aligned(manifest_path, embedding_path, expected_spec)
    classes = list(manifest_meta["classes"])
    multilabel = bool(manifest_meta.get("multilabel"))
    indicator = label_matrix(manifest["labels"].to_list(), classes)
    is_test = np.asarray(manifest["split"].to_list()) == "test"
    folds = manifest["fold"].to_numpy()
    seed = int(manifest_meta.get("seed", 0))
    if check_protocol(protocol) == "sadman2025":
        return run_paper_probe(manifest, matrix, indicator, is_test, folds, classes, multilabel, seed, validation_fold, started, embedding_path,
                               predictions_path, head_path, identity)  # fmt: skip
    result = fit_probe(matrix[~is_test], indicator[~is_test], folds[~is_test].astype(int), matrix[is_test], multilabel, c_grid, threshold, seed, n_jobs)
    seconds = time.perf_counter() - started
    log.info("linear probe: C=%g, %d test samples, %.1f s", result.C, int(is_test.sum()), seconds)
    decision = (
        {"rule": "argmax", "description": "the class of highest softmax probability"}
        if not multilabel
        else {
            "rule": "per-label threshold" if threshold == "tuned" else "fixed threshold",
            "description": (
                "probability >= threshold; thresholds maximise F1 on out-of-fold predictions of the training folds"
                if threshold == "tuned"
                else f"probability >= {float(threshold)} for every label"
            ),
            "thresholds": dict(zip(classes, map(float, result.thresholds), strict=True)),
        }
    )
    details = {
        "C": result.C,
        "C_grid": sorted(float(c) for c in c_grid),
        "cv_average_precision": {str(c): ap for c, ap in result.cv_average_precision.items()},
        "classifier": "one-vs-rest logistic regression" if multilabel else "multinomial logistic regression",
        "class_weight": "balanced",
        "standardized": True,
        "embedding_table": str(embedding_path),
    }
    write_predictions(
        predictions_path,
        Predictions(
            sample_ids=[manifest["sample_id"][int(i)] for i in np.flatnonzero(is_test)],
            scores=result.test_scores,
            predicted=result.test_predicted,
            classes=classes,
            metadata={
                **(identity or {}),
                "setting": "lp",
                "protocol": "vlmprobe",
                "multilabel": multilabel,
                "score_kind": "probability",
                "decision": decision,
                "wall_time_s": seconds,
                "details": details,
            },
        ),
    )
    save_head(
        head_path,
        LinearHead(
            weight=result.weight,
            bias=result.bias,
            classes=classes,
            multilabel=multilabel,
            thresholds=result.thresholds,
            source="linear_probe",
            details={**(identity or {}), **details},
        ),
    )
    return result


def run_paper_probe(manifest, matrix, indicator, is_test, folds, classes, multilabel, seed, validation_fold, started, embedding_path,
                    predictions_path, head_path, identity) -> ProbeResult:  # fmt: skip
    """Sadman et al.'s linear probe (:mod:`vlmprobe.multilabel.protocols`): train on the training rows outside
    ``validation_fold``, early-stop on that fold, decide row-min-max scaled logits > 0.5 on the test rows."""
    from vlmprobe.formats.predictions import Predictions, write_predictions
    from vlmprobe.multilabel.protocols import (
        DECISION,
        LINEAR_PROBE,
        row_minmax,
        row_minmax_decisions,
        train_linear_probe,
    )

    fold = np.asarray([-1 if value is None or value != value else int(value) for value in folds])
    is_val = ~is_test & (fold == validation_fold)
    is_train = ~is_test & ~is_val
    if not is_val.any() or not is_train.any():
        raise VlmprobeError(
            f"The linear probe of protocol sadman2025 needs training rows in fold {validation_fold} (validation) and outside it.",
            "build the manifest with `split: protocol: sadman2025`, or set `multilabel: finetune: validation_fold:` to a fold that exists.",
        )
    y = indicator.astype(np.float64)
    fit = train_linear_probe(matrix[is_train], y[is_train], matrix[is_val], y[is_val], seed)
    logits = np.asarray(matrix[is_test], dtype=np.float64) @ fit.weight.T + fit.bias
    scores = row_minmax(logits)
    predicted = row_minmax_decisions(scores)
    seconds = time.perf_counter() - started
    log.info("linear probe (sadman2025): best epoch %d of %d, %d train / %d validation / %d test, %.1f s",
             fit.best_epoch, fit.epochs_run, int(is_train.sum()), int(is_val.sum()), int(is_test.sum()), seconds)  # fmt: skip
    details = {
        **{key: (list(value) if isinstance(value, tuple) else value) for key, value in LINEAR_PROBE.items()},
        "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run, "history": fit.history, "seed": seed,
        "n_train": int(is_train.sum()), "n_validation": int(is_val.sum()), "validation_fold": validation_fold,
        "embedding_table": str(embedding_path),
    }
    write_predictions(
        predictions_path,
        Predictions(
            sample_ids=[manifest["sample_id"][int(i)] for i in np.flatnonzero(is_test)],
            scores=scores,
            predicted=predicted,
            classes=classes,
            metadata={**(identity or {}), "setting": "lp", "protocol": "sadman2025", "multilabel": multilabel,
                      "score_kind": "row-min-max scaled logit", "decision": DECISION, "wall_time_s": seconds, "details": details},  # fmt: skip
        ),
    )
    save_head(head_path, LinearHead(weight=fit.weight, bias=fit.bias, classes=classes, multilabel=multilabel, thresholds=None,
                                    source="linear_probe", details={**(identity or {}), "protocol": "sadman2025", **details}))  # fmt: skip
    return ProbeResult(test_scores=scores, test_predicted=predicted, thresholds=None, C=math.nan, cv_average_precision={},
                       weight=fit.weight, bias=fit.bias, details=details)  # fmt: skip
