r"""Exact minimum removals for OLS sign audits: closed forms and mixed-integer programs.

All work on an oriented :class:`~.ols.OLSProblem` (``q > value``) and return an
:class:`ExactResult`: a proven lower bound, and a witness set when one was found (the
caller verifies it by a refit). Sets whose removal leaves the design rank-deficient are not
flips here either: a witness is kept only when its refit is defined.

**One binary regressor plus intercept, equal weights.** The slope is ``(mean_1 - mean_0) /
(x_1 - x_0)``. For ``k1`` rows out of group 1 and ``k0`` out of group 0, the smallest
possible ``mean_1`` drops the ``k1`` largest responses of group 1 and the largest possible
``mean_0`` drops the ``k0`` smallest of group 0; so a flip with ``(k1, k0)`` exists iff it
exists for these, and a scan over ``k1`` with a binary search for ``k0`` finds the minimum
exactly in ``O(n log n)`` (the greedy special case of Freund and Hopkins, 2023).

**One regressor, no intercept.** The slope has the sign of ``sum_K s_i x_i y_i``; dropping
the largest terms first is optimal.

**One regressor plus intercept (pairs MIP).** With kept rows K and weights s, the slope has
the sign of ``C(K) = sum_{i<l in K} s_i s_l (x_i - x_l)(y_i - y_l)`` (the weighted
covariance times ``S_K^2``; Lagrange's identity). With ``Q_il`` these pair terms, ``q_i =
sum_l Q_il`` and ``t_i = 1`` for removed rows, ``C(K) = C - sum_i q_i t_i + sum_{i<l} Q_il
t_i t_l``, so the fewest rows with ``C(K) <= 0`` solve

    minimise sum t  s.t.  sum_i q_i t_i - sum_{i<l} Q_il y_il >= C,  t binary,

where ``y_il`` stands for ``t_i t_l``; only the side that matters is imposed (``y >= t_i + t_l
- 1, y >= 0`` where ``Q_il > 0``; ``y <= t_i, y <= t_l`` where ``Q_il < 0``), which is exact
for binary t. No big-M, no bound on the coefficients: exact for any data. ``O(n^2)``
variables, for n up to a few thousand.

**Small d (big-M MIP, after Freund and Hopkins, 2023, in the HiGHS form of
``ols-certificates``).** Rows kept with ``w_i = 1 - t_i``; the refit solves ``sum_i w_i x_i
r_i = 0``, ``r_i = y_i - x_i^T beta``. In whitened coordinates ``r_i = R_i + x~_i^T g`` with
``g = L^T (beta_hat - beta)``, and ``u_i`` standing for ``w_i r_i``:

    sum_i x~_i u_i = 0,  a^T g >= margin,  |u_i| <= M_i (1 - t_i),  |u_i - R_i - x~_i^T g| <= M_i t_i,

minimise ``sum t`` with ``sum t <= K``. Every flip T with ``|T| <= K`` is feasible (with its
refit's g) provided ``|r_i(beta(T))| <= M_i`` and ``|g_l| <= ||g|| <= Gamma``. From ``r_i(beta(T))
= R_i + x~_i^T (I - S_T)^{-1} v_T``, ``M_i = |R_i| + sqrt(h_i) Gamma`` with ``Gamma`` the bound of
:meth:`.bounds.TriangleBounds.gamma` (valid while ``lambda_K < 1``): so the MIP's optimum, and
HiGHS's dual bound when it stops at the time limit, is a lower bound on the true minimum.
Infeasible means no flip with at most K rows. HiGHS's tolerances make the MIP slightly
more permissive (a lower bound stays valid); the margin is lowered by ``1e-9`` of its size
for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

__all__ = ["ExactResult", "binary_regressor", "no_intercept", "pairs_mip", "bigm_mip", "simple_regression"]


@dataclass
class ExactResult:
    lower: int                 # proven: no flip with fewer rows
    witness: list | None       # a set of that size that flips (to verify), when found
    method: str
    optimal: bool              # lower is the exact minimum (given a verified witness)
    status: str = ""


def simple_regression(P):
    """``(x, y, s, has_intercept)`` when the problem is one regressor (plus an intercept) and
    ``q`` is its slope; None otherwise."""
    X = P.raw_X
    const = [j for j in range(P.d) if np.all(X[:, j] == X[0, j]) and X[0, j] != 0]
    if P.d == 2 and len(const) == 1:
        j = 1 - const[0]
        if np.count_nonzero(P.c) == 1 and P.c[j] > 0:
            # q - value = c_j (slope - value / c_j): flips with slope of y - (value / c_j) x
            x = X[:, j]
            return x, P.raw_y - P.value / P.c[j] * x, P.weights, True
    if P.d == 1 and P.c[0] > 0:
        x = X[:, 0]
        return x, P.raw_y - P.value / P.c[0] * x, P.weights, False
    return None


def binary_regressor(x, y, s):
    """Exact minimum for a two-valued regressor with an intercept and equal weights (None
    when that does not apply)."""
    levels = np.unique(x)
    if levels.size != 2 or not np.all(s == s[0]):
        return None
    hi, lo = np.flatnonzero(x == levels[1]), np.flatnonzero(x == levels[0])
    # slope > 0 <=> mean(y_hi) > mean(y_lo); drop the largest of hi, the smallest of lo
    oh, ol = hi[np.argsort(-y[hi], kind="stable")], lo[np.argsort(y[lo], kind="stable")]
    nh, nl = hi.size, lo.size
    mh = (y[oh].sum() - np.r_[0.0, np.cumsum(y[oh])][:nh]) / (nh - np.arange(nh))   # k1 = 0..nh-1
    ml = (y[ol].sum() - np.r_[0.0, np.cumsum(y[ol])][:nl]) / (nl - np.arange(nl))   # nondecreasing
    ml = np.maximum.accumulate(ml)
    k0 = np.searchsorted(ml, mh, side="left")           # first k0 with ml >= mh
    ok = k0 < nl
    if not ok.any():
        return ExactResult(lower=nh + nl - 1, witness=None, method="exact (binary regressor)", optimal=False,
                           status="no flip keeps both groups")
    tot = np.where(ok, np.arange(nh) + k0, np.iinfo(np.int64).max)
    k1 = int(np.argmin(tot))
    T = sorted(oh[:k1].tolist() + ol[:int(k0[k1])].tolist())
    return ExactResult(lower=len(T), witness=T, method="exact (binary regressor)", optimal=True)


def no_intercept(x, y, s):
    """Exact minimum for one regressor without an intercept."""
    terms = s * x * y
    order = np.argsort(-terms, kind="stable")
    rest = terms.sum() - np.cumsum(terms[order])
    k = int(np.argmax(rest <= 0)) + 1 if np.any(rest <= 0) else None
    if k is None or k >= x.size:
        return ExactResult(lower=x.size, witness=None, method="exact (no intercept)", optimal=False)
    return ExactResult(lower=k, witness=sorted(order[:k].tolist()), method="exact (no intercept)", optimal=True)


def _solve(c, cons, integrality, bounds, time_limit):
    from scipy.optimize import milp
    opts = {"time_limit": max(float(time_limit), 0.5), "disp": False}
    return milp(c, constraints=cons, integrality=integrality, bounds=bounds, options=opts)


def _read(res, n, K, lower, method):
    """An ExactResult from a HiGHS answer to ``min sum t, sum t <= K`` (t the first n)."""
    if res.status == 2:                                            # infeasible: nothing up to K
        return ExactResult(lower=K + 1, witness=None, method=method, optimal=False, status="infeasible")
    bound = getattr(res, "mip_dual_bound", None)
    proven = lower if bound is None or not np.isfinite(bound) else max(lower, int(np.ceil(bound - 1e-6)))
    witness = None if res.x is None else sorted(np.flatnonzero(res.x[:n] > 0.5).tolist())
    optimal = res.status == 0 and witness is not None
    if optimal:
        proven = max(proven, len(witness))
    return ExactResult(lower=proven, witness=witness, method=method, optimal=optimal,
                       status="optimal" if res.status == 0 else "time limit")


def pairs_mip(x, y, s, K, lower=1, time_limit=60.0, max_pairs=2_000_000):
    """Exact minimum for one regressor plus intercept (see the module docstring); None when
    the pair table would exceed ``max_pairs`` nonzero entries."""
    from scipy.optimize import Bounds, LinearConstraint
    n = x.size
    sx, sy = np.std(x) or 1.0, np.std(y) or 1.0
    xs, ys = (x - x.mean()) / sx, (y - y.mean()) / sy
    q = np.zeros(n)
    iu, ju, vals = [], [], []
    for i in range(n - 1):             # rows of the upper triangle, kept sparse (ties in x give 0)
        Qi = s[i] * s[i + 1:] * (xs[i] - xs[i + 1:]) * (ys[i] - ys[i + 1:])
        q[i] += Qi.sum()
        q[i + 1:] += Qi
        nz = np.flatnonzero(Qi)
        iu.append(np.full(nz.size, i))
        ju.append(i + 1 + nz)
        vals.append(Qi[nz])
        if sum(v.size for v in vals) > max_pairs:
            return None
    iu, ju, Qp = np.concatenate(iu), np.concatenate(ju), np.concatenate(vals)
    C = q.sum() / 2
    m = Qp.size
    nv = n + m
    cons = [LinearConstraint(sparse.csr_matrix(np.r_[q, -Qp][None, :]), C * (1 - 1e-9), np.inf),
            LinearConstraint(sparse.csr_matrix(np.r_[np.ones(n), np.zeros(m)][None, :]), lower, K)]
    P, N = np.flatnonzero(Qp > 0), np.flatnonzero(Qp < 0)
    r = np.arange(P.size)
    cons.append(LinearConstraint(sparse.csr_matrix(
        (np.r_[np.ones(P.size), -np.ones(2 * P.size)], (np.r_[r, r, r], np.r_[n + P, iu[P], ju[P]])),
        shape=(P.size, nv)), -1, np.inf))
    r = np.arange(N.size)
    for other in (iu[N], ju[N]):
        cons.append(LinearConstraint(sparse.csr_matrix(
            (np.r_[np.ones(N.size), -np.ones(N.size)], (np.r_[r, r], np.r_[n + N, other])),
            shape=(N.size, nv)), -np.inf, 0))
    c = np.r_[np.ones(n), np.zeros(m)]
    res = _solve(c, cons, np.r_[np.ones(n), np.zeros(m)], Bounds(0, 1), time_limit)
    return _read(res, n, K, lower, "exact (pairs MIP, HiGHS)")


def bigm_mip(P, K, gamma, lower=1, time_limit=60.0):
    """The big-M MIP (module docstring) for at most K removals, with ``gamma`` bounding the
    whitened coefficient change over every ``|T| <= K``."""
    from scipy.optimize import Bounds, LinearConstraint
    n, d = P.n, P.d
    if not np.isfinite(gamma):
        return None
    scale = np.sqrt(P.rss / n) or 1.0
    R, Xt, a = P.R / scale, P.Xt, P.a
    G = gamma / scale
    M = np.abs(R) + np.sqrt(P.h) * G
    margin = P.margin / scale * (1 - 1e-9)
    # variables: t (n, binary), u (n), g (d)
    I = sparse.identity(n, format="csr")
    Z = sparse.csr_matrix((n, d))
    Dm = sparse.diags(M)
    Xs = sparse.csr_matrix(Xt)
    rows = [
        # x~^T u = 0
        LinearConstraint(sparse.hstack([sparse.csr_matrix((d, n)), sparse.csr_matrix(Xt.T), sparse.csr_matrix((d, d))]),
                         0, 0),
        # a^T g >= margin
        LinearConstraint(sparse.csr_matrix(np.r_[np.zeros(2 * n), a][None, :]), margin, np.inf),
        # u + M t <= M and -u + M t <= M   (|u| <= M (1 - t))
        LinearConstraint(sparse.hstack([Dm, I, Z]), -np.inf, M),
        LinearConstraint(sparse.hstack([Dm, -I, Z]), -np.inf, M),
        # u - x~^T g - M t <= R and -u + x~^T g - M t <= -R   (|u - R - x~^T g| <= M t)
        LinearConstraint(sparse.hstack([-Dm, I, -Xs]), -np.inf, R),
        LinearConstraint(sparse.hstack([-Dm, -I, Xs]), -np.inf, -R),
        LinearConstraint(sparse.csr_matrix(np.r_[np.ones(n), np.zeros(n + d)][None, :]), lower, K),
    ]
    lb = np.r_[np.zeros(n), -M, np.full(d, -G)]
    tmax = np.zeros(n)
    tmax[P.pool] = 1.0                                   # rows of leverage one stay (in no flip)
    ub = np.r_[tmax, M, np.full(d, G)]
    c = np.r_[np.ones(n), np.zeros(n + d)]
    res = _solve(c, rows, np.r_[np.ones(n), np.zeros(n + d)], Bounds(lb, ub), time_limit)
    return _read(res, n, K, lower, f"exact (MIP, HiGHS, d={d})")
