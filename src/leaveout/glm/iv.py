r"""Two-stage least squares (instrumental variables), fitted in closed form.

With regressors ``X = [W, E]`` (exogenous ``W``, endogenous ``E``; the intercept last),
instruments ``Z = [W, I]`` (the exogenous regressors instrument themselves) and sample
weights ``s``:

.. math::

    A = Z^\top S Z,\quad B = X^\top S Z,\quad \Pi = A^{-1} B^\top,\quad \hat X = Z \Pi,\quad
    M = B A^{-1} B^\top = \hat X^\top S \hat X,\quad \hat\beta = M^{-1} \Pi^\top Z^\top S y,

linearmodels' ``IV2SLS`` and pyfixest's ``feols("y ~ w | e ~ i")``. The first stage ``Pi``
and the second ``beta`` are two least-squares fits, so removing rows ``T`` (weight 0) is
exact in closed form: subtract the rows' terms from ``A``, ``B`` and ``Z^T S y`` and solve
again (:meth:`IV2SLS.refit_without`, and the downdate of
:class:`~leaveout.attribution.iv.IVAttribution`). The estimating equations
``Pi^T Z^T S (y - X beta) = 0`` are what the influence of a row differentiates.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import _validation as v
from ..exceptions import SingularHessianError
from .model import GLM

__all__ = ["IV2SLS", "solve_2sls"]


def solve_2sls(X, Z, y, s):
    """``(beta, pieces)`` of weighted 2SLS; a one-line error when it is not identified."""
    Zs = Z * s[:, None]
    A = Z.T @ Zs
    B = X.T @ Zs
    c = Zs.T @ y
    return solve_sums(A, B, c)


def solve_sums(A, B, c):
    """2SLS from its sums ``A = Z^T S Z``, ``B = X^T S Z``, ``c = Z^T S y``."""
    try:
        LA = _cholesky(A)
    except np.linalg.LinAlgError:
        raise SingularHessianError("the instruments (with the exogenous regressors) are collinear on the rows "
                                   "used; drop one") from None
    Pi = np.linalg.solve(LA.T, np.linalg.solve(LA, B.T))          # (q, p)
    M = Pi.T @ A @ Pi
    M = 0.5 * (M + M.T)
    try:
        LM = _cholesky(M)
    except np.linalg.LinAlgError:
        raise SingularHessianError("the model is not identified: the instruments do not move every endogenous "
                                   "regressor (or the regressors are collinear) on the rows used") from None
    beta = np.linalg.solve(LM.T, np.linalg.solve(LM, Pi.T @ c))
    return beta, SimpleNamespace(A=A, B=B, c=c, LA=LA, Pi=Pi, M=M, LM=LM)


def _cholesky(A, rtol=1e-10):
    """Cholesky factor, refusing a pivot that is rounding error next to its column's size
    (a duplicated or collinear column)."""
    L = np.linalg.cholesky(A)
    if np.any(np.diag(L) ** 2 <= rtol * np.maximum(np.diag(A), 1e-300)):
        raise np.linalg.LinAlgError("numerically singular")
    return L


class IV2SLS:
    """Two-stage least squares, as linearmodels' ``IV2SLS`` (see the module docstring).

    Fit with :meth:`fit` (arrays) or :meth:`from_formula` (``"y ~ w1 + w2 | e ~ i1 + i2"``,
    pyfixest's syntax). ``theta_`` holds the exogenous regressors' coefficients, then the
    endogenous ones, then the intercept (last, as everywhere in leaveout).

    Attributes
    ----------
    theta_ : ndarray of shape (n_params,)
    feature_names_in_ : ndarray of str
        Exogenous then endogenous names (without the intercept).
    endogenous_, instruments_ : list of str
    row_ids_ : ndarray or None
    """

    family = "2sls"
    penalty = "fixed"
    l2 = 0.0

    def __init__(self, fit_intercept: bool = True, weight_kind: str = "analytic"):
        self.fit_intercept = fit_intercept
        self.weight_kind = weight_kind

    def fit(self, exog, endog, instruments, y, sample_weight=None, names=None, fixed_effects=None) -> "IV2SLS":
        """``exog`` (n, k_w), ``endog`` (n, k_e), ``instruments`` (n, k_i) with k_i >= k_e;
        ``fixed_effects`` (a dict of name to labels), absorbed as in
        :class:`~leaveout.glm.absorb.FixedEffectsGLM` (they are exogenous: in both stages)."""
        if self.weight_kind != "analytic":
            raise ValueError("2SLS supports analytic weights only (weight_kind='analytic')")
        W = _matrix(exog, "exog", allow_empty=True)
        E = _matrix(endog, "endog")
        I_ = _matrix(instruments, "instruments")
        n = E.shape[0]
        if W.shape[0] != n or I_.shape[0] != n:
            raise ValueError(f"exog, endog and instruments must have the same rows, got {W.shape[0]}, {n}, {I_.shape[0]}")
        if I_.shape[1] < E.shape[1]:
            raise ValueError(f"2SLS needs at least as many instruments ({I_.shape[1]}) as endogenous regressors "
                             f"({E.shape[1]})")
        y = v.check_real_y(y, n, "y")
        s = v.check_sample_weight(sample_weight, n)
        names = names or {}
        exog_names = list(names.get("exog", [f"w{j}" for j in range(W.shape[1])]))
        if fixed_effects is not None:
            from .absorb import FixedEffects
            self.fixed_effects_ = FixedEffects(dict(fixed_effects))
            Dm, dnames = self.fixed_effects_.dummies()
            W, exog_names = np.hstack([W, Dm]), exog_names + dnames
            self.fit_intercept = False                     # the fixed effects hold it
        ones = np.ones((n, 1)) if self.fit_intercept else np.zeros((n, 0))
        self._raw = (np.hstack([W, E, ones]), np.hstack([W, I_, ones]), np.asarray(y, dtype=np.float64))
        self._X, self._Z, self._y = self._raw
        self.exogenous_ = exog_names
        self.endogenous_ = list(names.get("endog", [f"e{j}" for j in range(E.shape[1])]))
        self.instruments_ = list(names.get("instruments", [f"z{j}" for j in range(I_.shape[1])]))
        self.feature_names_in_ = np.array(self.exogenous_ + self.endogenous_, dtype=object)
        self.n_features_in_ = W.shape[1] + E.shape[1]
        self.n_regressors_ = len(self.exogenous_) - (Dm.shape[1] if fixed_effects is not None else 0)
        self.row_ids_, self.n_dropped_, self.encoding_ = None, 0, None
        return self._solve(s)

    @classmethod
    def from_formula(cls, formula: str, data, sample_weight=None, missing: str = "raise",
                     weight_kind: str = "analytic") -> "IV2SLS":
        """Fit ``"y ~ w1 + w2 | e1 ~ i1 + i2"`` (or ``"y ~ 1 | e ~ i"``) to the DataFrame ``data``."""
        from ..tables.fit import column_or_values
        from ..tables.formula import iv_matrices
        from ..tables.frame import check_missing
        check_missing(missing)
        parts = iv_matrices(formula, data, missing)
        rows = data.index.isin(parts["ids"])
        sw = column_or_values(data, sample_weight, rows, "sample_weight")
        model = cls(fit_intercept=parts["intercept"], weight_kind=weight_kind)
        fe = parts.get("fixed_effects")
        fe = None if fe is None else {c: fe.loc[parts["ids"], c].to_numpy() for c in fe.columns}
        model.fit(parts["exog"], parts["endog"], parts["instruments"], parts["y"], sw, names=parts["names"],
                  fixed_effects=fe)
        model.row_ids_ = np.asarray(parts["ids"])
        model.n_dropped_ = len(data.index) - len(parts["ids"])
        model.formula_ = formula
        return model

    def _solve(self, s) -> "IV2SLS":
        fe = getattr(self, "fixed_effects_", None)
        if fe is not None:                       # partial the fixed effects out of every variable
            g = fe.groups
            self._X, self._Z, self._y = (g.demean(a, s) for a in self._raw)
            self.absorbed_ = g
            self.absorbed_dof_ = fe.n_levels(fe.absorbed, s)
            self.n_singletons_ = int(np.count_nonzero((s > 0) & (g.counts(s)[g.codes] == 1)))
        beta, pieces = solve_2sls(self._X, self._Z, self._y, s)
        self.pieces_ = pieces
        self.objective_ = SimpleNamespace(s=s, y=self._y, n=s.size)
        self.theta_ = beta
        self.coef_ = beta[:self.n_features_in_]
        self.intercept_ = float(beta[-1]) if self.fit_intercept else 0.0
        e = self._y - self._X @ beta
        score = pieces.Pi.T @ (self._Z.T @ (s * e))
        scale = max(float(np.max(np.abs(self._X).T @ s)) * float(s @ np.abs(self._y - self._y.mean())) / s.sum(), 1e-300)
        self.grad_norm_ = float(np.max(np.abs(score))) / scale
        self.converged_, self.n_iter_ = True, 1
        return self

    def refit_without(self, T, tol=None, max_iter=None) -> "IV2SLS":
        """The exact 2SLS on the kept rows (``T`` at weight 0), both stages again."""
        s = np.array(self.objective_.s, dtype=np.float64)
        s[np.asarray(T, dtype=np.intp)] = 0.0
        refit = IV2SLS(self.fit_intercept, self.weight_kind)
        for attr in ("_X", "_Z", "_y", "_raw", "exogenous_", "endogenous_", "instruments_", "feature_names_in_",
                     "n_features_in_", "row_ids_", "n_dropped_", "encoding_", "formula_", "fixed_effects_",
                     "n_regressors_"):
            if hasattr(self, attr):
                setattr(refit, attr, getattr(self, attr))
        return refit._solve(s)

    def dof_adjustment(self, clusters=None) -> int:
        """Parameters the SEs count besides ``theta_``: the absorbed levels (see
        :meth:`~leaveout.glm.absorb.FixedEffectsGLM.dof_adjustment`); 0 without fixed effects."""
        if getattr(self, "fixed_effects_", None) is None:
            return 0
        return self.fixed_effects_.dof_adjustment(self.absorbed_dof_, np.asarray(self.objective_.s), clusters)

    def describe_fixed_effects(self) -> str:
        return self.fixed_effects_.describe(np.asarray(self.objective_.s))

    def check_fitted(self):
        if not hasattr(self, "theta_"):
            raise ValueError("this IV2SLS is not fitted yet; call fit(...) first")

    @property
    def params_(self):
        import pandas as pd
        self.check_fitted()
        return pd.Series(self.theta_, index=list(self.feature_names_in_) + ["Intercept"] * self.fit_intercept,
                         name="coef")

    def describe_instruments(self) -> str:
        return f"{', '.join(self.endogenous_)} instrumented by {', '.join(self.instruments_)}"

    def __repr__(self):
        return f"IV2SLS(fit_intercept={self.fit_intercept!r})"


GLM.iv_class = IV2SLS


def _matrix(a, name, allow_empty=False):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or (a.shape[1] == 0 and not allow_empty):
        raise ValueError(f"{name} must be a 2-d array with at least one column, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has missing or infinite values")
    return a
