"""The UMAP grid: parameters, neighbours, seeds, faithfulness to umap-learn, quality scores, files, figures."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import polars as pl
import pytest
from PIL import Image

from vlmprobe.errors import VlmprobeError
from vlmprobe.umap.grid import compute_grid, valid_n_neighbors
from vlmprobe.umap.grid_file import read_cell, read_grid_metadata, write_grid
from vlmprobe.umap.neighbours import exact_cosine_knn
from vlmprobe.umap.quality import input_rank_table, trustworthiness_from_ranks

SEED = 7
GRID_K = [5, 15, 50, 200]  # 200 is above the 160 points: dropped
GRID_M = [0.1, 0.5, 1.0]


@pytest.fixture(scope="module")
def blobs():
    from sklearn.datasets import make_blobs

    data, labels = make_blobs(160, 16, centers=4, cluster_std=3.0, random_state=0)
    return data.astype(np.float32), labels.astype(np.int64)


@pytest.fixture(scope="module")
def grid(blobs):
    data, labels = blobs
    return compute_grid(data, GRID_K, GRID_M, seed=SEED, n_jobs=1, quality_labels=labels)


@pytest.fixture(autouse=True)
def _quiet_umap():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        yield


# -- grid parameters ---------------------------------------------------------------------------------


def test_n_neighbors_at_or_above_the_sample_count_are_dropped_with_a_note(caplog):
    with caplog.at_level(logging.INFO, logger="vlmprobe.umap.grid"):
        kept, dropped = valid_n_neighbors([1000, 3, 15, 100, 15, 99], 100)
    assert kept == [3, 15, 99]
    assert dropped == [100, 1000]
    assert "100, 1000 dropped" in caplog.text


@pytest.mark.parametrize(
    ("n_neighbors", "min_dists", "fragment"),
    [([1, 5], [0.1], "integer >= 2"), ([2.5], [0.1], "integer >= 2"), ([5], [1.5], "outside [0, 1.0]"), ([500, 1000], [0.1], "below the number of samples")],
)
def test_bad_grid_values_are_user_errors(blobs, n_neighbors, min_dists, fragment):
    with pytest.raises(VlmprobeError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        compute_grid(blobs[0], n_neighbors, min_dists, seed=0, n_jobs=1)


@pytest.mark.parametrize(("value", "fragment"), [(np.nan, "NaN or Inf"), (0.0, "all zeros")])
def test_bad_embedding_rows_are_user_errors(blobs, value, fragment):
    data = blobs[0].copy()
    data[17] = value
    with pytest.raises(VlmprobeError, match=fragment) as error:
        compute_grid(data, [5], [0.1], seed=0, n_jobs=1)
    assert "[17]" in str(error.value)


# -- neighbours, generator, trustworthiness: the parts we compute ourselves -----------------------------


def test_exact_knn_matches_brute_force_cosine_search():
    from sklearn.neighbors import NearestNeighbors

    data = np.random.RandomState(1).normal(size=(300, 12)).astype(np.float32)
    # A tiny block budget forces many blocks, so the block seams are exercised.
    indices, distances = exact_cosine_knn(data, 20, block_bytes=16 * 300 * 7)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=20, metric="cosine", algorithm="brute").fit(data).kneighbors(data)
    assert indices.dtype == np.int32 and distances.dtype == np.float32
    assert (indices[:, 0] == np.arange(300)).all() and (distances[:, 0] == 0).all()
    np.testing.assert_allclose(distances, ref_dist, atol=2e-6)
    assert (indices == ref_idx).mean() > 0.999  # near-ties may swap order
    assert (np.diff(distances, axis=1) >= 0).all()


def test_tau_generator_is_umaps():
    from umap.utils import tau_rand_int

    from vlmprobe.umap.layout import _tau_rand_int

    states = np.random.RandomState(3).randint(-(2**62), 2**62, size=(50, 3)).astype(np.int64)
    ours, theirs = states.copy(), states.copy()
    for row in range(50):
        for _ in range(20):
            assert _tau_rand_int(ours[row]) == tau_rand_int(theirs[row])
    assert (ours == theirs).all()


def test_trustworthiness_is_sklearns():
    from sklearn.manifold import trustworthiness

    rng = np.random.RandomState(2)
    data = rng.normal(size=(120, 8)).astype(np.float32)
    layout = data[:, :2] + rng.normal(scale=0.5, size=(120, 2))
    ours = trustworthiness_from_ranks(input_rank_table(data), layout, 10)
    assert ours == pytest.approx(trustworthiness(data, layout, n_neighbors=10, metric="cosine"), abs=1e-12)


# -- the grid ------------------------------------------------------------------------------------------


def test_grid_shape_parameters_and_finite_coordinates(grid, blobs):
    n = blobs[0].shape[0]
    assert grid.n_neighbors == [5, 15, 50] and grid.dropped_n_neighbors == [200]
    assert grid.min_dists == GRID_M
    assert grid.coords.shape == (3, 3, n, 2) and np.isfinite(grid.coords).all()
    table = grid.long_table([f"s{i}" for i in range(n)])
    assert table.columns == ["sample_id", "n_neighbors", "min_dist", "x", "y"]
    assert table.height == 3 * 3 * n
    cells = table.group_by("n_neighbors", "min_dist").len()
    assert sorted(cells.select("n_neighbors", "min_dist").rows()) == [(k, m) for k in (5, 15, 50) for m in GRID_M]
    assert (cells["len"] == n).all()
    assert grid.quality.columns == ["n_neighbors", "min_dist", "trustworthiness", "silhouette"]
    assert grid.quality.height == 9
    assert grid.quality["trustworthiness"].is_between(0.5, 1.0).all()
    assert grid.quality["silhouette"].is_between(-1.0, 1.0).all()
    params = grid.params
    assert params["seed"] == SEED and params["metric"] == "cosine" and params["n_epochs"] == 500
    assert params["dropped_n_neighbors"] == [200] and params["versions"]["umap-learn"]
    # Each panel differs: min_dist changes the layout, n_neighbors the graph.
    assert not np.array_equal(grid.cell(15, 0.1), grid.cell(15, 1.0))
    assert not np.array_equal(grid.cell(5, 0.1), grid.cell(15, 0.1))


def test_same_seed_same_coordinates_whatever_else_is_in_the_batch(grid, blobs):
    data, labels = blobs
    alone = compute_grid(data, [15], [0.5], seed=SEED, n_jobs=1)
    assert np.array_equal(alone.cell(15, 0.5), grid.cell(15, 0.5))
    other_seed = compute_grid(data, [15], [0.5], seed=SEED + 1, n_jobs=1)
    assert not np.array_equal(other_seed.cell(15, 0.5), grid.cell(15, 0.5))


def test_worker_processes_give_the_in_process_result(grid, blobs):
    data, labels = blobs
    pooled = compute_grid(data, GRID_K, GRID_M, seed=SEED, n_jobs=2, quality_labels=labels)
    assert pooled.params["n_jobs"] == 2
    assert np.array_equal(pooled.coords, grid.coords)
    assert pooled.quality.equals(grid.quality)


def test_tiny_table_keeps_what_fits(caplog):
    data = np.random.RandomState(4).normal(size=(12, 6)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="vlmprobe.umap.grid"):
        result = compute_grid(data, [3, 11, 50], [0.5], seed=0, n_jobs=1)
    assert result.n_neighbors == [3, 11] and result.dropped_n_neighbors == [50]
    assert np.isfinite(result.coords).all()
    assert result.quality["trustworthiness"].is_nan().all()  # 12 points are too few for 10 neighbours
    assert "too few for trustworthiness" in caplog.text


def test_umap_engine_reproduces_umap_learn_bit_for_bit(blobs):
    """Given umap-learn's own exact neighbours, our shared graph / spectral init / seeding is UMAP.fit_transform."""
    import umap
    from sklearn.metrics import pairwise_distances
    from umap.distances import named_distances
    from umap.utils import fast_knn_indices

    data, _ = blobs
    distance_matrix = pairwise_distances(data, metric=named_distances["cosine"])
    indices = fast_knn_indices(distance_matrix, 15)
    distances = distance_matrix[np.arange(len(data))[:, None], indices].astype(np.float32)
    ours = compute_grid(data, [5, 15], [0.1, 1.0], seed=SEED, n_jobs=1, engine="umap", knn=(indices, distances))
    for k, m in [(5, 1.0), (15, 0.1)]:
        fresh = umap.UMAP(n_neighbors=k, min_dist=m, metric="cosine", random_state=SEED).fit_transform(data)
        assert np.array_equal(ours.cell(k, m), fresh), (k, m)


