r"""A fast certified lower bound for OLS audits: Rubinstein and Hopkins' triangle bounds.

Reference: I. Rubinstein and S. B. Hopkins, *Robustness auditing for linear regression: to
singularity and beyond*, ICLR 2025 (arXiv:2410.07916). Notation of :mod:`.ols`.

**The argument.** For a set T of k rows with ``lambda_max(H_TT) < 1``, the removal identity
``Delta(T) = z_T^T (I - H_TT)^{-1} R_T`` and ``(I - H)^{-1} = I + H + H (I - H)^{-1} H`` give

.. math::

    \Delta(T) = \sum_T z_i R_i + 1_T^\top G^{zR} 1_T
                + (H^{1/2} z_T)^\top H^{1/2} (I - H)^{-1} H^{1/2} (H^{1/2} R_T)
              \le A_k + B_k + \frac{\lambda_k}{1 - \lambda_k} N^z_k N^R_k = U_k,

with ``G^{zR}_il = (z_i R_l + z_l R_i) H_il / 2``, because the middle matrix has norm
``lambda / (1 - lambda)`` with ``lambda = lambda_max(H_TT)``, and ``||H_TT^{1/2} z_T||^2 =
1_T^T (z z^T o H) 1_T`` (likewise for R). Each maximum over ``|T| = k`` is bounded by the
*refined triangle inequality*: for any symmetric G, ``1_T^T G 1_T = sum_{i in T} (G_ii +
sum_{l in T, l != i} G_il)`` is at most the sum of the k largest ``rho_i(k) = G_ii + (the
k - 1 largest off-diagonal entries of row i)``. So

* ``A_k``: the sum of the k largest ``z_i R_i`` (exact);
* ``B_k``: the triangle bound of ``G^{zR}`` (kept signed);
* ``N^z_k``, ``N^R_k``: square roots of the triangle bounds of ``z z^T o H`` and ``R R^T o H``;
* ``lambda_k``: the smallest of three valid bounds on ``max lambda_max(H_TT)``: Frobenius
  (``||H_TT||_F^2 = 1_T^T (H o H) 1_T``), Gershgorin (the largest absolute row sum of
  ``H_TT``), and the "hypercontractive" one of the reference with ``alpha = 2/3``
  (Cauchy-Schwarz in the metric ``alpha I + (1 - alpha) vec(I) vec(I)^T``:
  ``lambda_max^2 <= 1_T^T G 1_T``, ``G_il = H_il^2 / alpha + ((alpha + (1 - alpha) d)^{-1} -
  alpha^{-1}) h_i h_l / d``).

No set of k rows flips the sign when ``lambda_k < 1`` and ``U_k < margin``; the certificate
is the first k where that fails. It holds for any data (no distributional assumption); it is
*informative* when no small set of rows dominates a direction of the design (small hat
entries), and it ends at the "singularity", the k where ``lambda_k`` reaches 1 (a small
category, a heavy-tailed covariate).

**Rows of leverage one** (``h_i >= 1 - 1e-12``, a category with a single row): removing
such a row leaves the design singular, so no flip contains it; and it is orthogonal to every
other row (``H_il = 0``), so the sets without it do not see it. The bounds run over the other
rows (the *pool*), which is exact, not an approximation.

**Exact small sets.** For ``k <= 2`` the maximum of ``Delta`` is computed exactly over all
sets (closed-form 2x2 inverses, in the same pass over row blocks), so a certificate never
says less than the truth for one or two rows. Sets with ``I - H_TT`` singular (the fit
without them is not unique, and no audit proposes them) are not counted as flips.

**Significance** (classical SE, ``sigma^2 = RSS(T) / (n - k - d)``): ``RSS(T) <= RSS`` and
``c^T (X_-T^T X_-T)^{-1} c <= ||a||^2 / (1 - lambda_k)``, so every ``|T| = k`` has
``t(T) >= (margin - U_k) sqrt((n - k - d)(1 - lambda_k) / (RSS ||a||^2))``; a significant
estimate provably keeps its significance while that exceeds the critical value.

Cost: ``O(n^2 d)`` time for the hat matrix, in row blocks of ``O(block n)`` memory, plus
partial sorts; ``O(n k_max)`` memory for the per-row triangle sums.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["TriangleBounds", "triangle_bounds"]

_ALPHA = 2.0 / 3.0
_SINGULAR = 1e-10


class TriangleBounds:
    """Per-k bounds ``U_k``, ``lambda_k`` (k = 1..k_max) and the exact maxima for k <= 2."""

    def __init__(self, k, U, lam, Nz, NR, exact_delta, exact_t):
        self.k, self.U, self.lam, self.Nz, self.NR = k, U, lam, Nz, NR
        self.exact_delta = exact_delta            # {1: max Delta, 2: max Delta} over nonsingular sets
        self.exact_t = exact_t                    # {1: min t, 2: min t}

    def sign_certificate(self, margin) -> int:
        """The first k at which no certificate holds (so no set of fewer rows flips)."""
        for k in self.k:
            if k in self.exact_delta:
                if self.exact_delta[k] >= margin:
                    return int(k)
                continue
            if not (self.lam[k - 1] < 1 and self.U[k - 1] < margin):
                return int(k)
        return int(self.k[-1]) + 1

    def t_lower(self, problem, k) -> float:
        """A lower bound on the t statistic after removing any k rows (under frequency weights,
        where the degrees of freedom depend on the rows, a lower bound on ``max(t, 0)``: all a
        significance certificate needs)."""
        if k in self.exact_t:
            return self.exact_t[k]
        lam, U = self.lam[k - 1], self.U[k - 1]
        dof = problem.dof(k)
        if not (lam < 1) or U >= problem.margin or dof <= 0:
            return -np.inf
        return (problem.margin - U) * np.sqrt(dof * (1 - lam) / (problem.rss * problem.a2))

    def significance_certificate(self, problem, z) -> int:
        """The first k at which ``t > z`` is not certified for every set of k rows."""
        for k in self.k:
            if not self.t_lower(problem, k) > z:
                return int(k)
        return int(self.k[-1]) + 1

    def gamma(self, K) -> float:
        """A bound on ``||(I - S_T)^{-1} v_T||`` over ``|T| <= K`` (inf past the singularity)."""
        lam, NR = self.lam[:K], self.NR[:K]
        if not np.all(lam < 1):
            return np.inf
        return float(np.max(NR / (1 - lam)))


def _top_cumsum(block, diag_cols, m):
    """Row-wise ``G_ii + cumulative sums of the m largest off-diagonal entries`` -> (b, m + 1)."""
    b, n = block.shape
    rows = np.arange(b)
    diag = block[rows, diag_cols].copy()
    work = block.copy()
    work[rows, diag_cols] = -np.inf
    if m > 0:
        m = min(m, n - 1)
        part = -np.partition(-work, m - 1, axis=1)[:, :m] if m < n else work
        part = -np.sort(-part, axis=1)
        cum = np.cumsum(part, axis=1)
    else:
        cum = np.zeros((b, 0))
    return np.column_stack([diag, diag[:, None] + cum])


def _topk_sums(rho):
    """For each k (columns of rho, k = 1..K), the sum of the k largest entries of rho[:, k-1]."""
    n, K = rho.shape
    out = np.empty(K)
    for k in range(1, K + 1):
        col = rho[:, k - 1]
        out[k - 1] = np.partition(col, n - k)[n - k:].sum() if k < n else col.sum()
    return out


def triangle_bounds(problem, k_max: int, block: int = 512, deadline: float = np.inf) -> TriangleBounds | None:
    """Bounds for k = 1..k_max (None when the deadline passes first)."""
    P = problem
    pool = P.pool
    Xt, h, z, R = P.Xt[pool], P.h[pool], P.z[pool], P.R[pool]
    n, d = pool.size, P.d
    k_max = int(max(1, min(k_max, n - 1, P.n - d - 1)))
    m = k_max - 1
    names = ("zR", "zz", "RR", "HH", "hc", "abs")
    rho = {key: np.empty((n, k_max)) for key in names}
    chc = (1.0 / (_ALPHA + (1 - _ALPHA) * d) - 1.0 / _ALPHA) / d
    best1, best2 = -np.inf, -np.inf
    t1, t2 = np.inf, np.inf
    for s in range(0, n, block):
        if time.monotonic() > deadline:
            return None
        e = min(n, s + block)
        Hb = Xt[s:e] @ Xt.T                                 # (b, n) block of H over the pool
        dc = np.arange(s, e)
        zb, Rb = z[s:e, None], R[s:e, None]
        Gs = {
            "zR": 0.5 * (zb * R[None, :] + Rb * z[None, :]) * Hb,
            "zz": (zb * z[None, :]) * Hb,
            "RR": (Rb * R[None, :]) * Hb,
            "HH": Hb * Hb,
            "hc": Hb * Hb / _ALPHA + chc * h[s:e, None] * h[None, :],
            "abs": np.abs(Hb),
        }
        for key, G in Gs.items():
            rho[key][s:e] = _top_cumsum(G, dc, m)[:, :k_max]
        b1, b2, tt1, tt2 = _exact_small(P, h, z, R, Hb, s, e)
        best1, best2, t1, t2 = max(best1, b1), max(best2, b2), min(t1, tt1), min(t2, tt2)
    ks = np.arange(1, k_max + 1)
    A = np.cumsum(np.sort(z * R)[::-1])[:k_max]
    B = _topk_sums(rho["zR"])
    Nz = np.sqrt(np.maximum(_topk_sums(rho["zz"]), 0.0))
    NR = np.sqrt(np.maximum(_topk_sums(rho["RR"]), 0.0))
    frob = np.sqrt(np.maximum(_topk_sums(rho["HH"]), 0.0))
    hyper = np.sqrt(np.maximum(_topk_sums(rho["hc"]), 0.0))
    gersh = rho["abs"].max(axis=0)
    lam = np.minimum(np.minimum(frob, hyper), gersh)
    with np.errstate(divide="ignore", invalid="ignore"):
        U = np.where(lam < 1, A + B + lam / (1 - lam) * Nz * NR, np.inf)
    exact_delta = {1: best1}
    exact_t = {1: t1}
    if k_max >= 2:
        exact_delta[2], exact_t[2] = best2, t2
    return TriangleBounds(ks, U, lam, Nz, NR, exact_delta, exact_t)


def _exact_small(P, h, z, R, Hb, s, e):
    """Exact max Delta and min t over single rows and pairs (of the pool) whose first row is
    in [s, e)."""
    i = np.arange(s, e)
    om = 1.0 - h[i]
    ok1 = om > _SINGULAR
    d1 = np.where(ok1, z[i] * R[i] / np.where(ok1, om, 1.0), -np.inf)
    rss1 = P.rss - np.where(ok1, R[i] ** 2 / np.where(ok1, om, 1.0), 0.0)
    v1 = P.a2 + np.where(ok1, z[i] ** 2 / np.where(ok1, om, 1.0), 0.0)
    t1 = _tstat(P.margin - d1, rss1, v1, P.dof(1))
    t1 = np.where(ok1, t1, np.inf)
    # pairs (i, l), l > i: M = [[1 - h_i, -H_il], [-H_il, 1 - h_l]]
    a, b = (1.0 - h[i])[:, None], (1.0 - h)[None, :]
    c = Hb
    det = a * b - c * c
    upper = np.arange(h.size)[None, :] > i[:, None]
    ok = upper & (det > _SINGULAR * np.maximum(a * b, 1e-300))
    sd = np.where(ok, det, 1.0)

    def quad(u, v):        # u_T^T M^{-1} v_T for the pair
        ui, ul, vi, vl = u[i][:, None], u[None, :], v[i][:, None], v[None, :]
        return (ui * (b * vi + c * vl) + ul * (c * vi + a * vl)) / sd

    d2 = np.where(ok, quad(z, R), -np.inf)
    rss2 = P.rss - quad(R, R)
    v2 = P.a2 + quad(z, z)
    t2 = np.where(ok, _tstat(P.margin - d2, rss2, v2, P.dof(2)), np.inf)
    return (float(d1.max(initial=-np.inf)), float(d2.max(initial=-np.inf)),
            float(t1.min(initial=np.inf)), float(t2.min(initial=np.inf)))


def _tstat(num, rss, v, dof):
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / np.sqrt(np.maximum(rss, 0.0) / max(dof, 1) * v)
