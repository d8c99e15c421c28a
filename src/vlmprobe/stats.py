"""Resampling shared by the stages that report intervals (multi-label metrics, paired comparisons)."""

from __future__ import annotations

import numpy as np


def bootstrap_weights(n_samples: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_samples) multiplicities: resample ``b`` draws sample ``i`` ``weights[b, i]`` times.

    Depends only on (n_samples, n_resamples, seed), so the settings of one dataset share resamples.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xB007,)))
    return rng.multinomial(n_samples, np.full(n_samples, 1.0 / n_samples), size=n_resamples).astype(np.int32)
