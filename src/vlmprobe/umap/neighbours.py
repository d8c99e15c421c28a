"""Exact cosine neighbours of an embedding table, computed once per table for the largest ``n_neighbors``.

Blocked matrix products of the L2-normalised rows (cosine distance = 1 - dot product). Every smaller
``n_neighbors`` uses the first ``k`` columns. This is also what umap-learn itself does for fewer than
4,096 points (an exact distance matrix); above that it switches to approximate NN-descent, so here the
graph is exact at every size. We never hand a wide kNN to ``umap.UMAP(precomputed_knn=...)``: with fewer
than 4,096 points umap-learn up to at least 0.5.12 keeps *all* the columns it is given and silently
builds a wider graph than ``n_neighbors`` asks for. Slicing to exactly ``k`` columns and calling
umap-learn's ``fuzzy_simplicial_set`` ourselves (:mod:`vlmprobe.umap.layout`) avoids that quirk whatever
the installed version.

The result does not depend on the number of threads: a multi-threaded BLAS splits a matrix product
differently for different thread counts, and the last bits of a dot product (hence a neighbour distance,
a fuzzy-graph weight, a layout) follow the split. So each block is one single-threaded product, and the
threads work on different blocks, whose boundaries depend only on the table and ``block_bytes``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

METRIC = "cosine"
DISCONNECTION_DISTANCE = 2.0  # umap.umap_.DISCONNECTION_DISTANCES["cosine"]
# Bytes of scratch memory one block of the exact-neighbour search may use (similarities, argpartition);
# each thread works on one block at a time.
KNN_BLOCK_BYTES = 128 * 2**20


def exact_cosine_knn(
    embeddings: np.ndarray, n_neighbors: int, block_bytes: int = KNN_BLOCK_BYTES, n_threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``n_neighbors`` nearest neighbours under cosine distance, each point first (distance 0).

    Returns ``(indices int32, distances float32)``, both ``(n, n_neighbors)`` and sorted by distance, in the
    layout umap-learn's exact path produces. Pairs at distance >= 2 (opposite directions) are marked
    disconnected (index -1, distance inf), as umap-learn does for cosine. ``n_threads`` blocks are worked
    on at once (scratch memory: ``n_threads * block_bytes``); the result is the same bytes for any number.
    """
    from threadpoolctl import threadpool_limits

    data = np.asarray(embeddings, dtype=np.float32)
    n = data.shape[0]
    k = int(n_neighbors)
    if not 1 <= k <= n:
        raise ValueError(f"n_neighbors={k} must be between 1 and the number of points ({n})")
    unit = data / np.linalg.norm(data, axis=1, keepdims=True).astype(np.float32)
    # Per block row: the similarity row (4 bytes), argpartition's int64 result (8) and a copy (4).
    rows_per_block = int(max(1, min(n, block_bytes // (16 * n))))
    indices = np.empty((n, k), dtype=np.int32)
    distances = np.empty((n, k), dtype=np.float32)

    def block(start: int) -> None:
        stop = min(n, start + rows_per_block)
        similarity = unit[start:stop] @ unit.T
        local = np.arange(stop - start)
        # The point itself must come first, whatever rounding does to its own similarity.
        similarity[local, start + local] = np.inf
        if k < n:
            top = np.argpartition(similarity, n - k, axis=1)[:, n - k :]
        else:
            top = np.broadcast_to(np.arange(n), (stop - start, n))
        top_similarity = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_similarity, axis=1, kind="stable")
        block_indices = np.take_along_axis(top, order, axis=1)
        block_distances = 1.0 - np.take_along_axis(top_similarity, order, axis=1)
        block_distances[:, 0] = 0.0
        np.maximum(block_distances, 0.0, out=block_distances)  # rounding can give -1e-7
        indices[start:stop] = block_indices
        distances[start:stop] = block_distances

    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=max(1, int(n_threads))) as threads:
        list(threads.map(block, range(0, n, rows_per_block)))
    disconnected = distances >= DISCONNECTION_DISTANCE
    if disconnected.any():
        indices[disconnected] = -1
        distances[disconnected] = np.inf
    return indices, distances
