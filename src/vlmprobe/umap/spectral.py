"""The spectral initialisation of a UMAP layout, umap-learn's, with the eigensolver's random restarts drawn from the seed.

umap-learn seeds everything in ``umap.UMAP(random_state=...)`` except one thing: the ARPACK eigensolver
(``scipy.sparse.linalg.eigsh``) behind the spectral initialisation. It is started from a fixed vector
(``v0=np.ones(n)``, or a vector drawn from the seed), but when the Lanczos iteration runs into an invariant
subspace before it has its ``k`` vectors, ARPACK asks for a fresh random start vector. Neither umap-learn
(``umap.spectral._spectral_layout``) nor scikit-learn (``SpectralEmbedding``, which umap-learn's
``component_layout`` uses to place the components of a disconnected graph) passes ``eigsh`` a generator
for it, so since scipy 1.17 (ARPACK in C) that vector comes from fresh operating-system entropy, and
before that from ARPACK's own seed, which lives as long as the process (so the result depended on which
eigensolves ran earlier). Exact ties make the restart common on small neighbourhoods: a graph that falls
into many small components (``n_neighbors`` = 3 or 5) has components whose degrees are all equal (``v0``
is then an eigenvector) or whose size is no larger than ARPACK's subspace; their eigenvalues are often
repeated, so the eigenvectors returned, hence the layout, depend on the restart vector. Such cells of
``umap.UMAP`` differ from call to call with the same seed.

This module is umap-learn's ``spectral_layout`` (``_spectral_layout``, ``multi_component_layout``,
``component_layout``) and, for the component centroids, scikit-learn's ``SpectralEmbedding
(affinity="precomputed")`` ARPACK path, line for line, with one change: every ``eigsh`` call gets
``rng=restarts``, a generator seeded from the grid's seed (:func:`spectral_layout`). Every draw umap-learn
makes from its ``RandomState`` is made here in the same order, so where ARPACK never restarts the result is
bit for bit umap-learn's (a test checks this), and where it does the result depends only on the seed.

Parts of this module follow umap-learn's code (BSD-3-Clause, Copyright (c) 2017 Leland McInnes) and
scikit-learn's (BSD-3-Clause, Copyright (c) 2007-2026 The scikit-learn developers); see
THIRD_PARTY_NOTICES.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg


@dataclass
class Restarts:
    """The generator ARPACK's restart vectors come from, and how many eigensolves drew from it."""

    rng: np.random.Generator
    eigensolves: int = 0
    restarted: int = 0

    def eigsh(self, *args, **kwargs):
        """``scipy.sparse.linalg.eigsh`` with ``rng=`` this generator, counting the solves that drew from it."""
        before = self.rng.bit_generator.state
        try:
            return scipy.sparse.linalg.eigsh(*args, rng=self.rng, **kwargs)
        finally:
            self.eigensolves += 1
            self.restarted += int(self.rng.bit_generator.state != before)


def restart_generator(seed: int) -> Restarts:
    """The restart generator of one spectral initialisation: a pure function of the grid's seed."""
    return Restarts(np.random.default_rng([int(seed), 0x5EC7]))


def spectral_layout(
    data: np.ndarray,
    graph: scipy.sparse.spmatrix,
    dim: int,
    random_state: np.random.RandomState,
    restarts: Restarts,
    metric: Callable,
) -> np.ndarray:
    """``umap.spectral.spectral_layout(data, graph, dim, random_state, metric=metric)`` with seeded restarts.

    ``metric`` is the numba distance umap-learn passes (``umap.distances.named_distances[name]``).
    """
    n_components, labels = scipy.sparse.csgraph.connected_components(graph)
    if n_components > 1:
        return _multi_component_layout(data, graph, n_components, labels, dim, random_state, restarts, metric)
    return _connected_layout(graph, dim, random_state, restarts)


def _connected_layout(graph, dim: int, random_state: np.random.RandomState, restarts: Restarts) -> np.ndarray:
    # umap.spectral._spectral_layout for a connected graph, init="random", method=None (eigsh below 2e6
    # points, else lobpcg), tol=0, maxiter=0.
    from warnings import warn

    sqrt_deg = np.sqrt(np.asarray(graph.sum(axis=0)).squeeze())
    identity = scipy.sparse.identity(graph.shape[0], dtype=np.float64)
    scale = scipy.sparse.spdiags(1.0 / sqrt_deg, 0, graph.shape[0], graph.shape[0])
    laplacian = identity - scale * graph * scale
    if not scipy.sparse.issparse(laplacian):
        laplacian = np.asarray(laplacian)
    k = dim + 1
    num_lanczos_vectors = max(2 * k + 1, int(np.sqrt(graph.shape[0])))
    method = "eigsh" if laplacian.shape[0] < 2000000 else "lobpcg"
    try:
        guess = random_state.normal(size=(laplacian.shape[0], k))  # drawn (and used by lobpcg) as umap-learn does
        guess[:, 0] = sqrt_deg / np.linalg.norm(sqrt_deg)
        if method == "eigsh":
            eigenvalues, eigenvectors = restarts.eigsh(
                laplacian, k, which="SM", ncv=num_lanczos_vectors, tol=1e-4, v0=np.ones(laplacian.shape[0]), maxiter=graph.shape[0] * 5
            )
        else:
            import warnings

            with warnings.catch_warnings():
                warnings.filterwarnings(category=UserWarning, message=r"(?ms).*not reaching the requested tolerance", action="error")
                eigenvalues, eigenvectors = scipy.sparse.linalg.lobpcg(
                    laplacian, np.asarray(guess), largest=False, tol=1e-4, maxiter=5 * graph.shape[0]
                )
        order = np.argsort(eigenvalues)[1:k]
        return eigenvectors[:, order]
    except (scipy.sparse.linalg.ArpackError, UserWarning):
        warn("Spectral initialisation failed (too small an eigengap); falling back to random initialisation, as umap-learn does.")
        return random_state.uniform(low=-10.0, high=10.0, size=(graph.shape[0], dim))


