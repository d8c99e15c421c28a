"""Nuisance probes: what else than the diagnosis an embedding encodes (probes and variance shares per target).

Everything here works from the cached embedding table and the manifest; no model is loaded.

Targets of one (dataset, model)
-------------------------------
* **diagnosis**: a multi-class dataset's label. A multi-label dataset gets one binary target per label
  (``diagnosis:<label>``: present / absent) for the probes, and its label indicator matrix as the joint
  ``diagnosis`` coding for the variance shares.
* **nuisances**: the manifest columns the dataset's config names in ``nuisances`` (``meta_view``,
  ``meta_magnification``, ``meta_marker``, ...), taken as categories. Rows without a value (null or empty)
  are left out of that target, and so are values with fewer than :data:`MIN_TRAIN_ROWS` training rows
  (nothing can be learnt from them); both counts are recorded.

Per target
----------
* **Probe.** The linear probe's classifier (:mod:`vlmprobe.linear_probe.probe`: features standardised on the
  training rows, L2-regularised squared hinge, one-vs-rest, ``C = 100 / N_train``) fitted once on the
  manifest's training rows and scored on its test rows: accuracy and balanced accuracy (mean recall over
  the classes). Chance levels beside them: the *majority rate* (the accuracy of always answering the
  training rows' most frequent value) and ``1 / K`` for balanced accuracy; and a *label-permutation
  baseline*: the same fit with the training labels shuffled (``n_permutations`` times, seeded), scored
  against the true test labels - its mean, its 95th percentile and the permutation p-value
  ``(1 + #{permuted >= observed}) / (1 + n_permutations)`` of the balanced accuracy. Permuted fits are
  extra target columns of one solver call (the one-vs-rest columns are independent problems), so they
  cost little more than one fit.
* **Variance share** (all rows with a value, train and test): ``r2``, ``r2_adjusted``, for a nuisance
  ``r2_unique`` (beyond the diagnosis) and linear ``cka``, :mod:`vlmprobe.nuisance.variance` says how.

The shortcut-sensitivity curve is :mod:`vlmprobe.nuisance.shortcut`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.nuisance.variance import adjusted_r2, linear_cka, one_hot, variance_share

log = logging.getLogger(__name__)

MIN_TRAIN_ROWS = 2
"""A nuisance value needs at least this many training rows to be a class of its probe."""
PRESENT, ABSENT = "present", "absent"
DIAGNOSIS = "diagnosis"


# --------------------------------------------------------------------------------------------------
# Probes


class _Designs:
    """The standardised training design and its preconditioner, computed once per set of training rows
    (every diagnosis target and every nuisance without missing values share one)."""

    def __init__(self) -> None:
        self._cache: dict[bytes, tuple[Any, np.ndarray, Any]] = {}

    def get(self, x: np.ndarray, rows: np.ndarray):
        from vlmprobe.linear_svc import SpectralPreconditioner, Standardizer

        key = np.asarray(rows, dtype=np.int64).tobytes() + repr(x.shape).encode() + str(id(x)).encode()
        if key not in self._cache:
            scaler = Standardizer.fit(x[rows])
            design = scaler.transform(x[rows], with_bias=True)
            # speed only (the optimum is the same): the (d+1)^2 eigendecomposition pays off unless rows are few
            preconditioner = SpectralPreconditioner.from_design(design) if 2 * design.shape[0] > design.shape[1] else None
            self._cache = {key: (scaler, design, preconditioner)}  # one entry: the next target usually reuses it
        return self._cache[key]


def fit_predict(x: np.ndarray, train_rows: np.ndarray, targets: np.ndarray, test_rows: np.ndarray, designs: _Designs | None = None) -> np.ndarray:
    """Decision values on ``x[test_rows]`` of the linear probe's classifier fitted on ``x[train_rows]``, one
    column per ``targets`` column (+1/-1 per training row)."""
    from vlmprobe.linear_svc import C_NUMERATOR, fit_squared_hinge_ovr

    scaler, design, preconditioner = (designs or _Designs()).get(x, train_rows)
    result = fit_squared_hinge_ovr(design, targets, C_NUMERATOR / design.shape[0], preconditioner=preconditioner)
    if not result.converged:
        log.warning("nuisance probe: the fit on %d rows stopped before its tolerance", design.shape[0])
    return scaler.transform(x[test_rows]) @ result.coef.T + result.intercept


def _targets(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """+1/-1 one-vs-rest targets; one column (positive = class 1) for two classes, as the linear probe."""
    if n_classes == 2:
        return np.where(codes == 1, 1.0, -1.0)[:, None]
    return np.where(codes[:, None] == np.arange(n_classes)[None, :], 1.0, -1.0)


def _decide(decision: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        return (decision[:, 0] > 0).astype(np.int64)
    return np.argmax(decision, axis=1)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``."""
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def probe_target(
    x: np.ndarray,
    train: np.ndarray,
    y_train: np.ndarray,
    test: np.ndarray,
    y_test: np.ndarray,
    n_classes: int,
    n_permutations: int,
    seed: int,
    designs: _Designs | None = None,
) -> dict[str, Any]:
    """Probe scores of one target (class indices ``y_*`` of rows ``train`` / ``test`` of ``x``) with its chance
    levels and permutation baseline."""
    rng = np.random.default_rng(seed)
    permuted = [rng.permutation(y_train) for _ in range(n_permutations)]
    columns = [_targets(labels, n_classes) for labels in [y_train, *permuted]]
    decision = fit_predict(x, train, np.concatenate(columns, axis=1), test, designs)
    width = columns[0].shape[1]
    predictions = [_decide(decision[:, i * width : (i + 1) * width], n_classes) for i in range(len(columns))]
    observed = predictions[0]
    majority = int(np.argmax(np.bincount(y_train, minlength=n_classes)))
    result = {
        "accuracy": float(np.mean(observed == y_test)),
        "balanced_accuracy": balanced_accuracy(y_test, observed),
        "majority_rate": float(np.mean(y_test == majority)),
        "balanced_chance": 1.0 / n_classes,
        "n_permutations": n_permutations,
    }
    if n_permutations:
        null_accuracy = np.array([np.mean(p == y_test) for p in predictions[1:]])
        null_balanced = np.array([balanced_accuracy(y_test, p) for p in predictions[1:]])
        result.update(
            permutation_accuracy_mean=float(null_accuracy.mean()),
            permutation_balanced_mean=float(null_balanced.mean()),
            permutation_balanced_q95=float(np.quantile(null_balanced, 0.95)),
            permutation_p=float((1 + np.sum(null_balanced >= result["balanced_accuracy"])) / (1 + n_permutations)),
        )
    else:
        result.update(permutation_accuracy_mean=None, permutation_balanced_mean=None, permutation_balanced_q95=None, permutation_p=None)
    return result


