r"""Theorem 3.1 of the paper as a computation: its constants, size threshold and bound.

For per-sample losses with gradients ``g_i`` and Hessians ``H_i`` at the fit and
``H = sum_i H_i`` (section 3 of the paper), the assumptions are quantified by

.. math::

    C_\ell = \max_i \lVert H^{-1/2} g_i\rVert, \quad
    C_R = \max_i \frac{1}{1 - \lVert H^{-1/2} H_i H^{-1/2}\rVert}, \quad
    \delta = \max_{i \ne j} \lVert H_i^{1/2} H^{-1} H_j^{1/2}\rVert, \quad
    \varepsilon = \max_{i \ne j} \lVert H_i^{1/2} H^{-1} g_j\rVert, \quad
    \eta = \max_i \lVert H_i^{1/2} H^{-1} \nabla f\rVert,

and for every removal set of ``k <= 1 / (2 delta C_R)`` rows the theorem bounds
``|<grad f, NS - RIF>| <= k^2 eta (1 + 2 C_R)(epsilon + C_R C_ell delta)``.

For a GLM, ``H_i = w_i x_i x_i^T`` is rank one, so with ``A_ij = x_i^T H^{-1} x_j``:
``||H^{-1/2} H_i H^{-1/2}|| = w_i A_ii`` (the leverage), ``delta_ij = sqrt(w_i w_j) |A_ij|``,
``epsilon_ij = sqrt(w_i) |x_i^T H^{-1} g_j|``, ``eta_i = sqrt(w_i) |x_i^T H^{-1} grad f|``.
The pairwise maxima need every ``A_ij``: they are computed in row blocks (``O(n^2 p)``
work with matrix products, never the whole n x n array at once), exactly for ``n <= exact_limit``
and otherwise over all pairs of a random sample of rows, which underestimates the maxima and
is reported as an estimate.

How the penalty enters: ``H`` is the Hessian of the sum-form objective, the L2 penalty
included; the penalty is a term that is never removed. Under "fixed" that is exact: ``H_i``,
``g_i`` are the rows' own terms. Under "per_sample" each row also carries a share ``lam s_i``
of the penalty (``H_i = w_i x_i x_i^T + lam s_i M``, ``g_i = r_i x_i + s_i lam P theta``); the
constants here use the gradient with its share but only the data part of ``H_i`` (its share,
at most ``1/n`` of the penalty, stays in H), so the bound is the theorem's for that variant,
while the per-set gap is measured with the package's own RIF and NS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["TheoremConstants", "theorem_constants", "set_constants", "theorem_bound"]

#: bytes of the (rows x n) block of pair products held at once
_BLOCK_BYTES = 1 << 26
#: above this size Z = L^{-1} X^T is kept in float32
_Z_BYTES = 1 << 25
#: bytes of one block of pair products from Z (rows x remaining rows)
_PAIR_BLOCK_BYTES = 1 << 24


@dataclass
class TheoremConstants:
    """Constants of Theorem 3.1 over all rows (or the rows of one set)."""

    C_ell: float
    C_R: float
    delta: float
    epsilon: float
    eta: float
    k_threshold: float
    exact: bool
    n_rows: int

    def bound(self, k: int) -> float:
        """The theorem's bound on ``|<grad f, NS - RIF>|`` for a set of ``k`` rows."""
        return theorem_bound(self, k)

    def applies(self, k: int) -> bool:
        return k <= self.k_threshold

    def to_dict(self) -> dict:
        return asdict(self)


def theorem_bound(c, k):
    return float(k ** 2 * c.eta * (1 + 2 * c.C_R) * (c.epsilon + c.C_R * c.C_ell * c.delta))


