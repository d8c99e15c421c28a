"""The nuisance stage against planted truths: variance shares, probes beside chance, the shortcut marker's
rate in synthetic-cxr and the direction of the shortcut-sensitivity curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from vlmprobe.datasets.synthetic_cxr import (
    generate_synthetic_cxr,
    marker_region,
    render_case,
    resolve_shortcut,
    sample_case,
)
from vlmprobe.errors import VlmprobeError
from vlmprobe.nuisance.probes import nuisance_probe
from vlmprobe.nuisance.shortcut import shortcut_curve
from vlmprobe.nuisance.variance import adjusted_r2, linear_cka, one_hot, variance_share

PNG = b"\x89PNG\r\n\x1a\n"


def planted(n_per_class: int, k: int, d: int, between: float, within: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """``x = mean[class] + noise``: class means with per-dimension variance exactly ``between`` (balanced
    classes, means centred), isotropic noise of variance ``within``: R² = between / (between + within)."""
    means = rng.normal(size=(k, d))
    means -= means.mean(axis=0)
    means *= np.sqrt(between / means.var(axis=0))
    codes = np.repeat(np.arange(k), n_per_class)
    return means[codes] + rng.normal(scale=np.sqrt(within), size=(codes.size, d)), codes


def test_variance_share_recovers_the_planted_share():
    rng = np.random.default_rng(0)
    x, codes = planted(500, 3, 12, between=1.0, within=3.0, rng=rng)
    r2, rank = variance_share(x, one_hot(codes))
    assert rank == 2
    assert r2 == pytest.approx(0.25, abs=0.02)
    # between-class over total sum of squares, computed directly
    centred = x - x.mean(axis=0)
    group_means = np.stack([x[codes == c].mean(axis=0) for c in range(3)])
    between = sum((codes == c).sum() * np.sum((group_means[c] - x.mean(axis=0)) ** 2) for c in range(3))
    assert r2 == pytest.approx(between / np.sum(centred**2), rel=1e-10)
    # an unrelated labelling: raw R² near its expectation p / (n - 1), adjusted R² near 0
    noise_codes = rng.integers(0, 3, size=codes.size)
    r2_noise, p = variance_share(x, one_hot(noise_codes))
    assert abs(r2_noise - p / (codes.size - 1)) < 0.01
    assert abs(adjusted_r2(r2_noise, codes.size, p)) < 0.01


def hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA from its definition: centred Gram matrices K = HXX'H, L = HYY'H, tr(KL) / sqrt(tr(KK) tr(LL))."""
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.trace(k @ l_) / np.sqrt(np.trace(k @ k) * np.trace(l_ @ l_)))


def test_linear_cka_matches_the_hsic_definition():
    rng = np.random.default_rng(1)
    x, codes = planted(30, 3, 50, between=1.0, within=1.0, rng=rng)
    y = one_hot(codes)
    assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-9)  # more features than rows: n x n Grams
    assert linear_cka(x[:, :5], y) == pytest.approx(hsic_cka(x[:, :5], y), rel=1e-9)  # fewer: d x d Grams
    assert 0.0 <= linear_cka(x, rng.normal(size=(x.shape[0], 3))) <= 1.0


def planted_manifest(rng, n: int = 900) -> tuple[pl.DataFrame, np.ndarray, dict]:
    """A weakly encoded 2-class diagnosis, a strongly encoded 3-value site (known share), an unrelated
    ``meta_noise``, a copy of the diagnosis (fully confounded) and a nuisance with missing values."""
    diagnosis = rng.integers(0, 2, size=n)
    site = rng.integers(0, 3, size=n)
    d = 16
    site_means = rng.normal(size=(3, d))
    site_means -= site_means.mean(axis=0)
    site_means *= np.sqrt(1.0 / site_means.var(axis=0))  # between-site variance 1 per dimension
    x = site_means[site] + rng.normal(scale=np.sqrt(2.0), size=(n, d))  # planted site share: 1 / 3
    x[:, 0] += 0.6 * (2 * diagnosis - 1)  # the diagnosis: a small shift along one dimension
    split = np.where(rng.random(n) < 0.2, "test", "train")
    fold = [None if s == "test" else int(i % 5) for i, s in enumerate(split)]
    names = np.array(["benign", "malignant"])
    partial = [None if i % 4 == 0 else f"s{v}" for i, v in enumerate(site)]
    manifest = pl.DataFrame(
        {
            "sample_id": [f"x{i:04d}" for i in range(n)],
            "labels": [[names[v]] for v in diagnosis],
            "split": split.tolist(),
            "fold": fold,
            "meta_site": [f"site{v}" for v in site],
            "meta_noise": [f"n{v}" for v in rng.integers(0, 2, size=n)],
            "meta_copy": [f"c{v}" for v in diagnosis],
            "meta_partial": partial,
        }
    )
    truth = {"site_r2": float(site_means.var(axis=0).sum() / (site_means.var(axis=0).sum() + 2.0 * d + 0.36))}
    return manifest, x.astype(np.float32), truth


