"""SimpleShot few-shot accuracy: ``k`` labelled training images per class, nearest class centroid, many draws.

SimpleShot (Wang et al. 2019, "CL2N"): every feature is centred by the mean of the training rows and
L2-normalised; the centroid of each class is the mean of its ``k`` drawn (transformed) support images; a test
image gets the class of the nearest centroid (Euclidean). THUNDER and MedARC's NanoPath probe report it at
``k`` in {1, 2, 4, 8, 16} over many random draws (NanoPath: 1,000 draws of 16-shot). A class with fewer than
``k`` training images contributes all of them (recorded as ``short_classes``).

Per ``k``: the mean over draws of the test accuracy and balanced accuracy, their standard deviation, the
central ``confidence`` interval of the draws (what one draw of ``k`` labelled images may give) and the
standard error of the mean. Draws are seeded, independent of the model, so every model of a dataset sees
the same support sets. The draws of a block are one matrix product: (test rows) x (draws x classes) centroids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_SHOTS = (1, 2, 4, 8, 16)
_BLOCK_ELEMENTS = 1 << 24  # test rows x draws x classes scores held at once


def centred_normalised(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float32) - mean.astype(np.float32)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def draw_supports(train_y: np.ndarray, n_classes: int, shots: int, draws: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per class, (draws, min(shots, n_c)) training-row positions drawn without replacement in every draw."""
    supports = []
    for c in range(n_classes):
        rows = np.flatnonzero(train_y == c)
        take = min(shots, rows.size)
        keys = rng.random((draws, rows.size))
        picked = np.argpartition(keys, take - 1, axis=1)[:, :take] if take < rows.size else np.broadcast_to(np.arange(rows.size), (draws, rows.size))
        supports.append(rows[picked])
    return supports


def draw_accuracies(z_train: np.ndarray, z_test: np.ndarray, test_y: np.ndarray, supports: list[np.ndarray], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and balanced accuracy of every draw (arrays of length draws)."""
    draws = supports[0].shape[0]
    onehot = (test_y[:, None] == np.arange(n_classes)[None, :]).astype(np.float64)  # (n_test, C)
    counts = onehot.sum(axis=0)
    present = counts > 0
    block = max(1, _BLOCK_ELEMENTS // max(z_test.shape[0] * n_classes, 1))
    accuracy = np.empty(draws)
    balanced = np.empty(draws)
    for start in range(0, draws, block):
        stop = min(start + block, draws)
        centroids = np.stack([z_train[support[start:stop]].mean(axis=1) for support in supports], axis=1)  # (b, C, d)
        b = stop - start
        flat = centroids.reshape(b * n_classes, -1)
        # nearest centroid: argmin |z - m|^2 = argmax z.m - |m|^2 / 2
        scores = (z_test @ flat.T).reshape(-1, b, n_classes) - 0.5 * (centroids**2).sum(axis=2)[None, :, :]
        correct = (scores.argmax(axis=2) == test_y[:, None]).astype(np.float64)  # (n_test, b)
        accuracy[start:stop] = correct.mean(axis=0)
        recall = (onehot.T @ correct)[present] / counts[present, None]  # (classes in test, b)
        balanced[start:stop] = recall.mean(axis=0)
    return accuracy, balanced


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def simpleshot(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    n_classes: int,
    shots: Sequence[int] = DEFAULT_SHOTS,
    draws: int = 100,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """One record per ``k`` in ``shots``: mean, std, interval and standard error of accuracy and balanced accuracy."""
    train_y = np.asarray(train_y, dtype=np.int64)
    test_y = np.asarray(test_y, dtype=np.int64)
    mean = np.asarray(train_x, dtype=np.float64).mean(axis=0)
    z_train = centred_normalised(train_x, mean)
    z_test = centred_normalised(test_x, mean)
    class_sizes = np.bincount(train_y, minlength=n_classes)
    records = []
    for shot in shots:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5107, int(shot))))
        supports = draw_supports(train_y, n_classes, int(shot), draws, rng)
        accuracy, balanced = draw_accuracies(z_train, z_test, test_y, supports, n_classes)
        record: dict[str, Any] = {"shots": int(shot), "draws": int(draws), "short_classes": int((class_sizes < shot).sum())}
        for name, values in (("accuracy", accuracy), ("balanced_accuracy", balanced)):
            low, high = interval(values, confidence)
            record[name] = {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if draws > 1 else 0.0,
                "low": low,
                "high": high,
                "sem": float(values.std(ddof=1) / np.sqrt(draws)) if draws > 1 else 0.0,
            }
        records.append(record)
    return records