class _Pieces:
    """``w``, ``r``, ``s``, ``x_i^T H^{-1} b`` and the metric direction of a fitted GLM."""

    def __init__(self, att, metric):
        est = att.estimators
        if est.objective.n_blocks > 1:
            raise ValueError("the theorem's constants are computed for single-response families "
                             "(rank-one per-sample Hessians)")
        if not att.design.local:
            raise ValueError("the theorem's constants need X in memory or on disk, not a dask array")
        self.att, self.design, self.solve = att, att.design, att.curvature.solve
        self.w = np.asarray(est.w, dtype=np.float64)
        self.s = np.asarray(est.s, dtype=np.float64)
        self.r = np.asarray(est.r, dtype=np.float64)
        self.sw = np.sqrt(np.clip(self.w, 0, None))
        self.b = est.b
        self.has_b = bool(np.any(self.b))
        self.tb = np.asarray(self.design.matvec(self.solve(self.b))) if self.has_b else np.zeros_like(self.w)
        self.bHb = float(self.b @ self.solve(self.b)) if self.has_b else 0.0
        self.lev = np.asarray(att.leverage, dtype=np.float64)
        self.phi = phi = np.asarray(metric.gradient(att.model, att.theta), dtype=np.float64)
        self.xf = np.asarray(self.design.matvec(self.solve(phi)))         # x_i^T H^{-1} grad f

    def grad_norms(self, idx):
        """``||H^{-1/2} g_i||`` for rows ``idx``."""
        idx = np.asarray(idx)
        a_ii = self.lev[idx] / np.where(self.w[idx] > 0, self.w[idx], 1.0)
        flat = self.w[idx] <= 0                          # no curvature: the leverage says nothing
        if flat.any():
            a_ii[flat] = self._diag(idx[flat])
        r, s = self.r[idx], self.s[idx]
        return np.sqrt(np.clip(r ** 2 * a_ii + 2 * r * s * self.tb[idx] + s ** 2 * self.bHb, 0, None))

    def _diag(self, idx):
        rows = self.design.dense_rows(idx)
        return np.einsum("ij,ji->i", rows, self.solve(rows.T))

    def pair_maxima(self, rows_i, cols_j):
        """``(max |delta_ij|, max |epsilon_ij|)`` over ``i in rows_i``, ``j in cols_j``, i != j."""
        X_i = self.design.dense_rows(rows_i)
        Y = self.solve(X_i.T)                                   # H^{-1} x_i, (p, b)
        if cols_j is None:
            A = np.asarray(self.design.matvec(Y)).T             # (b, n): x_i^T H^{-1} x_j
            j = np.arange(A.shape[1])
        else:
            A = (self.design.dense_rows(cols_j) @ Y).T
            j = np.asarray(cols_j)
        same = rows_i[:, None] == j[None, :]
        D = np.abs(self.sw[rows_i, None] * A * self.sw[None, j])
        D[same] = 0.0
        E = np.abs(self.sw[rows_i, None] * (A * self.r[None, j] + self.tb[rows_i, None] * self.s[None, j]))
        E[same] = 0.0
        return float(D.max(initial=0.0)), float(E.max(initial=0.0))


def theorem_constants(att, metric, exact_limit: int = 20000, sample: int = 2000, seed=0,
                      pieces=None) -> TheoremConstants:
    """The constants of Theorem 3.1 over all training rows (see the module docstring).

    Parameters
    ----------
    att : Attribution
    metric : Metric
        ``f`` (its gradient at the fit gives eta).
    exact_limit : int
        Largest n for which every pair is visited (``O(n^2 p)`` work).
    sample : int
        Otherwise, the maxima over all pairs among this many random rows (an estimate, below
        the true maxima).
    pieces : optional
        The metric's per-row pieces when the caller has built them (``_Pieces(att, metric)``).
    """
    pc = _Pieces(att, metric) if pieces is None else pieces
    alive = np.flatnonzero(pc.s > 0)
    n = alive.size
    exact = n <= exact_limit
    rows = alive if exact else np.sort(np.random.default_rng(seed).choice(alive, min(sample, n), replace=False))
    factor = att.curvature.factor
    if exact and factor.half_solves:
        delta, eps = _pairs_from_half(pc, factor, alive)
    else:
        delta, eps = _pairs_blocks(pc, rows, None if exact else rows)
    lev = pc.lev[alive]
    C_R = float(np.max(1.0 / (1.0 - np.clip(lev, None, 1 - 1e-16))))
    C_ell = float(np.max(pc.grad_norms(alive)))
    eta = float(np.max(pc.sw[alive] * np.abs(pc.xf[alive])))
    k_thr = 1.0 / (2 * delta * C_R) if delta > 0 else float("inf")
    return TheoremConstants(C_ell, C_R, delta, eps, eta, k_thr, exact, n)


