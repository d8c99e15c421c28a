"""Benchmark: the UMAP grid of vlmprobe.umap.grid against the naive per-cell loop, same process, same data.

Data (3,000 x 512 each, built in, no downloads):

* ``digits``: scikit-learn's handwritten digits (1,797 images of 8x8 pixels, 10 classes) through a fixed
  "model": 1,203 rows re-drawn at random (seed 0) with Gaussian pixel noise (sd 0.5 on the 0-16 scale) to
  reach 3,000 rows, then projected to 512 dimensions by a fixed Gaussian random matrix (seed 0). Cosine
  geometry survives the projection, so this behaves like a small image-embedding table with 10 classes.
  ``--table results/embeddings/<dataset>/<model>.parquet`` uses a real cached embedding table instead
  (its first 3,000 rows).
* ``synthetic``: ``sklearn.datasets.make_blobs`` 3,000 x 512, 8 clusters, cluster_std 5 (seed 0).

For each, the naive loop is ``umap.UMAP(n_neighbors=k, min_dist=m, metric="cosine",
random_state=seed).fit_transform(X)`` for every cell of the poster's grid (10 x 5; ``--quick``: 4 x 3, with the
poster's smallest n_neighbors, 3, where the graph falls apart into components), and
ours is one ``compute_grid`` call with ``--n-jobs`` worker processes (default: all cores), worker start-up
included. Numba compilation is paid before timing for both (one small fit each), as a real job pays it once.
Wall-clock time is the measure; CPU time (this process plus the finished worker processes) is printed
beside it because it is less sensitive to other load on a shared machine.
Both are scored by the same trustworthiness (scikit-learn's definition, cosine input distances, 10
neighbours, the same fixed 2,000-point subsample). Goal: at least 8x, and every cell's gap within umap-learn's
own noise.

That noise is measured in the same run: the naive loop is also run with ``seed + 1`` on the smallest
n_neighbors (the noisiest row), and the largest trustworthiness gap between the two seeds of umap-learn
itself there is the dataset's noise floor (not part of the timings; ``--no-noise-floor`` skips it). A
dataset's cells pass when its worst gap is at most ``max(0.01, floor)``: a gap umap-learn shows between two
of its own seeds is not a difference in quality. (At n_neighbors = 3 ``umap.UMAP`` is not even reproducible
with one seed, see docs/umap.md, "Same seed, same layout"; its seed spread includes that noise.)

The last line reads ``umap grid speedup: <ratio>x, worst trustworthiness gap: <gap> (umap-learn's own seed
spread: <floor>)`` where the ratio is the smaller of the per-dataset ratios, the gap the largest over all
cells of both datasets, and the floor that of the dataset with the largest gap.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings

import numpy as np

from vlmprobe.umap.grid import POSTER_MIN_DISTS, POSTER_N_NEIGHBORS, compute_grid
from vlmprobe.umap.quality import input_rank_table, trust_subsample_indices, trustworthiness_from_ranks

QUICK_N_NEIGHBORS = (3, 15, 50, 200)
QUICK_MIN_DISTS = (0.1, 0.5, 1.0)
N_ROWS = 3000
DIM = 512
TRUST_NEIGHBOURS = 10
TRUST_SUBSAMPLE = 2000
GAP_TOLERANCE = 0.01  # a gap is judged against max(this, umap-learn's own seed spread in the same run)


def digits_table(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.RandomState(seed)
    rows = np.concatenate([np.arange(len(digits.target)), rng.choice(len(digits.target), N_ROWS - len(digits.target))])
    pixels = digits.data[rows] + rng.normal(0.0, 0.5, size=(N_ROWS, digits.data.shape[1]))
    projection = rng.normal(size=(digits.data.shape[1], DIM)) / np.sqrt(digits.data.shape[1])
    return (pixels @ projection).astype(np.float32), digits.target[rows].astype(np.int64)


def synthetic_table(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_blobs

    data, labels = make_blobs(N_ROWS, DIM, centers=8, cluster_std=5.0, random_state=seed)
    return data.astype(np.float32), labels.astype(np.int64)


def cached_table(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    from vlmprobe.formats.embeddings import read_embeddings

    table = read_embeddings(path)
    return np.ascontiguousarray(table.matrix[:N_ROWS], dtype=np.float32), None


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the grid's worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def naive_grid(data, n_neighbors, min_dists, seed) -> tuple[dict[tuple[int, float], np.ndarray], float, float]:
    import umap

    layouts = {}
    began, began_cpu = time.perf_counter(), cpu_seconds()
    for k in n_neighbors:
        for m in min_dists:
            layouts[(k, m)] = umap.UMAP(n_neighbors=k, min_dist=m, metric="cosine", random_state=seed).fit_transform(data)
    return layouts, time.perf_counter() - began, cpu_seconds() - began_cpu


def warm_up(data: np.ndarray, seed: int) -> None:
    """Compile umap-learn's and our numba code once, outside the timings (as a real job pays it once)."""
    import umap

    small = data[:300]
    umap.UMAP(n_neighbors=5, min_dist=0.1, metric="cosine", random_state=seed).fit_transform(small)
    compute_grid(small, [5], [0.1], seed=seed, n_jobs=1)


