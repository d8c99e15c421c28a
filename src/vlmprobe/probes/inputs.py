"""The rows the probes read: features, class per row, the test rows and the training rows' CV folds.

The split is the linear probe's: the manifest's ``split`` / ``fold`` columns, or, where the dataset declares a
``group:``, its group-aware split (``vlmprobe.formats.manifest.read_group_split``), so no patient sits on both
sides. Checked before any probe runs, each problem a :class:`~vlmprobe.errors.VlmprobeError` with its fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.probe_inputs import check_inputs


@dataclass(frozen=True)
class ProbeRows:
    x: np.ndarray
    classes: list[str]
    y: np.ndarray  # class index per row
    train_rows: np.ndarray
    test_rows: np.ndarray
    fold_of_train: np.ndarray
    split_level: str  # "image" or "group"


def probe_rows(x: np.ndarray, labels: list[list[str]], split: list[Any], fold: list[Any], split_level: str = "image", where: str = "Probes") -> ProbeRows:
    """Checked rows of one (dataset, model): single-label classes, then the same checks as the linear probe's
    (:func:`vlmprobe.probe_inputs.check_inputs`: shapes, finite features, split, consecutive folds, every class in
    every fold's fit), so every probe of the stage reads exactly the rows the linear probe does."""
    if len(labels) and any(len(names) != 1 for names in labels):
        raise VlmprobeError(f"{where}: a sample carries {max(len(n) for n in labels)} labels; the probes read single-label datasets.", "multi-label datasets are read by the multi-label study.")
    problem = check_inputs(x, [str(names[0]) for names in labels], split, fold, where=where)
    return ProbeRows(problem.x, problem.classes, problem.y, problem.train_rows, problem.test_rows, problem.fold_of_train, split_level)
