"""Summaries of the nuisance stage across datasets and models: tables, Markdown / HTML and figures.

* :func:`write_nuisance_summary`: one row per (dataset, model, target) - the probe's balanced accuracy beside
  its chance levels, the variance shares - and a figure with two heatmaps per dataset (models x targets):
  balanced accuracy ("97% (chance 50%)") and the share of embedding variance (R²).
* :func:`write_shortcut_summary`: one row per (dataset, model, training agreement) of the shortcut curve and
  a figure of the curves (balanced test accuracy against the training agreement, one line per test condition).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from vlmprobe.io import save_figure, write_parquet, write_text

NUISANCE_COLUMNS: dict[str, Any] = {
    "dataset": pl.String,
    "model": pl.String,
    "target": pl.String,
    "kind": pl.String,
    "n": pl.Int64,
    "n_classes": pl.Int64,
    "accuracy": pl.Float64,
    "majority_rate": pl.Float64,
    "balanced_accuracy": pl.Float64,
    "balanced_chance": pl.Float64,
    "permutation_balanced_mean": pl.Float64,
    "permutation_balanced_q95": pl.Float64,
    "permutation_p": pl.Float64,
    "r2": pl.Float64,
    "r2_adjusted": pl.Float64,
    "r2_unique": pl.Float64,
    "cka": pl.Float64,
    "skipped": pl.String,
}
SHORTCUT_COLUMNS: dict[str, Any] = {
    "dataset": pl.String,
    "model": pl.String,
    "finding": pl.String,
    "train_agreement": pl.Float64,
    "n_train_per_class": pl.Int64,
    "same_mean": pl.Float64,
    "same_std": pl.Float64,
    "removed_mean": pl.Float64,
    "removed_std": pl.Float64,
    "reversed_mean": pl.Float64,
    "reversed_std": pl.Float64,
}
NUISANCE_TITLE = "Nuisance probes: what the embedding encodes besides the diagnosis"
NUISANCE_NOTE = (
    "Probe: the linear probe's classifier fitted on the training rows, scored on the test rows. Balanced accuracy "
    "beside its chance level 1/K and the 95th percentile of the same fit on permuted training labels (perm 95%); "
    "accuracy beside the majority-class rate; p: permutation p-value. R²: share of the embedding's variance "
    "explained by a linear map from the target's one-hot coding (adjusted for the number of classes in brackets); "
    "unique R²: what a nuisance adds to the diagnosis; CKA: linear CKA with the coding."
)
SHORTCUT_TITLE = "Shortcut sensitivity: diagnostic probe accuracy as the marker's correlation flips between train and test"
SHORTCUT_NOTE = (
    "Balanced test accuracy (mean ± std over repeated draws) of a probe for the finding trained where the burned-in "
    "marker agrees with it at the given rate; tested where it agrees at the same rate (same), at 0.5 (removed) "
    "or at 1 - rate (reversed). A flat curve: the probe reads the finding; a fan: it reads the marker."
)


def _nuisance_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for target in result["targets"]:
        row = {name: target.get(name) for name in NUISANCE_COLUMNS if name not in ("dataset", "model", "n_classes")}
        row.update(dataset=result["dataset"], model=result["model"], n_classes=len(target.get("classes", [])))
        rows.append(row)
    return rows


def nuisance_table(result_paths: Sequence[str | Path]) -> pl.DataFrame:
    rows = [row for path in result_paths for row in _nuisance_rows(json.loads(Path(path).read_text()))]
    return pl.DataFrame(rows, schema=NUISANCE_COLUMNS).sort("dataset", "model", maintain_order=True)


def _percent(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.1f}%"


def nuisance_grid(table: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [
        "dataset", "model", "target", "kind", "n", "balanced acc.", "chance (1/K)", "perm 95%", "p",
        "accuracy", "majority rate", "R² (adj.)", "unique R²", "CKA",
    ]  # fmt: skip
    rows = []
    for r in table.iter_rows(named=True):
        r2 = "—" if r["r2"] is None else f"{_percent(r['r2'])} ({_percent(r['r2_adjusted'])})"
        p = "—" if r["permutation_p"] is None else f"{r['permutation_p']:.3f}"
        cka = "—" if r["cka"] is None else f"{r['cka']:.3f}"
        target = r["target"] + (f" (skipped: {r['skipped']})" if r["skipped"] else "")
        rows.append(
            [
                r["dataset"], r["model"], target, r["kind"], str(r["n"]), _percent(r["balanced_accuracy"]),
                _percent(r["balanced_chance"]), _percent(r["permutation_balanced_q95"]), p, _percent(r["accuracy"]),
                _percent(r["majority_rate"]), r2, _percent(r["r2_unique"]), cka,
            ]
        )  # fmt: skip
    return header, rows


def nuisance_figure(table: pl.DataFrame):
    """Two heatmaps per dataset, one above the other (models down, targets across): balanced accuracy with its
    chance level, and R²."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from vlmprobe.figures import metric_heatmap

    datasets = table["dataset"].unique(maintain_order=True).to_list()
    widths = [table.filter(pl.col("dataset") == d)["target"].n_unique() for d in datasets]
    n_models = table["model"].n_unique()
    figure, grid = plt.subplots(
        2 * len(datasets), 1, squeeze=False, layout="constrained",
        figsize=(min(4.0 + 1.3 * max(widths), 40), min(1.0 + 2 * (0.55 * n_models + 1.6) * len(datasets), 60)),
    )  # fmt: skip
    axes = grid.reshape(len(datasets), 2)
    for i, dataset in enumerate(datasets):
        part = table.filter(pl.col("dataset") == dataset).with_columns(
            pl.format(
                "{}%\n(chance {}%)",
                (pl.col("balanced_accuracy") * 100).round(0).cast(pl.Int64),
                (pl.col("balanced_chance") * 100).round(0).cast(pl.Int64),
            ).alias("accuracy_text")
        )
        probed = part.filter(pl.col("balanced_accuracy").is_not_null())
        if probed.height:
            metric_heatmap(
                probed, row="model", column="target", value="balanced_accuracy", annotations="accuracy_text",
                title=f"{dataset}: probe balanced accuracy (test)", vmin=0.0, vmax=1.0, ax=axes[i, 0],
                colorbar_label="balanced accuracy",
            )  # fmt: skip
        else:
            axes[i, 0].set_visible(False)
        shares = part.filter(pl.col("r2").is_not_null())
        if shares.height:
            metric_heatmap(
                shares, row="model", column="target", value="r2", fmt=lambda v: f"{v * 100:.1f}%",
                title=f"{dataset}: share of embedding variance (R²)", vmin=0.0, ax=axes[i, 1], cmap="magma",
                colorbar_label="R²",
            )  # fmt: skip
        else:
            axes[i, 1].set_visible(False)
    return figure


