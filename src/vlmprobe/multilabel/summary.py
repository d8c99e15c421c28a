"""The multi-label study's summary: every ``results/multilabel/{dataset}/{model}/{setting}.json`` -> one table.

``results/summary/multilabel.parquet`` / ``.csv``: one row per (dataset, model, setting), a column per
metric with its bootstrap interval (``{metric}_low``, ``{metric}_high``, ``{metric}_n_valid``), and rows
for skipped settings (``status = skipped`` with the ``reason``).

``results/summary/multilabel.md``: the paper's layout for each (dataset, model) -- rows = settings (zs,
ft, lp), columns = the paper's metrics plus ROC-AUC, ranking loss and the label counts; the best value
of a column is bold and marked ▲, the worst marked ▼ (by the metric's direction; no marks with a single
setting or equal values). Below: embedding-space separation scores, the decision rule of each setting,
and per-label prevalence / predicted-positive rate / F1, where zero-shot over-prediction shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SETTING_ORDER = ("zs", "ft", "lp")
SETTING_NAMES = {"zs": "zero-shot", "ft": "full fine-tuning", "lp": "linear probe"}

# (metric, column title, direction: +1 higher is better, -1 lower is better)
TABLE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("inter_class_distance", "Inter-class dist. ↑", 1),
    ("intra_class_distance", "Intra-class dist. ↓", -1),
    ("distance_ratio", "Ratio ↑", 1),
    ("f1_macro", "F1 macro ↑", 1),
    ("f1_micro", "F1 micro ↑", 1),
    ("exact_match", "Exact match ↑", 1),
    ("lrap", "LRAP ↑", 1),
    ("coverage_error", "Coverage error ↓", -1),
    ("label_ranking_loss", "Ranking loss ↓", -1),
    ("roc_auc_macro", "ROC-AUC macro ↑", 1),
    ("time_min", "Time (min) ↓", -1),
)
SEPARATION_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("silhouette", "Silhouette ↑", 1),
    ("davies_bouldin", "Davies–Bouldin ↓", -1),
    ("fisher_ratio", "Fisher ratio ↑", 1),
    ("distance_ratio_l2", "Ratio, L2-normalised ↑", 1),
    ("precision_macro", "Precision macro ↑", 1),
    ("recall_macro", "Recall macro ↑", 1),
    ("average_precision_macro", "AP macro ↑", 1),
)
TEXT_COLUMNS = ("dataset", "model", "setting", "protocol", "split_protocol", "status", "reason", "decision")


def _setting_rank(setting: str) -> int:
    return SETTING_ORDER.index(setting) if setting in SETTING_ORDER else len(SETTING_ORDER)


def result_row(result: dict[str, Any]) -> dict[str, Any]:
    """One flat row of the summary from one setting's JSON."""
    metrics = result.get("metrics", {})
    intervals = result.get("confidence_intervals", {})
    row: dict[str, Any] = {
        "dataset": result.get("dataset"),
        "model": result.get("model"),
        "setting": result.get("setting"),
        "protocol": result.get("protocol", "vlmprobe"),
        "split_protocol": result.get("split_protocol", "vlmprobe"),
        "status": "ok",
        "reason": None,
        "multilabel": result.get("multilabel"),
        "n_test": result.get("n_test"),
        "decision": (result.get("decision") or {}).get("description"),
    }
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        row[name] = float(value) if math.isfinite(value) else None
    for name, interval in intervals.items():
        row[f"{name}_low"] = interval.get("low")
        row[f"{name}_high"] = interval.get("high")
        row[f"{name}_n_valid"] = interval.get("n_valid")
        if interval.get("note"):
            row[f"{name}_interval_note"] = interval["note"]
    row["time_min"] = row["wall_time_s"] / 60.0 if row.get("wall_time_s") is not None else None
    return row


def build_table(results: Sequence[dict[str, Any]], skipped: Sequence[dict[str, Any]] = ()):
    """A polars DataFrame: one row per (dataset, model, setting), skipped settings included."""
    import polars as pl

    rows = [result_row(result) for result in results]
    for entry in skipped:
        rows.append({"dataset": entry["dataset"], "model": entry["model"], "setting": entry["setting"], "protocol": entry.get("protocol", "vlmprobe"),
                     "status": "skipped", "reason": entry["reason"]})  # fmt: skip
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    rows = sorted(rows, key=lambda r: (str(r["dataset"]), str(r["model"]), _setting_rank(str(r["setting"]))))
    integer = {"n_test", "roc_auc_n_labels", "separation_n_samples", "separation_n_classes"}
    schema = {
        name: (
            pl.String
            if name in TEXT_COLUMNS or name.endswith("_interval_note")
            else pl.Boolean if name == "multilabel" else pl.Int64 if name in integer or name.endswith("_n_valid") else pl.Float64
        )
        for name in columns
    }
    return pl.DataFrame([{name: row.get(name) for name in columns} for row in rows], schema=schema, orient="row")


