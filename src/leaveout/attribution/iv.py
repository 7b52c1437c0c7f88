r"""Removal estimates for two-stage least squares (:class:`~leaveout.glm.iv.IV2SLS`).

Notation of :mod:`leaveout.glm.iv`, with per-row ``a_i = A^{-1} z_i``, the instrument
leverage ``h_i = s_i z_i^T A^{-1} z_i``, fitted regressors ``x^_i = Pi^T z_i``, first-stage
residuals ``v_i = x_i - x^_i``, residuals ``e_i = y_i - x_i^T beta`` and their projection on
the instruments ``e^_i = z_i^T A^{-1} Z^T S e`` (zero when just identified).

* **IF** (zaminfluence's IV influence, the derivative of ``beta`` in the row weights with its
  sign for a removal): ``Delta beta_i = -s_i M^{-1} (x^_i e_i + v_i e^_i)``.
* **RIF**: the exact change when row i alone is removed, Sherman-Morrison on both stages:
  with ``k_i = s_i / (1 - h_i)``,
  ``M_{-i} = M - s_i x^_i x_i^T - k_i v_i x^_i^T + k_i h_i v_i x_i^T`` and
  ``Delta beta_i = M_{-i}^{-1} (-s_i x^_i e_i - k_i v_i e^_i + k_i h_i v_i e_i)``;
  summed over a set it is additive, as RIF is for a GLM.
* **NS**: the Newton step of the estimating equations, which are linear in ``beta`` once the
  weights are fixed, so it is the exact leave-T-out 2SLS: the sums ``A``, ``B``, ``Z^T S y``
  downdated by the rows of T (``O(|T| q^2 + q^3)``).
* **retrain**: both stages refitted on the kept rows (``O(n q^2)``), the slow twin of NS.

With absorbed fixed effects (``y ~ w | fe | e ~ z``) every variable is demeaned within the
groups first (Frisch-Waugh-Lovell holds for 2SLS when the fixed effects are in both stages).
Removing row i alone moves its group's means. With ``z~`` demeaned and ``S_g`` the group's
weight, the sums lose exactly ``s_i S_g / (S_g - s_i) z~_i z~_i^T``. This is the demeaned row
removed with the weight ``s_i / (1 - s_i / S_g)``, which RIF uses; a singleton moves nothing.
NS with fixed effects is the refit (the means of every touched group move).

As for a GLM's RIF, a row whose removal alone leaves the first stage or ``M`` singular gets an
infinite (or, in an audit, NaN) score.
"""

from __future__ import annotations

import numpy as np

from .. import _validation as v
from ..glm.iv import solve_sums
from ..tables.ids import resolve_rows

__all__ = ["IVAttribution"]

METHODS = ("if", "rif", "ns", "retrain")
_ONE = 1.0 - 1e-12