@pytest.fixture(scope="module")
def probed():
    rng = np.random.default_rng(7)
    manifest, x, truth = planted_manifest(rng)
    result = nuisance_probe(
        manifest, x, ["benign", "malignant"], False, ["meta_site", "meta_noise", "meta_copy", "meta_partial"], n_permutations=19, seed=0
    )
    return {record["target"]: record for record in result["targets"]}, truth, result, manifest


def test_probe_finds_the_planted_nuisance_above_chance(probed):
    targets, truth, _, manifest = probed
    site = targets["meta_site"]
    assert site["classes"] == ["site0", "site1", "site2"] and site["balanced_chance"] == pytest.approx(1 / 3)
    assert site["balanced_accuracy"] > 0.9 > site["permutation_balanced_q95"] + 0.3
    assert site["permutation_p"] == pytest.approx(1 / 20)  # no permuted fit comes close
    assert abs(site["permutation_balanced_mean"] - 1 / 3) < 0.08
    assert site["r2"] == pytest.approx(truth["site_r2"], abs=0.03)
    assert site["r2_unique"] == pytest.approx(site["r2"], abs=0.01)  # independent of the diagnosis: its own variance
    noise = targets["meta_noise"]
    assert noise["balanced_accuracy"] < 0.62 and abs(noise["r2_adjusted"]) < 0.01 and noise["permutation_p"] > 0.05
    copy = targets["meta_copy"]
    assert copy["r2_unique"] == pytest.approx(0.0, abs=1e-9)  # the diagnosis' own coding adds nothing
    assert copy["r2"] == pytest.approx(targets["diagnosis"]["r2"], abs=1e-9)
    diagnosis = targets["diagnosis"]
    assert diagnosis["balanced_accuracy"] > 0.6 and diagnosis["balanced_accuracy"] < site["balanced_accuracy"]
    assert diagnosis["r2"] < 0.05 < site["r2"]
    # the majority rate: how often the training rows' most frequent class is right on the test rows, directly
    first = [labels[0] for labels in manifest["labels"].to_list()]
    split = manifest["split"].to_list()
    train = [v for v, s in zip(first, split) if s == "train"]
    majority = max(set(train), key=train.count)
    test = [v for v, s in zip(first, split) if s == "test"]
    assert diagnosis["majority_rate"] == pytest.approx(test.count(majority) / len(test))


def test_missing_values_are_left_out_and_counted(probed):
    targets, _, result, _ = probed
    partial = targets["meta_partial"]
    assert partial["n_missing"] == (result["n_samples"] + 3) // 4 and partial["n"] == result["n_samples"] - partial["n_missing"]
    assert partial["balanced_accuracy"] > 0.85


def test_unknown_nuisance_column_is_an_error_naming_the_columns():
    rng = np.random.default_rng(0)
    manifest, x, _ = planted_manifest(rng, n=60)
    with pytest.raises(VlmprobeError, match="meta_view.*meta_site"):
        nuisance_probe(manifest, x, ["benign", "malignant"], False, ["meta_view"], dataset="d")


