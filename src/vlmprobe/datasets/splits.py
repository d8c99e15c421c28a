"""Stratified 80/20 test hold-out and 5 CV folds on the training rows, seeded.

Multi-class datasets use scikit-learn's stratified splitters; multi-label datasets use iterative
stratification (Sechidis et al., 2011, via ``iterative-stratification``) so that rare labels land in
every fold.

Group-aware splits (:func:`assign_group_splits`, a dataset's ``group:`` column: patient, slide,
lesion) keep every group on one side of the hold-out and inside one CV fold:

* multi-class: scikit-learn's ``StratifiedGroupKFold`` (shuffled, seeded). The test hold-out is the
  one of its ``round(1 / test_fraction)`` folds whose size is closest to ``test_fraction`` of the
  images (5 folds for 20 %); the realised fraction is recorded. The CV folds are a second
  ``StratifiedGroupKFold`` over the training groups.
* multi-label: iterative stratification over *groups* (:func:`iterative_group_stratification`):
  Sechidis et al.'s algorithm with a group as the unit, its label vector the per-label image counts
  of its images, its size its image count. Rarest label first, each of its groups (largest first)
  goes to the part that still wants the most of that label (ties: the most images wanted, then
  seeded at random). It takes any proportions, so the hold-out is exactly ``test_fraction`` as far
  as whole groups allow.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.manifest import label_matrix


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
        from iterstrat.ml_stratifiers import (
            MultilabelStratifiedKFold,
            MultilabelStratifiedShuffleSplit,
        )

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


def check_split_coverage(dataset: str, labels, split, fold, classes, n_folds: int, what: str = "stratified split") -> None:
    """After splitting: every class has test samples and training samples outside every fold."""
    extra = "" if what == "stratified split" else ", or drop `group:` from the dataset"
    for name in classes:
        rows = [i for i, names in enumerate(labels) if name in names]
        if not any(split[i] == "test" for i in rows):
            raise VlmprobeError(
                f"Dataset {dataset!r}: class {name!r} ended with no test sample after the {what}.",
                f"add samples of that class or merge it with another via `label_map`{extra}.",
            )
        folds_present = {fold[i] for i in rows if split[i] == "train"}
        if len(folds_present) < n_folds:
            raise VlmprobeError(
                f"Dataset {dataset!r}: class {name!r} is missing from some of the {n_folds} CV folds of the {what}.",
                f"add samples of that class, merge it via `label_map`, or drop it with `min_class_size`{extra}.",
            )


# --------------------------------------------------------------------------------------------
# Group-aware splits


def check_group_sizes(dataset: str, labels, groups: Sequence[int], group_column: str, n_folds: int) -> None:
    """Enough groups for a test hold-out plus ``n_folds`` folds, overall and per class."""
    needed = n_folds + 1
    n_groups = len(set(groups))
    fix = (
        f"use a finer group column than `group: {group_column}`, drop `group:` from the dataset, lower "
        "`split.n_folds`, or merge / drop rare classes (`label_map`, `min_class_size`)."
    )
    if n_groups < needed:
        raise VlmprobeError(
            f"Dataset {dataset!r}: `group: {group_column}` has {n_groups} group(s), too few for a test hold-out "
            f"plus {n_folds} CV folds (need at least {needed}).",
            fix,
        )
    groups_of: dict[str, set[int]] = {}
    for names, group in zip(labels, groups):
        for name in names:
            groups_of.setdefault(name, set()).add(group)
    small = sorted((name, len(members)) for name, members in groups_of.items() if len(members) < needed)
    if small:
        listing = ", ".join(f"{name!r} ({count})" for name, count in small)
        raise VlmprobeError(
            f"Dataset {dataset!r}: class(es) {listing} occur in fewer than {needed} groups of `{group_column}`: "
            f"a group-aware split cannot give them a test group plus one group in each of the {n_folds} folds.",
            fix,
        )


def iterative_group_stratification(
    label_counts: np.ndarray, sizes: np.ndarray, proportions: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Assign each group (row of ``label_counts``: images per label) to one part; returns the part per group.

    Sechidis et al. (2011), Algorithm 1, with groups as the units: ``sizes`` are the groups' image
    counts, ``proportions`` the parts' shares of the images (and of every label's images).
    """
    label_counts = np.asarray(label_counts, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    shares = np.asarray(proportions, dtype=np.float64) / float(np.sum(proportions))
    n_groups, n_labels = label_counts.shape
    wanted_total = shares * sizes.sum()
    wanted = shares[:, None] * label_counts.sum(axis=0)[None, :]  # (parts, labels)
    part = np.full(n_groups, -1, dtype=np.int64)
    remaining = label_counts.copy()
    order = rng.permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]  # largest groups first, ties in seeded order
    while True:
        open_labels = remaining.sum(axis=0)
        candidates = np.flatnonzero(open_labels > 0)
        if candidates.size == 0:
            break
        label = candidates[np.argmin(open_labels[candidates])]
        for g in order[(remaining[order, label] > 0)]:
            best = np.flatnonzero(wanted[:, label] == wanted[:, label].max())
            if best.size > 1:
                best = best[wanted_total[best] == wanted_total[best].max()]
            choice = int(best[rng.integers(best.size)]) if best.size > 1 else int(best[0])
            part[g] = choice
            wanted[choice] -= label_counts[g]
            wanted_total[choice] -= sizes[g]
            remaining[g] = 0
    for g in np.flatnonzero(part < 0):  # groups without any label (not produced by the manifest)
        choice = int(np.argmax(wanted_total))
        part[g] = choice
        wanted_total[choice] -= sizes[g]
    return part


