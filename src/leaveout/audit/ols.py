r"""Ordinary least squares seen from its rows: the quantities every certificate works with.

For rows ``x_i`` (the intercept column included), responses ``y_i`` and weights ``s_i``,
the weighted problem is the plain one on ``sqrt(s_i) x_i`` and ``sqrt(s_i) y_i``, so this
module scales the rows once and then forgets the weights (removing a row removes its
scaled copy). With ``Sigma = X^T X``, the fit ``beta``, residuals ``R = y - X beta``, the
quantity ``q = c^T beta`` (a coefficient or a contrast), and the whitened rows
``x~_i = L^{-1} x_i`` (``Sigma = L L^T``):

* ``H_il = <x~_i, x~_l>`` is the hat matrix and ``h_i = H_ii`` the leverages;
* ``z_i = c^T Sigma^{-1} x_i = <a, x~_i>`` with ``a = L^{-1} c``, so that ``z_i R_i`` is row
  i's first-order influence on ``q`` and ``||a||^2 = c^T Sigma^{-1} c``.

**Removal identity.** For a set T with ``I - H_TT`` invertible (the fit without T is then
unique), push-through of the Woodbury formula gives, exactly,

.. math::

    \Delta(T) = q - q(T) = z_T^\top (I - H_{TT})^{-1} R_T,

    RSS(T) = RSS - R_T^\top (I - H_{TT})^{-1} R_T, \qquad
    [(X_{-T}^\top X_{-T})^{-1}]_c = \lVert a\rVert^2 + z_T^\top (I - H_{TT})^{-1} z_T,

where the last is ``c^T (X_{-T}^T X_{-T})^{-1} c``. For one row, ``Delta = z_i R_i / (1 - h_i)``.

The problem is oriented so that ``q > value`` at the full fit (``y`` is negated otherwise,
which negates ``beta`` and ``R``); a set flips the sign when ``Delta(T) >= margin = q - value``.

A model with absorbed fixed effects (:class:`~leaveout.glm.absorb.FixedEffectsGLM`) is
certified on the same least squares written with one dummy column per absorbed level
present: removing a row also moves its group's mean, which that design sees and the
partialled one alone would not. Up to :data:`FE_CERTIFY_MAX` columns; beyond, no certificate.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, solve_triangular

from ..metrics import Coefficient, Contrast

__all__ = ["OLSProblem", "LEVERAGE_ONE", "FE_CERTIFY_MAX", "CERTIFY_METHODS", "check_certifiable", "reduce_two_row_cells"]

CERTIFY_METHODS = ("auto", "exact", "bound")

LEVERAGE_ONE = 1.0 - 1e-12          # as the audit's: removing such a row leaves H singular
#: a fixed-effects model is certified on its dummy-variable design up to this many columns
FE_CERTIFY_MAX = 1000


class OLSProblem:
    """The rows of an unpenalised squared-loss fit, whitened, oriented so that ``q > value``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Rows with the intercept column (if any).
    y : ndarray of shape (n,)
        Responses.
    c : ndarray of shape (d,)
        The quantity ``q = c^T beta``.
    value : float
        The sign target's threshold: the conclusion changes when ``q`` crosses it.
    weights : ndarray of shape (n,), optional
        Positive row weights (default 1).
    positions : ndarray of shape (n,)
        The training-row position of each row (rows of zero weight are left out).
    """

    def __init__(self, X, y, c, value=0.0, weights=None, positions=None):
        self.raw_X = np.asarray(X, dtype=float)
        self.weights = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
        root = np.sqrt(self.weights)
        X = self.raw_X * root[:, None]
        y = np.asarray(y, dtype=float) * root
        self.n, self.d = X.shape
        if self.n <= self.d:
            raise ValueError(f"certificates need more rows than columns, got n={self.n}, d={self.d}")
        self.positions = np.arange(self.n) if positions is None else np.asarray(positions)
        self.c = np.asarray(c, dtype=float)
        chol, _ = cho_factor(X.T @ X, lower=True)
        self.L = np.tril(chol)
        beta = _solve_sigma(self.L, X.T @ y)
        q = float(self.c @ beta)
        self.sign = 1.0 if q > value else -1.0
        if q == value:
            raise ValueError(f"the estimate equals {value:g} already: the sign target has no direction")
        # orient: with y -> -y the estimate and residuals change sign, the geometry does not
        self.X, self.y = X, self.sign * y               # scaled by sqrt(weights)
        self.raw_y = self.sign * np.asarray(y) / root
        self.beta = self.sign * beta
        self.q = self.sign * q
        self.value = self.sign * float(value)
        self.margin = self.q - self.value              # Delta(T) >= margin flips the sign
        self.Xt = solve_triangular(self.L, X.T, lower=True).T        # whitened rows
        self.a = solve_triangular(self.L, self.c, lower=True)
        self.a2 = float(self.a @ self.a)
        self.h = np.einsum("ij,ij->i", self.Xt, self.Xt)
        self.z = self.Xt @ self.a
        self.R = self.y - X @ self.beta
        self.rss = float(self.R @ self.R)
        # rows whose removal alone leaves the design singular are in no flip (module docstring)
        self.pool = np.flatnonzero(self.h < LEVERAGE_ONE)
        self.cells = []                                # two-row categories folded (reduce_two_row_cells)
        self._freq = None                              # frequency weights: (sum s - d, top weight sums)

    def use_frequency_weights(self, weights, d):
        """Count the classical SE's degrees of freedom as frequency weights do: ``sum s - d``
        for the problem's original rows and ``d`` columns, less the weight a set removes. A
        set of k rows removes at most the k largest weights, so :meth:`dof` is a lower
        bound on the degrees of freedom left, which keeps every t-statistic bound valid (a
        positive t grows with its degrees of freedom)."""
        w = np.sort(np.asarray(weights, dtype=float))[::-1]
        self._freq = (float(w.sum()) - d, np.concatenate([[0.0], np.cumsum(w)]))

    def dof(self, k: int) -> float:
        """Degrees of freedom of the classical SE after removing k rows (frequency weights: the
        fewest over every set of k rows)."""
        if self._freq is None:
            return self.n - k - self.d
        base, top = self._freq
        return base - top[min(int(k), top.size - 1)]

    @classmethod
    def from_attribution(cls, att, quantity, value=0.0):
        """The problem behind a fitted :class:`~leaveout.attribution.Attribution` (or GLM):
        squared loss, no penalty, a linear quantity."""
        model = getattr(att, "model", att)
        model.check_fitted()
        check_certifiable(model, quantity, "sign", "auto")
        obj = model.objective_
        c = np.asarray(quantity.gradient(model, model.theta_), dtype=float)
        s = np.asarray(obj.s, dtype=float)
        keep = np.flatnonzero(s > 0)
        if hasattr(model, "fixed_effects_"):
            # the same least squares with a dummy column per absorbed level present: removing a
            # row moves its group's mean, which the partialled design alone would not see
            XE, y_all, off_all = model._data
            codes = model.absorbed_.codes[keep]
            levels, inv = np.unique(codes, return_inverse=True)
            D = np.zeros((keep.size, levels.size))
            D[np.arange(keep.size), inv] = 1.0
            X = np.hstack([XE[keep], D])
            y = np.asarray(y_all, dtype=float)[keep] - np.asarray(off_all, dtype=float)[keep]
            c = np.concatenate([c, np.zeros(levels.size)])
        else:
            X = obj.design.dense_rows(keep)
            off = np.asarray(obj.offset, dtype=float)[keep] if np.ndim(obj.offset) else 0.0
            y = np.asarray(obj.y, dtype=float)[keep] - off
        X, y, c, w, positions, cells = reduce_two_row_cells(X, y, c, s[keep], keep)
        P = cls(X, y, c, value, weights=w, positions=positions)
        P.cells = cells
        if getattr(model, "weight_kind", "analytic") == "frequency":
            P.use_frequency_weights(s[keep], obj.pen.size)
        return P

    # ---------------------------------------------------------------- exact, per set

    def hat_block(self, rows, cols=None):
        """``H[rows][:, cols]`` (all columns when ``cols`` is None)."""
        B = self.Xt if cols is None else self.Xt[cols]
        return self.Xt[rows] @ B.T

    def removal(self, T):
        """``(Delta, RSS(T), c^T (X_-T^T X_-T)^{-1} c)`` by the removal identity; None when
        ``I - H_TT`` is singular (the fit without T is not unique)."""
        T = np.asarray(T, dtype=int)
        if T.size == 0:
            return 0.0, self.rss, self.a2
        M = np.eye(T.size) - self.hat_block(T, T)
        try:
            sol = np.linalg.solve(M, np.column_stack([self.R[T], self.z[T]]))
        except np.linalg.LinAlgError:
            return None
        if np.linalg.cond(M) > 1e12:
            return None
        zT, RT = self.z[T], self.R[T]
        return float(zT @ sol[:, 0]), float(self.rss - RT @ sol[:, 0]), float(self.a2 + zT @ sol[:, 1])

    def flips(self, T) -> bool:
        """Whether removing T moves ``q`` to the threshold or beyond (exactly)."""
        r = self.removal(T)
        return r is not None and r[0] >= self.margin

    def t_after(self, T) -> float:
        """The classical t statistic of ``q - value`` after removing T (``sigma^2 = RSS/(n-k-d)``;
        frequency weights: :meth:`dof`)."""
        r = self.removal(T)
        if r is None:
            return float("nan")
        delta, rss, v = r
        dof = self.dof(len(T))
        return (self.margin - delta) / np.sqrt(max(rss, 0.0) / dof * v)


def check_certifiable(model, quantity, target: str, method: str) -> None:
    """Refuse, before any work, what no certificate covers (one-line errors)."""
    if method not in CERTIFY_METHODS:
        raise ValueError(f"certify_method={method!r} is not supported; choose one of {list(CERTIFY_METHODS)}")
    if target == "flip":
        raise ValueError("certificates are for a coefficient of an OLS fit (targets sign, significance, "
                         "opposite), not for target 'flip'")
    if model.family != "squared":
        raise ValueError(f"certificates are for ordinary least squares (family='squared'), got "
                         f"family={model.family!r}")
    if model.l2 != 0:
        raise ValueError(f"certificates are for unpenalised least squares; the model has l2={model.l2:g} "
                         "(refit with l2=0)")
    if not isinstance(quantity, (Coefficient, Contrast)):
        raise ValueError("certificates need a coefficient or a contrast of coefficients as the quantity "
                         f"(got {getattr(quantity, 'name', type(quantity).__name__)})")
    if hasattr(model, "fixed_effects_"):
        width = model.theta_.size + model.absorbed_dof_
        if width > FE_CERTIFY_MAX:
            raise ValueError(f"no certificate for fixed effects with this many levels: a certificate works on the "
                             f"design with a dummy column per level ({width} columns, at most {FE_CERTIFY_MAX}); "
                             "audit without certify (every answer is still verified by an exact refit)")


def reduce_two_row_cells(X, y, c, weights, positions):
    """Fold every column that is nonzero on exactly two rows (a category of two rows) into
    one row, exactly.

    With such a column j (values ``v_a, v_b`` on rows a, b, after the sqrt-weight scaling),
    its coefficient only moves the residuals of a and b, so minimising over it leaves the
    part of ``(r_a, r_b)`` orthogonal to ``(v_a, v_b)``: the two rows act as the single row
    ``(v_b x_a - v_a x_b) / sqrt(v_a^2 + v_b^2)`` (same for y) in the problem without column j
    (Frisch-Waugh-Lovell). Removing a or b alone leaves the other row alone with a free
    coefficient, i.e. removes that single row; removing both leaves the design singular (no
    flip). So both problems have the same minimum number of removals, the same estimate
    and, with n - d unchanged, the same classical standard error; the folded problem has
    no singular pair, which is what stops the triangle bounds at two rows otherwise. Columns
    that ``c`` uses are kept. Returns the new arrays and the folded ``(position a, position
    b)`` pairs; the folded row is reported as position a.
    """
    cells = []
    while True:
        nz = np.count_nonzero(X, axis=0)
        cand = [j for j in np.flatnonzero(nz == 2) if c[j] == 0]
        if not cand:
            return X, y, c, weights, positions, cells
        j = cand[0]
        root = np.sqrt(weights)
        Xs, ys = X * root[:, None], y * root
        a, b = np.flatnonzero(X[:, j])
        va, vb = Xs[a, j], Xs[b, j]
        rho = np.hypot(va, vb)
        row = (vb * Xs[a] - va * Xs[b]) / rho
        keep = np.setdiff1d(np.arange(X.shape[0]), [a, b])
        X = np.delete(np.vstack([Xs[keep], row]), j, axis=1)
        y = np.r_[ys[keep], (vb * ys[a] - va * ys[b]) / rho]
        c = np.delete(c, j)
        cells.append((int(positions[a]), int(positions[b])))
        positions = np.r_[positions[keep], positions[a]]
        weights = np.ones(X.shape[0])


def _solve_sigma(L, b):
    return solve_triangular(L.T, solve_triangular(L, b, lower=True), lower=False)
