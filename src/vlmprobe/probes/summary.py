"""The probes summary: every (dataset, model) result -> one long table, rank stability across probes, Markdown /
HTML tables, the overview figure (models x readings per dataset, coloured by rank) and the few-shot curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from vlmprobe.errors import VlmprobeError
from vlmprobe.probes.ranks import rank_agreement

COLUMNS = {
    "dataset": "String", "model": "String", "reading": "String", "variant": "String", "metric": "String",
    "value": "Float64", "low": "Float64", "high": "Float64", "std": "Float64", "detail": "String", "split_level": "String",
}
READING_LABELS = {"linear_probe": "linear probe (poster)", "knn": "kNN", "few_shot": "few-shot", "logistic": "tuned LR"}


def _load(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise VlmprobeError(f"Probes summary: result {path!r} is missing or unreadable: {error}.", "delete it and re-run the workflow.") from error


def _row(result: dict[str, Any], reading: str, metric: str, value: float | None, **extra: Any) -> dict[str, Any]:
    return {"dataset": result["dataset"], "model": result["model"], "reading": reading, "variant": extra.pop("variant", ""), "metric": metric,
            "value": value, "split_level": result.get("split_level", "image"), **extra}


def result_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The long-table rows of one probes result."""
    rows = []
    if "knn" in result:
        for metric, value in result["knn"]["test"].items():
            rows.append(_row(result, "knn", metric, value, variant=f"k={result['knn']['k']}", detail=f"T={result['knn']['temperature']:g}"))
    for record in result.get("few_shot", []):
        for metric in ("accuracy", "balanced_accuracy"):
            stats = record[metric]
            rows.append(_row(result, "few_shot", metric, stats["mean"], variant=f"{record['shots']}-shot", low=stats["low"], high=stats["high"], std=stats["std"],
                             detail=f"{record['draws']} draws" + (f", {record['short_classes']} classes with fewer images" if record["short_classes"] else "")))
    if "logistic" in result:
        tuned = result["logistic"]
        for metric, value in tuned["test"].items():
            rows.append(_row(result, "logistic", metric, value, variant=f"C={tuned['C']:g}", detail="C at the edge of the grid" if tuned["C_at_edge"] else ""))
    for attribute, record in result.get("subgroups", {}).items():
        for probe in ("knn", "logistic"):
            for group in record.get(probe, {}).get("groups", []):
                for metric in ("accuracy", "balanced_accuracy"):
                    rows.append(_row(result, "subgroup", metric, group[metric], variant=f"{attribute}={group['group']} ({probe})",
                                     detail=f"n={group['n']}" + ("" if group["ranked"] else ", too few to rank")))
            for metric, gap in record.get(probe, {}).get("gaps", {}).items():
                rows.append(_row(result, "subgroup_gap", metric, gap["gap"], variant=f"{attribute} ({probe})", low=gap["low"], high=gap["high"],
                                 detail=f"worst {gap['worst']} {gap['worst_value']:.1%}, best {gap['best']} {gap['best_value']:.1%}"))
    for nuisance, record in result.get("robustness", {}).items():
        shares = record["neighbour_shares"]
        rows.append(_row(result, "robustness_index", "robustness_index", record["robustness_index"], variant=nuisance, low=record["low"], high=record["high"],
                         detail=f"k={record['k']}, SO {shares['SO']:.0%}, OS {shares['OS']:.0%}, SS {shares['SS']:.0%}, OO {shares['OO']:.0%}"))
    return rows


def linear_probe_rows(result: dict[str, Any], split_level: str) -> list[dict[str, Any]]:
    """The poster's numbers (mean over its fold models) on the split the probes used."""
    summary = result["group_level"]["summary"] if split_level == "group" and "group_level" in result else result["summary"]
    base = {"dataset": result["dataset"], "model": result["model"], "split_level": split_level}
    return [
        _row(base, "linear_probe", metric, summary["test"][metric]["mean"], variant="C=100/N", std=summary["test"][metric].get("std"), detail="mean over fold models")
        for metric in ("accuracy", "macro_f1")
        if metric in summary["test"]
    ]


def build_table(result_paths: list[str], linear_probe_paths: list[str]):
    import polars as pl

    results = [_load(p) for p in result_paths]
    levels = {(r["dataset"], r["model"]): r.get("split_level", "image") for r in results}
    rows = [row for result in results for row in result_rows(result)]
    for path in linear_probe_paths:
        result = _load(path)
        key = (result["dataset"], result["model"])
        if key in levels:
            rows += linear_probe_rows(result, levels[key])
    schema = {name: getattr(pl, kind) for name, kind in COLUMNS.items()}
    return pl.DataFrame([{name: row.get(name) for name in COLUMNS} for row in rows], schema=schema)


