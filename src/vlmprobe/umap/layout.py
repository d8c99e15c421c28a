"""UMAP layouts: the per-n_neighbors preparation and the lockstep SGD kernel, following umap-learn.

Parts of this module follow umap-learn's code (BSD-3-Clause, Copyright (c) 2017 Leland McInnes; see
THIRD_PARTY_NOTICES.md): :func:`prepare` follows ``umap.umap_.simplicial_set_embedding``,
:func:`_tau_rand_int` is ``umap.utils.tau_rand_int`` and :func:`_optimize_lockstep` /
:func:`_per_sample_rng_state` follow ``umap.layouts.optimize_layout_euclidean``.

**Fuzzy graph and spectral initialisation, once per n_neighbors**, with umap-learn's own functions
(``fuzzy_simplicial_set``, the edge pruning of ``simplicial_set_embedding``, ``noisy_scale_coords``,
``make_epochs_per_sample``) and its ``spectral_layout`` as :mod:`vlmprobe.umap.spectral` has it (the
eigensolver's restarts seeded): none of them depends on ``min_dist``.

**Layouts, all min_dist values of one n_neighbors together.** The SGD layout is what remains, and it
dominates. For one graph the edge-sampling schedule and the negative-sample draws do not depend on
``min_dist`` (only the curve parameters ``a``, ``b`` from ``find_ab_params`` do), so one pass over the
schedule updates every ``min_dist`` layout in turn ("lockstep"). The layouts are independent
computations, so the CPU overlaps them, and each one is exactly what it would be if run alone.
The kernel is umap-learn's ``optimize_layout_euclidean`` (same schedule, same Tausworthe generator and
per-sample seeding, same gradients, clipping at 4, learning-rate decay, ``move_other``) in float32
arithmetic. ``engine="umap"`` runs umap-learn's own ``optimize_layout_euclidean`` per cell instead: given
the same neighbours it reproduces ``umap.UMAP(...).fit_transform`` bit for bit (a test checks this) wherever
that is itself reproducible (its eigensolver did not restart: the grid's ``spectral_init`` metadata), and
is the reference the fast kernel is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse.csgraph

from vlmprobe.umap.neighbours import METRIC
from vlmprobe.umap.spectral import restart_generator, spectral_layout

N_COMPONENTS = 2
# umap.UMAP defaults, kept as they are so that each cell means what the naive fit means.
SPREAD = 1.0
LEARNING_RATE = 1.0
REPULSION_STRENGTH = 1.0
NEGATIVE_SAMPLE_RATE = 5
SET_OP_MIX_RATIO = 1.0
LOCAL_CONNECTIVITY = 1.0
ENGINES = ("lockstep", "umap")


# --------------------------------------------------------------------------------------------------
# The layout kernel


@numba.njit("i4(i8[::1])", cache=True, nogil=True)
def _tau_rand_int(state):
    """umap.utils.tau_rand_int, line for line (a test checks they agree): a Tausworthe generator."""
    state[0] = (((state[0] & 4294967294) << 12) & 0xFFFFFFFF) ^ ((((state[0] << 13) & 0xFFFFFFFF) ^ state[0]) >> 19)
    state[1] = (((state[1] & 4294967288) << 4) & 0xFFFFFFFF) ^ ((((state[1] << 2) & 0xFFFFFFFF) ^ state[1]) >> 25)
    state[2] = (((state[2] & 4294967280) << 17) & 0xFFFFFFFF) ^ ((((state[2] << 3) & 0xFFFFFFFF) ^ state[2]) >> 11)
    return state[0] ^ state[1] ^ state[2]


@numba.njit(fastmath=True, cache=True, nogil=True)
def _optimize_lockstep(
    layouts,
    head,
    tail,
    epochs_per_sample,
    a,
    b,
    rng_state_per_sample,
    n_epochs,
    gamma,
    initial_alpha,
    negative_sample_rate,
):
    """umap-learn's ``optimize_layout_euclidean`` (2-D, ``move_other=True``) for several layouts at once.

    ``layouts`` is ``(n_layouts, n_vertices, 2)`` float32, updated in place; layout ``c`` uses curve
    parameters ``a[c]``, ``b[c]``. The edge schedule and the negative-sample draws are shared (they do not
    depend on ``a``, ``b``), so every layout gets exactly the updates it would get alone.
    """
    n_layouts = layouts.shape[0]
    n_vertices = layouts.shape[1]
    two = np.float32(2.0)
    one = np.float32(1.0)
    clip = np.float32(4.0)
    eps_distance = np.float32(0.001)
    attract = np.empty(n_layouts, dtype=np.float32)
    repel = np.empty(n_layouts, dtype=np.float32)
    for c in range(n_layouts):
        attract[c] = -two * a[c] * b[c]
        repel[c] = two * np.float32(gamma) * b[c]
    epochs_per_negative_sample = epochs_per_sample / negative_sample_rate
    epoch_of_next_negative_sample = epochs_per_negative_sample.copy()
    epoch_of_next_sample = epochs_per_sample.copy()
    alpha = np.float32(initial_alpha)
    for n in range(n_epochs):
        for i in range(epochs_per_sample.shape[0]):
            if epoch_of_next_sample[i] > n:
                continue
            j = head[i]
            k = tail[i]
            for c in range(n_layouts):
                dx = layouts[c, j, 0] - layouts[c, k, 0]
                dy = layouts[c, j, 1] - layouts[c, k, 1]
                dist_squared = dx * dx + dy * dy
                if dist_squared > 0.0:
                    power = dist_squared ** b[c]
                    grad_coeff = attract[c] * (power / dist_squared) / (a[c] * power + one)
                    gx = min(max(grad_coeff * dx, -clip), clip) * alpha
                    gy = min(max(grad_coeff * dy, -clip), clip) * alpha
                    layouts[c, j, 0] += gx
                    layouts[c, j, 1] += gy
                    layouts[c, k, 0] -= gx
                    layouts[c, k, 1] -= gy
            epoch_of_next_sample[i] += epochs_per_sample[i]
            n_neg_samples = int((n - epoch_of_next_negative_sample[i]) / epochs_per_negative_sample[i])
            for _ in range(n_neg_samples):
                k = _tau_rand_int(rng_state_per_sample[j]) % n_vertices
                for c in range(n_layouts):
                    dx = layouts[c, j, 0] - layouts[c, k, 0]
                    dy = layouts[c, j, 1] - layouts[c, k, 1]
                    dist_squared = dx * dx + dy * dy
                    if dist_squared > 0.0:
                        grad_coeff = repel[c] / ((eps_distance + dist_squared) * (a[c] * dist_squared ** b[c] + one))
                        layouts[c, j, 0] += min(max(grad_coeff * dx, -clip), clip) * alpha
                        layouts[c, j, 1] += min(max(grad_coeff * dy, -clip), clip) * alpha
            epoch_of_next_negative_sample[i] += n_neg_samples * epochs_per_negative_sample[i]
        alpha = np.float32(initial_alpha * (1.0 - (float(n) / float(n_epochs))))


def _per_sample_rng_state(rng_state: np.ndarray, start: np.ndarray) -> np.ndarray:
    # As in umap.layouts.optimize_layout_euclidean: the generator state, offset per point by the bits of
    # its initial x coordinate.
    return np.full((start.shape[0], len(rng_state)), rng_state, dtype=np.int64) + start[:, 0].astype(np.float64).view(
        np.int64
    ).reshape(-1, 1)


def warm_kernel() -> None:
    """Compile (or load from numba's cache) the lockstep kernel on a tiny input, so the first task does not pay for it."""
    tiny = np.zeros((1, 3, 2), dtype=np.float32)
    tiny[0, :, 0] = [0.0, 1.0, 2.0]
    _optimize_lockstep(
        tiny,
        np.array([0, 1], dtype=np.int32),
        np.array([1, 2], dtype=np.int32),
        np.ones(2),
        np.ones(1, dtype=np.float32),
        np.ones(1, dtype=np.float32),
        np.ones((3, 3), dtype=np.int64),
        2,
        1.0,
        1.0,
        5.0,
    )


def optimize_layouts(
    layouts: np.ndarray,
    head: np.ndarray,
    tail: np.ndarray,
    epochs_per_sample: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    rng_state: np.ndarray,
    start: np.ndarray,
    n_epochs: int,
    engine: str,
) -> None:
    """Run the SGD layout of one graph for every curve ``(a[c], b[c])``, updating ``layouts[c]`` in place.

    ``layouts`` is ``(n_layouts, n_vertices, 2)`` float32, each starting from ``start``; ``engine`` is
    "lockstep" (all layouts in one pass, :func:`_optimize_lockstep`) or "umap" (umap-learn's own
    ``optimize_layout_euclidean``, one layout at a time).
    """
    if engine == "lockstep":
        _optimize_lockstep(
            layouts,
            head,
            tail,
            epochs_per_sample,
            a.astype(np.float32),
            b.astype(np.float32),
            _per_sample_rng_state(rng_state, start),
            n_epochs,
            REPULSION_STRENGTH,
            LEARNING_RATE,
            float(NEGATIVE_SAMPLE_RATE),
        )
        return
    from umap.layouts import optimize_layout_euclidean

    for c in range(len(a)):
        layout = np.ascontiguousarray(layouts[c])
        optimize_layout_euclidean(
            layout,
            layout,
            head,
            tail,
            n_epochs,
            layout.shape[0],
            epochs_per_sample,
            a[c],
            b[c],
            rng_state.copy(),
            gamma=REPULSION_STRENGTH,
            initial_alpha=LEARNING_RATE,
            negative_sample_rate=NEGATIVE_SAMPLE_RATE,
            parallel=False,
            verbose=False,
            densmap=False,
            densmap_kwds={},
            tqdm_kwds={"disable": True},
            move_other=True,
        )
        layouts[c] = layout


# --------------------------------------------------------------------------------------------------
# Per-n_neighbors preparation (parent process, umap-learn's functions)


@dataclass
class Prepared:
    """Everything of one n_neighbors that the layouts of all its min_dist values share."""

    n_neighbors: int
    head: np.ndarray
    tail: np.ndarray
    epochs_per_sample: np.ndarray
    start: np.ndarray  # (n, 2) float32: the normalised spectral initialisation every min_dist starts from
    rng_state: np.ndarray  # (3,) int64
    disconnected: np.ndarray  # (n,) bool: no edge at all; umap-learn reports NaN coordinates for these
    n_epochs: int
    n_edges: int
    graph_components: int  # connected components of the pruned graph
    eigensolver_restarts: int  # ARPACK solves that drew a random restart vector (from the seed, here)


def _default_n_epochs(n_samples: int) -> int:
    # simplicial_set_embedding's rule for n_epochs=None.
    return 500 if n_samples <= 10000 else 200


def prepare(data: np.ndarray, knn_indices: np.ndarray, knn_distances: np.ndarray, k: int, seed: int, n_epochs: int | None) -> Prepared:
    """Everything of one n_neighbors that does not depend on min_dist, as umap.UMAP.fit computes it."""
    from umap.distances import named_distances
    from umap.umap_ import (
        INT32_MAX,
        INT32_MIN,
        fuzzy_simplicial_set,
        make_epochs_per_sample,
        noisy_scale_coords,
    )

    # Copies of exactly k columns: umap-learn writes into the kNN arrays it is given, and a wider kNN
    # would change the graph (see vlmprobe.umap.neighbours).
    indices = np.ascontiguousarray(knn_indices[:, :k])
    distances = np.ascontiguousarray(knn_distances[:, :k])
    graph, _, _ = fuzzy_simplicial_set(
        data, k, None, METRIC, {}, indices, distances, False, SET_OP_MIX_RATIO, LOCAL_CONNECTIVITY, True
    )
    disconnected = np.asarray(graph.sum(axis=1)).ravel() == 0
    # The rest follows umap.umap_.simplicial_set_embedding line by line.
    graph = graph.tocoo()
    graph.sum_duplicates()
    default_epochs = _default_n_epochs(graph.shape[0])
    epochs = default_epochs if n_epochs is None else int(n_epochs)
    prune_epochs = epochs if epochs > 10 else default_epochs
    graph.data[graph.data < (graph.data.max() / float(prune_epochs))] = 0.0
    graph.eliminate_zeros()
    random_state = np.random.RandomState(seed)
    # umap-learn's spectral_layout, but with ARPACK's restart vectors drawn from the seed (vlmprobe.umap.spectral).
    restarts = restart_generator(seed)
    init = spectral_layout(data, graph, N_COMPONENTS, random_state, restarts, named_distances[METRIC])
    init = noisy_scale_coords(init, random_state, max_coord=10, noise=0.0001)
    epochs_per_sample = make_epochs_per_sample(graph.data, epochs)
    rng_state = random_state.randint(INT32_MIN, INT32_MAX, 3).astype(np.int64)
    start = (10.0 * (init - np.min(init, 0)) / (np.max(init, 0) - np.min(init, 0))).astype(np.float32, order="C")
    return Prepared(
        n_neighbors=k,
        head=graph.row,
        tail=graph.col,
        epochs_per_sample=epochs_per_sample,
        start=start,
        rng_state=rng_state,
        disconnected=disconnected,
        n_epochs=epochs,
        n_edges=int(graph.nnz),
        graph_components=int(scipy.sparse.csgraph.connected_components(graph)[0]),
        eigensolver_restarts=restarts.restarted,
    )