def test_reused_knn_cell_matches_the_quality_of_a_fresh_fit(grid, blobs):
    import umap

    data, labels = blobs
    fresh = umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=SEED).fit_transform(data)
    ranks = input_rank_table(data)
    row = grid.quality.filter((pl.col("n_neighbors") == 15) & (pl.col("min_dist") == 0.1)).row(0, named=True)
    assert row["trustworthiness"] == pytest.approx(trustworthiness_from_ranks(ranks, fresh, 10), abs=0.02)
    from sklearn.metrics import silhouette_score

    assert row["silhouette"] == pytest.approx(silhouette_score(fresh, labels), abs=0.1)


# -- files and figures ------------------------------------------------------------------------------------


def test_written_tables_round_trip(grid, blobs, tmp_path):
    n = blobs[0].shape[0]
    ids = [f"img{i:03d}" for i in range(n)]
    write_grid(grid, ids, tmp_path / "m.parquet", tmp_path / "m_quality.parquet", extra={"model": "m"})
    coords = pl.read_parquet(tmp_path / "m.parquet")
    assert coords.columns == ["sample_id", "n_neighbors", "min_dist", "x", "y"] and coords.height == 9 * n
    assert pl.read_parquet(tmp_path / "m_quality.parquet").equals(grid.quality)
    meta = read_grid_metadata(tmp_path / "m.parquet")
    assert meta["seed"] == SEED and meta["model"] == "m" and meta["n_neighbors"] == [5, 15, 50]
    sample_ids, xy = read_cell(tmp_path / "m.parquet", 50, 0.5)
    assert sample_ids == ids and np.array_equal(xy, grid.cell(50, 0.5))
    with pytest.raises(VlmprobeError, match="no n_neighbors=200"):
        read_cell(tmp_path / "m.parquet", 200, 0.5)