def _pairs_from_half(pc, factor, rows):
    """``(delta, epsilon)`` over all pairs of ``rows`` from ``Z = L^{-1} X^T`` (H = L L^T).

    With ``y_i = sqrt(w_i) z_i`` the block ``D_ij = y_i^T y_j = delta_ij`` (signed) comes from
    one product per block of the upper triangle, and both orientations of epsilon from it:
    ``epsilon_ij = |D_ij rho_j + a_i s_j|`` with ``rho_j = r_j / sqrt(w_j)`` and
    ``a_i = sqrt(w_i) t_i``. A row with ``w = 0`` but ``r != 0`` (curvature underflow) has
    no finite ``rho``: then the pairs are visited without this shortcut.

    Beyond :data:`_PRUNE_MIN` rows most pairs are never multiplied: by Cauchy-Schwarz
    ``|delta_ij| <= |y_i| |y_j|`` and ``epsilon_ij <= |y_i| |r_j z_j| + |a_i| s_j``, so a pair
    whose bounds lie below the maxima found so far cannot raise them (see :func:`_pruned`).
    The maxima are the same; on image embeddings about 1 to 6 % of the pairs are visited."""
    m = rows.size
    sw, r = pc.sw[rows], pc.r[rows]
    if np.any((sw == 0) & (r != 0)):
        return _pairs_blocks(pc, rows, rows)
    # Y is kept in float32 once it is large (its entries are used for maxima in a bound, where
    # 1e-7 relative rounding does not matter), built a block of rows at a time
    p = factor.L.shape[0]
    dt = np.float64 if 8 * p * m <= _Z_BYTES else np.float32
    Y = np.empty((m, p), dtype=dt)                    # rows y_i^T, contiguous
    zstep = max(1, (1 << 23) // (8 * p))
    curv = pc.att.curvature
    for lo in range(0, m, zstep):
        blk = rows[lo:lo + zstep]
        Z = curv.half_rows(0.0, blk)                  # kept rows (any square root of H will do)
        Z = factor.half(pc.design.dense_rows(blk).T).T if Z is None else Z
        np.multiply(Z, sw[lo:lo + zstep, None], out=Y[lo:lo + zstep], casting="unsafe")
    rho = np.divide(r, sw, out=np.zeros(m), where=sw > 0).astype(dt)
    a, s = (sw * pc.tb[rows]).astype(dt), pc.s[rows].astype(dt)
    if m >= _PRUNE_MIN:
        return _pruned(Y, rho, a, s, pc.has_b)
    delta = eps = 0.0
    step = max(1, _PAIR_BLOCK_BYTES // (Y.itemsize * max(m, 1)))
    for lo in range(0, m, step):
        hi = min(m, lo + step)
        d, e = _block_maxima(Y[lo:hi], Y[lo:], np.arange(lo, hi), np.arange(lo, m), rho, a, s, pc.has_b)
        delta, eps = max(delta, d), max(eps, e)
    return delta, eps


#: from this many rows on, pairs whose Cauchy-Schwarz bounds cannot raise the maxima are skipped
_PRUNE_MIN = 2048
#: rows per block of the pruned pass, and the rows whose pairs are visited first
_PRUNE_BLOCK, _PRUNE_SEED = 256, 256
#: relative margin on the bounds: covers float32 rounding of the products (at most
#: ``p * 2^-24`` of ``|y_i| |y_j|``), so the pruned maxima equal the unpruned ones
_PRUNE_SLACK = 1e-3


def _block_maxima(Yi, Yj, i, j, rho, a, s, has_b):
    """``(max |D|, max |E|)`` over the pairs ``i x j`` (positions into ``rho, a, s``; a
    position in both is not a pair), E in both orientations."""
    D = Yi @ Yj.T
    same = i[:, None] == j[None, :]
    D[same] = 0.0
    delta = max(float(D.max(initial=0.0)), -float(D.min(initial=0.0)))
    eps = 0.0
    E = np.empty_like(D)
    for left, right in (((rho[None, j]), (a[i, None], s[None, j])), ((rho[i, None]), (s[i, None], a[None, j]))):
        np.multiply(D, left, out=E)
        if has_b:
            E += right[0] * right[1]
            E[same] = 0.0
        eps = max(eps, float(E.max(initial=0.0)), -float(E.min(initial=0.0)))
    return delta, eps


def _pruned(Y, rho, a, s, has_b):
    """The pair maxima of :func:`_pairs_from_half`, visiting only pairs that could raise them.

    Rows are taken in decreasing ``|y_i|``. The pairs among the rows of largest ``|y|`` and of
    largest ``|r z|`` are visited first (true pair values: lower bounds on the maxima); then
    each block of rows meets only the later rows j whose pair with some row of the block has a
    bound above the maxima so far (shrunk by :data:`_PRUNE_SLACK`)."""
    m = Y.shape[0]
    ny = np.sqrt(np.einsum("ij,ij->i", Y, Y, dtype=np.float64))
    order = np.argsort(-ny, kind="stable")        # rows are gathered in this order, not moved
    ny, rho, a, s = ny[order], rho[order], a[order], s[order]
    nr = ny * np.abs(rho.astype(np.float64))           # |r_j z_j| (= |y_j| |rho_j|)
    aa, sa = np.abs(a.astype(np.float64)), s.astype(np.float64)
    seed = np.union1d(np.arange(min(_PRUNE_SEED, m)), np.argsort(-nr, kind="stable")[:_PRUNE_SEED])
    Ys = Y[order[seed]]
    delta, eps = _block_maxima(Ys, Ys, seed, seed, rho, a, s, has_b)
    keep = 1.0 - _PRUNE_SLACK
    for lo in range(0, m, _PRUNE_BLOCK):
        hi = min(m, lo + _PRUNE_BLOCK)
        y_i, nr_i = ny[lo], float(nr[lo:hi].max())
        a_i, s_i = float(aa[lo:hi].max()), float(sa[lo:hi].max())
        yj, nrj = ny[lo:], nr[lo:]
        need = ((y_i * yj > keep * delta) | (y_i * nrj + a_i * sa[lo:] > keep * eps)      # (a = 0 without b)
                | (yj * nr_i + aa[lo:] * s_i > keep * eps))
        j = lo + np.flatnonzero(need)
        if j.size == 0:
            continue
        d, e = _block_maxima(Y[order[lo:hi]], Y[order[j]], np.arange(lo, hi), j, rho, a, s, has_b)
        delta, eps = max(delta, d), max(eps, e)
    return delta, eps


def _pairs_blocks(pc, rows, cols):
    """``(delta, epsilon)`` over row blocks of ``rows`` against ``cols`` (None: every row)."""
    step = max(1, _BLOCK_BYTES // (8 * 4 * max(pc.design.n, 1)))
    delta = eps = 0.0
    for lo in range(0, rows.size, step):
        d, e = pc.pair_maxima(rows[lo:lo + step], cols)
        delta, eps = max(delta, d), max(eps, e)
    return delta, eps


#: rows of a large set whose pairs are visited first (see :func:`set_pairs`)
PROBE_ROWS = 16


def set_pairs(pc, factor, T, C_R, probe: int = PROBE_ROWS):
    """``(delta, epsilon)`` over the pairs of ``T``, or None when the set's size threshold
    ``1 / (2 delta C_R)`` is certainly below ``|T|``.

    The theorem applies to ``T`` only if ``delta_T <= 1 / (2 |T| C_R)``; the pairs among any
    rows of T bound ``delta_T`` from below. For a set of more than ``probe`` rows the pairs of
    its ``probe`` rows of largest leverage are visited first, and when they already exceed
    that limit the set's constants are not needed (and not computed: ``O(|T|^2 p)`` work)."""
    T = np.asarray(T)
    if T.size < 2:
        return 0.0, 0.0

    def pairs(rows):
        return _pairs_from_half(pc, factor, rows) if factor.half_solves else pc.pair_maxima(rows, rows)

    if T.size > probe:
        top = np.sort(T[np.argsort(-pc.lev[T], kind="stable")[:probe]])
        if pairs(top)[0] > 1.0 / (2 * T.size * C_R):
            return None
    return pairs(T)


def set_constants(att, metric, T, pieces=None) -> TheoremConstants:
    """The constants restricted to the rows of one removal set ``T`` (pairs inside T)."""
    pc = pieces if pieces is not None else _Pieces(att, metric)
    T = np.asarray(T)
    delta, eps = pc.pair_maxima(T, T) if T.size > 1 else (0.0, 0.0)
    C_R = float(np.max(1.0 / (1.0 - np.clip(pc.lev[T], None, 1 - 1e-16))))
    C_ell = float(np.max(pc.grad_norms(T)))
    eta = float(np.max(pc.sw[T] * np.abs(pc.xf[T])))
    k_thr = 1.0 / (2 * delta * C_R) if delta > 0 else float("inf")
    return TheoremConstants(C_ell, C_R, delta, eps, eta, k_thr, True, int(T.size))
