"""Speed of the probes stage's kNN and few-shot readings on a HiCervix-sized table (28,160 x 1,024, 29 classes).

Both baselines run in this one process on the same random table and 80/20 split:

* kNN: ours (``vlmprobe.probes.knn.knn_predict``: blocked float32 matrix products, ``argpartition``) against
  scikit-learn's ``KNeighborsClassifier(metric="cosine", algorithm="brute", weights=exp((1 - d) / T))``, the
  same rule (the predictions must agree);
* few-shot: ours (``vlmprobe.probes.few_shot.simpleshot``: all draws of a block as one matrix product) against
  one scikit-learn ``NearestCentroid`` fit and predict per draw on the same CL2N features (timed over
  ``--baseline-draws`` draws and scaled to the full count).

The last line reads ``probes speedup: knn <ratio>x, few-shot <ratio>x`` (baseline / ours). Beside the wall
time, the CPU time of this process (``time.process_time``, all threads) is printed: on a machine shared with
other jobs the wall time is inflated, the CPU time is what the work costs (on two dedicated cores the wall time
is about half of it). Iterate small (``--n-samples 3000``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vlmprobe.probes.few_shot import centred_normalised, draw_supports, simpleshot
from vlmprobe.probes.knn import DEFAULT_K, DEFAULT_TEMPERATURE, knn_predict


def make_table(n_samples: int, dim: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_samples)
    centres = rng.normal(size=(n_classes, dim)).astype(np.float32) * 0.15
    return (centres[y] + rng.normal(size=(n_samples, dim)).astype(np.float32)), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=28_160)
    parser.add_argument("--dim", type=int, default=1_024)
    parser.add_argument("--classes", type=int, default=29)
    parser.add_argument("--draws", type=int, default=100, help="few-shot draws per k (k in 1, 2, 4, 8, 16)")
    parser.add_argument("--baseline-draws", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    x, y = make_table(args.n_samples, args.dim, args.classes, args.seed)
    order = np.random.default_rng(args.seed).permutation(args.n_samples)
    cut = int(0.8 * args.n_samples)
    train, test = order[:cut], order[cut:]
    print(f"table {args.n_samples} x {args.dim}, {args.classes} classes: {train.size} training, {test.size} test rows")

    started, cpu = time.perf_counter(), time.process_time()
    ours, _ = knn_predict(x[train], y[train], x[test], args.classes, DEFAULT_K, DEFAULT_TEMPERATURE)
    knn_ours, knn_cpu = time.perf_counter() - started, time.process_time() - cpu
    from sklearn.neighbors import KNeighborsClassifier

    started = time.perf_counter()
    reference = KNeighborsClassifier(n_neighbors=DEFAULT_K, metric="cosine", algorithm="brute", weights=lambda d: np.exp((1 - d) / DEFAULT_TEMPERATURE), n_jobs=-1)
    baseline = reference.fit(x[train], y[train]).predict(x[test])
    knn_baseline = time.perf_counter() - started
    print(f"kNN (k={DEFAULT_K}): ours {knn_ours:.2f} s (CPU {knn_cpu:.2f} s), scikit-learn {knn_baseline:.2f} s, agreement {(ours == baseline).mean():.4f}")

    shots = (1, 2, 4, 8, 16)
    started, cpu = time.perf_counter(), time.process_time()
    simpleshot(x[train], y[train], x[test], y[test], args.classes, shots, args.draws, args.seed)
    few_ours, few_cpu = time.perf_counter() - started, time.process_time() - cpu
    from sklearn.neighbors import NearestCentroid

    mean = x[train].astype(np.float64).mean(axis=0)
    z_train, z_test = centred_normalised(x[train], mean), centred_normalised(x[test], mean)
    started = time.perf_counter()
    for shot in shots:
        supports = draw_supports(y[train], args.classes, shot, args.baseline_draws, np.random.default_rng(shot))
        for draw in range(args.baseline_draws):
            rows = np.concatenate([support[draw] for support in supports])
            NearestCentroid().fit(z_train[rows], y[train][rows]).predict(z_test)
    few_baseline = (time.perf_counter() - started) * args.draws / args.baseline_draws
    print(f"few-shot ({len(shots)} k x {args.draws} draws): ours {few_ours:.2f} s (CPU {few_cpu:.2f} s), scikit-learn NearestCentroid per draw {few_baseline:.2f} s (scaled from {args.baseline_draws} draws)")
    print(f"probes speedup: knn {knn_baseline / knn_ours:.1f}x, few-shot {few_baseline / few_ours:.1f}x")


if __name__ == "__main__":
    main()