def _multi_component_layout(data, graph, n_components, component_labels, dim, random_state, restarts, metric) -> np.ndarray:
    # umap.spectral.multi_component_layout (init="random", tol=0, maxiter=0).
    from sklearn.metrics import pairwise_distances

    result = np.empty((graph.shape[0], dim), dtype=np.float32)
    if n_components > 2 * dim:
        meta_embedding = _component_layout(data, n_components, component_labels, dim, random_state, restarts, metric)
    else:
        k = int(np.ceil(n_components / 2.0))
        base = np.hstack([np.eye(k), np.zeros((k, dim - k))])
        meta_embedding = np.vstack([base, -base])[:n_components]
    for label in range(n_components):
        component_graph = graph.tocsr()[component_labels == label, :].tocsc()
        component_graph = component_graph[:, component_labels == label].tocoo()
        distances = pairwise_distances([meta_embedding[label]], meta_embedding)
        data_range = distances[distances > 0.0].min() / 2.0
        if component_graph.shape[0] < 2 * dim or component_graph.shape[0] <= dim + 1:
            result[component_labels == label] = (
                random_state.uniform(low=-data_range, high=data_range, size=(component_graph.shape[0], dim)) + meta_embedding[label]
            )
        else:
            # umap-learn calls _spectral_layout(data=None, ...) here; a component is connected.
            component_embedding = _connected_layout(component_graph, dim, random_state, restarts)
            expansion = data_range / np.max(np.abs(component_embedding))
            component_embedding *= expansion
            result[component_labels == label] = component_embedding + meta_embedding[label]
    return result


def _component_layout(data, n_components, component_labels, dim, random_state, restarts, metric) -> np.ndarray:
    # umap.spectral.component_layout for dense data and a numba metric: a spectral embedding of the
    # components' centroids.
    from sklearn.metrics import pairwise_distances

    centroids = np.empty((n_components, data.shape[1]), dtype=np.float64)
    for label in range(n_components):
        centroids[label] = data[component_labels == label].mean(axis=0)
    distance_matrix = pairwise_distances(centroids, metric=metric)
    affinity = np.exp(-(distance_matrix**2))
    embedding = _spectral_embedding(affinity, dim, random_state, restarts)
    embedding /= embedding.max()
    return embedding


def _spectral_embedding(affinity: np.ndarray, dim: int, random_state: np.random.RandomState, restarts: Restarts) -> np.ndarray:
    # sklearn.manifold.SpectralEmbedding(n_components=dim, affinity="precomputed").fit_transform(affinity):
    # _spectral_embedding's ARPACK path (scikit-learn 1.9: shift-invert at sigma=-1e-5, normed Laplacian,
    # first eigenvector dropped, deterministic sign flip).
    from sklearn.utils import check_symmetric

    adjacency = check_symmetric(np.asarray(affinity, dtype=np.float64))
    n_vectors = dim + 1
    laplacian, diagonal = scipy.sparse.csgraph.laplacian(adjacency, normed=True, return_diag=True)
    laplacian.flat[:: laplacian.shape[0] + 1] = 1  # sklearn's _set_diag(laplacian, 1, norm_laplacian=True)
    v0 = random_state.uniform(-1, 1, laplacian.shape[0])  # sklearn.utils._arpack._init_arpack_v0
    try:
        _, diffusion_map = restarts.eigsh(laplacian, k=n_vectors, sigma=-1e-5, which="LM", tol=0, v0=v0)
        embedding = diffusion_map.T[:n_vectors] / diagonal
    except RuntimeError:
        # scikit-learn falls back to LOBPCG here ("should never happen with sigma < 0"); for the few
        # centroids of a grid, a dense solve is exact and draws nothing.
        from scipy.linalg import eigh

        _, vectors = eigh(laplacian, check_finite=False)
        embedding = vectors.T[:n_vectors] / diagonal
    # sklearn.utils.extmath._deterministic_vector_sign_flip
    signs = np.sign(embedding[range(embedding.shape[0]), np.argmax(np.abs(embedding), axis=1)])
    embedding *= signs[:, np.newaxis]
    return embedding[1:n_vectors].T
