"""The linear-probe summary across models and datasets, in the poster's own layout.

The linear-probe summary has one row per (dataset, model) with the poster's numbers as fractions;
the Markdown rendering is the poster's table: models as rows, datasets as column pairs
(Accuracy, F-score), cells "91 ± 0.2%".

Datasets with a ``group:`` column add the group-aware split's numbers and the gap image − group
(:data:`GROUP_COLUMNS`; null for datasets without a group, and absent when no dataset has one) and a
second table, "Identity leakage", beside the poster's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from vlmprobe.io import save_figure, write_parquet, write_text
from vlmprobe.tables import html_table, markdown_table

LINEAR_PROBE_COLUMNS = [
    "dataset",
    "model",
    "protocol",
    "n_samples",
    "n_classes",
    "accuracy_mean",
    "accuracy_std",
    "fscore_mean",
    "fscore_std",
    "f1_macro_mean",
    "f1_macro_std",
]


GROUP_COLUMNS = {
    "group_column": pl.String,
    "n_groups": pl.Int64,
    "group_accuracy_mean": pl.Float64,
    "group_accuracy_std": pl.Float64,
    "group_fscore_mean": pl.Float64,
    "group_fscore_std": pl.Float64,
    "group_f1_macro_mean": pl.Float64,
    "group_f1_macro_std": pl.Float64,
    "accuracy_gap": pl.Float64,
    "fscore_gap": pl.Float64,
    "f1_macro_gap": pl.Float64,
}


def group_level_columns(result: dict[str, Any]) -> dict[str, Any]:
    """The group-aware split's numbers and the gap (image − group) of one result; nulls without a group."""
    level = result.get("group_level")
    if not level:
        return dict.fromkeys(GROUP_COLUMNS)
    test, gap = level["summary"]["test"], result["group_gap"]
    row = {"group_column": level["column"], "n_groups": level["n_groups"]}
    for metric, name in (("accuracy", "accuracy"), ("fscore", "fscore"), ("macro_f1", "f1_macro")):
        row.update({f"group_{name}_mean": test[metric]["mean"], f"group_{name}_std": test[metric]["std"], f"{name}_gap": gap[metric]})
    return row


def linear_probe_row(result: dict[str, Any]) -> dict[str, Any]:
    """One summary row from a linear-probe result file (see vlmprobe.linear_probe.probe)."""
    test = result["summary"]["test"]
    return {
        **group_level_columns(result),
        "dataset": result["dataset"],
        "model": result["model"],
        "protocol": (result.get("protocol") or {}).get("name"),
        "n_samples": int(result["n_train"] + result["n_test"]),
        "n_classes": len(result["classes"]),
        "accuracy_mean": test["accuracy"]["mean"],
        "accuracy_std": test["accuracy"]["std"],
        "fscore_mean": test["fscore"]["mean"],
        "fscore_std": test["fscore"]["std"],
        "f1_macro_mean": test["macro_f1"]["mean"],
        "f1_macro_std": test["macro_f1"]["std"],
    }


def linear_probe_table(result_paths: Sequence[str | Path]) -> pl.DataFrame:
    rows = [linear_probe_row(json.loads(Path(path).read_text())) for path in result_paths]
    schema = {
        "dataset": pl.String, "model": pl.String, "protocol": pl.String, "n_samples": pl.Int64, "n_classes": pl.Int64,
        **{column: pl.Float64 for column in LINEAR_PROBE_COLUMNS[5:]},
    }
    if any(row["group_column"] is not None for row in rows):  # only then: other summaries stay as they were
        schema.update(GROUP_COLUMNS)
    rows = [{column: row[column] for column in schema} for row in rows]
    return pl.DataFrame(rows, schema=schema).sort("dataset", "model")


def percent_cell(mean: float | None, std: float | None) -> str:
    """The poster's cell format: '91 ± 0.2%' (mean to whole percent, std to one decimal)."""
    if mean is None or std is None or math.isnan(mean):
        return "—"
    return f"{mean * 100:.0f} ± {std * 100:.1f}%"


def linear_probe_markdown(table: pl.DataFrame) -> str:
    header, rows = linear_probe_grid(table)
    text = f"# {LINEAR_PROBE_TITLE}\n\n{LINEAR_PROBE_NOTE}\n\n" + markdown_table(header, rows)
    if "group_column" in table.columns:
        header, rows = group_gap_grid(table)
        text += f"\n## {GROUP_GAP_TITLE}\n\n{GROUP_GAP_NOTE}\n\n" + markdown_table(header, rows)
    return text


GROUP_GAP_TITLE = "Identity leakage: image-level vs group-level split"
GROUP_GAP_NOTE = (
    "The same probe on the image-level split (a patient's / slide's / lesion's images on both sides) and on the "
    "group-aware split (each group on one side). Gap = image − group, in percentage points of the mean test score "
    "over the 5 fold models: what near-duplicates of the test images' identities in the training rows were worth."
)


def gap_cell(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value * 100:+.1f} pp"


