"""Speed of the poster's linear probe: the naive scikit-learn loop against ``run_linear_probe``.

Both run in this one process on the same synthetic embedding table and manifest split:

* naive: the six fits (five CV-fold models + the final model on all training rows) one at a time,
  each ``Pipeline(StandardScaler(), LinearSVC(C=100/N))`` with scikit-learn's defaults
  (``dual='auto'``, which picks liblinear's primal Newton solver when samples outnumber features);
* ours: ``vlmprobe.linear_probe.probe.run_linear_probe`` (joint one-vs-rest Newton-CG, fits in threads),
  which also computes every score.

The data imitate frozen image embeddings of a hard, imbalanced many-class dataset (the poster's
HiCervix row: 29 classes, accuracy ~45-65 %): class-dependent Gaussian clusters in a 128-dim latent
space with a decaying spectrum, mapped to ``--dim`` correlated features, plus isotropic noise and a
per-feature offset; class sizes follow a Zipf-like law (largest/smallest ~15x).

The last line reads ``linear probe speedup: <ratio>x, prediction agreement: <fraction>``: the ratio
of wall-clock times (naive / ours), and the smallest, over the six fits, fraction of test samples on
which both predict the same class. Iterate small (``--n-samples 3000``); the default is full size
(22,000 x 1,024, 29 classes), which takes several minutes, nearly all of it in the naive loop.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from vlmprobe.datasets.splits import assign_splits
from vlmprobe.linear_probe.probe import run_linear_probe


def make_embeddings(
    n_samples: int, dim: int, n_classes: int, seed: int, separation: float = 0.3, noise: float = 2.0, latent: int = 128
) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_classes + 1) ** 0.8
    y = rng.choice(n_classes, size=n_samples, p=weights / weights.sum())
    spectrum = 1.0 / np.sqrt(np.arange(1, latent + 1))
    centers = rng.normal(0.0, separation, size=(n_classes, latent))
    z = (centers[y] + rng.normal(size=(n_samples, latent))) * spectrum
    # Scale the mixing so that the latent signal carries about as much variance per feature as the noise.
    mixing = rng.normal(size=(latent, dim)) * np.sqrt(dim / latent / np.sum(spectrum**2))
    x = z @ mixing + noise * rng.normal(size=(n_samples, dim)) + rng.normal(0.0, 2.0, size=dim)
    return x.astype(np.float32), [f"class_{v:02d}" for v in y]


def naive_predictions(x: np.ndarray, labels: np.ndarray, split: np.ndarray, fold: np.ndarray) -> list[np.ndarray]:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    train = split == "train"
    test_rows = np.flatnonzero(~train)
    fit_sets = [np.flatnonzero(train & (fold != f)) for f in range(int(fold[train].max()) + 1)]
    fit_sets.append(np.flatnonzero(train))
    predictions = []
    for rows in fit_sets:
        model = Pipeline([("scale", StandardScaler()), ("svm", LinearSVC(C=100.0 / rows.size))])
        model.fit(x[rows], labels[rows])
        predictions.append(model.predict(x[test_rows]))
    return predictions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=22_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=29)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=-1, help="threads for our six fits (-1: one per core)")
    args = parser.parse_args(argv)

    x, labels = make_embeddings(args.n_samples, args.dim, args.classes, args.seed)
    classes = sorted(set(labels))
    split, fold = assign_splits([[name] for name in labels], classes, multilabel=False, seed=args.seed)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"data: {x.shape[0]} x {x.shape[1]} float32, {len(classes)} classes, {cores} cores", flush=True)

    start = time.perf_counter()
    ours = run_linear_probe(x, labels, split, fold, n_jobs=args.n_jobs, seed=args.seed)
    ours_s = time.perf_counter() - start
    summary = ours["summary"]["test"]
    print(
        f"ours:  {ours_s:8.1f} s  test accuracy {summary['accuracy']['mean']:.3f} ± {summary['accuracy']['std']:.3f}, "
        f"macro F1 {summary['macro_f1']['mean']:.3f}; "
        f"CG iterations per fit {[f['solver_info']['cg_iterations'] for f in ours['folds']]} "
        f"+ final {ours['final']['solver_info']['cg_iterations']}",
        flush=True,
    )

    split_array = np.asarray(split)
    fold_array = np.asarray([-1 if f is None else f for f in fold])
    start = time.perf_counter()
    naive = naive_predictions(x, np.asarray(labels), split_array, fold_array)
    naive_s = time.perf_counter() - start
    test_labels = np.asarray(labels)[split_array == "test"]
    naive_accuracy = np.mean([np.mean(p == test_labels) for p in naive[:-1]])
    print(f"naive: {naive_s:8.1f} s  test accuracy {naive_accuracy:.3f} (mean over fold models)", flush=True)

    class_names = np.asarray(ours["classes"])
    ours_fits = ours["predictions"]["fold_models"] + [ours["predictions"]["final_model"]]
    agreement = [float(np.mean(class_names[np.asarray(mine)] == theirs)) for mine, theirs in zip(ours_fits, naive)]
    print("agreement per fit (5 folds, final):", " ".join(f"{a:.4f}" for a in agreement))
    print(f"linear probe speedup: {naive_s / ours_s:.2f}x, prediction agreement: {min(agreement):.4f}")


if __name__ == "__main__":
    main()