def test_multilabel_targets_one_per_label_and_the_joint_coding():
    rng = np.random.default_rng(3)
    manifest, x, _ = planted_manifest(rng, n=300)
    labels = [["a", "b"] if i % 3 == 0 else ["a"] if i % 3 == 1 else ["c"] for i in range(300)]
    result = nuisance_probe(manifest.with_columns(pl.Series("labels", labels)), x, ["a", "b", "c"], True, ["meta_site"], n_permutations=0)
    names = [record["target"] for record in result["targets"]]
    assert names == ["diagnosis:a", "diagnosis:b", "diagnosis:c", "diagnosis", "meta_site"]
    joint = result["targets"][3]
    assert joint["coding_rank"] == 2 and "balanced_accuracy" not in joint
    assert result["targets"][0]["classes"] == ["absent", "present"] and result["targets"][0]["permutation_p"] is None


# -- synthetic-cxr's shortcut marker ---------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, 0.8, 1.0])
def test_marker_agrees_with_the_finding_at_the_configured_rate(rate):
    cases = [sample_case(5, i, 64, shortcut={"finding": "effusion", "rate": rate}) for i in range(1500)]
    agree = np.mean([c.marker == any(f.label == "effusion" for f in c.findings) for c in cases])
    assert abs(agree - rate) < 4 * np.sqrt(rate * (1 - rate) / 1500) + 1e-12
    plain = [sample_case(5, i, 64) for i in range(20)]
    assert [c.findings for c in cases[:20]] == [c.findings for c in plain]  # the marker never moves the chest


def test_marker_is_burned_in_the_corner_only_and_recorded(tmp_path):
    case = sample_case(2, 4, 96, shortcut={"finding": "opacity", "rate": 0.0})
    plain = sample_case(2, 4, 96)
    marked = render_case(case if case.marker else sample_case(2, 4, 96, shortcut={"finding": "opacity", "rate": 1.0})).image
    changed = np.argwhere(marked != render_case(plain).image)
    x0, y0, x1, y1 = marker_region(96)
    assert changed.size and (changed[:, 0] >= y0).all() and (changed[:, 0] < y1).all()
    assert (changed[:, 1] >= x0).all() and (changed[:, 1] < x1).all() and marked[changed[:, 0], changed[:, 1]].min() == 250
    records = generate_synthetic_cxr(tmp_path / "a", n_images=12, image_size=32, seed=1, shortcut={"finding": "opacity", "rate": 0.7})
    assert all(r["meta"]["marker"] in ("yes", "no") for r in records)
    assert "meta" not in generate_synthetic_cxr(tmp_path / "b", n_images=2, image_size=32, seed=1)[0]
    with pytest.raises(VlmprobeError, match="finding"):
        resolve_shortcut({"finding": "fracture", "rate": 0.5})
    with pytest.raises(VlmprobeError, match="rate"):
        resolve_shortcut({"finding": "opacity", "rate": 1.5})


# -- the shortcut-sensitivity curve ---------------------------------------------------------------------


def curve_table(marker_strength: float, rng, n: int = 1200):
    """A binary finding weakly encoded, an independent marker encoded with ``marker_strength``."""
    finding = rng.random(n) < 0.4
    marker = rng.random(n) < 0.5
    x = rng.normal(size=(n, 8))
    x[:, 0] += 0.5 * (2 * finding - 1)
    x[:, 1] += marker_strength * (2 * marker - 1)
    split = np.where(rng.random(n) < 0.3, "test", "train")
    return x, finding, marker, split


def test_shortcut_curve_fans_out_when_the_marker_is_encoded():
    x, finding, marker, split = curve_table(3.0, np.random.default_rng(11))
    curve = shortcut_curve(x, finding, marker, split, rates=[0.5, 0.75, 0.9, 1.0], repeats=3, seed=0)
    points = {p["train_agreement"]: p for p in curve["points"]}
    first = points[0.5]
    assert first["same_mean"] == first["removed_mean"] == first["reversed_mean"]  # all test agreements are 0.5
    same = [points[r]["same_mean"] for r in (0.5, 0.75, 0.9, 1.0)]
    reversed_ = [points[r]["reversed_mean"] for r in (0.5, 0.75, 0.9, 1.0)]
    assert all(b > a for a, b in zip(same, same[1:])) and all(b < a for a, b in zip(reversed_, reversed_[1:]))
    assert reversed_[-1] < 0.2 < 0.5 < points[1.0]["removed_mean"] + 0.1 and same[-1] > 0.95
    assert curve["n_train_per_class"] > 50