def ranked_readings(table, dataset: str) -> dict[str, dict[str, float]]:
    """{probe label: {model: test accuracy}} of one dataset: the readings whose model rankings are compared."""
    import polars as pl

    part = table.filter((pl.col("dataset") == dataset) & (pl.col("metric") == "accuracy"))
    readings: dict[str, dict[str, float]] = {}
    for reading in ("linear_probe", "knn", "few_shot", "logistic"):
        rows = part.filter(pl.col("reading") == reading)
        if reading == "few_shot" and not rows.is_empty():
            top = max(int(v.split("-")[0]) for v in rows["variant"].to_list())
            rows = rows.filter(pl.col("variant") == f"{top}-shot")
            label = f"{top}-shot"
        else:
            label = READING_LABELS[reading]
        if not rows.is_empty():
            readings[label] = dict(zip(rows["model"].to_list(), rows["value"].to_list()))
    return readings


def rank_stability(table):
    """Per dataset, every pair of probes: Kendall's tau of their model rankings and the pairs that swap."""
    import polars as pl

    rows = []
    for dataset in table["dataset"].unique(maintain_order=True).to_list():
        readings = ranked_readings(table, dataset)
        labels = list(readings)
        for i, first in enumerate(labels):
            for second in labels[i + 1 :]:
                models = [m for m in readings[first] if m in readings[second]]
                agreement = rank_agreement(models, [readings[first][m] for m in models], [readings[second][m] for m in models])
                rows.append({"dataset": dataset, "probe_a": first, "probe_b": second, "n_models": agreement["n_models"], "tau": agreement["tau"],
                             "p_value": agreement["p_value"], "n_swapped": len(agreement["swapped"]), "n_pairs": agreement["n_pairs"],
                             "swapped": "; ".join(agreement["swapped"])})
    schema = {"dataset": pl.String, "probe_a": pl.String, "probe_b": pl.String, "n_models": pl.Int64, "tau": pl.Float64, "p_value": pl.Float64,
              "n_swapped": pl.Int64, "n_pairs": pl.Int64, "swapped": pl.String}
    return pl.DataFrame(rows, schema=schema)


# -- text -----------------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.1%}"


def _interval(low: float | None, high: float | None, scale: float = 100.0, fmt: str = "{:+.1f}") -> str:
    if low is None or high is None:
        return ""
    return f"[{fmt.format(low * scale)}, {fmt.format(high * scale)}]"


def accuracy_rows(table) -> tuple[list[str], list[list[str]]]:
    import polars as pl

    part = table.filter(pl.col("metric") == "accuracy")
    shots = sorted({v for v in part.filter(pl.col("reading") == "few_shot")["variant"].to_list()}, key=lambda v: int(v.split("-")[0]))
    header = ["dataset", "model", "split", "linear probe (poster)", "kNN", *shots, "tuned LR", "C"]
    rows = []
    for dataset, model in part.select("dataset", "model").unique(maintain_order=True).rows():
        cells = part.filter((pl.col("dataset") == dataset) & (pl.col("model") == model))

        def value(reading: str, variant: str | None = None) -> str:
            hit = cells.filter((pl.col("reading") == reading) & ((pl.col("variant") == variant) if variant else pl.lit(True)))
            if hit.is_empty():
                return "—"
            row = hit.row(0, named=True)
            spread = f" ± {row['std']:.1%}" if reading == "few_shot" and row["std"] is not None else ""
            return _pct(row["value"]) + spread

        tuned = cells.filter(pl.col("reading") == "logistic")
        rows.append([dataset, model, cells["split_level"][0], value("linear_probe"), value("knn"), *[value("few_shot", s) for s in shots], value("logistic"),
                     tuned["variant"][0].removeprefix("C=") if not tuned.is_empty() else "—"])
    return header, rows


def subgroup_rows(table) -> tuple[list[str], list[list[str]]]:
    import polars as pl

    part = table.filter(pl.col("reading") == "subgroup_gap")
    header = ["dataset", "model", "attribute (probe)", "metric", "gap (points)", "95% CI", "worst / best group"]
    rows = [[r["dataset"], r["model"], r["variant"], r["metric"].replace("_", " "), f"{r['value'] * 100:.1f}", _interval(r["low"], r["high"]), r["detail"]]
            for r in part.iter_rows(named=True)]
    return header, rows


