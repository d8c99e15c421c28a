"""The UMAP quality summary: the quality of every (dataset, model) grid in one table."""

from __future__ import annotations

import polars as pl

from vlmprobe.io import write_parquet, write_text
from vlmprobe.tables import html_table, markdown_table


def umap_quality_summary(quality_paths: dict[tuple[str, str], str], table_path, csv_path, markdown_path, html_path) -> pl.DataFrame:
    """Every cell's quality, one row per (dataset, model, n_neighbors, min_dist), plus the best cell per table."""
    frames = [
        pl.read_parquet(path).with_columns(pl.lit(dataset).alias("dataset"), pl.lit(model).alias("model"))
        for (dataset, model), path in sorted(quality_paths.items())
    ]
    table = pl.concat(frames).select("dataset", "model", "n_neighbors", "min_dist", "trustworthiness", "silhouette")
    write_parquet(table_path, table)
    write_text(csv_path, table.write_csv())
    best = (
        table.sort("trustworthiness", descending=True)
        .group_by("dataset", "model", maintain_order=True)
        .first()
        .sort("dataset", "model")
    )
    header = ["dataset", "model", "most faithful cell (n_neighbors, min_dist)", "trustworthiness", "silhouette there", "best silhouette"]
    best_silhouette = table.group_by("dataset", "model").agg(pl.col("silhouette").max().alias("best_silhouette"))
    rows = [
        [r["dataset"], r["model"], f"({r['n_neighbors']}, {r['min_dist']:g})", f"{r['trustworthiness']:.3f}", f"{r['silhouette']:.3f}", f"{b:.3f}"]
        for r, b in zip(
            best.iter_rows(named=True),
            best.join(best_silhouette, on=["dataset", "model"], how="left")["best_silhouette"].to_list(),
        )
    ]
    title = "UMAP grid quality (trustworthiness: scikit-learn, cosine input space; silhouette of the classes on the 2-D layout)"
    write_text(markdown_path, f"# {title}\n\n" + markdown_table(header, rows))
    write_text(html_path, html_table(title, header, rows))
    return table
