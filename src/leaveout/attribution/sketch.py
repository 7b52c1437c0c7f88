"""Leverages for large p by a random projection, with a stated error bound."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SketchedLeverage", "sketch_leverage"]


@dataclass(frozen=True)
class SketchedLeverage:
    """Result of :meth:`Attribution.leverage_sketch`: with probability at least
    ``1 - delta``, ``lower * h_i <= values[i] <= upper * h_i`` for every sample i."""

    values: np.ndarray
    lower: float
    upper: float
    n_projections: int
    delta: float


def sketch_leverage(est, eps: float = 0.1, delta: float = 0.01, seed=None) -> SketchedLeverage:
    """Leverages estimated by a random projection, with a stated error bound.

    The Johnson-Lindenstrauss step of Drineas et al. (2012): with the Cholesky factor
    ``H = L L^T`` of the fit (the role of their ``R``) and a Gaussian ``G`` of shape
    (r, p), ``h_i = w_i ||L^{-1} x_i||^2`` is estimated by
    ``w_i ||G L^{-1} x_i||^2 / r``, an unbiased estimate. It costs one triangular solve
    with r right-hand sides and one pass over X with r columns, ``O(p^2 r + n p r)``
    instead of ``O(n p^2)``: worth it when p is large.

    Bound: each ``r * estimate_i / h_i`` is chi-squared with r degrees of freedom, so by
    the Laurent-Massart tail bounds, with probability at least ``1 - delta``, every
    estimate lies in ``[lower * h_i, upper * h_i]`` with
    ``lower = 1 - 2 sqrt(x / r)``, ``upper = 1 + 2 sqrt(x / r) + 2 x / r`` and
    ``x = log(2 n / delta)``. r is the smallest that makes both deviations at most
    ``eps``. When that r is at least p the exact leverages are cheaper, and they are
    returned instead (``lower = upper = 1``, ``n_projections = 0``).

    Parameters
    ----------
    eps : float in (0, 1), default=0.1
        Target relative error.
    delta : float in (0, 1), default=0.01
        Allowed probability that some estimate falls outside its bound.
    seed : int or numpy Generator, optional

    Returns
    -------
    SketchedLeverage
        ``values`` (n_samples,), ``lower``, ``upper``, ``n_projections``, ``delta``.

    References
    ----------
    P. Drineas, M. Magdon-Ismail, M. W. Mahoney, D. P. Woodruff, "Fast approximation of
    matrix coherence and statistical leverage", JMLR 13 (2012); B. Laurent, P. Massart,
    "Adaptive estimation of a quadratic functional by model selection", Ann. Statist.
    28 (2000), lemma 1.
    """
    if not (isinstance(eps, (int, float)) and 0 < eps < 1):
        raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ValueError(f"delta must be a number in (0, 1), got {delta!r}")
    factor = est.curvature.factor
    if not factor.half_solves or est.objective.n_blocks > 1:
        raise ValueError("leverage_sketch needs the primal (Cholesky) form of a binary or "
                         "single-response GLM; use form='primal' or the exact leverage")
    n, p = est.design.n, est.design.p
    x = float(np.log(2 * n / delta))
    t = (np.sqrt(1.0 + 2.0 * eps) - 1.0) / 2.0      # 2t + 2t^2 = eps
    r = int(np.ceil(x / t ** 2))
    if r >= p:
        return SketchedLeverage(est.leverage.copy(), 1.0, 1.0, 0, float(delta))
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((p, r))
    Z = factor.half_t(G)                       # L^{-T} G^T: (G L^{-1} x)^T = x^T Z
    values = est.design.keep(est.w * est.design.row_sq_norms(Z) / r)
    q = np.sqrt(x / r)
    return SketchedLeverage(values, 1.0 - 2.0 * q, 1.0 + 2.0 * q + 2.0 * q * q, r, float(delta))
