"""Building the manifest: records + splits -> ``results/manifests/{dataset}.parquet`` (read back with
:mod:`vlmprobe.formats.manifest`).

Columns: ``sample_id`` (unique string), ``path``, ``labels`` (list of strings), ``split``
('train'/'test'), ``fold`` (0..4 for train rows, null for test rows), ``boxes`` (finding boxes, maybe
empty), ``annotation_path`` (mask file or null) and any ``meta_*`` string columns. The schema metadata
(key ``vlmprobe``) records the dataset spec, class list, multi-label flag and seed.

A dataset with a ``group:`` column (e.g. ``meta_patient``) also gets a side table,
``results/manifests/{dataset}.groups.parquet`` (:func:`build_group_split`): ``sample_id``,
``group``, ``group_split``, ``group_fold``, the same hold-out fraction and folds, group-aware (no
group on both sides; see :func:`vlmprobe.datasets.splits.assign_group_splits`). It is a side table
and not two more manifest columns so that declaring a group never rewrites the manifest, which would
invalidate every embedding table of the dataset. ``split``/``fold`` stay the image-level split;
the linear probe runs on both. Samples with an empty group value count as groups of their own
(logged, counted in the metadata).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from vlmprobe.datasets.records import Record
from vlmprobe.datasets.splits import (
    assign_group_splits,
    assign_splits,
    check_class_sizes,
    check_group_sizes,
    check_split_coverage,
)
from vlmprobe.errors import VlmprobeError
from vlmprobe.formats.manifest import read_manifest
from vlmprobe.images import load_image
from vlmprobe.io import write_parquet

log = logging.getLogger(__name__)

METADATA_KEY = b"vlmprobe"
BOX_TYPE = pa.struct(
    [("label", pa.string()), ("x0", pa.int32()), ("y0", pa.int32()), ("x1", pa.int32()), ("y1", pa.int32())]
)


def apply_label_map(dataset: str, records: list[Record], label_map: dict[str, str | None] | None) -> list[Record]:
    """Rename labels through ``label_map``; a label missing from a given map is an error (no silent drops).

    A label mapped to null removes that label; a record left without labels is dropped with a note.
    """
    if not label_map:
        return records
    unknown = sorted({name for record in records for name in record.labels if name not in label_map})
    if unknown:
        raise VlmprobeError(
            f"Dataset {dataset!r}: label(s) {unknown[:10]} are not in its `label_map`.",
            "add them to `label_map` (map a label to null to drop it).",
        )
    kept = []
    for record in records:
        labels = tuple(sorted({label_map[name] for name in record.labels if label_map[name] is not None}))
        if labels:
            record.labels = labels
            kept.append(record)
    if len(kept) < len(records):
        log.info("dataset %s: %d samples left without labels after label_map were dropped", dataset, len(records) - len(kept))
    return kept


def drop_small_classes(dataset: str, records: list[Record], min_class_size: int | None) -> list[Record]:
    if not min_class_size:
        return records
    counts = Counter(name for record in records for name in record.labels)
    small = {name for name, count in counts.items() if count < min_class_size}
    if not small:
        return records
    log.warning("dataset %s: dropping classes below min_class_size=%d: %s", dataset, min_class_size, sorted(small))
    kept = []
    for record in records:
        labels = tuple(name for name in record.labels if name not in small)
        if labels:
            record.labels = labels
            kept.append(record)
    return kept


def check_unique_ids(dataset: str, records: list[Record]) -> None:
    paths: dict[str, list[str]] = {}
    for record in records:
        paths.setdefault(record.sample_id, []).append(record.path)
    duplicates = sorted(sample_id for sample_id, where in paths.items() if len(where) > 1)
    if duplicates:
        listing = "; ".join(f"{sample_id!r} ({', '.join(paths[sample_id][:3])})" for sample_id in duplicates[:5])
        raise VlmprobeError(
            f"Dataset {dataset!r} has {len(duplicates)} duplicate sample id(s): {listing}"
            + (f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else "")
            + ".",
            "make ids unique: rename or remove one of two files that differ only in extension (x.png, x.jpg), "
            "list each image once, or, for CSV manifests, fix the id column (or drop `id_column` to use the paths).",
        )


def verify_images(dataset: str, records: list[Record], on_bad_image: str, workers: int = 4) -> list[Record]:
    """Decode every image once now, so a corrupt file fails here and not hours later on a GPU node."""

    fixes: dict[str, str] = {}

    def problem(record: Record) -> str | None:
        try:
            load_image(record.path)
        except VlmprobeError as error:
            fixes[error.problem] = error.fix
            return error.problem
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(problem, records))
    bad = [(record, text) for record, text in zip(records, problems) if text]
    if not bad:
        return records
    if on_bad_image == "skip":
        for record, text in bad:
            log.warning("dataset %s: skipping sample %s: %s", dataset, record.sample_id, text)
        return [record for record, text in zip(records, problems) if not text]
    listing = "; ".join(text for _, text in bad[:5])
    shared = {fixes.get(text) for _, text in bad}
    # one cause behind every bad image (a missing DICOM decoder, a VOI choice no file offers): its own fix
    cause = f"{shared.pop()} Otherwise: " if len(shared) == 1 and None not in shared else ""
    raise VlmprobeError(
        f"Dataset {dataset!r}: {len(bad)} unreadable image(s): {listing}",
        cause + "replace or delete those files, or set `on_bad_image: skip` on the dataset to leave them out with a logged note.",
    )


def build_manifest(
    dataset: str,
    spec: dict[str, Any],
    records: list[Record],
    multilabel: bool,
    seed: int,
    test_fraction: float,
    n_folds: int,
    split_protocol: str = "vlmprobe",
) -> pa.Table:
    """Validate records, split them, and return the manifest table (not yet written).

    ``split_protocol``: ``vlmprobe`` (stratified hold-out + CV folds) or a paper's split
    (:mod:`vlmprobe.datasets.protocol_splits`)."""
    if not records:
        raise VlmprobeError(f"Dataset {dataset!r} has no images.", "check the dataset's path in config.yaml.")
    records = apply_label_map(dataset, records, spec.get("label_map"))
    records = drop_small_classes(dataset, records, spec.get("min_class_size"))
    check_unique_ids(dataset, records)
    if spec.get("verify_images", True):
        records = verify_images(dataset, records, spec.get("on_bad_image", "error"))
    if not multilabel:
        several = [f"{record.sample_id} ({len(record.labels)})" for record in records if len(record.labels) != 1]
        if several:
            raise VlmprobeError(
                f"Dataset {dataset!r} is multi-class but sample(s) {several[:5]} have more than one label (count in brackets).",
                "set `multilabel: true` on the dataset, or give each sample exactly one label.",
            )
    records = sorted(records, key=lambda record: record.sample_id)
    labels = [list(record.labels) for record in records]
    classes = sorted({name for names in labels for name in names})
    if split_protocol == "vlmprobe":
        check_class_sizes(dataset, labels, n_folds, test_fraction)
        split, fold = assign_splits(labels, classes, multilabel, seed, test_fraction, n_folds)
        check_split_coverage(dataset, labels, split, fold, classes, n_folds)
    else:
        from vlmprobe.datasets.protocol_splits import protocol_split

        check_class_sizes(dataset, labels, 1, 0.5)  # two classes at least; the paper's split checks nothing else
        split, fold, _ = protocol_split(dataset, records, split_protocol)
        n_folds = 2

    meta_keys = sorted({key for record in records for key in record.meta})
    columns: dict[str, pa.Array] = {
        "sample_id": pa.array([r.sample_id for r in records], pa.string()),
        "path": pa.array([r.path for r in records], pa.string()),
        "labels": pa.array(labels, pa.list_(pa.string())),
        "split": pa.array(split, pa.string()),
        "fold": pa.array(fold, pa.int8()),
        "boxes": pa.array([[vars(box) for box in r.boxes] for r in records], pa.list_(BOX_TYPE)),
        "annotation_path": pa.array([r.annotation_path for r in records], pa.string()),
    }
    for key in meta_keys:
        columns[f"meta_{key}"] = pa.array([r.meta.get(key) for r in records], pa.string())
    provenance = {
        "dataset": dataset,
        "spec": spec,
        "multilabel": multilabel,
        "classes": classes,
        "class_counts": dict(sorted(Counter(n for names in labels for n in names).items())),
        "seed": seed,
        "test_fraction": test_fraction,
        "n_folds": n_folds,
        "split_protocol": split_protocol,
    }
    schema = pa.schema([(name, array.type) for name, array in columns.items()]).with_metadata(
        {METADATA_KEY: json.dumps(provenance, sort_keys=True, default=str)}
    )
    return pa.table(columns, schema=schema)


def write_manifest(path: str | Path, table: pa.Table) -> None:
    write_parquet(path, table)


# --------------------------------------------------------------------------------------------
# The group-aware split: a side table of the manifest

EMPTY_GROUP = {"", "nan", "none", "null", "na", "n/a"}


def group_ids(dataset: str, table: pa.Table, column: str) -> tuple[list[int], list[str], int]:
    """An integer group per manifest row from its ``meta_*`` column; an empty value is a group of its own.

    Returns the ids, the group names (the value, or ``sample:<id>`` for a row without one) and how many
    rows had no value.
    """
    present = [name for name in table.column_names if name.startswith("meta_")]
    if column not in present:
        raise VlmprobeError(
            f"Dataset {dataset!r}: `group: {column}` names no column of its manifest (its meta_* columns: "
            f"{', '.join(present) or 'none'}).",
            "set `group:` to one of those columns, add the column (e.g. `meta_columns` / `metadata_columns`), "
            "or drop `group:`.",
        )
    index: dict[str, int] = {}
    ids, names, missing = [], [], 0
    for sample_id, value in zip(table.column("sample_id").to_pylist(), table.column(column).to_pylist()):
        value = (value or "").strip()
        if value.lower() in EMPTY_GROUP:
            missing += 1
            value = f"sample:{sample_id}"
            key = "\0" + value  # never equal to a real group's value
        else:
            key = value
        ids.append(index.setdefault(key, len(index)))
        names.append(value)
    if missing:
        log.warning("dataset %s: %d sample(s) have no %s value; each is a group of its own", dataset, missing, column)
    return ids, names, missing


def build_group_split(table: pa.Table, provenance: dict[str, Any], column: str) -> pa.Table:
    """The group-aware split of a manifest: same seed, test fraction and folds as its image-level split."""
    dataset = provenance["dataset"]
    labels = table.column("labels").to_pylist()
    classes, n_folds = provenance["classes"], provenance["n_folds"]
    groups, names, missing = group_ids(dataset, table, column)
    check_group_sizes(dataset, labels, groups, column, n_folds)
    split, fold, info = assign_group_splits(
        labels, classes, groups, provenance["multilabel"], provenance["seed"], provenance["test_fraction"], n_folds
    )
    check_split_coverage(dataset, labels, split, fold, classes, n_folds, what=f"group-aware split by {column}")
    info = {"dataset": dataset, "column": column, "n_groups": len(set(groups)), "n_without_group": missing,
            "seed": provenance["seed"], "test_fraction": provenance["test_fraction"], "n_folds": n_folds, **info}
    log.info("dataset %s: %d groups of %s; group-aware test fraction %.3f", dataset, info["n_groups"], column, info["test_fraction_realised"])
    columns = {
        "sample_id": table.column("sample_id"),
        "group": pa.array(names, pa.string()),
        "group_split": pa.array(split, pa.string()),
        "group_fold": pa.array(fold, pa.int8()),
    }
    schema = pa.schema([(name, array.type) for name, array in columns.items()]).with_metadata(
        {METADATA_KEY: json.dumps(info, sort_keys=True, default=str)}
    )
    return pa.table(columns, schema=schema)


def make_group_split(manifest_path: str | Path, column: str, out_path: str | Path) -> None:
    table, provenance = read_manifest(manifest_path)
    write_parquet(out_path, build_group_split(table, provenance, column))


