"""The poster's linear probe (seed 002): standardized features, ``LinearSVC`` with ``C = 100 / N``.

Protocol (Takeda et al., 2025), as implemented here:

* **Split.** The manifest's ``split`` column gives the 20 % test hold-out, its ``fold`` column the
  5 stratified CV folds of the training rows. Nothing is re-split here. A dataset with a ``group:``
  column (patient, slide, lesion) has a second, group-aware split (``group_split``/``group_fold``);
  the protocol then runs on it too and :func:`with_group_level` adds its numbers and the gap
  image-level − group-level (the share of the score that is identity leakage) to the result.
* **Standardization.** Every fit z-scores its features with the mean and standard deviation
  (``ddof=0``, as ``StandardScaler``) of *its own training rows only*; the validation fold and the
  test rows are transformed with those statistics. Near-constant features keep scale 1, with
  ``StandardScaler``'s rule.
* **Classifier.** The model ``LinearSVC`` fits with its defaults: L2 penalty, squared hinge loss,
  one-vs-rest, intercept as an extra constant feature 1 that is regularized like the weights
  (``intercept_scaling=1``). For two classes a single decision function is fitted and its positive
  side is the second class in sorted order, as scikit-learn does.
* **C = 100 / N_samples**, where ``N_samples`` is the number of training rows *of that fit* (the
  four training folds for a fold model, all training rows for the final model). Because
  ``LinearSVC`` sums the loss over samples, this makes the objective ``0.5*|w|^2 + 100 * mean loss``,
  so regularization does not drift with the fold or dataset size: the natural reading of the
  poster's ambiguous ``N_samples``. The value used for each fit is recorded as ``C``.
* **Six fits.** One model per CV fold (trained on the other four folds, scored on its held-out
  fold = CV validation score, *and* on the test set), plus a final model on all training rows
  scored on the test set. The poster's "mean ± std" is over the five fold models evaluated on the
  test set; the final model's test score is reported beside it, not mixed into it.
* **Scores.** Accuracy; "F-score" as the poster's table implies: F1 of the positive class for
  2-class datasets, macro F1 otherwise; macro F1 is always reported as well. The positive class is
  ``positive_label`` when given, otherwise the *second label in sorted order* (what scikit-learn's
  default ``pos_label=1`` gives after ``LabelEncoder`` or an ImageFolder-style sorted class index,
  i.e. what the poster's code most likely did). Macro F1 averages over the classes present in the
  true or predicted labels (scikit-learn's default). Standard deviations use ``ddof=0``
  (``numpy.std``'s default, and what ``np.std`` over the five fold scores gives).

Speed. scikit-learn's ``LinearSVC`` with ``dual='auto'`` picks liblinear's primal trust-region
Newton solver when samples outnumber features; liblinear runs it one class at a time with
matrix-vector products on its own sparse row format, ~30-40 s per fit at 17,600 x 1,024 with 29
classes on 2 cores. The default ``solver="newton"`` here solves *the same strictly convex problem*
for all one-vs-rest classes at once (:func:`fit_squared_hinge_ovr`): Newton steps from batched,
preconditioned conjugate gradients whose Hessian-vector products are BLAS matrix-matrix products
over all classes, followed by an exact line search. Because the optimum is unique, the answer is
liblinear's up to both solvers' tolerances (``bench/linear_probe.py`` measures the agreement of the
predictions and the speed-up in one run). ``solver="liblinear"`` runs scikit-learn's ``LinearSVC``
itself (``dual='auto'``, ``random_state=seed``), the literal poster call, for cross-checks.
The default ``solver="auto"`` uses the Newton solver where samples outnumber features and liblinear
(whose ``dual='auto'`` then runs its dual coordinate descent) where they do not: there the primal
Hessian is badly conditioned and Newton-CG crawls (152 s against 1.7 s for liblinear, same
predictions, on a 400 x 1,280 table). The solver used is recorded in ``protocol.solver``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.linear_probe.inputs import positive_index
from vlmprobe.linear_svc import C_NUMERATOR, STD_DDOF, SpectralPreconditioner, Standardizer, fit_squared_hinge_ovr
from vlmprobe.probe_inputs import Problem, check_inputs

log = logging.getLogger(__name__)

PROTOCOL_NAME = "takeda2025-linear-svc"

Solver = Literal["auto", "newton", "liblinear"]


# --------------------------------------------------------------------------------------------
# The protocol


def _scores(y_true: np.ndarray, y_pred: np.ndarray, positive: int | None) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    macro = float(f1_score(y_true, y_pred, average="macro", zero_division=0))
    if positive is None:
        fscore = macro
    else:
        fscore = float(f1_score(y_true, y_pred, average="binary", pos_label=positive, zero_division=0))
    return {"accuracy": float(accuracy_score(y_true, y_pred)), "fscore": fscore, "macro_f1": macro}


def _predict(coef: np.ndarray, intercept: np.ndarray, z: np.ndarray) -> np.ndarray:
    decision = z @ coef.T + intercept
    if coef.shape[0] == 1:  # binary: positive side is class index 1 (sklearn: score > 0)
        return (decision[:, 0] > 0).astype(np.int64)
    return np.argmax(decision, axis=1)


def _fit_one(
    problem: Problem,
    fit_rows: np.ndarray,
    eval_rows: dict[str, np.ndarray],
    *,
    solver: Solver,
    tol: float,
    max_iter: int,
    seed: int,
    preconditioner: SpectralPreconditioner | None,
) -> dict[str, Any]:
    n_fit = int(fit_rows.size)
    c = C_NUMERATOR / n_fit
    x_fit = problem.x[fit_rows]
    scaler = Standardizer.fit(x_fit)
    y_fit = problem.y[fit_rows]
    n_classes = len(problem.classes)
    if solver == "newton":
        if n_classes == 2:
            targets = np.where(y_fit == 1, 1.0, -1.0)[:, None]
        else:
            targets = np.where(y_fit[:, None] == np.arange(n_classes)[None, :], 1.0, -1.0)
        design = scaler.transform(x_fit, with_bias=True)
        result = fit_squared_hinge_ovr(design, targets, c, tol=tol, max_iter=max_iter, preconditioner=preconditioner)
        del design
        coef, intercept = result.coef, result.intercept
        info = {
            "newton_iterations": result.newton_iterations,
            "cg_iterations": result.cg_iterations,
            "converged": result.converged,
        }
    else:
        from sklearn.svm import LinearSVC

        model = LinearSVC(C=c, tol=tol, max_iter=max_iter, random_state=seed)
        model.fit(scaler.transform(x_fit), y_fit)
        coef, intercept = model.coef_, np.atleast_1d(model.intercept_)
        iterations = int(np.max(model.n_iter_))
        # scikit-learn's own rule for its ConvergenceWarning (read here: catching warnings is not thread-safe).
        info = {"liblinear_iterations": iterations, "converged": iterations < max_iter}
    if not info["converged"]:
        log.warning("linear probe: the fit on %d rows stopped at max_iter=%d before tol=%g", n_fit, max_iter, tol)
    predictions = {name: _predict(coef, intercept, scaler.transform(problem.x[rows])) for name, rows in eval_rows.items()}
    return {"n_fit": n_fit, "C": c, "solver_info": info, "predictions": predictions}


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _effective_n_jobs(n_jobs: int) -> int:
    if n_jobs == -1:
        return _available_cores()
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise VlmprobeError(f"Linear probe: n_jobs={n_jobs!r}.", "use a positive number of threads, or -1 for all cores.")
    return n_jobs


def _mean_std(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=STD_DDOF))}


def run_linear_probe(
    embeddings: np.ndarray,
    labels: Sequence[str],
    split: Sequence[str],
    fold: Sequence[int | None],
    positive_label: str | None = None,
    n_jobs: int = 1,
    seed: int = 0,
    *,
    solver: Solver = "auto",
    tol: float = 1e-4,
    max_iter: int = 1000,
    fscore: str | None = None,
) -> dict[str, Any]:
    """Run the poster's LinearSVC protocol on one (dataset, model) embedding table.

    Args:
        embeddings: (n, d) float array, one row per sample (float32 is fine; fits use float64).
        labels: one class name per row (compared as strings; classes are sorted).
        split: 'train' / 'test' per row (the manifest's 20 % hold-out).
        fold: CV fold 0..k-1 per training row, None (or NaN) per test row.
        positive_label: the class whose F1 is "the F-score" of a 2-class dataset; None -> the second
            class in sorted order. Must be None for multi-class data (F-score = macro F1).
        n_jobs: cores this call may use, in total (-1: every core available to the process). The
            six fits run in min(n_jobs, 6) threads (BLAS and liblinear release the GIL) and BLAS
            is limited to the rest, so a Snakemake rule passes its ``threads``.
        seed: liblinear's random_state (``solver="liblinear"``); the Newton solver is
            deterministic and does not draw random numbers. Recorded either way.
        solver: "auto" (default: "newton" when the training rows outnumber the features, else
            "liblinear", whose dual solver LinearSVC picks there), "newton" (joint one-vs-rest Newton-CG, fast) or "liblinear" (sklearn ``LinearSVC``
            with ``dual='auto'``, the literal reference).
        fscore: "binary" (F1 of the positive class; 2-class datasets' default), "macro" (macro F1, the only
            choice for more classes) or None (the default by class count).
        tol, max_iter: stopping tolerance (liblinear's primal criterion, ``LinearSVC``'s default
            1e-4) and iteration cap (Newton iterations; liblinear's own for ``solver="liblinear"``).

    Returns a JSON-serialisable dict: ``protocol`` (every parameter of the protocol), ``classes``,
    sizes, ``folds`` (per fold: n_fit, C, CV validation and test scores, solver info), ``final``
    (the all-training-rows model: n_fit, C, test scores), ``summary`` (mean/std over the fold
    models of test and validation scores) and ``predictions`` (test row positions and each fit's
    predicted class index on them, for agreement checks).

    Raises VlmprobeError for malformed inputs: mismatched lengths, NaN/Inf embeddings, unknown
    split values, missing/odd folds, fewer than 2 classes, a class without training samples or
    with fewer training samples than folds, an unusable positive_label.
    """
    if solver not in ("auto", "newton", "liblinear"):
        raise VlmprobeError(f"Linear probe: unknown solver {solver!r}.", "use 'auto', 'newton' or 'liblinear'.")
    cores = _effective_n_jobs(n_jobs)
    problem = check_inputs(embeddings, labels, split, fold)
    if solver == "auto":
        # the primal Newton solver is fast where samples outnumber features; with fewer samples than
        # features its Hessian is badly conditioned (90x slower measured at 320 x 1,280), and
        # LinearSVC's dual='auto' picks liblinear's dual coordinate descent there: use that
        solver = "newton" if problem.train_rows.size > problem.x.shape[1] else "liblinear"
    if fscore not in (None, "binary", "macro"):
        raise VlmprobeError(f"Linear probe: `fscore: {fscore}` is neither binary nor macro.", "set the dataset's `fscore:` to binary or macro.")
    if fscore == "binary" and len(problem.classes) != 2:
        raise VlmprobeError(f"Linear probe: `fscore: binary` needs 2 classes, the dataset has {len(problem.classes)}.", "use `fscore: macro`.")
    positive = None if fscore == "macro" else positive_index(problem.classes, positive_label)
    fits, outcomes = _fit_all(problem, solver, cores, tol=tol, max_iter=max_iter, seed=seed)
    protocol = _protocol_record(problem, solver, positive, positive_label, tol=tol, max_iter=max_iter, seed=seed)
    return _result(problem, fits, outcomes, positive, protocol)


def _fits(problem: Problem) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """``(rows to fit, {part: rows to predict})``: one fit per CV fold (scored on its fold and the test set),
    then the final fit on all training rows."""
    fits: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    for f in range(problem.n_folds):
        in_fold = problem.fold_of_train == f
        fits.append((problem.train_rows[~in_fold], {"val": problem.train_rows[in_fold], "test": problem.test_rows}))
    fits.append((problem.train_rows, {"test": problem.test_rows}))
    return fits


def _fit_all(
    problem: Problem, solver: str, cores: int, *, tol: float, max_iter: int, seed: int
) -> tuple[list[tuple[np.ndarray, dict[str, np.ndarray]]], list[dict[str, Any]]]:
    """Every fit of :func:`_fits`, within ``cores``; returns the fits and their outcomes, in order."""
    from joblib import Parallel, delayed
    from threadpoolctl import threadpool_limits

    fits = _fits(problem)
    # n_jobs is this call's whole core budget. The six fits share it as threads (BLAS and
    # liblinear release the GIL) and each fit's BLAS gets what is left over; BLAS is never left
    # at its default of every core of the machine, because multi-threaded OpenBLAS/LAPACK on
    # oversubscribed cores (parallel Snakemake jobs) runs 10-100x slower, not just 2x.
    # liblinear seeds C's global rand() (sklearn's set_seed -> srand): fits in parallel threads would
    # interleave one random stream and give run-to-run different models, so liblinear fits run one by one
    workers = 1 if solver == "liblinear" else min(cores, len(fits))
    with threadpool_limits(limits=cores, user_api="blas"):
        preconditioner = None
        if solver == "newton":
            all_train = problem.x[problem.train_rows]
            design = Standardizer.fit(all_train).transform(all_train, with_bias=True)
            preconditioner = SpectralPreconditioner.from_design(design)
            del all_train, design

    def run(fit):
        return _fit_one(
            problem,
            *fit,
            solver=solver,
            tol=tol,
            max_iter=max_iter,
            seed=seed,
            preconditioner=preconditioner,
        )

    with threadpool_limits(limits=max(1, cores // workers), user_api="blas"):
        if workers == 1:
            outcomes = [run(fit) for fit in fits]
        else:
            outcomes = Parallel(n_jobs=workers, prefer="threads")(delayed(run)(fit) for fit in fits)
    return fits, outcomes


def _protocol_record(
    problem: Problem, solver: str, positive: int | None, positive_label: str | None, *, tol: float, max_iter: int, seed: int
) -> dict[str, Any]:
    """Every parameter of the protocol as this run applied it."""
    return {
        "name": PROTOCOL_NAME,
        "classifier": "LinearSVC problem: L2 penalty, squared hinge, one-vs-rest, intercept_scaling=1 (regularized)",
        "solver": solver,
        "C_rule": f"C = {C_NUMERATOR:g} / N_samples, N_samples = training rows of each fit",
        "C_numerator": C_NUMERATOR,
        "standardization": "per fit: mean/std (ddof=0) of that fit's training rows; near-constant features scale 1",
        "loss": "squared_hinge",
        "penalty": "l2",
        "multi_class": "ovr",
        "dual": "auto" if solver == "liblinear" else False,
        "tol": tol,
        "max_iter": max_iter,
        "n_folds": problem.n_folds,
        "fits": "one per CV fold (scored on its fold and the test set) + final on all training rows",
        "fscore": "binary F1 of positive_label" if positive is not None else "macro F1",
        "positive_label": problem.classes[positive] if positive is not None else None,
        "positive_label_rule": "given" if positive_label is not None else "second class in sorted order",
        "std_ddof": STD_DDOF,
        "seed": seed,
    }


def _result(
    problem: Problem,
    fits: list[tuple[np.ndarray, dict[str, np.ndarray]]],
    outcomes: list[dict[str, Any]],
    positive: int | None,
    protocol: dict[str, Any],
) -> dict[str, Any]:
    """The returned record (see :func:`run_linear_probe`): scores per fold model, the final model, mean ± std."""
    y_test = problem.y[problem.test_rows]
    fold_records = []
    for f, outcome in enumerate(outcomes[:-1]):
        y_val = problem.y[fits[f][1]["val"]]
        fold_records.append(
            {
                "fold": f,
                "n_fit": outcome["n_fit"],
                "n_val": int(y_val.size),
                "C": outcome["C"],
                "val": _scores(y_val, outcome["predictions"]["val"], positive),
                "test": _scores(y_test, outcome["predictions"]["test"], positive),
                "solver_info": outcome["solver_info"],
            }
        )
    final = outcomes[-1]
    metrics = ("accuracy", "fscore", "macro_f1")
    summary = {
        part: {m: _mean_std([record[part][m] for record in fold_records]) for m in metrics} for part in ("test", "val")
    }
    return {
        "protocol": protocol,
        "classes": problem.classes,
        "n_train": int(problem.train_rows.size),
        "n_test": int(problem.test_rows.size),
        "n_features": int(problem.x.shape[1]),
        "train_class_counts": np.bincount(problem.y[problem.train_rows], minlength=len(problem.classes)).tolist(),
        "folds": fold_records,
        "final": {
            "n_fit": final["n_fit"],
            "C": final["C"],
            "test": _scores(y_test, final["predictions"]["test"], positive),
            "solver_info": final["solver_info"],
        },
        "summary": summary,
        "predictions": {
            "test_rows": problem.test_rows.tolist(),
            "fold_models": [outcome["predictions"]["test"].tolist() for outcome in outcomes[:-1]],
            "final_model": final["predictions"]["test"].tolist(),
        },
    }


# --------------------------------------------------------------------------------------------
# Image-level vs group-level


def with_group_level(result: dict[str, Any], group_result: dict[str, Any], group_info: dict[str, Any]) -> dict[str, Any]:
    """``result`` (image-level split) plus ``group_level`` (the same protocol on the group-aware split)
    and ``group_gap``: image-level minus group-level mean test score over the fold models, per metric.

    A positive gap is what near-duplicates of a test image's patient / slide / lesion in the training
    rows were worth: identity leakage, not diagnosis.
    """
    test_image, test_group = result["summary"]["test"], group_result["summary"]["test"]
    return {
        **result,
        "group_level": {
            "column": group_info.get("column"),
            "n_groups": group_info.get("n_groups"),
            "method": group_info.get("method"),
            "n_train": group_result["n_train"],
            "n_test": group_result["n_test"],
            "folds": group_result["folds"],
            "final": group_result["final"],
            "summary": group_result["summary"],
        },
        "group_gap": {metric: test_image[metric]["mean"] - test_group[metric]["mean"] for metric in test_image},
    }
