"""Dataset kinds -> records -> one manifest format.

Each kind is one module with ``load_records(spec, ctx) -> list[Record]``; adding a kind is one new
module plus one line in :data:`KINDS`, which also says whether the kind is multi-label by default
(kept here so that building the DAG imports no adapter).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from vlmprobe.datasets.records import DatasetContext, Record
from vlmprobe.errors import VlmprobeError

KINDS: dict[str, tuple[str, bool]] = {
    # kind: (module, multi-label by default)
    "imagefolder": ("vlmprobe.datasets.imagefolder", False),
    "csv": ("vlmprobe.datasets.csv_manifest", False),
    "npz": ("vlmprobe.datasets.npz", False),
    "digits": ("vlmprobe.datasets.digits", False),
    "synthetic-cxr": ("vlmprobe.datasets.synthetic_cxr", True),
    "busi": ("vlmprobe.datasets.busi", False),
    "breakhis": ("vlmprobe.datasets.breakhis", False),
    "onehot-csv": ("vlmprobe.datasets.onehot_csv", False),
    "hierarchical-csv": ("vlmprobe.datasets.hierarchical_csv", False),
    "deepdrid": ("vlmprobe.datasets.deepdrid", False),
    "medmnist": ("vlmprobe.datasets.medmnist", False),
    "iu-xray": ("vlmprobe.datasets.iu_xray", True),
    "dicom": ("vlmprobe.datasets.dicom", False),
}


def check_kind(dataset: str, spec: dict[str, Any]) -> str:
    kind = spec.get("kind")
    if kind not in KINDS:
        raise VlmprobeError(f"Dataset {dataset!r} has unknown kind {kind!r}.", f"use one of {sorted(KINDS)}.")
    return kind


def kind_module(dataset: str, spec: dict[str, Any]):
    return importlib.import_module(KINDS[check_kind(dataset, spec)][0])


def is_multilabel(dataset: str, spec: dict[str, Any]) -> bool:
    """Multi-label or not, known from the config alone (so the DAG can route a dataset before any data is read)."""
    if "multilabel" in spec:
        return bool(spec["multilabel"])
    return KINDS[check_kind(dataset, spec)][1]


def load_records(dataset: str, spec: dict[str, Any], seed: int, data_dir: Path, base_dir: Path) -> list[Record]:
    ctx = DatasetContext(name=dataset, seed=seed, data_dir=Path(data_dir), base_dir=Path(base_dir))
    return kind_module(dataset, spec).load_records(spec, ctx)


def make_manifest(
    dataset: str,
    spec: dict[str, Any],
    seed: int,
    test_fraction: float,
    n_folds: int,
    out_path: Path,
    data_dir: Path,
    base_dir: Path,
    split_protocol: str = "vlmprobe",
) -> None:
    from vlmprobe.datasets.manifest import build_manifest, write_manifest

    records = load_records(dataset, spec, seed, data_dir, base_dir)
    table = build_manifest(dataset, spec, records, is_multilabel(dataset, spec), seed, test_fraction, n_folds, split_protocol)
    write_manifest(out_path, table)


__all__ = ["KINDS", "DatasetContext", "Record", "is_multilabel", "load_records", "make_manifest"]
