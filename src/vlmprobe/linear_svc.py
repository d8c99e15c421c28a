"""The squared-hinge linear SVM (LinearSVC's objective) solved in the primal: standardization,
a spectral preconditioner and a Newton solver over all one-vs-rest classes at once. Shared by the
linear probe and the nuisance probes; see :mod:`vlmprobe.linear_probe.probe` for the protocol."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

C_NUMERATOR = 100.0
"""The poster's C = 100 / N (N training rows)."""
STD_DDOF = 0


@dataclass(frozen=True)
class Standardizer:
    """Per-feature mean and scale fitted on one fit's training rows (``StandardScaler`` semantics)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        # float64 accumulators whatever the input dtype, like StandardScaler.
        mean = x.mean(axis=0, dtype=np.float64)
        var = x.var(axis=0, dtype=np.float64)
        n = x.shape[0]
        eps = np.finfo(np.float64).eps
        # StandardScaler's near-constant rule (error bound of the two-pass variance): such
        # features keep scale 1 instead of being blown up from rounding noise.
        constant = var <= n * eps * var + (n * mean * eps) ** 2
        scale = np.sqrt(var)
        scale[constant] = 1.0
        return cls(mean=mean, scale=scale)

    def transform(self, x: np.ndarray, with_bias: bool = False) -> np.ndarray:
        """Standardized float64 copy (liblinear and our solver both work in float64).

        ``with_bias`` appends the constant intercept feature 1 (liblinear's ``bias`` with
        ``intercept_scaling=1``) in the same allocation, so the solver needs no second copy.
        """
        d = x.shape[1]
        out = np.empty((x.shape[0], d + 1 if with_bias else d), dtype=np.float64)
        np.subtract(x, self.mean, out=out[:, :d], dtype=np.float64)
        out[:, :d] /= self.scale
        if with_bias:
            out[:, d] = 1.0
        return out


@dataclass(frozen=True)
class SolverResult:
    coef: np.ndarray  # (n_outputs, d)
    intercept: np.ndarray  # (n_outputs,)
    newton_iterations: int
    cg_iterations: int
    converged: bool


@dataclass(frozen=True)
class SpectralPreconditioner:
    """Eigen-decomposition of a reference Gram matrix ``X^T X``, ``X = [Z, 1]`` (bias column included).

    The Newton system of class ``k`` is ``(I + 2C * X_A^T X_A) p = -g`` where ``A`` is the set of
    rows inside the margin. ``X_A^T X_A`` is approximated by ``rho_k * n_fit / n_ref * G_ref`` with
    ``rho_k`` the active fraction, which captures the large, shared eigenvalues of standardized
    embeddings (strongly correlated features) that make plain CG slow. One decomposition of the
    full training set's Gram serves all six fits: the fold fits' Grams differ from it by a row
    subset and slightly different scaling, which only makes the preconditioner a little less exact,
    never the answer less exact.
    """

    eigenvalues: np.ndarray  # (d+1,), per row of the reference data
    eigenvectors: np.ndarray  # (d+1, d+1)

    @classmethod
    def from_design(cls, x: np.ndarray) -> SpectralPreconditioner:
        eigenvalues, eigenvectors = np.linalg.eigh(x.T @ x)
        # Per-row eigenvalues, so that a fit of any size rescales them by its own row count.
        return cls(np.maximum(eigenvalues, 0.0) / x.shape[0], eigenvectors)

    def solve(self, r: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """Apply ``(I + diag-in-eigenbasis(shift_k * lambda))^{-1}`` to each column ``r[:, k]``."""
        inverse = 1.0 / (1.0 + self.eigenvalues[:, None] * shift[None, :])
        return self.eigenvectors @ (inverse * (self.eigenvectors.T @ r))


def fit_squared_hinge_ovr(
    x: np.ndarray,
    targets: np.ndarray,
    c: float,
    *,
    tol: float = 1e-4,
    max_iter: int = 1000,
    preconditioner: SpectralPreconditioner | None = None,
    cg_forcing: float = 0.1,
    hessian_dtype: type = np.float32,
) -> SolverResult:
    """Minimize, for every column ``k`` of ``targets`` at once (one-vs-rest, classes independent),

    ``0.5 * |w_k|^2 + c * sum_i max(0, 1 - t_ik * x_i . w_k)^2``,

    i.e. liblinear's L2-regularized squared-hinge primal. ``x`` is the (n, d+1) float64 design
    matrix whose last column is the constant 1 (so the last weight is the intercept, regularized
    like the others: ``LinearSVC``'s problem with ``intercept_scaling=1``; see
    ``Standardizer.transform(..., with_bias=True)``). ``targets`` holds +1/-1 per row and column.

    Method: Newton's method on this differentiable, piecewise-quadratic, strongly convex objective
    with the generalized Hessian ``I + 2c X_A^T X_A`` (``A``: rows with margin below 1), as
    liblinear's primal solver; but every class's conjugate-gradient iteration is one column of the
    same two matrix products ``X @ S`` and ``X.T @ (mask * (X @ S))``, so BLAS level 3 does the
    work. CG stops per column at ``|r_k| <= cg_forcing * |g_k|`` (inexact Newton). The step length
    is exact (safeguarded 1-D Newton along the direction). Each column stops on liblinear's primal
    criterion ``|g_k| <= tol * max(min(#pos, #neg), 1) / n * |g_k(0)|``.

    Precision: gradients, margins and the line search are float64, so the stopping test and the
    optimum are float64-exact. Only the Hessian-vector products inside CG use ``hessian_dtype``
    (float32 by default: half the memory traffic of those products, the bulk of the work); that
    perturbs the search direction by ~1e-7 relative, far below CG's own 10 % inexactness.
    """
    n, d = x.shape[0], x.shape[1] - 1
    x_h = x if hessian_dtype == x.dtype else x.astype(hessian_dtype)
    t = np.ascontiguousarray(targets, dtype=np.float64)
    k_out = t.shape[1]
    w = np.zeros((d + 1, k_out))
    margins = np.zeros((n, k_out))  # x @ w, kept in step with w

    def gradient(w_cols, m_cols, t_cols):
        active = t_cols * m_cols < 1.0
        residual = np.where(active, m_cols - t_cols, 0.0)
        return w_cols + 2.0 * c * (x.T @ residual), active

    grad, active = gradient(w, margins, t)
    positives = (t > 0).sum(axis=0)
    minority = np.maximum(np.minimum(positives, n - positives), 1)
    stop = tol * minority / n * np.linalg.norm(grad, axis=0)

    cg_total = 0
    max_cg = d + 1  # exact arithmetic needs at most d+1 CG steps
    converged = False
    for newton in range(max_iter + 1):
        live = np.flatnonzero(np.linalg.norm(grad, axis=0) > stop)
        converged = live.size == 0
        if converged or newton == max_iter:
            break
        g = grad[:, live]
        mask = active[:, live].astype(x_h.dtype)
        # Preconditioner shift per class: 2c * |A_k| (its eigenvalues are per row).
        shift = 2.0 * c * mask.sum(axis=0, dtype=np.float64)

        def precondition(r, cols, _shift=shift):
            return r if preconditioner is None else preconditioner.solve(r, _shift[cols])

        # Batched preconditioned CG on H_k p_k = -g_k, starting from p_k = 0.
        direction = np.zeros_like(g)
        residual = -g
        first = precondition(-g, slice(None))  # own array: also the fallback direction below
        search = first.copy()
        rz = (residual * first).sum(axis=0)
        cg_stop = cg_forcing * np.linalg.norm(g, axis=0)
        for _ in range(max_cg):
            cg_live = np.flatnonzero(np.linalg.norm(residual, axis=0) > cg_stop)
            if cg_live.size == 0:
                break
            cg_total += 1
            s = search[:, cg_live]
            product = x_h.T @ (mask[:, cg_live] * (x_h @ s.astype(x_h.dtype)))
            hs = s + 2.0 * c * product
            alpha = rz[cg_live] / (s * hs).sum(axis=0)
            direction[:, cg_live] += alpha * s
            residual[:, cg_live] -= alpha * hs
            preconditioned = precondition(residual[:, cg_live], cg_live)
            rz_new = (residual[:, cg_live] * preconditioned).sum(axis=0)
            search[:, cg_live] = preconditioned + (rz_new / rz[cg_live]) * s
            rz[cg_live] = rz_new
        # CG from 0 gives descent directions; guard against rounding all the same.
        ascent = (g * direction).sum(axis=0) >= 0
        direction[:, ascent] = first[:, ascent]

        x_direction = x @ direction
        step = _exact_line_search(w[:, live], margins[:, live], t[:, live], direction, x_direction, c)
        w[:, live] += step * direction
        margins[:, live] += step * x_direction
        grad[:, live], active[:, live] = gradient(w[:, live], margins[:, live], t[:, live])

    return SolverResult(
        coef=np.ascontiguousarray(w[:d].T),
        intercept=w[d].copy(),
        newton_iterations=newton,
        cg_iterations=cg_total,
        converged=converged,
    )


def _exact_line_search(w, margins, t, direction, x_direction, c, max_steps: int = 30) -> np.ndarray:
    """Per column, the step s > 0 minimizing f(w + s * direction): safeguarded Newton on f'(s).

    Along a line f is convex, continuously differentiable and piecewise quadratic, so f' is
    piecewise linear and increasing: Newton lands on the root within a few pieces, and a bracket
    [lo, hi] with f'(lo) < 0 < f'(hi) falls back to bisection should it ever overshoot.
    """
    wp = (w * direction).sum(axis=0)
    pp = (direction * direction).sum(axis=0)

    def slope_and_curvature(s):
        m = margins + s * x_direction
        inside = t * m < 1.0
        slope = wp + s * pp + 2.0 * c * np.where(inside, (m - t) * x_direction, 0.0).sum(axis=0)
        curvature = pp + 2.0 * c * np.where(inside, x_direction * x_direction, 0.0).sum(axis=0)
        return slope, curvature

    slope0, _ = slope_and_curvature(np.zeros_like(wp))  # < 0: CG directions descend
    s = np.ones_like(wp)  # the Newton step itself
    lo = np.zeros_like(s)
    hi = np.full_like(s, np.inf)
    for _ in range(max_steps):
        slope, curvature = slope_and_curvature(s)
        if np.all(np.abs(slope) <= 1e-10 * np.abs(slope0)):
            break
        hi = np.where(slope > 0, np.minimum(hi, s), hi)
        lo = np.where(slope < 0, np.maximum(lo, s), lo)
        newton = s - slope / curvature
        fallback = np.where(np.isfinite(hi), 0.5 * (lo + hi), 2.0 * s)
        s_next = np.where((newton > lo) & (newton < hi), newton, fallback)
        if np.array_equal(s_next, s):
            break
        s = s_next
    return s
