"""``deepdrid``: DeepDRiD regular fundus images with their diabetic-retinopathy grade (Liu et al. 2022).

The public release (``regular_fundus_images/regular-fundus-training/``) has a CSV with one row per
image: ``patient_id``, ``image_id`` (``<patient>_<l|r><view>``, e.g. ``1_l1``), ``image_path`` (a
Windows path that does not match the folder as downloaded), the grade of the eye in
``left_eye_DR_Level`` or ``right_eye_DR_Level`` (0-4), ``patient_DR_Level`` and quality scores. The
images are ``Images/<patient_id>/<image_id>.jpg`` beside the CSV, so the path is built from the ids
(``path_template``), not read from ``image_path``. The label is the grade of the imaged eye
(``_l`` -> left, ``_r`` -> right): 5 classes, 1,200 training images (the poster's n).

Spec keys: ``path`` (the CSV), ``root`` (default: the CSV's folder), ``path_template`` (default
``Images/{patient_id}/{image_id}.jpg``), ``grade_columns`` (default ``{l: left_eye_DR_Level,
r: right_eye_DR_Level}``), ``meta_columns`` (default: patient id and the quality scores present).
"""

from __future__ import annotations

import re
from typing import Any

from vlmprobe.datasets.csv_manifest import read_rows, require_columns, resolve_inside
from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError

IMAGE_ID = re.compile(r"^(?P<patient>[^_]+)_(?P<eye>[lr])(?P<view>\d+)$")
DEFAULT_GRADES = {"l": "left_eye_DR_Level", "r": "right_eye_DR_Level"}
QUALITY_COLUMNS = ("Overall quality", "Clarity", "Field definition", "Artifact")
OFFICIAL_COUNTS = {"regular-fundus-training.csv": 1200, "regular-fundus-validation.csv": 400}


def expected_count(spec: dict[str, Any]) -> int | None:
    return OFFICIAL_COUNTS.get(str(spec.get("path", "")).replace("\\", "/").rsplit("/", 1)[-1])


def grade_value(value: str, where: str, column: str, dataset: str) -> str:
    text = (value or "").strip()
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number.is_integer() or number < 0:
        raise VlmprobeError(
            f"Dataset {dataset!r}: {where} has grade {text!r} in {column!r}; grades are whole numbers 0-4.",
            "fix the row, or drop it from the CSV.",
        )
    return str(int(number))


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    csv_path = ctx.resolve(spec_value(spec, "path", ctx.name))
    root = ctx.resolve(spec["root"]) if spec.get("root") else csv_path.parent
    rows = read_rows(csv_path, ctx.name, spec.get("separator", ","))
    grades = dict(spec.get("grade_columns", DEFAULT_GRADES))
    template = spec.get("path_template", "Images/{patient_id}/{image_id}.jpg")
    present = list(rows[0]) if rows else []
    meta_columns = list(spec.get("meta_columns", ["patient_id", *[c for c in QUALITY_COLUMNS if c in present]]))
    require_columns(ctx.name, csv_path, rows, ["image_id", *grades.values(), *meta_columns])
    records = []
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path.name} line {line}"
        image_id = (row["image_id"] or "").strip()
        match = IMAGE_ID.match(image_id)
        if not match or match.group("eye") not in grades:
            raise VlmprobeError(
                f"Dataset {ctx.name!r}: {where} has image_id {image_id!r}, not of the form <patient>_<l|r><view>.",
                "use the release's CSV unchanged, or set `grade_columns` for the eye letters it uses.",
            )
        column = grades[match.group("eye")]
        fields = {**row, "image_id": image_id, "patient_id": (row.get("patient_id") or match.group("patient")).strip()}
        path = resolve_inside(ctx.name, root, template.format(**fields), where)
        meta = {name.lower().replace(" ", "_"): (row[name] or "").strip() for name in meta_columns}
        meta["eye"] = "left" if match.group("eye") == "l" else "right"
        records.append(Record(sample_id=image_id, path=str(path), labels=(grade_value(row[column], where, column, ctx.name),), meta=meta))
    return records
