"""PathoROB's robustness index: among each image's k nearest neighbours that agree with it on exactly one of
(diagnosis, nuisance), the share that agrees on the diagnosis.

As bifold-pathomics/PathoROB (commit 46594e9), ``pathorob/robustness_index/``:

* embeddings L2-normalised (``robustness_index.py`` lines 198-199), neighbours by Euclidean distance on them
  (scikit-learn's ``KNeighborsClassifier`` default, ``robustness_index_utils.py`` line 534), i.e. by cosine
  similarity; every image is a query and every other image a candidate neighbour (``X_train = X_test``,
  ``robustness_index.py`` lines 109-110), neighbours from the query's own slide / patient removed
  (``filter_out_query_case_from_neighbors``, ``robustness_index_utils.py`` lines 511-528): here the dataset's
  ``group:`` column when it declares one, else only the image itself;
* for the j-th neighbour: SO = same biological class, other confounder; OS = other biological class, same
  confounder (``calculate_fractions``, ``robustness_index_utils.py`` lines 285-289);
* ``RI(k) = sum_queries #SO in the first k / sum_queries (#SO + #OS) in the first k`` (``compute_robustness_index``,
  ``robustness_index_utils.py`` lines 92-101, "defined in Kömen et al. 2025, Towards Robust Foundation Models for
  Digital Pathology", arXiv:2507.17845; called from ``aggregate_stats``, line 270); bootstrapped over queries
  for its spread (``bootstrapped_robustness_index``, lines 28-48).

PathoROB reports RI at a dataset's median ``k_opt`` (11 on Camelyon, 46 on Tolkach ESCA, 61 on TCGA:
``get_median_k_opt_given_dataset``, ``robustness_index.py`` lines 433-442); ``k`` is a setting here (default 11).
PathoROB balances its datasets so that every (class, confounder) pair has as many images; on an unbalanced
dataset RI also reflects the pairs' sizes, so the shares of SS, SO, OS and OO neighbours are recorded beside it.
Near 1: neighbours that differ in one respect keep the diagnosis (organised by biology); near 0: they keep the
nuisance (organised by site / scanner / stain).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vlmprobe.probes.knn import l2_normalised, top_k_similar

DEFAULT_K = 11


def robustness_index(
    x: np.ndarray,
    diagnosis: Sequence[Any],
    nuisance: Sequence[Any],
    k: int = DEFAULT_K,
    groups: Sequence[Any] | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """RI at ``k`` over every row whose nuisance has a value, its bootstrap interval, and the neighbour shares."""
    from vlmprobe.stats import bootstrap_weights

    nuisance_values = [None if v is None or str(v) == "" else str(v) for v in nuisance]
    kept = np.flatnonzero([v is not None for v in nuisance_values])
    z = l2_normalised(np.asarray(x)[kept])
    diag = np.unique(np.asarray([str(diagnosis[i]) for i in kept]), return_inverse=True)[1]
    conf = np.unique(np.asarray([nuisance_values[i] for i in kept]), return_inverse=True)[1]
    if groups is not None:
        group = np.unique(np.asarray([str(groups[i]) for i in kept]), return_inverse=True)[1]
    else:
        group = np.arange(kept.size)  # each image its own group: only itself is excluded

    def exclude(start: int, stop: int) -> np.ndarray:
        return group[start:stop, None] == group[None, :]

    sims, index = top_k_similar(z, z, k, exclude=exclude)
    valid = np.isfinite(sims)
    same_diag = (diag[index] == diag[:, None]) & valid
    same_conf = (conf[index] == conf[:, None]) & valid
    counts = np.stack(
        [
            (same_diag & same_conf).sum(axis=1),
            (same_diag & ~same_conf & valid).sum(axis=1),
            (~same_diag & same_conf & valid).sum(axis=1),
            (~same_diag & ~same_conf & valid).sum(axis=1),
        ],
        axis=1,
    ).astype(np.float64)  # per query: SS, SO, OS, OO among its first k neighbours
    totals = counts.sum(axis=0)
    denominator = totals[1] + totals[2]
    value = float(totals[1] / denominator) if denominator > 0 else None
    low = high = None
    if value is not None and n_resamples > 0:
        weights = bootstrap_weights(kept.size, n_resamples, seed).astype(np.float64)
        resampled = weights @ counts[:, 1:3]
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = resampled[:, 0] / resampled.sum(axis=1)
        boot = boot[np.isfinite(boot)]
        tail = (1.0 - confidence) / 2.0
        low, high = (float(q) for q in np.quantile(boot, [tail, 1.0 - tail]))
    shares = totals / max(totals.sum(), 1.0)
    return {
        "robustness_index": value,
        "low": low,
        "high": high,
        "k": int(min(k, max(kept.size - 1, 0))),
        "n_rows": int(kept.size),
        "n_diagnoses": int(diag.max() + 1) if kept.size else 0,
        "n_nuisance_values": int(conf.max() + 1) if kept.size else 0,
        "neighbour_shares": {"SS": float(shares[0]), "SO": float(shares[1]), "OS": float(shares[2]), "OO": float(shares[3])},
        "excluded_neighbours": "same group" if groups is not None else "the image itself",
    }
