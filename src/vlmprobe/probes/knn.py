"""DINO's weighted k-nearest-neighbour classifier: cosine similarity, ``k = 20``, votes ``exp(similarity / 0.07)``.

As facebookresearch/dino ``eval_knn.py`` (commit 7c446df): features L2-normalised (``nn.functional.normalize(dim=1,
p=2)``, lines 81-82), the similarity of a test image to every training image is a dot product (line 158), the
``k`` most similar training images vote (``topk``, line 159) with weight ``exp(similarity / T)`` (lines 165-172),
and the class with the largest summed weight is the prediction (``probs.sort``, line 173); ``k = 20`` is the
default reported in the paper among ``--nb_knn 10 20 100 200`` (line 194) and ``T = 0.07`` is ``--temperature``
(line 196). DINOv2, THUNDER and MIEB (``mteb``) keep this rule.

Everything is a blocked matrix product: query rows in blocks, each block's similarities to the whole bank
at once, the top k by ``argpartition``; nothing loops over samples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DEFAULT_K = 20
DEFAULT_TEMPERATURE = 0.07
_BLOCK_ELEMENTS = 1 << 24  # similarities held at once (64 MB of float32)

Exclude = Callable[[int, int], np.ndarray]  # (start, stop) of a query block -> (rows, bank) bool: forbidden neighbours


def l2_normalised(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float32 (a zero row stays zero, as ``normalize``'s ``eps`` leaves it)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def top_k_similar(queries: np.ndarray, bank: np.ndarray, k: int, exclude: Exclude | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar bank rows of every query row, most similar first: (similarities, bank indices).

    ``queries`` and ``bank`` are L2-normalised; ``exclude(start, stop)`` may forbid neighbours of the query block
    ``start:stop`` (the query itself, its patient); a forbidden pair has similarity ``-inf`` and comes last.
    """
    n_bank = bank.shape[0]
    k = min(k, n_bank)
    block = max(1, _BLOCK_ELEMENTS // max(n_bank, 1))
    sims = np.empty((queries.shape[0], k), dtype=np.float32)
    index = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], block):
        stop = min(start + block, queries.shape[0])
        similarity = queries[start:stop] @ bank.T
        if exclude is not None:
            similarity[exclude(start, stop)] = -np.inf
        # the k largest, unordered (no negated copy of the block), then those k sorted
        part = np.argpartition(similarity, n_bank - k, axis=1)[:, n_bank - k :] if k < n_bank else np.broadcast_to(np.arange(n_bank), (stop - start, n_bank))
        part_sims = np.take_along_axis(similarity, part, axis=1)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        sims[start:stop] = np.take_along_axis(part_sims, order, axis=1)
        index[start:stop] = np.take_along_axis(part, order, axis=1)
    return sims, index


def weighted_votes(similarities: np.ndarray, neighbour_labels: np.ndarray, n_classes: int, temperature: float) -> np.ndarray:
    """(queries, classes) summed votes ``exp(similarity / T)`` of each query's neighbours (a loop over the k columns)."""
    weights = np.exp(similarities.astype(np.float64) / temperature)
    weights[~np.isfinite(similarities)] = 0.0  # excluded neighbours do not vote
    votes = np.zeros((similarities.shape[0], n_classes))
    rows = np.arange(similarities.shape[0])
    for column in range(similarities.shape[1]):
        np.add.at(votes, (rows, neighbour_labels[:, column]), weights[:, column])
    return votes


def knn_predict(
    train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray, n_classes: int, k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE
) -> tuple[np.ndarray, np.ndarray]:
    """DINO's weighted kNN: (predicted class per query row, (queries, classes) vote shares).

    ``train_y`` holds class indices ``0 .. n_classes - 1``; ties go to the lower class index.
    """
    bank = l2_normalised(train_x)
    queries = l2_normalised(query_x)
    sims, index = top_k_similar(queries, bank, k)
    votes = weighted_votes(sims, np.asarray(train_y)[index], n_classes, temperature)
    shares = votes / np.maximum(votes.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    return votes.argmax(axis=1), shares
