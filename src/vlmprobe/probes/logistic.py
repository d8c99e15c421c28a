"""A tuned linear probe: multinomial logistic regression, C chosen by cross-validation on the training folds only.

The poster fixes ``C = 100 / N``; the evaluation suites tune it (DINOv3 sweeps 45 values of C on a validation
split). Here, for every C of the grid (ascending, warm-started from the previous C's weights), a model is fitted
on each fold's training part (the other folds of the training rows, standardised with *their* mean and scale)
and scored on the held-out fold; the C with the best mean validation accuracy wins (ties: the smaller C, the
stronger regularisation). One model with that C is then fitted on all training rows and predicts the test rows,
which no step before sees. scikit-learn's ``LogisticRegression`` (lbfgs, L2, intercept not penalised).

Recorded: the grid with its mean and std validation accuracy per C, the chosen C (and whether it sits at an
edge of the grid: widen the grid then), and the test accuracy, balanced accuracy and macro F1.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlmprobe.linear_svc import Standardizer

log = logging.getLogger(__name__)

DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)


def _model(max_iter: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=max_iter, warm_start=True, tol=1e-4)


SMALL_FIT = 1 << 22  # feature-matrix elements below which BLAS threads cost more than they give


def _fit(model, x: np.ndarray, y: np.ndarray) -> bool:
    """Fit; False when lbfgs stopped at max_iter (the warning is counted, not printed per fit).

    A small fit runs on one BLAS thread: lbfgs makes many tiny matrix products, and on a busy machine the
    threads' hand-offs dominate (digits, 1,437 x 256: 0.4 s on one thread, 9 s on two under load).
    """
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1 if x.size < SMALL_FIT else None):
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    return not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a class predicted but absent from the test rows: recall over the present ones
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }


def tuned_logistic(
    x: np.ndarray,
    y: np.ndarray,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    fold_of_train: np.ndarray,
    Cs: Sequence[float] = DEFAULT_CS,
    max_iter: int = 1000,
) -> dict[str, Any]:
    """The tuned probe's record and its test predictions (``predictions``: class index per test row)."""
    Cs = sorted(float(c) for c in Cs)
    y = np.asarray(y, dtype=np.int64)
    folds = np.unique(fold_of_train)
    validation = np.zeros((len(Cs), folds.size))
    not_converged = 0
    for j, fold in enumerate(folds):
        fit_rows = train_rows[fold_of_train != fold]
        val_rows = train_rows[fold_of_train == fold]
        scaler = Standardizer.fit(x[fit_rows])
        x_fit, x_val = scaler.transform(x[fit_rows]), scaler.transform(x[val_rows])
        model = _model(max_iter)
        for i, c in enumerate(Cs):  # ascending C, each fit starting from the previous solution
            model.set_params(C=c)
            not_converged += not _fit(model, x_fit, y[fit_rows])
            validation[i, j] = float((model.predict(x_val) == y[val_rows]).mean())
    mean = validation.mean(axis=1)
    best = int(np.flatnonzero(mean >= mean.max() - 1e-12)[0])  # the smallest C among the best
    scaler = Standardizer.fit(x[train_rows])
    final = _model(max_iter).set_params(C=Cs[best])
    converged = _fit(final, scaler.transform(x[train_rows]), y[train_rows])
    predictions = final.predict(scaler.transform(x[test_rows])).astype(np.int64)
    if not_converged or not converged:
        log.info("tuned logistic regression: %d of %d fits reached max_iter=%d", not_converged + (not converged), validation.size + 1, max_iter)
    return {
        "C": Cs[best],
        "C_at_edge": best in (0, len(Cs) - 1) and len(Cs) > 1,
        "grid": [{"C": c, "validation_accuracy_mean": float(m), "validation_accuracy_std": float(s)} for c, m, s in zip(Cs, mean, validation.std(axis=1))],
        "validation_accuracy": float(mean[best]),
        "fits_not_converged": int(not_converged + (not converged)),
        "max_iter": int(max_iter),
        "test": scores(y[test_rows], predictions),
        "predictions": predictions,
    }
