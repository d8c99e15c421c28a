"""The rows the probes read: features, class per row, the test rows and the training rows' CV folds.

The split is the linear probe's: the manifest's ``split`` / ``fold`` columns, or, where the dataset declares a
``group:``, its group-aware split (``vlmprobe.formats.manifest.read_group_split``), so no patient sits on both
sides. Checked before any probe runs, each problem a :class:`~vlmprobe.errors.VlmprobeError` with its fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError


@dataclass(frozen=True)
class ProbeRows:
    x: np.ndarray
    classes: list[str]
    y: np.ndarray  # class index per row
    train_rows: np.ndarray
    test_rows: np.ndarray
    fold_of_train: np.ndarray
    split_level: str  # "image" or "group"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def probe_rows(x: np.ndarray, labels: list[list[str]], split: list[Any], fold: list[Any], split_level: str = "image", where: str = "Probes") -> ProbeRows:
    """Checked rows of one (dataset, model): single-label classes, train / test rows, consecutive folds."""
    if x.ndim != 2 or x.shape[0] != len(labels):
        raise VlmprobeError(f"{where}: {x.shape[0]} embedding rows for {len(labels)} manifest rows.", "re-run the workflow so the embeddings match the manifest.")
    if any(len(names) != 1 for names in labels):
        raise VlmprobeError(f"{where}: a sample carries {max(len(n) for n in labels)} labels; the probes read single-label datasets.", "multi-label datasets are read by the multi-label study.")
    names = np.asarray([str(n[0]) for n in labels])
    split_array = np.asarray([str(s) for s in split])
    train_rows = np.flatnonzero(split_array == "train")
    test_rows = np.flatnonzero(split_array == "test")
    if test_rows.size == 0 or train_rows.size == 0:
        raise VlmprobeError(f"{where}: {train_rows.size} training and {test_rows.size} test rows.", "rebuild the manifest with its hold-out split.")
    bad = [int(r) for r in train_rows if _missing(fold[r])]
    if bad:
        raise VlmprobeError(f"{where}: training row {bad[0]} has no CV fold.", "use the manifest's (or group split's) fold column unchanged.")
    fold_of_train = np.asarray([int(fold[r]) for r in train_rows], dtype=np.int64)
    present = np.unique(fold_of_train)
    if present.size < 2 or not np.array_equal(present, np.arange(present.size)):
        raise VlmprobeError(f"{where}: training folds are {present.tolist()}; need consecutive folds 0..k-1 with k >= 2.", "rebuild the manifest so every CV fold has rows.")
    classes = sorted(set(names.tolist()))
    if len(classes) < 2:
        raise VlmprobeError(f"{where}: only one class ({classes[0]!r}).", "probe a dataset with two or more classes.")
    y = np.searchsorted(np.asarray(classes), names)
    missing = [classes[c] for c in np.flatnonzero(np.bincount(y[train_rows], minlength=len(classes)) == 0)]
    if missing:
        raise VlmprobeError(f"{where}: class(es) {missing} have no training row.", "rebuild the manifest with a stratified split, or merge / drop those classes.")
    return ProbeRows(np.asarray(x), classes, y, train_rows, test_rows, fold_of_train, split_level)