def test_shortcut_curve_stays_flat_without_the_marker_in_the_embedding():
    x, finding, marker, split = curve_table(0.0, np.random.default_rng(12))
    curve = shortcut_curve(x, finding, marker, split, rates=[0.5, 1.0], repeats=3, seed=0)
    last = curve["points"][-1]
    assert abs(last["same_mean"] - last["reversed_mean"]) < 0.1 and last["removed_mean"] > 0.6


def test_shortcut_curve_needs_every_test_cell():
    x, finding, marker, split = curve_table(1.0, np.random.default_rng(13), n=200)
    with pytest.raises(VlmprobeError, match="test row"):
        shortcut_curve(x, finding, finding.copy(), split, rates=[0.5, 1.0])


# -- files: summaries, figures, the UMAP grid coloured by a nuisance --------------------------------------


def test_summaries_and_figures(tmp_path, probed):
    from vlmprobe.io import write_json
    from vlmprobe.nuisance.summary import write_nuisance_summary, write_shortcut_summary

    _, _, result, _ = probed
    paths = []
    for model in ("a", "b"):
        paths.append(tmp_path / f"{model}.json")
        write_json(paths[-1], {**result, "dataset": "planted", "model": model})
    out = {name: tmp_path / f"nuisance.{name}" for name in ("parquet", "csv", "md", "html", "png")}
    table = write_nuisance_summary(paths, out["parquet"], out["csv"], out["md"], out["html"], out["png"])
    assert table.height == 2 * 5 and set(table["model"]) == {"a", "b"}
    row = table.filter((pl.col("model") == "a") & (pl.col("target") == "meta_site")).row(0, named=True)
    site = next(t for t in result["targets"] if t["target"] == "meta_site")
    assert row["balanced_accuracy"] == site["balanced_accuracy"] and row["r2"] == site["r2"] and row["n_classes"] == 3
    assert "meta_site" in out["md"].read_text() and "<table>" in out["html"].read_text()
    assert out["png"].read_bytes()[:8] == PNG

    x, finding, marker, split = curve_table(3.0, np.random.default_rng(11), n=400)
    curve = {**shortcut_curve(x, finding, marker, split, rates=[0.5, 1.0], repeats=1), "dataset": "planted", "model": "a", "finding": "f"}
    write_json(tmp_path / "curve.json", curve)
    short = {name: tmp_path / f"shortcut.{name}" for name in ("parquet", "csv", "md", "png")}
    table = write_shortcut_summary([tmp_path / "curve.json"], short["parquet"], short["csv"], short["md"], short["png"])
    assert table["train_agreement"].to_list() == [0.5, 1.0]
    assert table["reversed_mean"][1] == curve["points"][1]["reversed_mean"]
    assert short["png"].read_bytes()[:8] == PNG and "reversed" in short["md"].read_text()