def group_rows(table) -> tuple[list[str], list[list[str]]]:
    """Every subgroup's accuracy and balanced accuracy, one row per (dataset, model, attribute value, probe)."""
    import polars as pl

    part = table.filter(pl.col("reading") == "subgroup")
    header = ["dataset", "model", "group (probe)", "test rows", "accuracy", "balanced accuracy"]
    rows = []
    for (dataset, model, variant), cells in part.group_by(["dataset", "model", "variant"], maintain_order=True):
        value = dict(zip(cells["metric"].to_list(), cells["value"].to_list()))
        rows.append([dataset, model, variant, cells["detail"][0].removeprefix("n="), _pct(value.get("accuracy")), _pct(value.get("balanced_accuracy"))])
    return header, rows


def robustness_rows(table) -> tuple[list[str], list[list[str]]]:
    import polars as pl

    part = table.filter(pl.col("reading") == "robustness_index")
    header = ["dataset", "model", "nuisance", "robustness index", "95% CI", "neighbours"]
    rows = [[r["dataset"], r["model"], r["variant"], "—" if r["value"] is None else f"{r['value']:.3f}", _interval(r["low"], r["high"], 1.0, "{:.3f}"), r["detail"]]
            for r in part.iter_rows(named=True)]
    return header, rows


def rank_rows(ranks) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "probe A", "probe B", "models", "Kendall tau", "swapped pairs"]
    rows = [[r["dataset"], r["probe_a"], r["probe_b"], str(r["n_models"]), "—" if r["tau"] is None else f"{r['tau']:+.2f}",
             f"{r['n_swapped']} of {r['n_pairs']}" + (f": {r['swapped']}" if r["swapped"] else "")] for r in ranks.iter_rows(named=True)]
    return header, rows


NOTE = (
    "Test accuracy of each probe on the linear probe's test split (group-aware where the dataset declares a group). "
    "kNN: DINO's weighted rule (cosine, votes exp(similarity / T)). Few-shot: SimpleShot (centre, L2-normalise, nearest "
    "centroid), mean ± std over seeded draws of k training images per class. Tuned LR: logistic regression, C chosen by "
    "mean validation accuracy over the training folds, refitted on all training rows. Rank stability: Kendall's tau of "
    "the models' order under two probes and the pairs that swap. Subgroup gap: best − worst group of a meta attribute "
    "(groups fixed on the test set), percentile-bootstrap interval of the test rows. Robustness index (PathoROB): among "
    "each image's k nearest neighbours that differ in exactly one of (diagnosis, nuisance), the share keeping the diagnosis."
)


def markdown(table, ranks) -> str:
    from vlmprobe.tables import markdown_table

    parts = ["# Probes: kNN, few-shot, tuned probe, rank stability, subgroup gaps, robustness index", "", NOTE, ""]
    for title, (header, rows), empty in (
        ("Test accuracy by probe", accuracy_rows(table), "No multi-class dataset was probed."),
        ("Rank stability across probes", rank_rows(ranks), "Fewer than two models: no ranking to compare."),
        ("Subgroup gaps", subgroup_rows(table), "No dataset declares `subgroups` (or no group has enough test rows)."),
        ("Accuracy per subgroup", group_rows(table), "No dataset declares `subgroups`."),
        ("Robustness index (PathoROB)", robustness_rows(table), "No dataset declares `nuisances`."),
    ):
        parts += [f"## {title}", "", markdown_table(header, rows) if rows else empty, ""]
    return "\n".join(parts)


def html(table, ranks) -> str:
    """One page: the accuracy table with the note, then the other tables under their headings."""
    from html import escape

    from tabulate import tabulate

    from vlmprobe.tables import html_table

    page = html_table("Probes: test accuracy by probe", *accuracy_rows(table), NOTE)
    sections = ""
    for title, (header, rows) in (("Rank stability across probes", rank_rows(ranks)), ("Subgroup gaps", subgroup_rows(table)), ("Accuracy per subgroup", group_rows(table)),
                                ("Robustness index (PathoROB)", robustness_rows(table))):
        if rows:
            sections += f"<h2>{escape(title)}</h2>" + tabulate([[str(cell) for cell in row] for row in rows], headers=header, tablefmt="html")
    return page.replace("</body></html>", sections + "</body></html>")


# -- figures --------------------------------------------------------------------------------------------------


