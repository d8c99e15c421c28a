"""``hierarchical-csv``: tables whose rows carry a label at several levels of a class tree (HiCervix).

HiCervix (Cai et al. 2024) ships its 40,229 cells as split tables (``train.csv``, ``val.csv``,
``test.csv``), each row an image name, its annotated class (``class_name``; 26 classes in the published tables, the poster says 29) and the
class's path in a three-level tree (``level_1``, ``level_2``, ``level_3``; a cell annotated only
down to level 2 has an empty ``level_3``). Spec keys:

- ``root``: the dataset folder; ``tables``: ``{<csv, relative to root>: <folder its image names are
  relative to, relative to root>}``, e.g. ``{train.csv: train}``; one table may also be given as
  ``path`` (its images relative to ``root``, default the CSV's folder);
- ``path_column`` (default ``image_name``); ``levels``: the level columns, coarse to fine (default
  ``[level_1, level_2, level_3]``);
- the label: ``label_column`` (e.g. ``class_name``) if given, else ``label_level``: a level column,
  or ``finest`` (default): the deepest non-empty level of each row.

Every level column is kept as ``meta_<column>`` (and the table as ``meta_table``), so a result can
be re-read at a coarser level without rebuilding anything; ``meta_columns`` keeps further columns
(e.g. a slide id, then ``group: meta_<column>`` for a slide-aware split).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vlmprobe.datasets.csv_manifest import read_rows, require_columns, resolve_inside
from vlmprobe.datasets.records import DatasetContext, Record
from vlmprobe.errors import VlmprobeError

log = logging.getLogger(__name__)

DEFAULT_LEVELS = ("level_1", "level_2", "level_3")
EMPTY = {"", "nan", "none", "null", "-"}


def tables(spec: dict[str, Any], ctx: DatasetContext) -> list[tuple[Path, Path]]:
    """(CSV path, image folder) pairs named by the spec."""
    root = ctx.resolve(spec["root"]) if spec.get("root") else None
    if spec.get("tables"):
        if root is None:
            raise VlmprobeError(f"Dataset {ctx.name!r} lists `tables` but has no `root`.", f"add `root:` (the folder the tables lie in) under `datasets: {ctx.name}:`.")
        return [(root / csv_name, root / (image_dir or ".")) for csv_name, image_dir in dict(spec["tables"]).items()]
    if spec.get("path"):
        csv_path = ctx.resolve(spec["path"])
        return [(csv_path, root or csv_path.parent)]
    raise VlmprobeError(f"Dataset {ctx.name!r} (kind hierarchical-csv) names no table.", "add `tables: {train.csv: train}` with `root:`, or `path:`.")


def row_label(row: dict[str, str], spec: dict[str, Any], levels: list[str], where: str, dataset: str) -> str:
    if spec.get("label_column"):
        label = (row[spec["label_column"]] or "").strip()
    else:
        level = spec.get("label_level", "finest")
        if level == "finest":
            filled = [(row[column] or "").strip() for column in levels if (row[column] or "").strip().lower() not in EMPTY]
            label = filled[-1] if filled else ""
        elif level in levels:
            label = (row[level] or "").strip()
        else:
            raise VlmprobeError(f"Dataset {dataset!r}: `label_level: {level}` is neither `finest` nor one of `levels` {levels}.", "fix `label_level`.")
    if label.lower() in EMPTY:
        raise VlmprobeError(
            f"Dataset {dataset!r}: {where} has no label at the chosen level.",
            "choose a coarser `label_level` (or `finest`), or delete the row.",
        )
    return label


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    path_column = spec.get("path_column", "image_name")
    levels = list(spec.get("levels", DEFAULT_LEVELS))
    records = []
    for csv_path, image_dir in tables(spec, ctx):
        rows = read_rows(csv_path, ctx.name, spec.get("separator", ","))
        extra = list(spec.get("meta_columns") or [])
        needed = [path_column, *levels, *extra, *([spec["label_column"]] if spec.get("label_column") else [])]
        require_columns(ctx.name, csv_path, rows, needed)
        for line, row in enumerate(rows, start=2):
            where = f"{csv_path.name} line {line}"
            path = resolve_inside(ctx.name, image_dir, row[path_column] or "", where)
            meta = {column: (row[column] or "").strip() for column in [*levels, *extra]}
            meta["table"] = csv_path.stem
            records.append(
                Record(
                    sample_id=f"{csv_path.stem}/{Path(row[path_column]).with_suffix('').as_posix()}",
                    path=str(path),
                    labels=(row_label(row, spec, levels, where, ctx.name),),
                    meta=meta,
                )
            )
        log.info("dataset %s: %d rows from %s", ctx.name, len(rows), csv_path)
    return records
