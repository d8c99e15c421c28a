"""``iu-xray``: the Indiana University chest X-ray collection as researchers get it (multi-label).

Layout (the Kaggle "Chest X-rays (Indiana University)" copy of Demner-Fushman et al. 2016):
``indiana_reports.csv`` (``uid, MeSH, Problems, image, indication, comparison, findings,
impression``), ``indiana_projections.csv`` (``uid, filename, projection`` with ``Frontal`` /
``Lateral``) and the PNGs in ``images/images_normalized/``.

Labels come from the report's terms, ``Problems`` (default; ``Cardiomegaly;Pulmonary Artery``) or
``MeSH`` (``Cardiomegaly/borderline;Pulmonary Artery/enlarged``: the heading before the first ``/``
is the term), through a configurable mapping, in this order:

1. split on ``;``, normalise case (``label_case``: lower, default / title / keep) and white space;
2. ``synonyms: {term: canonical}`` merges spellings (keys and values normalised like the terms);
3. ``drop_terms`` removes non-findings (default ``["no indexing"]``);
4. ``normal_label`` (``normal``) is kept as a class of its own, but a report that lists findings
   besides "normal" keeps only the findings (a normal study has none), counted in the log;
5. terms on fewer than ``min_label_count`` samples are grouped under ``other_label`` (``other``);
   "normal" is never grouped.

Images: views in ``views`` (default ``[Frontal]``); ``images_per_report: first`` (default) keeps one
image per report, so no report lands on both sides of the train/test split; ``all`` keeps every one.

**Label CSV** (``labels_csv:``, the form CheXpert / CheXbert labellers write): instead of the report
terms, labels come from a table with one column per class (default the 14 CheXpert classes,
:data:`CHEXPERT_CLASSES`) holding ``1`` (positive), ``0`` (negative), ``-1`` (uncertain) or blank (not
mentioned), keyed by ``labels_key``: ``uid`` (one row per report; images picked from the projections
table by ``views`` / ``images_per_report`` as above) or ``filename`` (one row per image, the image
named by the row; its report uid from the CSV's ``uid`` column, else from the projections table).
``uncertain`` names the policy for ``-1``: ``zeros`` (U-Zeros, default: uncertain = negative, what
Sadman et al.'s notebook does by keeping only values equal to 1) or ``ones`` (U-Ones); blank is always
negative. A row without any positive gets ``empty_label`` (default ``No Finding``, as the notebook).
No grouping, synonyms or case change apply: the classes are the CSV's column names.

Every record keeps its report ``uid`` and ``source_row`` (the row of the labels / reports table it came
from, 0-based) as metadata, so a split by report (``split: protocol: sadman2025``) can follow the
table's order exactly.

Label statistics are a side output in the dataset's results folder (``results/datasets/<name>/``):
``label_stats.json`` (counts before and after grouping, what was grouped or merged, labels per
image, prevalence, imbalance ratio, co-occurrence) and ``label_cooccurrence.csv`` (the co-occurrence
matrix, diagonal = label counts), so the imbalance is visible before any model runs.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmprobe.datasets.csv_manifest import read_rows, require_columns, resolve_inside
from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError
from vlmprobe.io import write_json, write_text
from vlmprobe.labels import CHEXPERT_CLASSES

log = logging.getLogger(__name__)

REPORT_COLUMNS = ("uid", "MeSH", "Problems", "findings", "impression")
PROJECTION_COLUMNS = ("uid", "filename", "projection")
SOURCES = {"problems": "Problems", "mesh": "MeSH"}
CASES = ("lower", "title", "keep")
STATS_JSON = "label_stats.json"
UNCERTAIN_POLICIES = ("zeros", "ones")
LABEL_KEYS = ("uid", "filename")
COOCCURRENCE_CSV = "label_cooccurrence.csv"


class TermMapping:
    """Report terms -> labels: case, synonyms, dropped terms and the normal label, from the spec."""

    def __init__(self, spec: dict[str, Any], dataset: str):
        self.source = str(spec.get("label_source", "problems")).lower()
        if self.source not in SOURCES:
            raise VlmprobeError(f"Dataset {dataset!r}: `label_source: {self.source}` is not one of {list(SOURCES)}.", "fix `label_source`.")
        self.case = spec.get("label_case", "lower")
        if self.case not in CASES:
            raise VlmprobeError(f"Dataset {dataset!r}: `label_case: {self.case}` is not one of {list(CASES)}.", "fix `label_case`.")
        self.synonyms = {self.normalise(key): self.normalise(value) for key, value in dict(spec.get("synonyms", {})).items()}
        self.dropped = {self.normalise(term) for term in spec.get("drop_terms", ["no indexing"])}
        self.normal = self.normalise(spec.get("normal_label", "normal"))

    def normalise(self, term: str) -> str:
        term = re.sub(r"\s+", " ", str(term)).strip()
        if self.case == "lower":
            return term.lower()
        if self.case == "title":
            return term.title()
        return term

    def terms(self, cell: str) -> list[str]:
        raw = [part for part in (cell or "").split(";") if part.strip()]
        if self.source == "mesh":
            raw = [part.split("/", 1)[0] for part in raw]
        return [self.normalise(part) for part in raw if self.normalise(part)]

    def labels(self, cell: str) -> tuple[tuple[str, ...], bool]:
        """(labels, whether "normal" was removed because findings were listed beside it)."""
        labels = {self.synonyms.get(term, term) for term in self.terms(cell)}
        labels -= self.dropped
        contradicted = self.normal in labels and len(labels) > 1
        if contradicted:
            labels.discard(self.normal)
        return tuple(sorted(labels)), contradicted


def label_statistics(labels: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Counts, prevalence, labels per sample, imbalance and co-occurrence of multi-label samples."""
    counts = Counter(label for names in labels for label in set(names))
    classes = sorted(counts, key=lambda name: (-counts[name], name))
    index = {name: i for i, name in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for names in labels:
        present = sorted({index[name] for name in names})
        for i in present:
            for j in present:
                matrix[i][j] += 1
    n = len(labels)
    return {
        "n_samples": n,
        "classes": classes,
        "counts": {name: counts[name] for name in classes},
        "prevalence": {name: round(counts[name] / n, 6) for name in classes} if n else {},
        "labels_per_sample": dict(sorted(Counter(len(set(names)) for names in labels).items())),
        "imbalance_ratio": round(counts[classes[0]] / counts[classes[-1]], 3) if classes else None,
        "cooccurrence": matrix,
    }


def cooccurrence_csv(stats: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label", *stats["classes"]])
    for name, row in zip(stats["classes"], stats["cooccurrence"]):
        writer.writerow([name, *row])
    return buffer.getvalue()


def group_rare(labels: list[tuple[str, ...]], min_count: int, other: str, normal: str) -> tuple[list[tuple[str, ...]], list[str]]:
    """Replace labels seen on fewer than ``min_count`` samples by ``other`` (never ``normal``)."""
    if min_count <= 1:
        return labels, []
    counts = Counter(label for names in labels for label in names)
    rare = sorted(name for name, count in counts.items() if count < min_count and name not in (normal, other))
    if not rare:
        return labels, []
    rare_set = set(rare)
    return [tuple(sorted({other if name in rare_set else name for name in names})) for names in labels], rare


def select_images(spec: dict[str, Any], projections: list[dict[str, str]], dataset: str) -> dict[str, list[dict[str, str]]]:
    views = {str(view).strip().lower() for view in spec.get("views", ["Frontal"])}
    per_report = spec.get("images_per_report", "first")
    if per_report not in ("first", "all"):
        raise VlmprobeError(f"Dataset {dataset!r}: `images_per_report: {per_report}` is neither `first` nor `all`.", "fix `images_per_report`.")
    by_uid: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in projections:
        if (row["projection"] or "").strip().lower() in views:
            by_uid[row["uid"].strip()].append(row)
    for uid, rows in by_uid.items():
        rows.sort(key=lambda row: row["filename"])
        if per_report == "first":
            by_uid[uid] = rows[:1]
    return by_uid


def load_records(spec: dict[str, Any], ctx: DatasetContext) -> list[Record]:
    root = ctx.resolve(spec_value(spec, "root", ctx.name))
    reports_path = root / spec.get("reports_csv", "indiana_reports.csv")
    projections_path = root / spec.get("projections_csv", "indiana_projections.csv")
    image_dir = root / spec.get("image_dir", "images/images_normalized")
    if spec.get("labels_csv"):
        return load_label_csv_records(spec, ctx, root, projections_path, image_dir)
    mapping = TermMapping(spec, ctx.name)
    reports = read_rows(reports_path, ctx.name)
    projections = read_rows(projections_path, ctx.name)
    require_columns(ctx.name, reports_path, reports, ["uid", SOURCES[mapping.source]])
    require_columns(ctx.name, projections_path, projections, list(PROJECTION_COLUMNS))
    images = select_images(spec, projections, ctx.name)

    records: list[Record] = []
    n_no_image = n_no_label = n_contradicted = 0
    raw_terms: Counter[str] = Counter()
    for line, report in enumerate(reports, start=2):
        uid = (report["uid"] or "").strip()
        cell = report[SOURCES[mapping.source]] or ""
        labels, contradicted = mapping.labels(cell)
        if not images.get(uid):
            n_no_image += 1
            continue
        if not labels:
            n_no_label += 1
            continue
        n_contradicted += contradicted
        raw_terms.update(mapping.terms(cell))
        for image in images[uid]:
            path = resolve_inside(ctx.name, image_dir, image["filename"], f"{projections_path.name} (uid {uid})")
            meta = {"uid": uid, "source_row": str(line - 2), "projection": image["projection"].strip(), "terms": cell.strip()}
            meta.update({column: (report.get(column) or "").strip() for column in ("findings", "impression") if column in report})
            records.append(Record(sample_id=Path(image["filename"]).with_suffix("").as_posix(), path=str(path), labels=labels, meta=meta))
    if not records:
        raise VlmprobeError(
            f"Dataset {ctx.name!r}: no report of {str(reports_path)!r} has a labelled image in views {spec.get('views', ['Frontal'])}.",
            "check `root`, `views` and `label_source`.",
        )

    before = label_statistics([record.labels for record in records])
    grouped, rare = group_rare([record.labels for record in records], int(spec.get("min_label_count", 0)), mapping.normalise(spec.get("other_label", "other")), mapping.normal)
    for record, labels in zip(records, grouped):
        record.labels = labels
    after = label_statistics(grouped)
    write_label_statistics(ctx.data_dir, spec, mapping, before, after, rare, raw_terms, n_no_image, n_no_label, n_contradicted)
    log.info(
        "dataset %s: %d images of %d reports; skipped %d report(s) without a %s image and %d without terms; "
        "'%s' dropped beside findings in %d; %d rare label(s) grouped; counts: %s",
        ctx.name, len(records), len(reports), n_no_image, "/".join(spec.get("views", ["Frontal"])), n_no_label,
        mapping.normal, n_contradicted, len(rare), dict(list(after["counts"].items())[:12]),
    )
    return records


def write_label_statistics(data_dir: Path, spec, mapping: TermMapping, before, after, rare, raw_terms, n_no_image, n_no_label, n_contradicted) -> None:
    payload = {
        "label_source": SOURCES[mapping.source],
        "label_case": mapping.case,
        "synonyms": mapping.synonyms,
        "drop_terms": sorted(mapping.dropped),
        "normal_label": mapping.normal,
        "min_label_count": int(spec.get("min_label_count", 0)),
        "grouped_into_other": rare,
        "raw_term_counts": dict(sorted(raw_terms.items(), key=lambda item: (-item[1], item[0]))),
        "reports_without_selected_image": n_no_image,
        "reports_without_terms": n_no_label,
        "normal_dropped_beside_findings": n_contradicted,
        "before_grouping": before,
        "after_grouping": after,
    }
    write_json(data_dir / STATS_JSON, payload)
    write_text(data_dir / COOCCURRENCE_CSV, cooccurrence_csv(after))


# ------------------------------------------------------------------------------------------------
# Labels from a CheXpert-format label CSV
# ------------------------------------------------------------------------------------------------


def chexpert_value(cell: str | None, uncertain: str, where: str) -> bool:
    """One cell of a CheXpert-format table: 1 -> positive, 0 / blank -> negative, -1 -> by the policy."""
    text = (cell or "").strip()
    if not text:
        return False
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if value == 1:
        return True
    if value == 0:
        return False
    if value == -1:
        return uncertain == "ones"
    raise VlmprobeError(f"{where}: value {text!r} is not 1, 0, -1 or blank.", "fix the label CSV (CheXpert format: 1 / 0 / -1 / blank).")


def chexpert_labels(row: dict[str, str], columns: Sequence[str], uncertain: str, empty_label: str, where: str) -> tuple[str, ...]:
    """The positive classes of one row (sorted, as every adapter's labels); ``(empty_label,)`` when there is none."""
    positive = tuple(sorted(column for column in columns if chexpert_value(row.get(column), uncertain, f"{where}, column {column!r}")))
    return positive or (empty_label,)


def load_label_csv_records(spec: dict[str, Any], ctx: DatasetContext, root: Path, projections_path: Path, image_dir: Path) -> list[Record]:
    labels_path = root / str(spec["labels_csv"])
    key = spec.get("labels_key", "uid")
    uncertain = spec.get("uncertain", "zeros")
    columns = list(spec.get("label_columns", CHEXPERT_CLASSES))
    empty_label = str(spec.get("empty_label", "No Finding"))
    if key not in LABEL_KEYS:
        raise VlmprobeError(f"Dataset {ctx.name!r}: `labels_key: {key}` is not one of {list(LABEL_KEYS)}.", "fix `labels_key`.")
    if uncertain not in UNCERTAIN_POLICIES:
        raise VlmprobeError(f"Dataset {ctx.name!r}: `uncertain: {uncertain}` is not one of {list(UNCERTAIN_POLICIES)}.", "fix `uncertain`.")
    rows = read_rows(labels_path, ctx.name)
    require_columns(ctx.name, labels_path, rows, [key, *columns])
    uid_of_file: dict[str, str] = {}
    images: dict[str, list[dict[str, str]]] = {}
    if key == "uid" or "uid" not in rows[0]:
        projections = read_rows(projections_path, ctx.name)
        require_columns(ctx.name, projections_path, projections, list(PROJECTION_COLUMNS))
        uid_of_file = {row["filename"].strip(): row["uid"].strip() for row in projections}
        if key == "uid":
            images = select_images(spec, projections, ctx.name)
    records: list[Record] = []
    seen: set[str] = set()
    n_no_image = 0
    for index, row in enumerate(rows):
        where = f"{labels_path.name} row {index + 2}"
        value = (row[key] or "").strip()
        if value in seen:
            raise VlmprobeError(f"Dataset {ctx.name!r}: {where} repeats {key} {value!r}.", f"give each {key} one row in the label CSV.")
        seen.add(value)
        labels = chexpert_labels(row, columns, uncertain, empty_label, f"Dataset {ctx.name!r}: {where}")
        if key == "filename":
            uid = (row.get("uid") or uid_of_file.get(value) or "").strip()
            if not uid:
                raise VlmprobeError(f"Dataset {ctx.name!r}: {where}: image {value!r} has no report uid.", "add a `uid` column to the label CSV.")
            chosen = [{"filename": value, "projection": ""}]
        else:
            uid, chosen = value, images.get(value, [])
            if not chosen:
                n_no_image += 1
                continue
        for image in chosen:
            path = resolve_inside(ctx.name, image_dir, image["filename"], where)
            meta = {"uid": uid, "source_row": str(index), "projection": (image.get("projection") or "").strip()}
            meta.update({column: (row.get(column) or "").strip() for column in ("findings", "impression") if column in row})
            records.append(Record(sample_id=Path(image["filename"]).with_suffix("").as_posix(), path=str(path), labels=labels, meta=meta))
    if not records:
        raise VlmprobeError(f"Dataset {ctx.name!r}: no row of {str(labels_path)!r} has an image.", "check `root`, `labels_key` and `views`.")
    stats = label_statistics([record.labels for record in records])
    payload = {
        "labels_csv": str(labels_path),
        "labels_key": key,
        "uncertain": uncertain,
        "label_columns": columns,
        "empty_label": empty_label,
        "rows_without_selected_image": n_no_image,
        "after_grouping": stats,
    }
    write_json(ctx.data_dir / STATS_JSON, payload)
    write_text(ctx.data_dir / COOCCURRENCE_CSV, cooccurrence_csv(stats))
    log.info("dataset %s: %d images from %s (keyed by %s, uncertain -> %s); counts: %s", ctx.name, len(records), labels_path.name, key, uncertain, stats["counts"])
    return records