def overview_cells(table, dataset: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The cells of one dataset's panel: (model, reading column, rank, text), the row and column orders."""
    import polars as pl

    part = table.filter(pl.col("dataset") == dataset)
    columns: list[tuple[str, dict[str, tuple[float, str]], bool]] = []  # label, {model: (value, text)}, higher is better
    for label, values in ranked_readings(table, dataset).items():
        columns.append((f"{label}\naccuracy", {m: (v, f"{v:.1%}") for m, v in values.items() if v is not None}, True))
    gaps = part.filter((pl.col("reading") == "subgroup_gap") & (pl.col("metric") == "accuracy") & pl.col("variant").str.ends_with("(logistic)"))
    for attribute in gaps["variant"].unique(maintain_order=True).to_list():
        rows = gaps.filter(pl.col("variant") == attribute)
        columns.append((f"{attribute.removesuffix(' (logistic)')}\nworst-group gap",
                        {r["model"]: (r["value"], f"{r['value'] * 100:.1f} pts" + (f"\n{_interval(r['low'], r['high'])}" if r["low"] is not None else "")) for r in rows.iter_rows(named=True)}, False))
    robustness = part.filter(pl.col("reading") == "robustness_index")
    for nuisance in robustness["variant"].unique(maintain_order=True).to_list():
        rows = robustness.filter(pl.col("variant") == nuisance)
        columns.append((f"{nuisance}\nrobustness index", {r["model"]: (r["value"], f"{r['value']:.2f}") for r in rows.iter_rows(named=True) if r["value"] is not None}, True))
    models = part["model"].unique(maintain_order=True).to_list()
    first = columns[0][1] if columns else {}
    models.sort(key=lambda m: -first.get(m, (-np.inf, ""))[0])
    cells = []
    for label, values, higher in columns:
        for model, (value, text) in values.items():
            rank = 1 + sum((other > value) if higher else (other < value) for other, _ in values.values())  # ties share a rank
            cells.append({"model": model, "reading": label, "rank": float(rank), "text": f"{text}\n#{rank}"})
    return cells, models, [label for label, _, _ in columns]


def overview_figure(table):
    """Per dataset: models x readings, each cell the value and the model's rank in that column (colour = rank)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import polars as pl

    from vlmprobe.figures import metric_heatmap

    datasets = table["dataset"].unique(maintain_order=True).to_list()
    if not datasets:
        figure, ax = plt.subplots(figsize=(4, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no multi-class dataset was probed", ha="center", va="center")
        return figure
    panels = [overview_cells(table, d) for d in datasets]
    width = max(len(columns) for _, _, columns in panels)
    height = sum(max(len(models), 1) for _, models, _ in panels)
    figure, axes = plt.subplots(len(datasets), 1, figsize=(2.0 + 1.7 * width, 1.6 + 0.75 * height + 0.9 * len(datasets)), squeeze=False, layout="constrained")
    for ax, dataset, (cells, models, columns) in zip(axes[:, 0], datasets, panels):
        if not cells:
            ax.axis("off")
            continue
        metric_heatmap(pl.DataFrame(cells), row="model", column="reading", value="rank", annotations="text", title=f"{dataset}: value and rank per reading",
                       row_order=models, column_order=columns, vmin=1, vmax=max(len(models), 2), cmap="RdYlGn_r", colorbar_label="rank (1 = best)", ax=ax)
        ax.set_xlabel("")
        ax.set_ylabel("")
    return figure


def few_shot_figure(table):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import polars as pl

    part = table.filter((pl.col("reading") == "few_shot") & (pl.col("metric") == "accuracy"))
    datasets = part["dataset"].unique(maintain_order=True).to_list()
    if not datasets:
        figure, ax = plt.subplots(figsize=(4, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "few-shot not run", ha="center", va="center")
        return figure
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False, layout="constrained")
    for ax, dataset in zip(axes[0], datasets):
        rows = part.filter(pl.col("dataset") == dataset).with_columns(pl.col("variant").str.split("-").list.first().cast(pl.Int64).alias("shots")).sort("shots")
        for model in rows["model"].unique(maintain_order=True).to_list():
            line = rows.filter(pl.col("model") == model)
            shots = line["shots"].to_numpy()
            ax.plot(shots, line["value"].to_numpy(), marker="o", label=model)
            ax.fill_between(shots, line["low"].to_numpy(), line["high"].to_numpy(), alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(set(rows["shots"].to_list())), [str(v) for v in sorted(set(rows["shots"].to_list()))])
        ax.set_xlabel("labelled images per class (k)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{dataset}: SimpleShot")
        ax.legend(fontsize="small")
    return figure


def write_probes_summary(result_paths: list[str], linear_probe_paths: list[str], *, table_path, csv_path, markdown_path, html_path, figure_path, few_shot_path, ranks_path) -> None:
    from vlmprobe.io import save_figure, write_parquet, write_text

    table = build_table(result_paths, linear_probe_paths)
    ranks = rank_stability(table)
    write_parquet(table_path, table)
    write_text(csv_path, table.write_csv())
    write_text(ranks_path, ranks.write_csv())
    write_text(markdown_path, markdown(table, ranks))
    write_text(html_path, html(table, ranks))
    save_figure(figure_path, overview_figure(table), bbox_inches="tight")
    save_figure(few_shot_path, few_shot_figure(table), bbox_inches="tight")
