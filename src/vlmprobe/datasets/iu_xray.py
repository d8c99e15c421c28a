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

Label statistics are a side output in the dataset's results folder (``results/datasets/<name>/``):
``label_stats.json`` (counts before and after grouping, what was grouped or merged, labels per
image, prevalence, imbalance ratio, co-occurrence) and ``label_cooccurrence.csv`` (the co-occurrence
matrix, diagonal = label counts), so the imbalance is visible before any model runs.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmprobe.datasets.csv_manifest import read_rows, require_columns, resolve_inside
from vlmprobe.datasets.records import DatasetContext, Record, spec_value
from vlmprobe.errors import VlmprobeError
from vlmprobe.io import write_json, write_text

log = logging.getLogger(__name__)

REPORT_COLUMNS = ("uid", "MeSH", "Problems", "findings", "impression")
PROJECTION_COLUMNS = ("uid", "filename", "projection")
SOURCES = {"problems": "Problems", "mesh": "MeSH"}
CASES = ("lower", "title", "keep")
STATS_JSON = "label_stats.json"
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
            meta = {"uid": uid, "projection": image["projection"].strip(), "terms": cell.strip()}
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
