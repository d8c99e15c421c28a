"""Our numbers beside the published ones, with the difference per cell.

Two layouts, matching the two seed studies' tables (shipped in ``vlmprobe/reference/``):

- **linear probe** (Takeda et al. 2025, ``takeda2025_linear_svm.csv``): one row per (model,
  backbone, dataset) with accuracy and F-score in percent, mean ± std over 5 folds. Ours comes
  from the linear-probe summary (fractions); a preset maps its dataset ids to the paper's dataset
  names and its model ids to the paper's (model, backbone).
- **settings** (Sadman et al. 2025, ``sadman2025_iuxray.csv``): one row per setting (zs, ft, lp)
  with one column per metric. Ours is a table with a ``setting`` column; the preset maps the
  paper's metric columns to ours.

Every paper row appears in the comparison: a row the preset could not run says why ("not run:
model not in the preset", "... no result in our summary") instead of vanishing, and our rows the
paper does not have are listed as "ours only". A cell is flagged as *differing* when the gap is
larger than 1 percentage point (the poster rounds its means to whole percent) and larger than
twice the combined fold standard deviation, ``2 * sqrt(std_paper² + std_ours²)``.

**Like with like.** Each paper table was made with one protocol (:data:`REFERENCE_PROTOCOLS`, or the block's
``protocol:``), and each of our rows names the protocol that produced it (a ``protocol`` column; a table
without one predates protocols and counts as ``vlmprobe``). A paper number is only ever set beside ours of
the same protocol; our rows of another protocol are listed as "ours only (protocol ...)", never differenced.
(A linear-probe summary without the column counts as ``takeda2025-linear-svc``, the only protocol our
LinearSVC probe has ever had.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from vlmprobe.errors import VlmprobeError
from vlmprobe.io import write_text
from vlmprobe.tables import markdown_table

REFERENCE_DIR = Path(__file__).parent
LP_METRICS = (("accuracy", "Accuracy"), ("fscore", "F-score"))
ROUNDING_TOLERANCE = 1.0
"""Percentage points: the poster prints whole-percent means, so smaller gaps are rounding."""

REFERENCE_PROTOCOLS = {"sadman2025_iuxray": "sadman2025", "takeda2025_linear_svm": "takeda2025-linear-svc"}
"""The protocol each shipped table was made with (our name for it)."""
DEFAULT_OUR_PROTOCOL = "vlmprobe"
"""The protocol of a summary without a ``protocol`` column (made before protocols existed)."""
NOT_IN_PRESET_MODEL = "not run: model not in the preset"
NOT_IN_PRESET_DATASET = "not run: dataset not in the preset"
NOT_IN_PRESET_BOTH = "not run: model and dataset not in the preset"
NO_RESULT = "not run: no result in our summary"
COMPARED = "compared"
OURS_ONLY = "ours only"


def reference_table(name: str) -> pl.DataFrame:
    """A shipped reference table by name (``takeda2025_linear_svm``) or any CSV path."""
    path = Path(name)
    if not path.suffix:
        path = REFERENCE_DIR / f"{name}.csv"
    if not path.is_file():
        shipped = sorted(p.stem for p in REFERENCE_DIR.glob("*.csv") if not p.stem.endswith(".notes"))
        raise VlmprobeError(f"Reference table {name!r} does not exist.", f"use one of the shipped tables {shipped} or a path to a CSV.")
    return pl.read_csv(path, infer_schema_length=None)


def paper_notes(name: str, reference: pl.DataFrame, key: str = "setting", digits: int = 3) -> dict[tuple[str, str], str]:
    """Notes beside the paper's own numbers, ``{(setting, metric): note}``, so a reader can tell which differences are ours.

    Computed: a printed ratio that its own printed inter and intra distances (each rounded to ``digits``) cannot give
    (Sadman et al.: zs 1.506, but 31.890 / 21.160 = 1.5071). Written: the shipped ``<table>.notes.csv`` (setting,
    metric, note) for what no computation shows.
    """
    notes: dict[tuple[str, str], list[str]] = {}
    half = 0.5 * 10.0**-digits
    if {"inter_class_distance", "intra_class_distance", "ratio"} <= set(reference.columns):
        for row in reference.iter_rows(named=True):
            inter, intra, ratio = row["inter_class_distance"], row["intra_class_distance"], row["ratio"]
            if None in (inter, intra, ratio) or intra <= half:
                continue
            lowest, highest = (inter - half) / (intra + half), (inter + half) / (intra - half)
            if ratio + half < lowest or ratio - half > highest:
                notes.setdefault((row[key], "ratio"), []).append(
                    f"the paper's {ratio:.{digits}f} is not its own {inter:.{digits}f} / {intra:.{digits}f} = {inter / intra:.4f}"
                )
    path = REFERENCE_DIR / f"{name}.notes.csv"
    if not Path(name).suffix and path.is_file():
        for row in pl.read_csv(path).iter_rows(named=True):
            notes.setdefault((row[key], row["metric"]), []).append(row["note"])
    return {cell: "; ".join(texts) for cell, texts in notes.items()}


def read_ours(path: str | Path) -> pl.DataFrame:
    path = Path(path)
    return pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema_length=None)


def paper_protocol(block: dict[str, Any]) -> str:
    """The protocol of a reference block's paper table: its ``protocol:`` or the shipped table's."""
    protocol = block.get("protocol") or REFERENCE_PROTOCOLS.get(str(block["table"]))
    if not protocol:
        raise VlmprobeError(
            f"`reference:` table {block['table']!r} does not say which protocol made its numbers.",
            f"add `protocol:` to the reference block (ours are {sorted(set(REFERENCE_PROTOCOLS.values()) | {DEFAULT_OUR_PROTOCOL})}).",
        )
    return str(protocol)


def with_protocol(ours: pl.DataFrame, default: str = DEFAULT_OUR_PROTOCOL) -> pl.DataFrame:
    if "protocol" in ours.columns:
        return ours.with_columns(pl.col("protocol").fill_null(default))
    return ours.with_columns(pl.lit(default).alias("protocol"))


def other_protocol(protocol: str) -> str:
    return f"{OURS_ONLY} (protocol {protocol}: not comparable)"


def differs(diff: float | None, std_paper: float | None, std_ours: float | None) -> bool | None:
    if diff is None or math.isnan(diff):
        return None
    spread = 2.0 * math.hypot(std_paper or 0.0, std_ours or 0.0)
    return abs(diff) > max(ROUNDING_TOLERANCE, spread)


def _check_mapping(kind: str, mapping: dict[str, Any], known: Iterable, where: str) -> None:
    known = sorted(set(known), key=str)
    unknown = sorted({str(value) for value in mapping.values() if value not in known})
    if unknown:
        raise VlmprobeError(
            f"`reference: {where}` maps to {kind} {unknown}, which the reference table does not have.",
            f"use the table's names: {[str(k) for k in known]}.",
        )


def compare_linear_probe(
    ours: pl.DataFrame,
    reference: pl.DataFrame,
    datasets: dict[str, str],
    models: dict[str, dict[str, str]],
    preset_datasets: Sequence[str],
    preset_models: Sequence[str],
    protocol: str = REFERENCE_PROTOCOLS["takeda2025_linear_svm"],
) -> pl.DataFrame:
    """One row per paper (model, backbone, dataset), plus our rows the paper lacks; percent units.

    Only our rows of ``protocol`` (the paper's) are compared; the others are listed as not comparable."""
    _check_mapping("dataset(s)", datasets, reference["dataset"].to_list(), "linear_probe: datasets")
    pairs = set(zip(reference["model"].to_list(), reference["backbone"].to_list()))
    _check_mapping("(model, backbone) pair(s)", {k: (v["model"], v["backbone"]) for k, v in models.items()}, pairs, "linear_probe: models")
    dataset_id = {name: key for key, name in datasets.items()}
    model_id = {(value["model"], value["backbone"]): key for key, value in models.items()}
    ours = with_protocol(ours, REFERENCE_PROTOCOLS["takeda2025_linear_svm"])
    ours_rows = {(row["model"], row["dataset"]): row for row in ours.filter(pl.col("protocol") == protocol).iter_rows(named=True)}
    others = [row for row in ours.filter(pl.col("protocol") != protocol).iter_rows(named=True)]
    used: set[tuple[str, str]] = set()
    rows = []
    for paper in reference.iter_rows(named=True):
        m_id = model_id.get((paper["model"], paper["backbone"]))
        d_id = dataset_id.get(paper["dataset"])
        model_in, dataset_in = m_id in preset_models, d_id in preset_datasets
        mine = ours_rows.get((m_id, d_id)) if model_in and dataset_in else None
        if mine is not None:
            used.add((m_id, d_id))
            status = COMPARED
        elif model_in and dataset_in:
            status = NO_RESULT
        else:
            status = NOT_IN_PRESET_BOTH if not (model_in or dataset_in) else (NOT_IN_PRESET_MODEL if not model_in else NOT_IN_PRESET_DATASET)
        rows.append(_lp_row(paper, m_id if model_in else None, d_id if dataset_in else None, mine, status))
    paper_dataset = {key: name for key, name in datasets.items()}
    for (m_id, d_id), mine in sorted(ours_rows.items()):
        if (m_id, d_id) in used:
            continue
        name = models.get(m_id, {})
        paper = {
            "group": "(not in the paper)" if not name else "",
            "model": name.get("model", m_id),
            "backbone": name.get("backbone", ""),
            "dataset": paper_dataset.get(d_id, d_id),
            "n_samples": None, "n_classes": None, "note": None,
            **{f"{metric}_{part}": None for metric, _ in LP_METRICS for part in ("mean", "std")},
        }
        rows.append(_lp_row(paper, m_id, d_id, mine, OURS_ONLY))
    for mine in others:
        name = models.get(mine["model"], {})
        paper = {"group": "", "model": name.get("model", mine["model"]), "backbone": name.get("backbone", ""), "dataset": paper_dataset.get(mine["dataset"], mine["dataset"]),
                 "n_samples": None, "n_classes": None, "note": None, **{f"{metric}_{part}": None for metric, _ in LP_METRICS for part in ("mean", "std")}}  # fmt: skip
        rows.append({**_lp_row(paper, mine["model"], mine["dataset"], mine, other_protocol(mine["protocol"])), "our_protocol": mine["protocol"]})
    for row in rows:
        compared_or_ours = row["status"] in (COMPARED, OURS_ONLY)
        row["paper_protocol"] = None if row["status"].startswith(OURS_ONLY) else protocol
        row["our_protocol"] = protocol if compared_or_ours else row.get("our_protocol")
    return pl.DataFrame(rows, schema=LP_SCHEMA)


LP_SCHEMA = {
    "group": pl.String, "model": pl.String, "backbone": pl.String, "dataset": pl.String,
    "model_id": pl.String, "dataset_id": pl.String, "status": pl.String,
    "n_paper": pl.Int64, "n_ours": pl.Int64, "classes_paper": pl.Int64, "classes_ours": pl.Int64,
    **{
        f"{metric}_{part}": dtype
        for metric, _ in LP_METRICS
        for part, dtype in (
            ("paper", pl.Float64), ("paper_std", pl.Float64), ("ours", pl.Float64), ("ours_std", pl.Float64),
            ("diff", pl.Float64), ("differs", pl.Boolean),
        )
    },
    "note": pl.String, "paper_protocol": pl.String, "our_protocol": pl.String,
}


def _lp_row(paper: dict, m_id: str | None, d_id: str | None, mine: dict | None, status: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "group": paper["group"], "model": paper["model"], "backbone": paper["backbone"], "dataset": paper["dataset"],
        "model_id": m_id, "dataset_id": d_id, "status": status,
        "n_paper": paper["n_samples"], "n_ours": mine["n_samples"] if mine else None,
        "classes_paper": paper["n_classes"], "classes_ours": mine["n_classes"] if mine else None,
    }
    for metric, _ in LP_METRICS:
        p_mean, p_std = paper[f"{metric}_mean"], paper[f"{metric}_std"]
        o_mean = mine[f"{metric}_mean"] * 100 if mine and mine[f"{metric}_mean"] is not None else None
        o_std = mine[f"{metric}_std"] * 100 if mine and mine[f"{metric}_std"] is not None else None
        diff = o_mean - p_mean if o_mean is not None and p_mean is not None else None
        row.update({
            f"{metric}_paper": p_mean, f"{metric}_paper_std": p_std, f"{metric}_ours": o_mean, f"{metric}_ours_std": o_std,
            f"{metric}_diff": diff, f"{metric}_differs": differs(diff, p_std, o_std),
        })
    row["note"] = paper.get("note")
    return row


def duplicated_datasets(reference: pl.DataFrame, share: float = 0.5) -> dict[str, tuple[str, int, int]]:
    """Datasets whose numbers equal an earlier dataset's for most models: {dataset: (earlier, equal, models)}.

    The poster's BreastUS columns repeat its BrainMR columns for 15 of its 16 models, a likely copy error.
    """
    columns = [f"{metric}_{part}" for metric, _ in LP_METRICS for part in ("mean", "std")]
    cells = {
        (row["dataset"], row["model"], row["backbone"]): tuple(row[c] for c in columns)
        for row in reference.iter_rows(named=True)
    }
    models = sorted({(model, backbone) for _, model, backbone in cells})
    names = reference["dataset"].unique(maintain_order=True).to_list()
    copies = {}
    for i, dataset in enumerate(names):
        for earlier in names[:i]:
            equal = sum(cells.get((dataset, *m)) is not None and cells.get((dataset, *m)) == cells.get((earlier, *m)) for m in models)
            if equal > share * len(models):
                copies[dataset] = (earlier, equal, len(models))
                break
    return copies


def _cell(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "—"
    return f"{mean:.{digits}f} ± {std:.1f}" if std is not None else f"{mean:.{digits}f}"


def _diff_cell(diff: float | None, flagged: bool | None) -> str:
    if diff is None:
        return "—"
    text = f"{diff:+.1f}"
    return f"**{text}**" if flagged else text


def _count(value: int | None) -> str:
    return f"{value:,}" if value is not None else "—"


def linear_probe_markdown(comparison: pl.DataFrame, reference_name: str, copies: dict[str, tuple[str, int, int]] | None = None, protocol: str | None = None) -> str:
    compared = comparison.filter(pl.col("status") == COMPARED)
    lines = [
        f"# Linear probe: ours beside the paper ({reference_name})\n",
        *([f"Protocol: {protocol} (the paper's); only our rows of that protocol are compared.\n"] if protocol else []),
        "Percent, mean ± std over the 5 fold models. Ours has one decimal, the paper whole percent. Δ = ours − paper in "
        f"percentage points; **bold** Δ: larger than {ROUNDING_TOLERANCE:g} pp and than twice the combined std "
        "(2·√(std_paper² + std_ours²)).\n",
    ]
    n_rows = comparison.filter(pl.col("status") != OURS_ONLY).height
    if compared.height:
        gaps = compared["accuracy_diff"].abs()
        worst = compared.sort(pl.col("accuracy_diff").abs(), descending=True).row(0, named=True)
        flagged = int(compared["accuracy_differs"].sum() + compared["fscore_differs"].sum())
        lines.append(
            f"Compared: {compared.height} of {n_rows} paper cells; mean |Δ accuracy| {gaps.mean():.1f} pp, largest "
            f"{worst['accuracy_diff']:+.1f} pp ({worst['model']} {worst['backbone']}, {worst['dataset']}); "
            f"{flagged} metric cell(s) differ beyond the tolerance.\n"
        )
    else:
        lines.append(f"Compared: none of the {n_rows} paper cells (no result of this preset matches the paper's models and datasets yet).\n")
    not_run = comparison.filter(pl.col("status").str.starts_with("not run"))
    if not_run.height:
        reasons = not_run.group_by("status").len().sort("status")
        lines.append("Not run: " + "; ".join(f"{row['len']} cell(s) — {row['status'].removeprefix('not run: ')}" for row in reasons.iter_rows(named=True)) + ".\n")
    for dataset in comparison["dataset"].unique(maintain_order=True).to_list():
        part = comparison.filter(pl.col("dataset") == dataset)
        first = part.row(0, named=True)
        ours_n = part.filter(pl.col("n_ours").is_not_null())
        n_ours = ours_n["n_ours"][0] if ours_n.height else None
        classes_ours = ours_n["classes_ours"][0] if ours_n.height else None
        n_note = ""
        if n_ours is not None and first["n_paper"] is not None and n_ours != first["n_paper"]:
            n_note = f" — **n differs by {n_ours - first['n_paper']:+,}**"
        lines.append(
            f"## {dataset}\n\nn: paper {_count(first['n_paper'])}, ours {_count(n_ours)}{n_note}; classes: paper "
            f"{_count(first['classes_paper'])}, ours {_count(classes_ours)}.\n"
        )
        if copies and dataset in copies:
            earlier, equal, total = copies[dataset]
            lines.append(f"The paper's numbers for {dataset} equal its {earlier} numbers for {equal} of {total} models: likely a copy error in the paper.\n")
        header = ["Model", "Backbone", "Accuracy ours", "paper", "Δ", "F-score ours", "paper", "Δ", "Status", "Paper note"]
        rows = []
        for row in part.iter_rows(named=True):
            cells = [row["model"], row["backbone"] or ""]
            for metric, _ in LP_METRICS:
                cells += [
                    _cell(row[f"{metric}_ours"], row[f"{metric}_ours_std"], 1),
                    _cell(row[f"{metric}_paper"], row[f"{metric}_paper_std"], 0),
                    _diff_cell(row[f"{metric}_diff"], row[f"{metric}_differs"]),
                ]
            status = row["status"] if row["status"] != COMPARED else f"{row['model_id']} on {row['dataset_id']}"
            cells += [status, row["note"] or ""]
            rows.append(cells)
        lines.append(markdown_table(header, rows))
    return "\n".join(lines)


def write_linear_probe_comparison(
    ours_path: str | Path,
    block: dict[str, Any],
    preset_datasets: Sequence[str],
    preset_models: Sequence[str],
    csv_path: str | Path,
    markdown_path: str | Path,
) -> pl.DataFrame:
    reference = reference_table(block["table"])
    protocol = paper_protocol(block)
    comparison = compare_linear_probe(read_ours(ours_path), reference, dict(block["datasets"]), dict(block["models"]), preset_datasets, preset_models, protocol)
    write_text(csv_path, comparison.write_csv())
    write_text(markdown_path, linear_probe_markdown(comparison, block["table"], duplicated_datasets(reference), protocol))
    return comparison


# --- settings tables (the multi-label study) --------------------------------------------------------

SETTINGS_SCHEMA = {
    "setting": pl.String, "metric": pl.String, "our_metric": pl.String, "paper": pl.Float64, "ours": pl.Float64,
    "diff": pl.Float64, "status": pl.String, "paper_protocol": pl.String, "our_protocol": pl.String, "paper_note": pl.String,
}


def compare_settings(
    ours: pl.DataFrame | None,
    reference: pl.DataFrame,
    metrics: dict[str, str],
    key: str = "setting",
    missing_reason: str = NO_RESULT,
    protocol: str = REFERENCE_PROTOCOLS["sadman2025_iuxray"],
    notes: dict[tuple[str, str], str] | None = None,
) -> pl.DataFrame:
    """Long table: one row per (paper setting, paper metric), plus our settings the paper lacks.

    A paper row is paired only with our row of the same setting *and* ``protocol``; our rows of other
    protocols follow as "ours only (protocol ...: not comparable)" without a paper value or difference."""
    unknown = sorted(set(metrics) - set(reference.columns))
    if unknown:
        raise VlmprobeError(f"`reference: multilabel: metrics` names {unknown}, which the reference table has not.", f"use its columns: {reference.columns}.")
    if ours is not None:
        absent = sorted({column for column in [key, *metrics.values()] if column not in ours.columns})
        if absent:
            raise VlmprobeError(
                f"Our multi-label summary has no column(s) {absent}; it has {ours.columns}.",
                "map each paper metric to one of our columns under `reference: multilabel: metrics`.",
            )
    ours = with_protocol(ours) if ours is not None else None
    mine = {row[key]: row for row in ours.filter(pl.col("protocol") == protocol).iter_rows(named=True)} if ours is not None else {}
    others = list(ours.filter(pl.col("protocol") != protocol).iter_rows(named=True)) if ours is not None else []
    rows = []
    for paper in reference.iter_rows(named=True):
        ours_row = mine.get(paper[key])
        status = COMPARED if ours_row else missing_reason
        if not ours_row and any(row[key] == paper[key] for row in others):
            status = f"not run: no {paper[key]} result of protocol {protocol} (ours of another protocol are listed below, not compared)"
        if ours_row and ours_row.get("status") not in (None, "ok"):
            # the multi-label summary keeps skipped settings as rows with a reason
            status = f"not run: {ours_row.get('reason') or ours_row['status']}"
            ours_row = None
        for metric, our_metric in metrics.items():
            value = ours_row.get(our_metric) if ours_row else None
            paper_value = paper[metric]
            rows.append({
                "setting": paper[key], "metric": metric, "our_metric": our_metric, "paper": paper_value, "ours": value,
                "diff": value - paper_value if value is not None and paper_value is not None else None,
                "status": status, "paper_protocol": protocol, "our_protocol": protocol if ours_row else None,
                "paper_note": (notes or {}).get((paper[key], metric)),
            })
    for setting, ours_row in mine.items():
        if setting not in set(reference[key].to_list()):
            rows += [{"setting": setting, "metric": metric, "our_metric": our_metric, "paper": None, "ours": ours_row.get(our_metric), "diff": None,
                      "status": OURS_ONLY, "paper_protocol": None, "our_protocol": protocol} for metric, our_metric in metrics.items()]  # fmt: skip
    for ours_row in others:
        rows += [{"setting": ours_row[key], "metric": metric, "our_metric": our_metric, "paper": None, "ours": ours_row.get(our_metric), "diff": None,
                  "status": other_protocol(ours_row["protocol"]), "paper_protocol": None, "our_protocol": ours_row["protocol"]}
                 for metric, our_metric in metrics.items()]  # fmt: skip
    return pl.DataFrame(rows, schema=SETTINGS_SCHEMA)


def settings_markdown(comparison: pl.DataFrame, reference_name: str, protocol: str | None = None) -> str:
    header = ["Setting", "Metric (paper / ours)", "ours", "paper", "Δ", "Our protocol", "Status", "Paper note"]
    rows = [
        [r["setting"], f"{r['metric']} / {r['our_metric']}", "—" if r["ours"] is None else f"{r['ours']:.3f}",
         "—" if r["paper"] is None else f"{r['paper']:.3f}", "—" if r["diff"] is None else f"{r['diff']:+.3f}", r.get("our_protocol") or "—", r["status"],
         r.get("paper_note") or ""]
        for r in comparison.iter_rows(named=True)
    ]
    intro = (
        f"# Multi-label study: ours beside the paper ({reference_name})\n\nΔ = ours − paper. Rows the preset could not run say why. "
        + (f"The paper's protocol is {protocol}: only our rows of that protocol are set beside it; ours of another protocol are listed, never differenced.\n\n" if protocol else "\n\n")
    )
    return intro + markdown_table(header, rows)


def write_settings_comparison(ours_path: str | Path | None, block: dict[str, Any], csv_path: str | Path, markdown_path: str | Path, missing_reason: str = NO_RESULT) -> pl.DataFrame:
    ours = None
    if ours_path is not None:
        ours = read_ours(ours_path)
        for column in ("dataset", "model"):
            if block.get(column) is not None and column in ours.columns:
                ours = ours.filter(pl.col(column) == block[column])
    protocol = paper_protocol(block)
    reference = reference_table(block["table"])
    key = block.get("key", "setting")
    notes = paper_notes(block["table"], reference, key)
    comparison = compare_settings(ours, reference, dict(block["metrics"]), key, missing_reason, protocol, notes)
    write_text(csv_path, comparison.write_csv())
    write_text(markdown_path, settings_markdown(comparison, block["table"], protocol))
    return comparison
