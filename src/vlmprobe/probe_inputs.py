"""Input checks of a probe on an embedding table: embeddings, labels, split and folds, checked before any fit.

Shared by the stages that fit on the manifest's split and CV folds (the linear probe, the probes), so every
probe refuses the same inputs with the same fixes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError


@dataclass(frozen=True)
class Problem:
    """The checked inputs of one probe: features, class index per row, train/test rows and the train rows' folds."""

    x: np.ndarray
    classes: list[str]
    y: np.ndarray  # class index per row
    train_rows: np.ndarray
    test_rows: np.ndarray
    fold_of_train: np.ndarray  # fold per train row (aligned with train_rows)
    n_folds: int


def is_missing(value: Any) -> bool:
    """None or NaN: a test row's fold."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def is_fold_number(value: Any) -> bool:
    """A whole number >= 0 (as int, float or numpy scalar; not a bool)."""
    if is_missing(value) or isinstance(value, (bool, np.bool_)):
        return False
    try:
        return float(value) == int(value) and int(value) >= 0
    except (TypeError, ValueError):
        return False


def check_inputs(embeddings, labels, split, fold, where: str = "Linear probe") -> Problem:
    """The probe's inputs checked together, every problem a :class:`VlmprobeError` that says how to fix it:
    shapes and lengths, finite features, train/test split, consecutive CV folds, and enough training
    samples of every class in every fold's fit."""
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise VlmprobeError(
            f"{where}: embeddings must be a non-empty 2-D array (samples x features), got shape {x.shape}.",
            "pass the embedding table's vectors stacked into one (n, d) array.",
        )
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    n = x.shape[0]
    for name, values in (("labels", labels), ("split", split), ("fold", fold)):
        if len(values) != n:
            raise VlmprobeError(
                f"{where}: {len(values)} {name} for {n} embedding rows.",
                "join the embedding table to the manifest on sample_id so every row has its label, split and fold.",
            )
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise VlmprobeError(
            f"{where}: {bad.size} embedding row(s) contain NaN or Inf (first: row {int(bad[0])}).",
            "re-extract those embeddings (a failed or fp16-overflowing forward pass) before probing.",
        )

    label_array = np.asarray([str(v) for v in labels])
    split_array = np.asarray([str(v) for v in split])
    unknown = np.flatnonzero((split_array != "train") & (split_array != "test"))
    if unknown.size:
        raise VlmprobeError(
            f"{where}: split {split_array[unknown[0]]!r} at row {int(unknown[0])} is neither 'train' nor 'test'.",
            "use the manifest's split column unchanged.",
        )
    train_rows = np.flatnonzero(split_array == "train")
    test_rows = np.flatnonzero(split_array == "test")
    if test_rows.size == 0:
        raise VlmprobeError(f"{where}: no row has split 'test'.", "rebuild the manifest with its 20 % hold-out.")

    fold_of_train = np.empty(train_rows.size, dtype=np.int64)
    for position, row in enumerate(train_rows):
        value = fold[row]
        if not is_fold_number(value):
            raise VlmprobeError(
                f"{where}: training row {int(row)} has fold {value!r}; training rows need a fold number 0, 1, ...",
                "use the manifest's fold column unchanged.",
            )
        fold_of_train[position] = int(value)
    for row in test_rows:
        if not is_missing(fold[row]):
            raise VlmprobeError(
                f"{where}: test row {int(row)} has fold {fold[row]!r}; test rows must have no fold.",
                "use the manifest's split and fold columns unchanged (a test row in a fold would leak).",
            )
    folds_present = np.unique(fold_of_train)
    n_folds = int(folds_present.size)
    if n_folds < 2 or not np.array_equal(folds_present, np.arange(n_folds)):
        raise VlmprobeError(
            f"{where}: training folds are {folds_present.tolist()}; need consecutive folds 0..k-1 with k >= 2.",
            "rebuild the manifest so that every CV fold has rows.",
        )

    classes = sorted(set(label_array.tolist()))
    if len(classes) < 2:
        raise VlmprobeError(
            f"{where}: only one class ({classes[0]!r}) in the labels; classification needs at least two.",
            "probe a dataset with two or more classes.",
        )
    y = np.searchsorted(np.asarray(classes), label_array)
    train_counts = np.bincount(y[train_rows], minlength=len(classes))
    for index, count in enumerate(train_counts):
        if count == 0:
            raise VlmprobeError(
                f"{where}: class {classes[index]!r} has no training sample (only test rows).",
                "rebuild the manifest with a stratified split, or merge/drop that class.",
            )
        if count < n_folds:
            raise VlmprobeError(
                f"{where}: class {classes[index]!r} has {count} training sample(s), fewer than the {n_folds} folds.",
                "add samples of that class, merge it via `label_map`, or drop it with `min_class_size`.",
            )
    for f in range(n_folds):
        fit_counts = np.bincount(y[train_rows[fold_of_train != f]], minlength=len(classes))
        missing = [classes[i] for i in np.flatnonzero(fit_counts == 0)]
        if missing:
            raise VlmprobeError(
                f"{where}: the fit for fold {f} has no training sample of class(es) {missing}: "
                "all of them sit in that one fold.",
                "rebuild the manifest with stratified folds.",
            )
    return Problem(x, classes, y, train_rows, test_rows, fold_of_train, n_folds)
