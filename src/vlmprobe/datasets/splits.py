"""Stratified 80/20 test hold-out and 5 CV folds on the training rows, seeded.

Multi-class datasets use scikit-learn's stratified splitters; multi-label datasets use iterative
stratification (Sechidis et al., 2011, via ``iterative-stratification``) so that rare labels land in
every fold.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from vlmprobe.errors import VlmprobeError


def label_matrix(labels: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    matrix = np.zeros((len(labels), len(classes)), dtype=np.int8)
    for row, names in enumerate(labels):
        for name in names:
            matrix[row, index[name]] = 1
    return matrix


def minimum_class_size(n_folds: int, test_fraction: float) -> int:
    """Smallest class that can give one test sample and one training sample per fold."""
    return max(n_folds + 1, math.ceil(n_folds / (1.0 - test_fraction)))


def check_class_sizes(dataset: str, labels: Sequence[Sequence[str]], n_folds: int, test_fraction: float) -> None:
    counts = Counter(name for names in labels for name in names)
    if len(counts) < 2:
        only = next(iter(counts), "<none>")
        raise VlmprobeError(
            f"Dataset {dataset!r} has a single class ({only!r}); classification needs at least two.",
            "point the dataset at a folder/CSV with two or more classes.",
        )
    needed = minimum_class_size(n_folds, test_fraction)
    small = sorted((name, count) for name, count in counts.items() if count < needed)
    if small:
        listing = ", ".join(f"{name!r} ({count})" for name, count in small)
        raise VlmprobeError(
            f"Dataset {dataset!r}: class(es) {listing} have fewer than {needed} samples, too few for a "
            f"{test_fraction:.0%} test hold-out plus {n_folds} CV folds.",
            f"add images, merge or remove those classes (`label_map`), or set `min_class_size: {needed}` "
            "on the dataset to drop them with a logged note.",
        )


def assign_splits(
    labels: Sequence[Sequence[str]],
    classes: Sequence[str],
    multilabel: bool,
    seed: int,
    test_fraction: float = 0.2,
    n_folds: int = 5,
) -> tuple[list[str], list[int | None]]:
    """Return ``split`` ('train'/'test') and ``fold`` (0..n_folds-1, None for test) per sample."""
    n = len(labels)
    indices = np.arange(n)
    if multilabel:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit

        y = label_matrix(labels, classes)
        holdout = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
        train_idx, test_idx = next(holdout.split(indices, y))
        folds = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        fold_iter = folds.split(train_idx, y[train_idx])
    else:
        from sklearn.model_selection import StratifiedKFold, train_test_split

        y = np.array([names[0] for names in labels])
        train_idx, test_idx = train_test_split(indices, test_size=test_fraction, stratify=y, random_state=seed)
        train_idx = np.sort(train_idx)
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        fold_iter = folds.split(train_idx, y[train_idx])
    split = ["train"] * n
    fold: list[int | None] = [None] * n
    for i in test_idx:
        split[i] = "test"
    for fold_number, (_, validation) in enumerate(fold_iter):
        for position in validation:
            fold[int(train_idx[position])] = fold_number
    return split, fold


def check_split_coverage(dataset: str, labels, split, fold, classes, n_folds: int) -> None:
    """After splitting: every class has test samples and training samples outside every fold."""
    for name in classes:
        rows = [i for i, names in enumerate(labels) if name in names]
        if not any(split[i] == "test" for i in rows):
            raise VlmprobeError(
                f"Dataset {dataset!r}: class {name!r} ended with no test sample after the stratified split.",
                "add samples of that class or merge it with another via `label_map`.",
            )
        folds_present = {fold[i] for i in rows if split[i] == "train"}
        if len(folds_present) < n_folds:
            raise VlmprobeError(
                f"Dataset {dataset!r}: class {name!r} is missing from some of the {n_folds} CV folds.",
                "add samples of that class, merge it via `label_map`, or drop it with `min_class_size`.",
            )