def _format(value: float | None, name: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if name in ("inter_class_distance", "intra_class_distance") and abs(value) >= 10:
        return f"{value:.2f}"
    if name in ("coverage_error", "time_min", "davies_bouldin"):
        return f"{value:.2f}"
    return f"{value:.3f}"


def _marks(rows: Sequence[dict[str, Any]], name: str, direction: int) -> dict[int, str]:
    """Row index -> '▲' (best) / '▼' (worst) for one column."""
    values = [(i, row.get(name)) for i, row in enumerate(rows) if row.get(name) is not None and math.isfinite(row.get(name))]
    if direction == 0 or len(values) < 2:
        return {}
    numbers = [value * direction for _, value in values]
    best, worst = max(numbers), min(numbers)
    if math.isclose(best, worst, rel_tol=1e-12, abs_tol=1e-12):
        return {}
    marks = {}
    for (i, _), number in zip(values, numbers, strict=True):
        if number == best:
            marks[i] = "▲"
        elif number == worst:
            marks[i] = "▼"
    return marks


def _cell(row: dict[str, Any], name: str, mark: str | None, with_interval: bool) -> str:
    text = _format(row.get(name), name)
    if mark == "▲":
        text = f"**{text}** ▲"
    elif mark == "▼":
        text = f"{text} ▼"
    low, high = row.get(f"{name}_low"), row.get(f"{name}_high")
    if with_interval and low is not None and high is not None:
        text += f" [{_format(low, name)}, {_format(high, name)}]"
    elif with_interval and row.get(f"{name}_interval_note"):
        text += " [not estimable]"
    return text


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, int]], with_interval: bool) -> list[str]:
    marks = {name: _marks(rows, name, direction) for name, _, direction in columns}
    lines = ["| Setting | " + " | ".join(title for _, title, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    for i, row in enumerate(rows):
        cells = [_cell(row, name, marks[name].get(i), with_interval) for name, _, _ in columns]
        lines.append(f"| *{row['setting']}* | " + " | ".join(cells) + " |")
    return lines


def _interval_notes(group: Sequence[dict[str, Any]]) -> list[str]:
    """How the distance intervals were resampled and how many resamples counted, where it is not the plain bootstrap."""
    lines = []
    for result in group:
        said: dict[str, list[str]] = {}
        for name in ("inter_class_distance", "intra_class_distance", "distance_ratio"):
            interval = (result.get("confidence_intervals") or {}).get(name) or {}
            how, note = interval.get("resampling"), interval.get("note")
            if how or note:
                counted = f"{interval.get('n_valid')} of {interval.get('n_resamples')} resamples counted"
                said.setdefault(f"resampled {how or 'over test samples'}; {note or counted}", []).append(name)
        lines += [f"- *{result['setting']}* {', '.join(names)}: {text}." for text, names in said.items()]
    return ["", "Intervals of the class distances:", "", *lines] if lines else []


def markdown(results: Sequence[dict[str, Any]], skipped: Sequence[dict[str, Any]] = ()) -> str:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["dataset"], result["model"]), []).append(result)
    lines = [
        "# Multi-label study: zero-shot (zs), full fine-tuning (ft), linear probe (lp)",
        "",
        "Test split of each dataset. ↑/↓: the better direction. **Bold ▲**: best of the settings in a table, ▼: worst. "
        "[low, high]: 95 % bootstrap interval over test samples (basic bootstrap; it may exclude the estimate when the "
        "estimate is biased, as the plug-in class distances of small classes are). zs and lp share the frozen embeddings, "
        "so their distances are equal; ft's are on its fine-tuned embeddings. Time: the setting's own job "
        "(zs: text prompts + scoring, lp: probe fits, ft: training + re-embedding), not the shared embedding job.",
        "",
    ]
    for (dataset, model), group in sorted(groups.items()):
        group = sorted(group, key=lambda r: _setting_rank(r["setting"]))
        rows = [result_row(result) for result in group]
        first = group[0]
        kind = "multi-label" if first.get("multilabel") else "multi-class"
        protocols = sorted({str(result.get("protocol", "vlmprobe")) for result in group})
        lines += [f"## {dataset} / {model}", "", f"{kind}, {first.get('n_test')} test samples, {len(first.get('classes', []))} labels; "
                  f"protocol {', '.join(protocols)} (split: {first.get('split_protocol', 'vlmprobe')}).", ""]  # fmt: skip
        lines += _table(rows, TABLE_COLUMNS, with_interval=True)
        lines += _interval_notes(group)
        lines += ["", "Embedding-space separation and threshold-free scores:", ""]
        lines += _table(rows, SEPARATION_COLUMNS, with_interval=False)
        lines += ["", "Decisions and label counts:", ""]
        for row in rows:
            lines.append(
                f"- *{row['setting']}* ({SETTING_NAMES.get(row['setting'], row['setting'])}): {row.get('decision') or '—'}; "
                f"{_format(row.get('predicted_labels_per_sample'), 'x')} labels predicted per sample "
                f"(true {_format(row.get('true_labels_per_sample'), 'x')})."
            )
        lines += ["", "Per label: prevalence in the test split, then for each setting the predicted-positive rate / F1:", ""]
        labels = [entry["label"] for entry in first.get("per_label", [])]
        header = "| Label | Support | Prevalence | " + " | ".join(f"{r['setting']} pred. rate / F1" for r in group) + " |"
        lines += [header, "|---|---|---|" + "---|" * len(group)]
        for index, label in enumerate(labels):
            base = first["per_label"][index]
            cells = []
            for result in group:
                entry = result["per_label"][index]
                cells.append(f"{entry['predicted_positive_rate']:.2f} / {entry['f1']:.3f}")
            lines.append(f"| {label} | {base['support']} | {base['prevalence']:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
    if skipped:
        lines += ["## Skipped", ""]
        lines += [f"- {entry['setting']} for {entry['model']} on {entry['dataset']}: {entry['reason']}" for entry in skipped]
        lines.append("")
    if not groups and not skipped:
        lines += ["No multi-label study results (no dataset or setting is enabled).", ""]
    return "\n".join(lines)


def write_multilabel_summary(
    result_paths: Sequence[str | Path],
    table_path: str | Path,
    csv_path: str | Path,
    markdown_path: str | Path,
    skipped: Sequence[dict[str, Any]] = (),
    analyses_dirs: Sequence[str | Path] = (),
) -> None:
    """``analyses_dirs``: protocol sadman2025's paper-analyses folders, summarised below the study's tables."""
    from vlmprobe.io import write_parquet, write_text

    results = [json.loads(Path(path).read_text()) for path in result_paths]
    table = build_table(results, skipped)
    write_parquet(table_path, table)
    write_text(csv_path, table.write_csv())
    analyses = [json.loads((Path(folder) / "analyses.json").read_text()) for folder in analyses_dirs]
    text = markdown(results, skipped)
    if analyses:
        text = text.rstrip("\n") + "\n\n" + paper_analyses_markdown(analyses) + "\n"
    write_text(markdown_path, text)


def paper_analyses_markdown(analyses: Sequence[Mapping[str, Any]]) -> str:
    """Protocol sadman2025's further analyses (:mod:`vlmprobe.multilabel.paper_analyses`, its ``analyses.json``): the
    threshold sweep, the score maps with per-domain F1, the class counts."""
    lines = ["## The notebook's further analyses (protocol sadman2025)", ""]
    for a in analyses:
        lines += [f"### {a['dataset']} / {a['model']}", "", "Threshold sweep (row-min-max scores > t, macro F1; LRAP and coverage do not depend on t):", ""]
        thresholds = [r["threshold"] for r in next(iter(a["threshold_sweep"].values()), [])]
        lines += ["| Setting | " + " | ".join(f"{t:.2f}" for t in thresholds) + " | LRAP | Coverage |", "|---|" + "---|" * (len(thresholds) + 2)]
        settings = a.get("settings") or list(a["threshold_sweep"])
        for setting, rows in ((s, a["threshold_sweep"][s]) for s in settings):
            lines.append(f"| *{setting}* | " + " | ".join(f"{r['f1_macro']:.3f}" for r in rows) + f" | {rows[0]['lrap']:.3f} | {rows[0]['coverage_error']:.2f} |")
        lines += ["", "Score maps at 0.5 (macro over classes; per domain F1). **printed**: what the notebook prints for the setting.", ""]
        domains = a.get("domains", [])
        lines += ["| Setting | Score map | P | R | F1 | labels / sample | " + " | ".join(f"{d} F1" for d in domains) + " |", "|---|---|---|---|---|---|" + "---|" * len(domains)]
        for setting in settings:
            for r in a["score_maps"][setting]:
                mark = " **printed**" if r["printed"] else ""
                cells = " | ".join("—" if r["per_domain"][d]["f1"] is None else f"{r['per_domain'][d]['f1']:.3f}" for d in domains)
                lines.append(f"| *{setting}* | {r['score_map']}{mark} | {r['precision_macro']:.3f} | {r['recall_macro']:.3f} | {r['f1_macro']:.3f} | {r['labels_per_sample']:.2f} | {cells} |")
        lines += ["", "Samples per class (all splits): " + ", ".join(f"{name} {count}" for name, count in a["class_counts"]) + ".", ""]
        notes = {tower: p.get("notes") for tower, p in a["projections"].items() if isinstance(p, dict) and p.get("notes")}
        if notes:
            lines += [f"Projections left out: {json.dumps(notes)}.", ""]
    return "\n".join(lines) if analyses else ""
