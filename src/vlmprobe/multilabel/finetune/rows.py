"""The manifest as fine-tuning sees it: which rows train, validate and test, and their images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.multilabel.finetune.settings import FinetuneSettings


class LabelledImages:
    """Map-style dataset: (preprocessed image, target) from manifest paths."""

    def __init__(self, paths: list[str], targets, preprocess):
        self.paths, self.targets, self.preprocess = paths, targets, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from vlmprobe.images import load_image

        return self.preprocess(load_image(self.paths[index])), self.targets[index]


@dataclass
class Rows:
    """The manifest as fine-tuning sees it: every sample's labels, and which rows train, validate and test."""

    meta: dict[str, Any]
    classes: list[str]
    multilabel: bool
    sample_ids: list[str]
    paths: list[str]
    labels: list[Any]
    split: np.ndarray
    fold: np.ndarray
    indicator: np.ndarray
    is_train: np.ndarray
    is_val: np.ndarray
    is_test: np.ndarray


def read_rows(manifest_path: str | Path, settings: FinetuneSettings) -> Rows:
    """The training rows outside ``validation_fold`` train, that fold validates, the test split is scored."""
    from vlmprobe.formats.manifest import label_matrix, read_manifest

    table, manifest_meta = read_manifest(manifest_path)
    classes = list(manifest_meta["classes"])
    labels = table.column("labels").to_pylist()
    split = np.asarray(table.column("split").to_pylist())
    fold = np.asarray([-1 if value is None else value for value in table.column("fold").to_pylist()])
    indicator = label_matrix(labels, classes)
    is_val = (split == "train") & (fold == settings.validation_fold)
    if not is_val.any():
        raise VlmprobeError(
            f"Fold {settings.validation_fold} of {str(manifest_path)!r} is empty, so fine-tuning has no validation data.",
            f"set `multilabel: finetune: validation_fold:` to one of 0..{int(manifest_meta.get('n_folds', 5)) - 1}.",
        )
    return Rows(
        meta=manifest_meta,
        classes=classes,
        multilabel=bool(manifest_meta.get("multilabel")),
        sample_ids=table.column("sample_id").to_pylist(),
        paths=table.column("path").to_pylist(),
        labels=labels,
        split=split,
        fold=fold,
        indicator=indicator,
        is_train=(split == "train") & ~is_val,
        is_val=is_val,
        is_test=split == "test",
    )