# --------------------------------------------------------------------------------------------------
# One (dataset, model)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def nuisance_columns_problem(columns: Sequence[str], nuisances: Sequence[str], dataset: str) -> None:
    """Refuse a nuisance that is not a ``meta_*`` column of the manifest, naming the ones it has."""
    meta = [c for c in columns if c.startswith("meta_")]
    for name in nuisances:
        if name not in meta:
            raise VlmprobeError(
                f"Dataset {dataset!r}: nuisance {name!r} is not a metadata column of its manifest "
                f"(it has {', '.join(meta) if meta else 'no meta_* column'}).",
                f"list only those columns under `datasets: {dataset}: nuisances:`, or remove the key.",
            )


def _target_rows(values: Sequence[Any], split: np.ndarray) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """Rows kept for a categorical target, its categories, and how many rows were left out and why."""
    values = ["" if _missing(v) else str(v) for v in values]
    present = np.array([v != "" for v in values])
    train_counts: dict[str, int] = {}
    for value, is_train in zip(values, split == "train"):
        if value and is_train:
            train_counts[value] = train_counts.get(value, 0) + 1
    rare = {value for value in set(values) if value and train_counts.get(value, 0) < MIN_TRAIN_ROWS}
    keep = present & np.array([v not in rare for v in values])
    categories = sorted({v for v, k in zip(values, keep) if k})
    return np.flatnonzero(keep), categories, {"n_missing": int((~present).sum()), "n_rare": int((present & ~keep).sum())}


def analyse_target(
    name: str,
    kind: str,
    values: Sequence[Any],
    x: np.ndarray,
    split: np.ndarray,
    diagnosis_coding: np.ndarray | None,
    n_permutations: int,
    seed: int,
    designs: _Designs | None = None,
) -> dict[str, Any]:
    """Probe and variance shares of one categorical target (``values`` per manifest row)."""
    rows, categories, dropped = _target_rows(values, split)
    record: dict[str, Any] = {"target": name, "kind": kind, "classes": categories, "n": int(rows.size), **dropped}
    names = [str(values[i]) for i in rows]
    record["class_counts"] = {c: names.count(c) for c in categories}
    in_train = split[rows] == "train"
    test = rows[split[rows] == "test"]
    reason = None
    if len(categories) < 2:
        reason = f"{len(categories)} value(s) with at least {MIN_TRAIN_ROWS} training rows; a probe needs two"
    elif test.size == 0:
        reason = "no test row has a value"
    if reason:
        log.info("target %s skipped: %s", name, reason)
        return {**record, "skipped": reason}
    index = {c: i for i, c in enumerate(categories)}
    codes = np.array([index[v] for v in names], dtype=np.int64)
    record.update(
        probe_target(
            x, rows[in_train], codes[in_train], test, codes[split[rows] == "test"], len(categories), n_permutations, seed, designs
        )
    )
    xs = x[rows]
    coding = one_hot(codes)
    r2, p = variance_share(xs, coding)
    record.update(r2=r2, r2_adjusted=adjusted_r2(r2, rows.size, p), cka=linear_cka(xs, coding), coding_rank=p)
    if diagnosis_coding is not None:
        joint, _ = variance_share(xs, np.concatenate([diagnosis_coding[rows], coding], axis=1))
        base, _ = variance_share(xs, diagnosis_coding[rows])
        record["r2_unique"] = joint - base
    else:
        record["r2_unique"] = None
    record["skipped"] = None
    return record