def write_nuisance_summary(result_paths, table_path, csv_path, markdown_path, html_path, figure_path) -> pl.DataFrame:
    from vlmprobe.tables import html_table, markdown_table

    table = nuisance_table(result_paths)
    write_parquet(table_path, table)
    write_text(csv_path, table.write_csv())
    header, rows = nuisance_grid(table)
    write_text(markdown_path, f"# {NUISANCE_TITLE}\n\n{NUISANCE_NOTE}\n\n" + markdown_table(header, rows))
    write_text(html_path, html_table(NUISANCE_TITLE, header, rows, NUISANCE_NOTE))
    save_figure(figure_path, nuisance_figure(table))
    return table


def shortcut_table(result_paths: Sequence[str | Path]) -> pl.DataFrame:
    rows = []
    for path in result_paths:
        result = json.loads(Path(path).read_text())
        for point in result["points"]:
            rows.append(
                {
                    "dataset": result["dataset"], "model": result["model"], "finding": result["finding"],
                    "n_train_per_class": result["n_train_per_class"],
                    **{name: point[name] for name in SHORTCUT_COLUMNS if name in point},
                }
            )  # fmt: skip
    return pl.DataFrame(rows, schema=SHORTCUT_COLUMNS).sort("dataset", "model", "train_agreement", maintain_order=True)


CONDITIONS = (("same", "-", "o"), ("removed", "--", "s"), ("reversed", ":", "v"))


def shortcut_figure(table: pl.DataFrame):
    """One panel per dataset: balanced test accuracy against the training agreement, a colour per model and a
    line style per test condition."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    datasets = table["dataset"].unique(maintain_order=True).to_list()
    models = table["model"].unique(maintain_order=True).to_list()
    colours = plt.get_cmap("tab10")
    figure, axes = plt.subplots(1, len(datasets), squeeze=False, figsize=(5.5 * len(datasets) + 2.5, 4.2), layout="constrained")
    for ax, dataset in zip(axes[0], datasets):
        part = table.filter(pl.col("dataset") == dataset)
        for k, model in enumerate(models):
            rows = part.filter(pl.col("model") == model)
            if not rows.height:
                continue
            x = rows["train_agreement"].to_numpy()
            for condition, style, marker in CONDITIONS:
                ax.errorbar(
                    x, rows[f"{condition}_mean"].to_numpy(), yerr=rows[f"{condition}_std"].to_numpy(), color=colours(k % 10),
                    linestyle=style, marker=marker, markersize=4, capsize=2, label=f"{model}: {condition}",
                )  # fmt: skip
        ax.axhline(0.5, color="0.5", linewidth=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("marker-finding agreement in training")
        ax.set_ylabel("balanced test accuracy")
        finding = part["finding"][0] if part.height else "?"
        ax.set_title(f"{dataset}: probe for {finding}", fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    figure.suptitle("Shortcut sensitivity (test: same / removed / reversed agreement)", fontsize=11)
    return figure


def write_shortcut_summary(result_paths, table_path, csv_path, markdown_path, figure_path) -> pl.DataFrame:
    from vlmprobe.tables import markdown_table

    table = shortcut_table(result_paths)
    write_parquet(table_path, table)
    write_text(csv_path, table.write_csv())
    header = ["dataset", "model", "finding", "train agreement", "n train / class", "same", "removed", "reversed"]
    rows = [
        [
            r["dataset"], r["model"], r["finding"], f"{r['train_agreement']:g}", str(r["n_train_per_class"]),
            *(f"{r[f'{c}_mean'] * 100:.1f} ± {r[f'{c}_std'] * 100:.1f}%" for c in ("same", "removed", "reversed")),
        ]
        for r in table.iter_rows(named=True)
    ]  # fmt: skip
    write_text(markdown_path, f"# {SHORTCUT_TITLE}\n\n{SHORTCUT_NOTE}\n\n" + markdown_table(header, rows))
    save_figure(figure_path, shortcut_figure(table))
    return table