def assign_group_splits(
    labels: Sequence[Sequence[str]],
    classes: Sequence[str],
    groups: Sequence[int],
    multilabel: bool,
    seed: int,
    test_fraction: float = 0.2,
    n_folds: int = 5,
) -> tuple[list[str], list[int | None], dict]:
    """Like :func:`assign_splits`, but every group (an integer id per sample) stays on one side and in one fold.

    Returns ``split``, ``fold`` and a record of the method and the realised test fraction.
    """
    n = len(labels)
    indices = np.arange(n)
    groups = np.asarray(groups, dtype=np.int64)
    if multilabel:
        unique, inverse = np.unique(groups, return_inverse=True)
        y = label_matrix(labels, classes)
        counts = np.zeros((unique.size, len(classes)))
        np.add.at(counts, inverse, y)
        sizes = np.bincount(inverse, minlength=unique.size)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
        side = iterative_group_stratification(counts, sizes, [test_fraction, 1.0 - test_fraction], rng)
        test_idx = np.flatnonzero(side[inverse] == 0)
        train_idx = np.flatnonzero(side[inverse] == 1)
        train_groups, train_inverse = np.unique(inverse[train_idx], return_inverse=True)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
        group_fold = iterative_group_stratification(
            counts[train_groups], sizes[train_groups], [1.0] * n_folds, rng
        )
        fold_of_train = group_fold[train_inverse]
        method = "iterative stratification over groups (Sechidis et al. 2011, groups as units)"
    else:
        from sklearn.model_selection import StratifiedGroupKFold

        y = np.array([names[0] for names in labels])
        k = max(2, round(1.0 / test_fraction))
        holdout = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(indices, y, groups))
        target = test_fraction * n
        best = min(range(k), key=lambda i: abs(len(holdout[i][1]) - target))
        train_idx, test_idx = np.sort(holdout[best][0]), holdout[best][1]
        folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        fold_of_train = np.empty(train_idx.size, dtype=np.int64)
        for fold_number, (_, validation) in enumerate(folds.split(train_idx, y[train_idx], groups[train_idx])):
            fold_of_train[validation] = fold_number
        method = f"StratifiedGroupKFold: test = the closest-sized of {k} folds, then {n_folds} CV folds"
    split = ["train"] * n
    fold: list[int | None] = [None] * n
    for i in test_idx:
        split[int(i)] = "test"
    for position, row in enumerate(train_idx):
        fold[int(row)] = int(fold_of_train[position])
    info = {"method": method, "test_fraction_realised": round(float(len(test_idx)) / n, 6)}
    return split, fold, info