def group_gap_grid(table: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """One row per (dataset, model) that has a group column: both results and the gap."""
    header = ["Dataset", "Model", "Group", "Groups", "Accuracy (image)", "Accuracy (group)", "Accuracy gap",
              "F-score (image)", "F-score (group)", "F-score gap"]
    rows = [
        [r["dataset"], r["model"], r["group_column"], f"{r['n_groups']:,}",
         percent_cell(r["accuracy_mean"], r["accuracy_std"]), percent_cell(r["group_accuracy_mean"], r["group_accuracy_std"]),
         gap_cell(r["accuracy_gap"]), percent_cell(r["fscore_mean"], r["fscore_std"]),
         percent_cell(r["group_fscore_mean"], r["group_fscore_std"]), gap_cell(r["fscore_gap"])]
        for r in table.filter(pl.col("group_column").is_not_null()).iter_rows(named=True)
    ]
    return header, rows


def linear_probe_grid(table: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The poster's layout: one row per model, an (Accuracy, F-score) column pair per dataset."""
    datasets = table["dataset"].unique(maintain_order=True).to_list()
    models = table["model"].unique(maintain_order=True).to_list()
    cells = {(r["model"], r["dataset"]): r for r in table.iter_rows(named=True)}
    header = ["Model"]
    for dataset in datasets:
        first = table.filter(pl.col("dataset") == dataset).row(0, named=True)
        label = f"{dataset} (n = {first['n_samples']:,}, {first['n_classes']} class)"
        header += [f"{label} Accuracy", f"{label} F-score"]
    rows = []
    for model in models:
        row = [model]
        for dataset in datasets:
            r = cells.get((model, dataset))
            row += [percent_cell(r["accuracy_mean"], r["accuracy_std"]), percent_cell(r["fscore_mean"], r["fscore_std"])] if r else ["—", "—"]
        rows.append(row)
    return header, rows


LINEAR_PROBE_TITLE = "Linear probe (LinearSVC, C = 100 / N, standardized features, 20 % test hold-out, 5-fold CV)"
LINEAR_PROBE_NOTE = (
    "Mean ± std over the 5 fold models, each scored on the held-out test set. F-score: F1 of the positive "
    "class for 2-class datasets, macro F1 otherwise."
)


def write_linear_probe_summary(result_paths, table_path, csv_path, markdown_path, heatmap_path, html_path=None) -> pl.DataFrame:
    from vlmprobe.figures import metric_heatmap

    table = linear_probe_table(result_paths)
    write_parquet(table_path, table)
    write_text(csv_path, table.write_csv())
    write_text(markdown_path, linear_probe_markdown(table))
    if html_path:
        header, rows = linear_probe_grid(table)
        page = html_table(LINEAR_PROBE_TITLE, header, rows, LINEAR_PROBE_NOTE)
        if "group_column" in table.columns:  # the leakage table on the same page, under the poster's
            header, rows = group_gap_grid(table)
            gap_page = html_table(GROUP_GAP_TITLE, header, rows, GROUP_GAP_NOTE)
            page = page.replace("</body>", gap_page[gap_page.index("<h2>"):gap_page.index("</body>")] + "</body>")
        write_text(html_path, page)
    figure = metric_heatmap(
        table, row="model", column="dataset", value="accuracy_mean",
        title="Linear probe test accuracy (mean over 5 fold models)", vmin=0.0, vmax=1.0,
    )
    save_figure(heatmap_path, figure)
    return table


def group_gap_figure(table: pl.DataFrame):
    """One panel per dataset with a group column: per model, image-level and group-level test accuracy
    (mean ± std over the fold models) side by side, the gap written above each pair."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    grouped = table.filter(pl.col("group_column").is_not_null())
    datasets = grouped["dataset"].unique(maintain_order=True).to_list()
    figure, axes = plt.subplots(1, max(len(datasets), 1), figsize=(1.0 + 2.2 * max(grouped["model"].n_unique(), 1) * max(len(datasets), 1), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = grouped.filter(pl.col("dataset") == dataset)
        x = np.arange(rows.height)
        ax.bar(x - 0.2, rows["accuracy_mean"], 0.4, yerr=rows["accuracy_std"], label="image-level split", color="#8da0cb")
        ax.bar(x + 0.2, rows["group_accuracy_mean"], 0.4, yerr=rows["group_accuracy_std"], label="group-aware split", color="#fc8d62")
        for i, r in enumerate(rows.iter_rows(named=True)):
            top = max(r["accuracy_mean"], r["group_accuracy_mean"]) + max(r["accuracy_std"], r["group_accuracy_std"])
            ax.text(i, min(top + 0.03, 1.04), gap_cell(r["accuracy_gap"]), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, rows["model"].to_list(), rotation=30, ha="right")
        ax.set_ylim(0, 1.12)
        ax.set_title(f"{dataset} (group: {rows['group_column'][0]}, {rows['n_groups'][0]:,} groups)", fontsize=9)
        ax.set_ylabel("test accuracy")
    axes[0][0].legend(loc="lower left", fontsize=8)
    figure.suptitle("Identity leakage: linear-probe accuracy, image-level vs group-aware split (gap = image − group)", fontsize=10)
    figure.tight_layout()
    return figure


def write_group_gap_figure(table_path, figure_path) -> None:
    save_figure(figure_path, group_gap_figure(pl.read_parquet(table_path)))