def test_umap_grid_redrawn_coloured_by_a_nuisance(tmp_path, image_folder):
    from vlmprobe.datasets import make_manifest
    from vlmprobe.umap.grid import GridResult
    from vlmprobe.umap.grid_file import read_grid, write_grid
    from vlmprobe.umap.stage import nuisance_grid_figure

    manifest = tmp_path / "m.parquet"
    make_manifest("folder", {"kind": "imagefolder", "root": str(image_folder)}, 0, 0.2, 5, manifest, tmp_path / "d", tmp_path)
    ids = pl.read_parquet(manifest)["sample_id"].to_list()
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(2, 1, len(ids), 2))
    quality = pl.DataFrame({"n_neighbors": [5, 15], "min_dist": [0.1, 0.1], "trustworthiness": [0.9, 0.8], "silhouette": [0.1, 0.2]})
    write_grid(GridResult([5, 15], [0.1], coords, quality, [], {"seed": 0}), ids, tmp_path / "c.parquet", tmp_path / "q.parquet")
    read_ids, grid = read_grid(tmp_path / "c.parquet", tmp_path / "q.parquet")
    assert read_ids == ids and np.array_equal(grid.coords, coords) and grid.n_neighbors == [5, 15]
    with pytest.raises(VlmprobeError, match="meta_view"):
        nuisance_grid_figure(manifest, tmp_path / "c.parquet", tmp_path / "q.parquet", tmp_path / "f.png", "meta_view", "t")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(manifest)
    values = [None if i % 5 == 0 else ("left" if i % 2 else "right") for i in range(len(ids))]
    pq.write_table(table.append_column("meta_side", pa.array(values, pa.string())), manifest)
    figure = tmp_path / "side.png"
    nuisance_grid_figure(manifest, tmp_path / "c.parquet", tmp_path / "q.parquet", figure, "meta_side", "coloured by side")
    assert figure.read_bytes()[:8] == PNG
    # the panels' S scores the nuisance: a cell that separates left from right scores high, a random one low
    from vlmprobe.umap.stage import rescored_silhouette

    codes = np.array([-1 if v is None else int(v == "left") for v in values])
    grid.coords[0, 0] = rng.normal(scale=0.1, size=(len(ids), 2)) + 5.0 * np.maximum(codes, 0)[:, None]
    rescored = rescored_silhouette(grid, codes)
    assert rescored["silhouette"][0] > 0.9 and rescored["silhouette"][1] < 0.2
    assert rescored["trustworthiness"].to_list() == [0.9, 0.8]


# -- the stage in the workflow ----------------------------------------------------------------------------


@pytest.mark.workflow
def test_nuisance_stage_in_the_workflow(tmp_path):
    """synthetic-cxr with an independent marker (rate 0.5), raw pixels: the probe reads the marker, the UMAP grid
    is redrawn by it, and the curve fans out."""
    from support import PIXELS
    from support.workflow import planned_outputs, snakemake, write_config

    datasets = {
        "scxr": {
            "kind": "synthetic-cxr", "n_images": 200, "image_size": 32,
            "shortcut": {"finding": "opacity", "rate": 0.5}, "nuisances": ["meta_marker"],
        }
    }  # fmt: skip
    write_config(
        tmp_path, datasets, {"pixels": PIXELS},
        umap={"n_neighbors": [10], "min_dist": [0.5]}, multilabel={"enabled": False}, heatmaps={"enabled": False},
        nuisance={"n_permutations": 5, "shortcut_curve": {"rates": [0.5, 1.0], "repeats": 2}},
    )  # fmt: skip
    snakemake(tmp_path)
    results = tmp_path / "results"
    table = pl.read_parquet(results / "summary" / "nuisance.parquet")
    marker = table.filter(pl.col("target") == "meta_marker").row(0, named=True)
    assert marker["balanced_accuracy"] > 0.9 and marker["balanced_chance"] == 0.5
    assert set(table["target"]) >= {"diagnosis", "diagnosis:opacity", "meta_marker"}
    assert (results / "nuisance" / "scxr" / "pixels_umap_meta_marker.png").read_bytes()[:8] == PNG
    curve = pl.read_parquet(results / "summary" / "shortcut_curve.parquet").sort("train_agreement")
    assert curve["reversed_mean"][1] < 0.5 < curve["same_mean"][1]
    for name in ("nuisance.md", "nuisance.html", "nuisance.png", "shortcut_curve.md", "shortcut_curve.png"):
        assert (results / "summary" / name).stat().st_size > 0
    assert planned_outputs(tmp_path) == set()
    # the HTML report has a Nuisance category: the summary table, both figures and the UMAP grid by the marker
    import json
    import re

    snakemake(tmp_path, "--report", str(tmp_path / "report.html"))
    html = (tmp_path / "report.html").read_text()
    categories = json.loads(re.search(r"var categories = (\{.*?\});\s*</script>", html, flags=re.DOTALL).group(1))
    entries = [Path(path).name for paths in categories["Nuisance"].values() for path in paths]
    assert {"nuisance.html", "nuisance.png", "shortcut_curve.png", "pixels_umap_meta_marker.png"} <= set(entries), entries
