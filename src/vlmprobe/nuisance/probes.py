"""The nuisance stage: what else than the diagnosis an embedding encodes, and how much a probe leans on it.

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
* **Variance share** (all rows with a value, train and test: a description of the table, not a
  prediction). ``r2``: the share of the embedding's total variance (centred, in its own units - no
  standardisation, a dimension counts by its variance) explained by a least-squares linear map from the
  target's one-hot coding; for a one-hot coding this is exactly the between-class sum of squares over the
  total sum of squares (multivariate eta squared), so an embedding built as ``class mean + noise`` has
  ``r2`` = between-class variance / total variance. ``r2_adjusted`` = ``1 - (1 - r2) (n - 1) / (n - p - 1)``
  (``p``: rank of the centred coding, ``K - 1`` for one-hot), whose expectation over random labellings is
  about 0, as ``r2``'s is ``p / (n - 1)``. For a nuisance, ``r2_unique`` = R²(diagnosis ⊕ nuisance) −
  R²(diagnosis) on the same rows: the variance the nuisance explains beyond the diagnosis (a shortcut
  correlated with the diagnosis shares its variance with it; an independent one adds its own). ``cka``:
  linear CKA (Kornblith et al., 2019) between the centred embedding and the centred coding, a
  scale-free similarity in [0, 1] beside it.

Shortcut-sensitivity curve
--------------------------
:func:`shortcut_curve` asks how much a diagnostic probe's test accuracy depends on a binary nuisance
(the synthetic-cxr burned-in marker) that agreed with a binary diagnosis in training. For every
*training agreement rate* ``r`` it draws, from the manifest's training rows, ``n`` rows per class of which
``round(r n)`` carry the marker state that agrees with the class (marker present with the finding,
absent without it) and the rest the other state; ``n`` is the largest size every rate allows, so all
points have the same training size and class balance. The probe (the classifier above) is fitted and
scored on the test rows, whose four (class, agrees) cells are re-weighted to a *test agreement* ``a``:
balanced accuracy = mean over the classes of ``a * acc(class, agrees) + (1 - a) * acc(class, disagrees)`` -
the expected balanced accuracy on a test population with that agreement, computed from all test rows.
Three test conditions per ``r``: ``same`` (``a = r``), ``removed`` (``a = 0.5``) and ``reversed``
(``a = 1 - r``). ``repeats`` seeded draws per rate give a mean and std. A probe that uses the marker gains
on ``same`` and loses on ``reversed`` as ``r`` grows towards 1; one that reads only the finding stays flat.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError

log = logging.getLogger(__name__)

MIN_TRAIN_ROWS = 2
"""A nuisance value needs at least this many training rows to be a class of its probe."""
PRESENT, ABSENT = "present", "absent"
DIAGNOSIS = "diagnosis"
DEFAULT_RATES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


# --------------------------------------------------------------------------------------------------
# Variance shares


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


def _fit_predict(x: np.ndarray, train_rows: np.ndarray, targets: np.ndarray, test_rows: np.ndarray, designs: _Designs | None = None) -> np.ndarray:
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
    decision = _fit_predict(x, train, np.concatenate(columns, axis=1), test, designs)
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
# Shortcut-sensitivity curve


def _curve_size(agree: Mapping[int, int], disagree: Mapping[int, int], rates: Sequence[float]) -> int:
    """Largest rows per class that every rate can draw: ``round(r n)`` agreeing, ``n - round(r n)`` not."""
    best = min(agree[c] + disagree[c] for c in (0, 1))
    for n in range(best, 0, -1):
        if all(round(r * n) <= agree[c] and n - round(r * n) <= disagree[c] for r in rates for c in (0, 1)):
            return n
    return 0


def shortcut_curve(
    x: np.ndarray,
    diagnosis: np.ndarray,
    marker: np.ndarray,
    split: Sequence[str],
    rates: Sequence[float] = DEFAULT_RATES,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Balanced test accuracy of a diagnostic probe trained where the marker agrees with the diagnosis at each rate.

    ``diagnosis`` and ``marker`` are booleans per row (the finding present; the marker burned in). See the
    module docstring for the design; returns the per-rate rows (mean, std over ``repeats``) and the sizes.
    """
    diagnosis = np.asarray(diagnosis, dtype=bool)
    marker = np.asarray(marker, dtype=bool)
    split = np.asarray(split)
    rates = [float(r) for r in rates]
    if not rates or any(not 0.0 <= r <= 1.0 for r in rates):
        raise VlmprobeError(f"shortcut curve rates {rates} must lie in [0, 1].", "give agreement rates such as [0.5, 0.7, 0.9, 1.0].")
    agrees = diagnosis == marker
    train, test = split == "train", split == "test"
    pool = {(c, a): np.flatnonzero(train & (diagnosis == bool(c)) & (agrees == a)) for c in (0, 1) for a in (True, False)}
    cells = {(c, a): np.flatnonzero(test & (diagnosis == bool(c)) & (agrees == a)) for c in (0, 1) for a in (True, False)}
    empty = [f"{'with' if c else 'without'} the finding, marker {'agreeing' if a else 'disagreeing'}" for (c, a), rows in cells.items() if rows.size == 0]
    if empty:
        raise VlmprobeError(
            f"Shortcut curve: no test row {' / '.join(empty)}; the four (finding, marker) cells all need test rows.",
            "use a shortcut rate strictly between 0 and 1 and enough images (n_images) for the finding's prevalence.",
        )
    n = _curve_size({c: pool[(c, True)].size for c in (0, 1)}, {c: pool[(c, False)].size for c in (0, 1)}, rates)
    if n < 2:
        raise VlmprobeError(
            "Shortcut curve: the training rows allow fewer than 2 rows per class at some rate.",
            "use more images (n_images), a more prevalent finding, or a shortcut rate nearer 0.5.",
        )
    rng = np.random.default_rng(seed)
    points = []
    for rate in rates:
        n_agree = round(rate * n)
        scores: dict[str, list[float]] = {"same": [], "removed": [], "reversed": []}
        for _ in range(repeats):
            chosen = np.concatenate(
                [rng.choice(pool[(c, True)], n_agree, replace=False) for c in (0, 1)]
                + [rng.choice(pool[(c, False)], n - n_agree, replace=False) for c in (0, 1)]
            )
            test_rows = np.concatenate(list(cells.values()))
            decision = _fit_predict(x, chosen, np.where(diagnosis[chosen], 1.0, -1.0)[:, None], test_rows)
            predicted = dict(zip(test_rows.tolist(), (decision[:, 0] > 0).tolist()))
            accuracy = {key: float(np.mean([predicted[i] == bool(key[0]) for i in rows])) for key, rows in cells.items()}

            def at(agreement: float) -> float:
                return float(np.mean([agreement * accuracy[(c, True)] + (1 - agreement) * accuracy[(c, False)] for c in (0, 1)]))

            scores["same"].append(at(rate))
            scores["removed"].append(at(0.5))
            scores["reversed"].append(at(1.0 - rate))
        points.append(
            {
                "train_agreement": rate,
                **{f"{name}_mean": float(np.mean(values)) for name, values in scores.items()},
                **{f"{name}_std": float(np.std(values)) for name, values in scores.items()},
            }
        )
    return {
        "rates": rates,
        "repeats": repeats,
        "seed": seed,
        "n_train_per_class": n,
        "train_pool": {f"{'finding' if c else 'no_finding'}_{'agree' if a else 'disagree'}": int(rows.size) for (c, a), rows in pool.items()},
        "test_cells": {f"{'finding' if c else 'no_finding'}_{'agree' if a else 'disagree'}": int(rows.size) for (c, a), rows in cells.items()},
        "test_conditions": {"same": "test agreement = training agreement", "removed": "test agreement 0.5", "reversed": "test agreement = 1 - training agreement"},
        "points": points,
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


def shortcut_curve_for_table(
    manifest_path: str | Path,
    embedding_path: str | Path,
    output_path: str | Path,
    finding: str,
    column: str,
    rates: Sequence[float],
    repeats: int,
    dataset: str,
    model: str,
    expected_spec: dict[str, Any] | None = None,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """The curve for one (dataset, model): ``finding`` (a label) against the yes/no ``column`` (``meta_marker``)."""
    from threadpoolctl import threadpool_limits

    from vlmprobe.formats.embeddings import aligned
    from vlmprobe.io import write_json

    manifest, matrix, manifest_meta, _ = aligned(manifest_path, embedding_path, expected_spec)
    nuisance_columns_problem(list(manifest.columns), [column], dataset)
    diagnosis = np.array([finding in names for names in manifest["labels"].to_list()])
    marker = np.array([value == "yes" for value in manifest[column].to_list()])
    with threadpool_limits(limits=max(1, n_jobs), user_api="blas"):
        result = shortcut_curve(matrix, diagnosis, marker, manifest["split"].to_list(), rates, repeats, int(manifest_meta.get("seed", 0)))
    result.update(dataset=dataset, model=model, finding=finding, column=column, observed_agreement=float(np.mean(diagnosis == marker)))
    write_json(output_path, result)
    return result
