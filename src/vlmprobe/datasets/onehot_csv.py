"""``onehot-csv``: a ground-truth table with one 0/1 column per class (ISIC 2019's layout).

``ISIC_2019_Training_GroundTruth.csv`` has a column ``image`` (``ISIC_0000000``) and one column per
diagnosis (MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK) holding ``1.0`` for the image's class and
``0.0`` elsewhere; the images are ``ISIC_2019_Training_Input/<image>.jpg``. Spec keys:

- ``path``: the CSV; ``root``: the image folder (default: the CSV's folder);
- ``id_column`` (default ``image``) and ``path_template`` (default ``{id}.jpg``) give each image's
  file, relative to ``root``;
- ``classes``: the class columns (default: every column but the id column);
- ``metadata_path`` + ``metadata_columns``: an optional second CSV keyed by the same id (ISIC's
  ``ISIC_2019_Training_Metadata.csv``: age, site, lesion id, sex) whose columns become ``meta_*``.

A class column with no positive row (ISIC 2019's UNK in the training set) yields no class, and is
logged: the poster's "9 class" counts the columns, the data has 8 classes with samples.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from vlmprobe.datasets.csv_manifest import read_rows, require_columns, resolve_inside
from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError

log = logging.getLogger(__name__)

ISIC2019_TRAINING_ROWS = 25331


def expected_count(spec: dict[str, Any]) -> int | None:
    """Rows of the official ISIC 2019 training ground truth, when the spec names that file."""
    return ISIC2019_TRAINING_ROWS if str(spec.get("path", "")).endswith("ISIC_2019_Training_GroundTruth.csv") else None


def parse_flag(value: str, where: str, column: str, dataset: str) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if number not in (0.0, 1.0):
        raise VlmprobeError(
            f"Dataset {dataset!r}: {where} column {column!r} holds {value!r}; a one-hot table holds 0 or 1.",
            "fix the value, or list only the class columns under `classes`.",
        )
    return number == 1.0


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    csv_path = ctx.resolve(spec_value(spec, "path", ctx.name))
    root = ctx.resolve(spec["root"]) if spec.get("root") else csv_path.parent
    rows = read_rows(csv_path, ctx.name, spec.get("separator", ","))
    if not rows:
        raise VlmprobeError(f"Dataset {ctx.name!r}: CSV {str(csv_path)!r} has no rows.", "use the complete ground-truth CSV.")
    id_column = spec.get("id_column", "image")
    classes = list(spec.get("classes") or [column for column in rows[0] if column != id_column])
    require_columns(ctx.name, csv_path, rows, [id_column, *classes])
    template = spec.get("path_template", "{id}.jpg")
    meta_by_id = read_metadata(spec, ctx) if spec.get("metadata_path") else {}
    records = []
    no_label = []
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path.name} line {line}"
        sample_id = (row[id_column] or "").strip()
        labels = tuple(column for column in classes if parse_flag(row[column], where, column, ctx.name))
        if not labels:
            no_label.append(sample_id or where)
            continue
        path = resolve_inside(ctx.name, root, template.format(id=sample_id), where)
        meta = meta_by_id.get(sample_id, {})
        if meta_by_id and not meta:
            raise VlmprobeError(
                f"Dataset {ctx.name!r}: image {sample_id!r} ({where}) has no row in {spec['metadata_path']!r}.",
                "use the metadata CSV of the same release, or drop `metadata_path`.",
            )
        records.append(Record(sample_id=sample_id, path=str(path), labels=labels, meta=meta))
    if no_label:
        raise VlmprobeError(
            f"Dataset {ctx.name!r}: {len(no_label)} row(s) of {str(csv_path)!r} have no class set, e.g. {no_label[:5]}.",
            "every row of a one-hot table needs one class column set to 1; list the right columns under `classes`.",
        )
    counts = Counter(label for record in records for label in record.labels)
    empty = [column for column in classes if not counts[column]]
    if empty:
        log.info("dataset %s: class column(s) %s have no positive row and give no class", ctx.name, empty)
    return records


def read_metadata(spec: dict[str, Any], ctx: DatasetContext) -> dict[str, dict[str, str]]:
    meta_path = ctx.resolve(spec["metadata_path"])
    rows = read_rows(meta_path, ctx.name, spec.get("separator", ","))
    id_column = spec.get("id_column", "image")
    columns = list(spec.get("metadata_columns") or [column for column in (rows[0] if rows else {}) if column != id_column])
    require_columns(ctx.name, meta_path, rows, [id_column, *columns])
    return {row[id_column].strip(): {column: row[column] for column in columns} for row in rows}