def nuisance_probe(
    manifest: Any,
    x: np.ndarray,
    classes: Sequence[str],
    multilabel: bool,
    nuisances: Sequence[str],
    n_permutations: int = 20,
    seed: int = 0,
    dataset: str = "",
) -> dict[str, Any]:
    """Every target of one (dataset, model): a list of records (see the module docstring)."""
    nuisance_columns_problem(list(manifest.columns), nuisances, dataset)
    split = np.asarray(manifest["split"].to_list())
    labels = manifest["labels"].to_list()
    if multilabel:
        from vlmprobe.formats.manifest import label_matrix

        diagnosis_coding = label_matrix(labels, classes).astype(np.float64)
        targets = [(f"{DIAGNOSIS}:{c}", [PRESENT if c in names else ABSENT for names in labels]) for c in classes]
    else:
        diagnosis_coding = one_hot([names[0] for names in labels])
        targets = [(DIAGNOSIS, [names[0] for names in labels])]
    records = []
    designs = _Designs()
    for position, (name, values) in enumerate(targets):
        records.append(analyse_target(name, "diagnosis", values, x, split, None, n_permutations, seed + position, designs))
    if multilabel:  # the joint indicator coding: variance shares only (no single probe)
        r2, p = variance_share(x, diagnosis_coding)
        records.append(
            {
                "target": DIAGNOSIS, "kind": "diagnosis", "classes": list(classes), "n": int(x.shape[0]),
                "r2": r2, "r2_adjusted": adjusted_r2(r2, x.shape[0], p), "cka": linear_cka(x, diagnosis_coding),
                "coding_rank": p, "r2_unique": None, "skipped": None, "note": "label indicator matrix: variance shares only",
            }
        )  # fmt: skip
    for position, column in enumerate(nuisances):
        values = manifest[column].to_list()
        records.append(
            analyse_target(column, "nuisance", values, x, split, diagnosis_coding, n_permutations, seed + 1000 + position, designs)
        )
    return {
        "multilabel": multilabel,
        "n_samples": int(x.shape[0]),
        "n_features": int(x.shape[1]),
        "nuisances": list(nuisances),
        "n_permutations": n_permutations,
        "seed": seed,
        "min_train_rows": MIN_TRAIN_ROWS,
        "method": {
            "probe": "linear probe classifier (standardised, squared hinge, one-vs-rest, C = 100 / N_train), "
            "one fit on the manifest's training rows, scored on its test rows",
            "chance": "majority_rate: accuracy of answering the training majority; balanced_chance: 1 / K; "
            "permutation_*: the same fit on shuffled training labels",
            "r2": "share of the centred embedding's total variance explained by a linear map from the one-hot coding "
            "(between-class / total sum of squares); all rows with a value",
            "r2_unique": "R2(diagnosis + nuisance) - R2(diagnosis) on the nuisance's rows",
            "cka": "linear CKA between the centred embedding and the centred coding",
        },
        "targets": records,
    }


# --------------------------------------------------------------------------------------------------
# Files


def nuisance_for_table(
    manifest_path: str | Path,
    embedding_path: str | Path,
    output_path: str | Path,
    nuisances: Sequence[str],
    n_permutations: int,
    dataset: str,
    model: str,
    expected_spec: dict[str, Any] | None = None,
    n_jobs: int = 1,
) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from vlmprobe.formats.embeddings import aligned
    from vlmprobe.io import write_json

    manifest, matrix, manifest_meta, _ = aligned(manifest_path, embedding_path, expected_spec)
    # BLAS never at its default of every core: oversubscribed parallel jobs run many times slower
    with threadpool_limits(limits=max(1, n_jobs), user_api="blas"):
        result = nuisance_probe(
            manifest, matrix, manifest_meta["classes"], manifest_meta["multilabel"], nuisances,
            n_permutations=n_permutations, seed=int(manifest_meta.get("seed", 0)), dataset=dataset,
        )  # fmt: skip
    result.update(dataset=dataset, model=model)
    write_json(output_path, result)
    return result
