"""``csv``: a table with a path column and a label column; paths are relative to the CSV's folder.

Multi-label rows separate labels with ``label_delimiter`` (e.g. ``|``). Paths must stay inside the
dataset root (the CSV's folder, or ``root``): absolute paths elsewhere and ``..`` escapes are refused,
since a manifest from one hospital must not silently read another folder.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError


def read_rows(csv_path: Path, dataset: str, separator: str = ",") -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise VlmprobeError(
            f"Dataset {dataset!r}: CSV file {str(csv_path)!r} does not exist.",
            f"correct `datasets: {dataset}: path:` in config.yaml.",
        )
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle, delimiter=separator))


def require_columns(dataset: str, csv_path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    if not rows:
        # csv.DictReader yields no rows for an empty or header-only file, so the columns cannot be checked
        raise VlmprobeError(
            f"Dataset {dataset!r}: CSV {str(csv_path)!r} has no data rows (it is empty or holds only a header).",
            "add one row per image, or point the dataset at the right CSV.",
        )
    present = list(rows[0].keys())
    missing = [column for column in columns if column not in present]
    if missing:
        raise VlmprobeError(
            f"Dataset {dataset!r}: CSV {str(csv_path)!r} has no column(s) {missing}; it has {present}.",
            "set `path_column` / `label_column` to the CSV's real column names.",
        )


def resolve_inside(dataset: str, root: Path, value: str, where: str) -> Path:
    """Resolve ``value`` against ``root`` and refuse anything that escapes it."""
    if not value.strip():
        raise VlmprobeError(f"Dataset {dataset!r}: {where} has an empty path.", "fill in the path or delete the row.")
    candidate = Path(value)
    if candidate.is_absolute():
        resolved = candidate.resolve()
    else:
        resolved = (root / candidate).resolve()
    root_resolved = root.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise VlmprobeError(
            f"Dataset {dataset!r}: {where} path {value!r} points outside the dataset root {str(root_resolved)!r}.",
            "keep images inside the dataset folder and give paths relative to the CSV (no absolute paths, no '..').",
        )
    if not resolved.is_file():
        raise VlmprobeError(
            f"Dataset {dataset!r}: {where} names {value!r}, which does not exist under {str(root_resolved)!r}.",
            "restore the file or remove the row from the CSV.",
        )
    return resolved


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    csv_path = ctx.resolve(spec_value(spec, "path", ctx.name))
    root = ctx.resolve(spec["root"]) if spec.get("root") else csv_path.parent
    rows = read_rows(csv_path, ctx.name, spec.get("separator", ","))
    path_column = spec.get("path_column", "path")
    label_column = spec.get("label_column", "label")
    id_column = spec.get("id_column")
    delimiter = spec.get("label_delimiter")
    meta_columns = list(spec.get("meta_columns", []))
    require_columns(ctx.name, csv_path, rows, [path_column, label_column, *([id_column] if id_column else []), *meta_columns])
    records = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{csv_path.name} line {line}"
        path = resolve_inside(ctx.name, root, row[path_column] or "", where)
        raw = (row[label_column] or "").strip()
        labels = [part.strip() for part in raw.split(delimiter)] if delimiter else [raw]
        labels = [label for label in labels if label]
        if not labels:
            raise VlmprobeError(f"Dataset {ctx.name!r}: {where} has no label.", "fill in the label or delete the row.")
        sample_id = row[id_column] if id_column else Path(row[path_column]).with_suffix("").as_posix()
        records.append(
            Record(
                sample_id=sample_id,
                path=str(path),
                labels=tuple(sorted(set(labels))),
                meta={column: row[column] for column in meta_columns},
            )
        )
    return records