class IVAttribution:
    """Removal estimates for a fitted :class:`~leaveout.glm.iv.IV2SLS` (see the module
    docstring): ``delta(T, method)``, ``scores(metric, method)``, ``retrain(T)``, and what
    :func:`leaveout.audit` needs."""

    def __init__(self, model):
        model.check_fitted()
        self.model = model
        self.theta = model.theta_
        X, Z, y = model._X, model._Z, model._y
        s = np.asarray(model.objective_.s, dtype=np.float64)
        P = model.pieces_
        self.s, self.X, self.Z, self.y = s, X, Z, y
        self.Xhat = Z @ P.Pi
        self.V = X - self.Xhat
        self.e = y - X @ self.theta
        self.Ainv_Z = np.linalg.solve(P.LA.T, np.linalg.solve(P.LA, Z.T)).T          # rows a_i^T
        self.h0 = np.einsum("ij,ij->i", Z, self.Ainv_Z)                              # z_i^T A^{-1} z_i
        self.ehat = Z @ np.linalg.solve(P.LA.T, np.linalg.solve(P.LA, Z.T @ (s * self.e)))
        self.M = P.M
        self.Minv = np.linalg.inv(P.M)
        # with absorbed fixed effects, removing row i alone moves its group's means, which is the
        # same as removing the demeaned row with the weight s_i / (1 - s_i / S_g) (module docstring)
        self.fixed = getattr(model, "absorbed_", None) is not None
        self.singleton = np.zeros(s.size, dtype=bool)
        self.s_out = s
        if self.fixed:
            S = model.absorbed_.totals(s)[model.absorbed_.codes]
            self.singleton = (s > 0) & (S <= s * (1 + 1e-12))
            self.s_out = np.where(self.singleton, 0.0, s / np.where(self.singleton, 1.0, 1.0 - s / np.where(S > 0, S, 1.0)))
        self.estimators = self          # the audit reads rif_scores here, as on a GLM's Attribution

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def row_ids(self):
        return getattr(self.model, "row_ids_", None)

    def param_names(self) -> list:
        return list(self.model.params_.index)

    def to_frame(self, columns: dict):
        import pandas as pd
        ids = self.row_ids
        index = pd.Index(np.arange(self.n_samples) if ids is None else ids, name="id" if ids is not None else "row")
        return pd.DataFrame({k: np.asarray(c) for k, c in columns.items()}, index=index)

    # ------------------------------------------------------------ per-row changes
    @property
    def leverage(self) -> np.ndarray:
        """The instruments' leverage ``h_i = s_i z_i^T A^{-1} z_i`` (the first stage's)."""
        return self.s * self.h0

    def influence(self) -> np.ndarray:
        """IF rows, shape (n_samples, n_params)."""
        G = self.Xhat * self.e[:, None] + self.V * self.ehat[:, None]
        return -(self.s[:, None] * G) @ self.Minv

    def rescaled_influence(self, on_singular: str = "raise") -> np.ndarray:
        """RIF rows: the exact change when each row alone is removed, shape (n_samples, n_params)."""
        s = self.s_out
        h = s * self.h0
        bad = (h >= _ONE) & (s > 0)
        k = np.where(bad, 0.0, s / np.where(bad, 1.0, 1.0 - h))
        Xh, V, X, e, eh = self.Xhat, self.V, self.X, self.e, self.ehat
        Mi = (self.M[None] - (s[:, None, None] * Xh[:, :, None] * X[:, None, :])
              - (k[:, None, None] * V[:, :, None] * Xh[:, None, :])
              + ((k * h)[:, None, None] * V[:, :, None] * X[:, None, :]))
        rhs = -(s * e)[:, None] * Xh - (k * eh)[:, None] * V + (k * h * e)[:, None] * V
        out = np.full(X.shape, np.nan)
        ok = ~bad
        with np.errstate(all="ignore"):
            det_ok = np.linalg.cond(Mi[ok]) < 1e12 if ok.any() else ok[ok]
        idx = np.flatnonzero(ok)[det_ok]
        if idx.size:
            out[idx] = np.linalg.solve(Mi[idx], rhs[idx][..., None])[..., 0]
        out[(self.s == 0) | self.singleton] = 0.0        # a singleton fixes its own level: moves nothing
        bad_rows = np.isnan(out).any(axis=1)
        if bad_rows.any() and on_singular == "raise":
            from ..exceptions import LeverageError
            i = int(np.argmax(bad_rows))
            raise LeverageError(f"removing sample {i} alone leaves the 2SLS unidentified (instrument leverage "
                                f"{float(h[i]):.15g}); its RIF is infinite")
        return out

    def if_scores(self, phi):
        return self.influence() @ np.asarray(phi, dtype=np.float64)

    def rif_scores(self, phi, on_singular: str = "raise"):
        return self.rescaled_influence(on_singular) @ np.asarray(phi, dtype=np.float64)

    def scores(self, metric, method: str = "rif", as_frame: bool = False):
        """Linear effect on a coefficient or contrast of removing each row alone."""
        v.check_choice(method, "method", ("if", "rif"))
        self._check_metric(metric)
        phi = np.asarray(metric.gradient(self.model, self.theta), dtype=np.float64)
        out = self.if_scores(phi) if method == "if" else self.rif_scores(phi)
        return self.to_frame({method: out}) if as_frame else out

    def _check_metric(self, metric):
        from ..metrics import Coefficient, Contrast
        if not isinstance(metric, (Coefficient, Contrast)):
            raise ValueError("a 2SLS model's removal effects are on its coefficients (a Coefficient or Contrast), "
                             f"not {getattr(metric, 'name', type(metric).__name__)}")

    # ------------------------------------------------------------ removal sets
    def _check_T(self, T):
        return v.check_indices(resolve_rows(T, self.row_ids, self.n_samples, "T"), self.n_samples, "T")

    def delta(self, T, method: str = "rif") -> np.ndarray:
        """``theta_{-T} - theta`` by IF, RIF (additive), NS (downdate) or retrain."""
        v.check_choice(method, "method", METHODS)
        T = self._check_T(T)
        if method == "if":
            return self.influence()[T].sum(axis=0)
        if method == "rif":
            return self.rescaled_influence()[T].sum(axis=0)
        if method == "ns" and not self.fixed:
            P, s = self.model.pieces_, self.s[T]
            ZT, XT = self.Z[T] * s[:, None], self.X[T]
            beta, _ = solve_sums(P.A - self.Z[T].T @ ZT, P.B - XT.T @ ZT, P.c - ZT.T @ self.y[T])
            return beta - self.theta
        refit = self.retrain(T)
        return refit.theta_ - self.theta

    def retrain(self, T, tol=None, max_iter=None, init=None):
        """Both stages refitted on the kept rows (an :class:`~leaveout.glm.iv.IV2SLS`)."""
        return self.model.refit_without(self._check_T(T))

    def retrain_many(self, Ts, tol=None, max_iter=None, systems=None, skip_invalid: bool = False):
        out = []
        for T in Ts:
            try:
                out.append(self.retrain(T))
            except ValueError:
                if not skip_invalid:
                    raise
                out.append(None)
        return out

    def effect(self, T, metric, method: str = "rif", kind: str = "removal") -> float:
        self._check_metric(metric)
        return float(metric.gradient(self.model, self.theta) @ self.delta(T, method))

    def compare(self, T, metrics, methods=("if", "rif", "ns")) -> dict:
        """Every estimate next to the exact refit for one removal set (as
        :meth:`leaveout.Attribution.compare`; coefficients and contrasts only)."""
        T = self._check_T(T)
        for metric in metrics.values():
            self._check_metric(metric)
        refit = self.retrain(T)
        deltas = {"actual": refit.theta_ - self.theta, **{m: self.delta(T, m) for m in methods}}
        out = {"n_removed": int(T.size),
               "retrain": {"converged": True, "grad_norm": refit.grad_norm_, "n_iter": refit.n_iter_},
               "removal": {}, "linear": {}}
        for name, metric in metrics.items():
            phi = metric.gradient(self.model, self.theta)
            out["removal"][name] = {k: float(phi @ d) for k, d in deltas.items()}
            out["linear"][name] = {m: float(phi @ deltas[m]) for m in methods}
        return out

    def diagnose(self, metrics, **options):
        raise ValueError("the trust report does not cover two-stage least squares yet: its RIF is the exact "
                         "one-row change and NS the exact refit; compare them with delta(T, 'retrain')")

    def suspects(self, *args, **options):
        raise ValueError("suspects does not cover two-stage least squares yet")

    def audit(self, quantity, target: str = "sign", **options):
        from ..audit.search import audit
        return audit(self, quantity, target, **options)
