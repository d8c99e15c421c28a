"""The Grad-CAM summary: every scores table -> per dataset, models x settings of each score, with chance."""

from __future__ import annotations

from typing import Any

from vlmprobe.figures import metric_heatmap
from vlmprobe.heatmaps.scores import SCORE_SCHEMA, summarise
from vlmprobe.io import save_figure, write_parquet, write_text
from vlmprobe.tables import markdown_table

ALL_LABELS = "(all)"


SETTING_ORDER = ("zs", "lp", "ft")


def heatmap_summary(score_paths) -> Any:
    """One row per (dataset, model, setting, method, label), plus ``label = '(all)'`` per (dataset, model, setting, method)."""
    import polars as pl

    frames = [pl.read_parquet(path) for path in score_paths]
    scores = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema=SCORE_SCHEMA)
    keys = ["dataset", "model", "setting", "method"]
    overall = summarise(scores, keys).with_columns(pl.lit(ALL_LABELS).alias("label"))
    per_label = summarise(scores, [*keys, "label"])
    columns = [*keys, "label", "n_maps", "pointing_game", "pointing_game_se", "chance", "pointing_game_lift", "iou", "iou_chance", "iou_all_ones",
               "energy_fraction", "flat_fraction"]  # fmt: skip
    table = pl.concat([overall.select(columns), per_label.select(columns)], how="vertical")
    order = {name: i for i, name in enumerate(SETTING_ORDER)}
    return (
        table.with_columns(
            pl.col("setting").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_setting"),
            (pl.col("label") != ALL_LABELS).alias("_label"),
        )
        .sort("dataset", "model", "_setting", "method", "_label", "label")
        .drop("_setting", "_label")
    )


def _fixed(value) -> str:
    return "—" if value is None or value != value else f"{value:.2f}"


def _percent(value) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def heatmap_markdown(summary) -> str:
    """Per dataset: models x settings tables of the pointing game (with chance), IoU and energy fraction."""
    import polars as pl

    lines = [
        "# Grad-CAM maps scored against annotations\n",
        "Maps for each selected test image's true labels, scored where the image has a box or mask for the label. "
        "**Pointing game**: share of maps whose maximum lies inside the annotation. **IoU**: of the map thresholded at "
        "half its range with the annotation. **Energy**: share of the map's mass inside the annotation. For the pointing "
        "game and energy, a map that knows nothing scores the annotation's area fraction (**chance**, in parentheses). "
        "For IoU, **chance** is the IoU expected of the same map with its pixels randomly permuted over the image; the "
        "area fraction is shown as **all-ones** (the IoU of a map marking the whole image: an upper bound for a map that "
        "ignores the image, not chance). ± is the pointing game's binomial standard error; n the number of scored maps.\n",
    ]
    overall = summary.filter(pl.col("label") == ALL_LABELS)
    if overall.is_empty():
        return "\n".join(lines) + "\nNo annotated maps were scored.\n"
    for dataset in overall["dataset"].unique(maintain_order=True).to_list():
        part = overall.filter(pl.col("dataset") == dataset)
        settings = [s for s in SETTING_ORDER if s in part["setting"].to_list()] + sorted(set(part["setting"].to_list()) - set(SETTING_ORDER))
        cells = {(r["model"], r["setting"]): r for r in part.iter_rows(named=True)}
        models = part["model"].unique(maintain_order=True).to_list()
        method = ", ".join(part["method"].unique(maintain_order=True).to_list())
        lines.append(f"## {dataset} ({method})\n")
        for title, render in (
            ("Pointing game (chance)", lambda r: f"{_percent(r['pointing_game'])} ± {r['pointing_game_se'] * 100:.0f} ({_percent(r['chance'])}), n = {r['n_maps']}"),
            ("IoU (chance; all-ones map)", lambda r: f"{r['iou']:.2f} ({_fixed(r['iou_chance'])}; {r['iou_all_ones']:.2f})"),
            ("Energy inside the annotation (chance)", lambda r: f"{_percent(r['energy_fraction'])} ({_percent(r['chance'])})"),
        ):
            rows = [[model, *[render(cells[(model, s)]) if (model, s) in cells else "—" for s in settings]] for model in models]
            lines.append(f"### {title}\n")
            lines.append(markdown_table(["Model", *settings], rows))
    return "\n".join(lines)


def heatmap_summary_figure(summary) -> Any:
    """Three panels (pointing game, IoU, energy fraction): rows 'dataset / model', columns settings, chance in the cells."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import polars as pl


    overall = summary.filter(pl.col("label") == ALL_LABELS).with_columns(
        pl.concat_str([pl.col("dataset"), pl.col("model")], separator=" / ").alias("dataset / model"),
        pl.format("{}% ({}%)", (pl.col("pointing_game") * 100).round(0).cast(pl.Int64), (pl.col("chance") * 100).round(0).cast(pl.Int64)).alias("pg_text"),
        pl.format("{} ({})", pl.col("iou").round(2), pl.col("iou_chance").round(2)).alias("iou_text"),
        pl.format("{}% ({}%)", (pl.col("energy_fraction") * 100).round(0).cast(pl.Int64), (pl.col("chance") * 100).round(0).cast(pl.Int64)).alias("energy_text"),
    )
    settings = [s for s in SETTING_ORDER if s in overall["setting"].to_list()] + sorted(set(overall["setting"].to_list()) - set(SETTING_ORDER))
    n_rows = max(overall["dataset / model"].n_unique(), 1)
    figure, axes = plt.subplots(1, 3, figsize=(5.2 * 3 + 2, 1.8 + 0.45 * n_rows), layout="constrained", squeeze=False)
    for ax, (value, text, title) in zip(
        axes[0],
        (("pointing_game", "pg_text", "Pointing game (chance)"), ("iou", "iou_text", "IoU (chance)"), ("energy_fraction", "energy_text", "Energy inside (chance)")),
        strict=True,
    ):
        if overall.is_empty():
            ax.axis("off")
            ax.text(0.5, 0.5, "no scored maps", ha="center", va="center")
            continue
        metric_heatmap(
            overall, row="dataset / model", column="setting", value=value, title=title, column_order=settings,
            vmin=0.0, vmax=1.0, annotations=text, ax=ax, colorbar_label=title.split(" (")[0],
        )
    figure.suptitle("Grad-CAM maps against annotations (cells: score, chance in parentheses)")
    return figure


def write_heatmap_summary(score_paths, table_path, markdown_path, figure_path) -> Any:

    summary = heatmap_summary(list(score_paths))
    write_parquet(table_path, summary)
    write_text(markdown_path, heatmap_markdown(summary))
    save_figure(figure_path, heatmap_summary_figure(summary))
    return summary