def run_dataset(name, data, labels, n_neighbors, min_dists, seed, n_jobs, engine, noise_floor) -> tuple[float, float, float | None]:
    """Time and score one dataset; returns ``(speedup, worst gap, noise floor or None)``."""
    from threadpoolctl import threadpool_limits

    print(f"\n== {name}: {data.shape[0]} x {data.shape[1]}, grid {len(n_neighbors)} x {len(min_dists)}, n_jobs={n_jobs}", flush=True)
    subsample = trust_subsample_indices(data.shape[0], TRUST_SUBSAMPLE, seed)
    with threadpool_limits(limits=1):  # as compute_grid computes its own ranks
        ranks = input_rank_table(data[subsample])

    def trust(layout):
        return trustworthiness_from_ranks(ranks, layout[subsample], TRUST_NEIGHBOURS)

    began, began_cpu = time.perf_counter(), cpu_seconds()
    ours = compute_grid(
        data, n_neighbors, min_dists, seed=seed, n_jobs=n_jobs, quality_labels=labels,
        trust_subsample=TRUST_SUBSAMPLE, trust_n_neighbors=TRUST_NEIGHBOURS, engine=engine,
    )
    ours_seconds, ours_cpu = time.perf_counter() - began, cpu_seconds() - began_cpu
    print(f"ours ({engine}): {ours_seconds:.1f} s wall, {ours_cpu:.1f} s CPU  {ours.params['seconds']}", flush=True)
    spectral = ours.params["spectral_init"]
    print(
        "graph components / seeded eigensolver restarts per n_neighbors: "
        + ", ".join(f"{k}: {v['graph_components']} / {v['eigensolver_restarts']}" for k, v in spectral.items()),
        flush=True,
    )

    naive, naive_seconds, naive_cpu = naive_grid(data, n_neighbors, min_dists, seed)
    print(f"naive loop: {naive_seconds:.1f} s wall, {naive_cpu:.1f} s CPU ({naive_seconds / len(naive):.1f} s per cell)", flush=True)

    print(f"{'n_neighbors':>11} {'min_dist':>8} {'T naive':>8} {'T ours':>8} {'gap':>7}")
    worst = 0.0
    quality = {(row["n_neighbors"], row["min_dist"]): row["trustworthiness"] for row in ours.quality.iter_rows(named=True)}
    for k in n_neighbors:
        for m in min_dists:
            t_naive = trust(naive[(k, m)])
            t_ours = quality[(k, m)]
            gap = abs(t_ours - t_naive)
            worst = max(worst, gap)
            print(f"{k:>11} {m:>8} {t_naive:>8.4f} {t_ours:>8.4f} {gap:>7.4f}")
    floor = None
    if noise_floor:
        k = min(n_neighbors)
        other_seed, _, _ = naive_grid(data, [k], min_dists, seed + 1)
        spread = [abs(trust(other_seed[(k, m)]) - trust(naive[(k, m)])) for m in min_dists]
        floor = max(spread)
        print(f"noise floor: naive seed {seed} vs seed {seed + 1} at n_neighbors={k}: gaps " + ", ".join(f"{g:.4f}" for g in spread) + f" (max {floor:.4f})")
        allowed = max(GAP_TOLERANCE, floor)
        verdict = "within" if worst <= allowed else "OUTSIDE"
        print(f"{name}: worst gap {worst:.4f} is {verdict} umap-learn's own noise (max({GAP_TOLERANCE}, seed spread {floor:.4f}) = {allowed:.4f})")
    ratio = naive_seconds / ours_seconds
    print(
        f"{name}: naive {naive_seconds:.1f} s, ours {ours_seconds:.1f} s, speedup {ratio:.1f}x "
        f"(CPU time: naive {naive_cpu:.0f} s, ours {ours_cpu:.0f} s, {naive_cpu / ours_cpu:.1f}x less), worst gap {worst:.4f}",
        flush=True,
    )
    return ratio, worst, floor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 x 3 grid instead of the poster's 10 x 5")
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", default="digits,synthetic", help="comma-separated subset of digits,synthetic")
    parser.add_argument("--table", help="an embedding table (Parquet) to use instead of the digits stand-in")
    parser.add_argument("--engine", default="lockstep", choices=["lockstep", "umap"])
    parser.add_argument("--no-noise-floor", action="store_true", help="skip the naive seed-to-seed comparison")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="umap")
    warnings.filterwarnings("ignore", category=UserWarning, message=".*n_jobs value.*")

    n_neighbors = QUICK_N_NEIGHBORS if args.quick else POSTER_N_NEIGHBORS
    min_dists = QUICK_MIN_DISTS if args.quick else POSTER_MIN_DISTS
    tables = {}
    for name in args.datasets.split(","):
        if name == "digits":
            tables[name] = cached_table(args.table) if args.table else digits_table(args.seed)
        elif name == "synthetic":
            tables[name] = synthetic_table(args.seed)
        else:
            sys.exit(f"unknown dataset {name!r}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; warming up numba ...", flush=True)
    warm_up(next(iter(tables.values()))[0], args.seed)

    ratios, gaps = [], []
    for name, (data, labels) in tables.items():
        ratio, gap, floor = run_dataset(name, data, labels, n_neighbors, min_dists, args.seed, args.n_jobs, args.engine, not args.no_noise_floor)
        ratios.append(ratio)
        gaps.append((gap, floor))
    worst, floor = max(gaps, key=lambda pair: pair[0])
    spread = "not measured" if floor is None else f"{floor:.4f}"
    print(f"umap grid speedup: {min(ratios):.1f}x, worst trustworthiness gap: {worst:.4f} (umap-learn's own seed spread: {spread})")


if __name__ == "__main__":
    main()
