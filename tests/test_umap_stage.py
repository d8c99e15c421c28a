"""The UMAP stage's file plumbing: manifest + table -> coordinates, quality, figures, summary."""

from __future__ import annotations

import numpy as np
import polars as pl

from vlmprobe.datasets import make_manifest
from vlmprobe.formats.embeddings import write_embeddings
from vlmprobe.umap.stage import dataset_summary, grid_for_table
from vlmprobe.umap.summary import umap_quality_summary

PNG = b"\x89PNG\r\n\x1a\n"


def test_grid_for_table_and_summaries(tmp_path, image_folder):
    manifest = tmp_path / "m.parquet"
    make_manifest("folder", {"kind": "imagefolder", "root": str(image_folder)}, 0, 0.2, 5, manifest, tmp_path / "d", tmp_path)
    ids = pl.read_parquet(manifest)["sample_id"].to_list()
    labels = [i.split("/")[0] for i in ids]
    rng = np.random.default_rng(0)
    centres = {name: rng.normal(size=16) * 4 for name in set(labels)}
    matrix = np.stack([centres[name] + rng.normal(size=16) for name in labels]).astype(np.float32)
    paths = {}
    for model in ("a", "b"):
        table = tmp_path / f"{model}.parquet"
        write_embeddings(table, ids, matrix if model == "a" else matrix[:, ::-1].copy(), {"spec": {"family": "pixels"}})
        out = {key: tmp_path / "umap" / f"{model}{suffix}" for key, suffix in (("coords", ".parquet"), ("quality", "_quality.parquet"), ("figure", ".png"))}
        grid_for_table(manifest, table, out["coords"], out["quality"], out["figure"], n_neighbors=[5, 15, 40], min_dists=[0.1, 0.8], seed=0, n_jobs=1, title=model)
        paths[model] = out
        coords = pl.read_parquet(out["coords"])
        # n_neighbors=40 is not below the 36 samples: dropped with a note, not an error
        assert sorted(coords["n_neighbors"].unique().to_list()) == [5, 15]
        assert coords.height == 36 * 2 * 2 and np.isfinite(coords.select("x", "y").to_numpy()).all()
        quality = pl.read_parquet(out["quality"])
        assert quality.height == 4 and quality["trustworthiness"].min() > 0.5
        assert out["figure"].read_bytes()[:8] == PNG
    figure = tmp_path / "models.png"
    dataset_summary(manifest, {m: str(p["coords"]) for m, p in paths.items()}, {m: str(p["quality"]) for m, p in paths.items()}, figure, 15, 0.1, None, "both")
    assert figure.read_bytes()[:8] == PNG
    summary = umap_quality_summary(
        {("folder", m): str(p["quality"]) for m, p in paths.items()},
        tmp_path / "s.parquet", tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.html",
    )
    assert summary.height == 8 and set(summary["model"].to_list()) == {"a", "b"}
    assert "most faithful cell" in (tmp_path / "s.md").read_text() and "<table>" in (tmp_path / "s.html").read_text()