def test_grid_figure_is_a_png_of_the_expected_layout(grid, blobs, tmp_path):
    from vlmprobe.io import save_figure
    from vlmprobe.umap.figures import plot_grid

    labels = [f"class {c}" for c in blobs[1]]
    fig = plot_grid(grid, labels, "blobs / test model")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 9
    layout = {(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start): ax for ax in panels}
    assert set(layout) == {(i, j) for i in range(3) for j in range(3)}
    assert [layout[(0, j)].get_title() for j in range(3)] == ["min_dist = 0.1", "min_dist = 0.5", "min_dist = 1"]
    assert [layout[(i, 0)].get_ylabel() for i in range(3)] == ["n_neighbors = 5", "n_neighbors = 15", "n_neighbors = 50"]
    assert "T 0." in layout[(1, 1)].texts[0].get_text()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [f"class {c}" for c in range(4)]
    path = tmp_path / "grid.png"
    width, height = fig.get_size_inches() * 120
    save_figure(path, fig)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert abs(image.size[0] - width) <= 1 and abs(image.size[1] - height) <= 1
        assert image.size[1] > image.size[0] * 0.7  # 3 x 3 panels plus the legend column


def test_models_figure_and_multilabel_colours(grid, tmp_path):
    from vlmprobe.io import save_figure
    from vlmprobe.umap.figures import multilabel_colour_labels, plot_models_at_cell

    indicator = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]])
    classes = ["effusion", "nodule", "no finding"]
    assert multilabel_colour_labels(indicator, classes, None, normal_class="no finding") == [
        "normal", "one finding", "several", "normal", "one finding"
    ]
    assert multilabel_colour_labels(indicator, classes, "nodule") == ["other", "other", "nodule", "other", "nodule"]
    with pytest.raises(VlmprobeError, match="'pleural' is not a label"):
        multilabel_colour_labels(indicator, classes, "pleural")

    n = grid.n_samples
    colours = (["normal", "one finding", "several"] * n)[:n]
    per_model = {name: (grid.cell(15, 0.5) * scale, colours) for name, scale in [("a", 1), ("b", 2), ("c", 3)]}
    fig = plot_models_at_cell(per_model, 15, 0.5, "blobs", quality={"a": (0.9, 0.5)})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["a", "b", "c"]
    assert len(fig.axes) == 3  # one row of three, no empty panel
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["normal", "one finding", "several"]
    save_figure(tmp_path / "models.png", fig)
    with Image.open(tmp_path / "models.png") as image:
        assert image.format == "PNG"
