"""Same table, n_neighbors, min_dist and seed -> the same UMAP cell, byte for byte (issue 26).

The table is built so that its 3-neighbour graph falls into several components, some of them rings of
five points with equal edge weights: on those, the ARPACK eigensolver of umap-learn's spectral
initialisation restarts from a random vector, the one draw umap-learn does not seed
(:mod:`vlmprobe.umap.spectral`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from unittest import mock

import numpy as np
import pytest

from vlmprobe.umap.grid import compute_grid

SEED = 3
N_NEIGHBORS = [3, 5]
MIN_DISTS = [0.1, 1.0]


def rings_and_blobs(n_rings: int = 6, ring: int = 5, n_blobs: int = 4, blob: int = 30, dim: int = 32) -> np.ndarray:
    """``n_rings`` regular pentagons (each in its own plane, all tilted towards one shared axis) and
    ``n_blobs`` Gaussian blobs: the 3-neighbour graph of a pentagon is a ring of its own, with every vertex
    of the same degree."""
    rng = np.random.RandomState(0)
    angles = 2 * np.pi * np.arange(ring) / ring
    parts = []
    for r in range(n_rings):
        points = np.zeros((ring, dim))
        points[:, 0] = 1.0
        points[:, 1 + 2 * r] = np.cos(angles)
        points[:, 2 + 2 * r] = np.sin(angles)
        parts.append(points)
    for b in range(n_blobs):
        centre = np.zeros(dim)
        centre[0], centre[dim - 1 - b] = 1.0, 3.0
        parts.append(centre + 0.3 * rng.normal(size=(blob, dim)))
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def table():
    return rings_and_blobs()


@pytest.fixture(scope="module")
def grid(table):
    return compute_grid(table, N_NEIGHBORS, MIN_DISTS, seed=SEED, n_jobs=1)


@pytest.fixture(autouse=True)
def _quiet_umap():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="umap")
        warnings.filterwarnings("ignore", module="sklearn")
        yield


def grid_bytes(result) -> tuple[bytes, bytes]:
    return result.coords.tobytes(), result.quality.write_ipc(None).getvalue()


def test_the_table_exercises_the_unseeded_restarts(grid):
    spectral = grid.params["spectral_init"]
    assert spectral["3"]["graph_components"] > 2 * 2  # enough for umap-learn's component layout as well
    assert spectral["3"]["eigensolver_restarts"] > 0


def test_spectral_init_is_umap_learns_given_the_same_restart_generator(table):
    """Our copy of umap-learn's spectral_layout differs from theirs only in the generator ARPACK restarts from."""
    import scipy.sparse.linalg
    import sklearn.manifold._spectral_embedding as sklearn_spectral
    import umap.spectral
    from umap.distances import named_distances
    from umap.umap_ import fuzzy_simplicial_set

    from vlmprobe.umap.neighbours import exact_cosine_knn
    from vlmprobe.umap.spectral import restart_generator, spectral_layout

    indices, distances = exact_cosine_knn(table, 3)
    graph, _, _ = fuzzy_simplicial_set(table, 3, None, "cosine", {}, indices, distances, False, 1.0, 1.0, True)
    metric = named_distances["cosine"]
    restarts = restart_generator(SEED)
    ours = spectral_layout(table, graph, 2, np.random.RandomState(SEED), restarts, metric)
    assert restarts.restarted > 0

    shared = restart_generator(SEED).rng
    eigsh = scipy.sparse.linalg.eigsh

    def seeded_eigsh(*args, **kwargs):
        return eigsh(*args, rng=shared, **kwargs)

    with mock.patch.object(scipy.sparse.linalg, "eigsh", seeded_eigsh), mock.patch.object(sklearn_spectral, "eigsh", seeded_eigsh):
        theirs = umap.spectral.spectral_layout(table, graph, 2, np.random.RandomState(SEED), metric=metric, metric_kwds={})
    assert np.array_equal(ours, theirs)


def test_two_grids_in_one_process_are_byte_identical(table, grid):
    again = compute_grid(table, N_NEIGHBORS, MIN_DISTS, seed=SEED, n_jobs=1)
    assert grid_bytes(again) == grid_bytes(grid)


def test_cells_do_not_depend_on_the_other_cells_or_their_order(table, grid):
    for k in reversed(N_NEIGHBORS):
        alone = compute_grid(table, [k], MIN_DISTS[::-1], seed=SEED, n_jobs=1)
        for m in MIN_DISTS:
            assert alone.cell(k, m).tobytes() == grid.cell(k, m).tobytes(), (k, m)


def test_umap_engine_is_reproducible_too(table):
    first, second = (compute_grid(table, [3], [0.5], seed=SEED, n_jobs=1, engine="umap") for _ in range(2))
    assert grid_bytes(first) == grid_bytes(second)


CHILD = """
import sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from test_umap_reproducible import rings_and_blobs
from vlmprobe.umap.grid import compute_grid

if __name__ == "__main__":
    result = compute_grid(rings_and_blobs(), {k}, {m}, seed={seed}, n_jobs=2)
    np.save(sys.argv[1], result.coords)
    result.quality.write_parquet(sys.argv[2])
"""


@pytest.mark.slow
def test_a_second_process_with_worker_processes_gives_the_same_bytes(table, grid, tmp_path):
    """A fresh interpreter (fresh ARPACK and numba state) with two worker processes: same bytes as here."""
    import polars as pl

    script = tmp_path / "child.py"
    script.write_text(CHILD.format(k=N_NEIGHBORS, m=MIN_DISTS, seed=SEED))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]))
    coords, quality = tmp_path / "coords.npy", tmp_path / "quality.parquet"
    done = subprocess.run([sys.executable, str(script), str(coords), str(quality)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert np.load(coords).tobytes() == grid.coords.tobytes()
    assert pl.read_parquet(quality).equals(grid.quality)
