r"""Standard errors of two-stage least squares and their exact derivatives in the row weights.

Notation of :mod:`leaveout.attribution.iv`; ``V`` is the covariance of ``beta``:

=============  ==========================================================================
``se=``        covariance ``V``
=============  ==========================================================================
"nonrobust"    ``sigma^2 M^{-1}``, ``sigma^2 = sum_i s_i e_i^2 / (n - p)``
"HC0"          ``M^{-1} (sum_i s_i^2 e_i^2 x^_i x^_i^T) M^{-1}`` (the fitted regressors' scores)
"HC1"          ``n / (n - p)`` times HC0
cluster        ``M^{-1} (sum_g u_g u_g^T) M^{-1}``, ``u_g = sum_{i in g} s_i e_i x^_i``; for "HC1"
               times ``G / (G - 1) (n - 1) / (n - p)``
=============  ==========================================================================

These are linearmodels' ``IV2SLS`` covariances with ``debiased=True`` (and pyfixest's).
The derivative of ``se = sqrt(phi^T V phi)`` in the multiplier ``w_i`` of ``s_i`` (at ``w = 1``)
is exact: with ``t = M^{-1} phi``, the weights move ``M`` by
``s_i (x_i x^_i^T + x^_i x_i^T - x^_i x^_i^T)``, ``beta`` by
``s_i M^{-1} (x^_i e_i + v_i e^_i)``, every residual by ``-x_j^T d beta`` and every fitted
regressor by ``s_i v_i (z_i^T A^{-1} z_j)``, which sums over j in one pass; the factors are
held fixed, as in :mod:`.se`.
"""

from __future__ import annotations

import numpy as np

from ._clusters import cluster_codes

__all__ = ["IVSECalculator"]


class IVSECalculator:
    """:class:`~leaveout.audit.se.SECalculator`'s interface for an
    :class:`~leaveout.attribution.iv.IVAttribution`."""

    squared = False                       # z statistics, as linearmodels reports for IV

    def __init__(self, att, kind: str = "nonrobust", groups=None, weights=None):
        if kind not in ("nonrobust", "HC0", "HC1"):     # as SE_KINDS of .se (checked there too)
            raise ValueError(f"se={kind!r} is not supported; choose one of ['nonrobust', 'HC0', 'HC1']")
        if weights not in (None, "analytic"):
            raise ValueError("2SLS standard errors are for analytic weights")
        self.att, self.kind, self.weights, self.frequency = att, kind, "analytic", False
        s = att.s
        self.s = s
        self.n_rows = int(np.count_nonzero(s > 0))
        self.n = self.n_rows
        self.p = att.theta.size + att.model.dof_adjustment(None if groups is None else np.asarray(groups))
        if self.n <= self.p:
            raise ValueError(f"standard errors need more observations ({self.n}) than parameters ({self.p})")
        self.groups = None
        if groups is not None:
            self.groups, self.group_codes, self.n_groups = cluster_codes(groups, s, kind)

    def _factor(self):
        n, p = self.n, self.p
        if self.kind != "HC1":
            return 1.0
        if self.groups is not None:
            G = self.n_groups
            return G / (G - 1) * (n - 1) / (n - p)
        return n / (n - p)

    def _u(self, t):
        """Per row, the summed score of its cluster (HC: its own) along t."""
        a = self.att
        u = self.s * a.e * (a.Xhat @ t)
        if self.groups is None:
            return u
        return np.bincount(self.group_codes, weights=u, minlength=self.groups.size)[self.group_codes]

    def variance(self, phi) -> float:
        a = self.att
        t = a.Minv @ phi
        if self.kind == "nonrobust":
            return float(phi @ t) * float(self.s @ a.e ** 2) / (self.n - self.p)
        u = self.s * a.e * (a.Xhat @ t)
        if self.groups is None:
            return self._factor() * float(u @ u)
        U = np.bincount(self.group_codes, weights=u, minlength=self.groups.size)
        return self._factor() * float(U @ U)

    def se(self, phi) -> float:
        return float(np.sqrt(self.variance(np.asarray(phi, dtype=np.float64))))

    def gradient(self, phi) -> np.ndarray:
        """``d se / d w_i`` for every row (see the module docstring)."""
        a, s = self.att, self.s
        phi = np.asarray(phi, dtype=np.float64)
        t = a.Minv @ phi
        xht, xt, vt = a.Xhat @ t, a.X @ t, a.V @ t
        Db = (s[:, None] * (a.Xhat * a.e[:, None] + a.V * a.ehat[:, None])) @ a.Minv     # d beta / d w_i
        if self.kind == "nonrobust":
            quad = float(phi @ t)
            dof = self.n - self.p
            sigma2 = float(s @ a.e ** 2) / dof
            dquad = -s * (2 * xt * xht - xht ** 2)
            dsigma2 = (s * a.e ** 2 - 2 * Db @ (a.X.T @ (s * a.e))) / dof
            var = quad * sigma2
            dvar = sigma2 * dquad + quad * dsigma2
        else:
            f = self._factor()
            U = self._u(t)                                         # U_{g(j)}
            Omega_t = a.Xhat.T @ (s * a.e * U)
            m = a.Minv @ Omega_t
            xm, xhm = a.X @ m, a.Xhat @ m
            term_M = -2 * s * (xm * xht + xhm * xt - xhm * xht)
            P = a.X.T @ (U * s * xht)
            Q = a.Z.T @ (U * s * a.e)
            d_omega = 2 * s * U * a.e * xht - 2 * Db @ P + 2 * s * vt * (a.Ainv_Z @ Q)
            var = f * float((s * a.e * xht) @ U)
            dvar = f * (term_M + d_omega)
        out = dvar / (2 * np.sqrt(var))
        return np.where(s > 0, out, 0.0)
