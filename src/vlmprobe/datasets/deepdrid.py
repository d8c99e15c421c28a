"""``deepdrid``: DeepDRiD regular fundus images with their diabetic-retinopathy grade (Liu et al. 2022).

The public release (``regular_fundus_images/regular-fundus-training/``) has a CSV with one row per
image: ``patient_id``, ``image_id`` (``<patient>_<l|r><view>``, e.g. ``1_l1``), ``image_path`` (a
Windows path that does not match the folder as downloaded), the grade of the eye in
``left_eye_DR_Level`` or ``right_eye_DR_Level`` (0-4), ``patient_DR_Level`` and quality scores. The
images are ``Images/<patient_id>/<image_id>.jpg`` beside the CSV, so the path is built from the ids
(``path_template``), not read from ``image_path``. The label is the grade of the imaged eye
(``_l`` -> left, ``_r`` -> right): 5 classes, 1,200 training images (the poster's n).

The published table is read as it is. In 11 of its 1,200 rows (patients 56, 77, 164 and 167: e.g.
``56_r3`` has ``left_eye_DR_Level`` = 1 and ``right_eye_DR_Level`` empty) the grade sits in the
other eye's column: the columns there follow the row's position (first two rows left, last two
right), not the image id. Each row is decided from the columns that are filled: the imaged eye's
column when filled, else the only filled one (the grade the graders wrote on that row). What was
decided is recorded per image: ``meta_grade_column`` (``left_eye_DR_Level`` / ``right_eye_DR_Level``)
and ``meta_grade_source`` (``imaged_eye`` / ``other_eye_column``). Where the other eye's column was
used, the grade is compared with the grade the patient's other rows give the imaged eye; rows where
the two disagree (``56_r3`` and ``56_l3`` in the training table) are logged as warnings and marked
``meta_grade_check = disagrees_with_same_eye`` (``agrees``, or ``unchecked`` where no other row
grades that eye), never an error. ``other_eye_rows: drop`` leaves such rows out instead.

Spec keys: ``path`` (the CSV), ``root`` (default: the CSV's folder), ``path_template`` (default
``Images/{patient_id}/{image_id}.jpg``), ``grade_columns`` (default ``{l: left_eye_DR_Level,
r: right_eye_DR_Level}``), ``meta_columns`` (default: patient id and the quality scores present).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from vlmprobe.datasets.csv_manifest import read_rows, require_columns, resolve_inside
from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError

log = logging.getLogger(__name__)

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


def _filled(row: dict[str, str], column: str) -> bool:
    return bool((row.get(column) or "").strip())


def _grade_column(row: dict[str, str], eye: str, grades: dict[str, str]) -> tuple[str | None, str]:
    """(the column the row's grade is read from, ``imaged_eye`` / ``other_eye_column``); None when no grade column is filled."""
    if _filled(row, grades[eye]):
        return grades[eye], "imaged_eye"
    others = [column for letter, column in grades.items() if letter != eye and _filled(row, column)]
    return (others[0], "other_eye_column") if others else (None, "none")


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    csv_path = ctx.resolve(spec_value(spec, "path", ctx.name))
    root = ctx.resolve(spec["root"]) if spec.get("root") else csv_path.parent
    rows = read_rows(csv_path, ctx.name, spec.get("separator", ","))
    grades = dict(spec.get("grade_columns", DEFAULT_GRADES))
    template = spec.get("path_template", "Images/{patient_id}/{image_id}.jpg")
    other_eye_rows = spec.get("other_eye_rows", "keep")
    if other_eye_rows not in ("keep", "drop"):
        raise VlmprobeError(f"Dataset {ctx.name!r}: `other_eye_rows: {other_eye_rows}` is neither keep nor drop.", "use keep (default) or drop.")
    present = list(rows[0]) if rows else []
    meta_columns = list(spec.get("meta_columns", ["patient_id", *[c for c in QUALITY_COLUMNS if c in present]]))
    require_columns(ctx.name, csv_path, rows, ["image_id", *grades.values(), *meta_columns])
    decided = []  # (line, row, image_id, patient, eye, column, source)
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path.name} line {line}"
        image_id = (row["image_id"] or "").strip()
        match = IMAGE_ID.match(image_id)
        if not match or match.group("eye") not in grades:
            raise VlmprobeError(
                f"Dataset {ctx.name!r}: {where} has image_id {image_id!r}, not of the form <patient>_<l|r><view>.",
                "use the release's CSV unchanged, or set `grade_columns` for the eye letters it uses.",
            )
        eye = match.group("eye")
        column, source = _grade_column(row, eye, grades)
        if column is None:
            raise VlmprobeError(
                f"Dataset {ctx.name!r}: {where} ({image_id}) has no grade: {' and '.join(repr(c) for c in grades.values())} are both empty.",
                "fill in the grade, or drop the row from the CSV.",
            )
        patient = (row.get("patient_id") or match.group("patient")).strip()
        decided.append((line, row, image_id, patient, eye, column, source))
    # the grade each (patient, eye) gets from rows whose own eye's column is filled
    same_eye: dict[tuple[str, str], set[str]] = {}
    for line, row, image_id, patient, eye, column, source in decided:
        if source == "imaged_eye":
            same_eye.setdefault((patient, eye), set()).add(grade_value(row[column], f"{csv_path.name} line {line}", column, ctx.name))
    records, moved, disagree = [], [], []
    for line, row, image_id, patient, eye, column, source in decided:
        where = f"{csv_path.name} line {line}"
        grade = grade_value(row[column], where, column, ctx.name)
        check = "agrees"
        if source == "other_eye_column":
            moved.append(image_id)
            known = same_eye.get((patient, eye))
            check = "unchecked" if not known else ("agrees" if known == {grade} else "disagrees_with_same_eye")
            if check == "disagrees_with_same_eye":
                disagree.append(f"{image_id} ({column} = {grade}; the patient's other {'left' if eye == 'l' else 'right'}-eye rows: {sorted(known)})")
            if other_eye_rows == "drop":
                continue
        fields = {**row, "image_id": image_id, "patient_id": patient}
        path = resolve_inside(ctx.name, root, template.format(**fields), where)
        meta = {name.lower().replace(" ", "_"): (row[name] or "").strip() for name in meta_columns}
        meta["eye"] = "left" if eye == "l" else "right"
        meta.update(grade_column=column, grade_source=source, grade_check=check)
        records.append(Record(sample_id=image_id, path=str(path), labels=(grade,), meta=meta))
    if moved:
        log.warning(
            "dataset %s: %d row(s) of %s carry their grade in the other eye's column (%s); %s",
            ctx.name, len(moved), csv_path.name, ", ".join(moved[:12]),
            "dropped (other_eye_rows: drop)" if other_eye_rows == "drop" else "their grade is read from that column (meta_grade_source = other_eye_column)",
        )
    if disagree:
        log.warning(
            "dataset %s: %d row(s) disagree with the grade the same patient's other rows give that eye: %s "
            "(kept with the row's own grade; meta_grade_check = disagrees_with_same_eye)",
            ctx.name, len(disagree), "; ".join(disagree[:12]),
        )
    return records
