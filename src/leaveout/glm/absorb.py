r"""Absorbed fixed effects: a GLM with one or more factors whose levels are nuisance
parameters, fitted without forming a dummy column per level of the largest factor.

The model (fixest / pyfixest's ``y ~ x1 + x2 | firm + year``) is the GLM with design
``[X, D]``: ``X`` the named regressors, ``D`` the indicator columns of every level of every
factor, no penalty. The factor with the most levels (``absorbed``) is partialled out
exactly: with working weights ``w_i = s_i l''_i`` at the fit, a column is replaced by its
deviation from its ``w``-weighted group mean (one-way demeaning is closed form, no
iteration, nothing of size levels x levels). The other factors enter as treatment dummy
columns (first level dropped) demeaned in the same way; their levels together may number
at most :data:`OTHER_MAX` (two factors with thousands of levels each are not supported).

Why this is exact for every removal estimator (Frisch-Waugh-Lovell in the Hessian's
metric). With ``H = [X, D]^T W [X, D]`` and ``x~_i`` the demeaned row,

* the coefficient block of ``H^{-1}`` is ``(X~^T W X~)^{-1}`` and the coefficient part of
  ``H^{-1} [x_i, d_i]`` is ``(X~^T W X~)^{-1} x~_i``, so the coefficient part of the
  influence of row i is that of the GLM on the partialled design ``X~``;
* the leverage of row i in the full model is that partialled leverage plus the fixed effect's
  part, ``h_i = w_i x~_i^T (X~^T W X~)^{-1} x~_i + w_i / W_g(i)`` (``W_g`` the group's total
  working weight), which RIF uses; and the Woodbury block of a set T adds
  ``[g(i) = g(j)] / W_g`` to the partialled one, which the Newton step uses.

A row alone in its group (a singleton) has ``h_i = 1`` and ``x~_i = 0``: removing it moves
no coefficient, and every estimator says 0. A group emptied by a removal set simply
leaves the refit (its level is no longer a parameter); a refit that empties a level of a
non-absorbed factor is undefined and refused.

Every refit (``refit_without``) demeans again with the kept rows' weights: removing rows
changes the group means, and the exact retrain accounts for it. Standard errors count the
absorbed levels as parameters, as statsmodels with dummies and pyfixest do (for a
cluster-robust SE a factor nested in the clusters is not counted, pyfixest's default).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .. import _validation as v
from ..design import as_design
from ..exceptions import SingularHessianError
from .losses import get_loss
from .model import GLM
from .objective import make_objective
from .solver import NewtonResult

__all__ = ["FixedEffectsGLM", "FixedEffects", "OTHER_MAX"]

#: the levels of the factors that are not absorbed, kept as demeaned dummy columns, at most
OTHER_MAX = 2000
FAMILIES = ("squared", "logistic", "poisson")


class Groups:
    """One factor as integer codes, with weighted group sums and demeaning."""

    def __init__(self, codes, n_levels):
        self.codes = np.asarray(codes, dtype=np.intp)
        self.n_levels = int(n_levels)
        n = self.codes.size
        self.indicator = sp.csr_matrix((np.ones(n), (np.arange(n), self.codes)), shape=(n, self.n_levels))

    def totals(self, w):
        return np.bincount(self.codes, weights=w, minlength=self.n_levels)

    def counts(self, w):
        """Rows of positive weight in each group."""
        return np.bincount(self.codes, weights=(np.asarray(w) > 0).astype(float), minlength=self.n_levels)

    def demean(self, A, w):
        """``A`` minus its ``w``-weighted group means; exactly 0 on rows whose group has fewer
        than two rows of positive weight (a singleton's deviation is 0, an empty group's is
        undefined and its rows carry no weight)."""
        A = np.asarray(A, dtype=np.float64)
        W = self.totals(w)
        sums = self.indicator.T @ (w[:, None] * A if A.ndim == 2 else w * A)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / (W[:, None] if A.ndim == 2 else W)
        out = A - means[self.codes]
        lonely = self.counts(w)[self.codes] < 2
        out[lonely] = 0.0
        return out

    def leverage(self, w):
        """The factor's part of each leverage, ``w_i / W_g(i)`` (0 for rows of zero weight)."""
        W = self.totals(w)[self.codes]
        return np.divide(w, W, out=np.zeros_like(w, dtype=np.float64), where=W > 0)

    def kernel(self, T, w):
        """``[g(i) = g(j)] / W_g`` for the rows ``T``, shape (|T|, |T|)."""
        W = self.totals(w)
        g = self.codes[T]
        same = g[:, None] == g[None, :]
        return np.where(same, 1.0 / W[g][:, None], 0.0)


class FixedEffects:
    """The fixed-effect factors of a model: the absorbed one (the most levels) and the
    others as treatment dummies.

    Parameters
    ----------
    factors : dict of str to array-like of shape (n_samples,)
        Factor name to labels (``"a^b"`` interactions already combined into one label).
    """

    def __init__(self, factors: dict):
        import pandas as pd
        if not factors:
            raise ValueError("fixed_effects is empty; give at least one factor")
        self.names = list(factors)
        self.levels, codes = {}, {}
        n = None
        for name, labels in factors.items():
            labels = np.asarray(labels)
            if labels.ndim != 1 or (n is not None and labels.size != n):
                raise ValueError(f"fixed effect {name!r} must have one label per row ({n}), got shape {labels.shape}")
            n = labels.size
            if pd.isna(pd.Series(labels)).any():
                raise ValueError(f"fixed effect {name!r} has missing labels; drop those rows (missing='drop', "
                                 "--drop-missing) or give them a level")
            c, lev = pd.factorize(pd.Series(labels), sort=True)
            codes[name], self.levels[name] = c, np.asarray(lev)
        self.n = n
        self.absorbed = max(self.names, key=lambda k: (self.levels[k].size, -self.names.index(k)))
        self.groups = Groups(codes[self.absorbed], self.levels[self.absorbed].size)
        self.codes = codes
        self.others = [k for k in self.names if k != self.absorbed]
        extra = sum(self.levels[k].size - 1 for k in self.others)
        if extra > OTHER_MAX:
            raise ValueError(
                f"fixed effects {self.others} have {extra} levels besides the absorbed {self.absorbed!r}; at most "
                f"{OTHER_MAX} are supported (only the largest factor is absorbed without dummy columns)")

    def dummies(self):
        """Treatment dummies of the non-absorbed factors (first level dropped), (n, m), and
        their names ``"factor[level]"``."""
        cols, names = [], []
        for k in self.others:
            for j, lev in enumerate(self.levels[k][1:], start=1):
                cols.append((self.codes[k] == j).astype(np.float64))
                names.append(f"{k}[{lev}]")
        if not cols:
            return np.zeros((self.n, 0)), names
        return np.column_stack(cols), names

    def n_levels(self, name, s):
        """Levels of ``name`` with rows of positive weight."""
        return int(np.count_nonzero(np.bincount(self.codes[name], weights=(np.asarray(s) > 0).astype(float),
                                                minlength=self.levels[name].size)))

    def describe(self, s) -> str:
        """One line: ``"firm (11 levels, absorbed) + year (20)"`` (levels with rows of weight)."""
        return " + ".join(f"{k} ({self.n_levels(k, s)}{' levels, absorbed' if k == self.absorbed else ''})"
                          for k in self.names)

    def dof_adjustment(self, absorbed_dof, s, clusters=None) -> int:
        """The absorbed levels counted as parameters; for a cluster-robust SE less the levels
        of every factor nested in the clusters but one (pyfixest's ``fixef_k="nested"``)."""
        out = absorbed_dof
        if clusters is not None:
            for name in self.names:
                if self.nested_in(name, clusters, s):
                    out -= self.n_levels(name, s) - 1
        return out

    def nested_in(self, name, clusters, s) -> bool:
        """Whether every level of factor ``name`` lies within one cluster (on rows of positive
        weight)."""
        import pandas as pd
        kept = np.asarray(s) > 0
        c = pd.factorize(np.asarray(clusters)[kept])[0]
        f = self.codes[name][kept]
        first = np.empty(self.levels[name].size, dtype=c.dtype)
        first[f] = c                             # the cluster of one row of each level
        return bool(np.all(first[f] == c))


class FixedEffectsGLM(GLM):
    """A GLM with absorbed fixed effects (pyfixest's ``feols`` / ``feglm`` / ``fepois``).

    Unpenalised, no separate intercept (the fixed effects hold it). ``theta_`` holds the
    regressors' coefficients followed by the dummies of the non-absorbed factors; the
    absorbed factor's levels are not parameters of ``theta_`` (``fixef_`` has them). See the
    module docstring for how the fit and every removal estimate stay exact.

    Parameters
    ----------
    family : {"squared", "logistic", "poisson"}, default="squared"
    tol, max_iter, weight_kind : as for :class:`~leaveout.GLM`

    Attributes
    ----------
    fixed_effects_ : FixedEffects
    fixef_ : ndarray
        The absorbed factor's effect per level (NaN for a level with no row of positive weight).
    absorbed_ : Groups
        The absorbed factor (its codes, sums and demeaning).
    absorbed_leverage_ : ndarray of shape (n_samples,)
        The absorbed factor's part of each leverage, ``w_i / W_g(i)``.
    absorbed_dof_ : int
        The absorbed levels counted as parameters (levels with rows of positive weight).
    n_singletons_ : int
        Rows alone in their absorbed group (leverage 1: their removal moves no coefficient).
    n_regressors_ : int
        Leading entries of ``theta_`` that are the formula's regressors.
    """

    def __init__(self, family: str = "squared", tol: float = 1e-10, max_iter: int = 100,
                 weight_kind: str = "analytic"):
        super().__init__(family=family, l2=0.0, penalty="fixed", fit_intercept=False, tol=tol,
                         max_iter=max_iter, weight_kind=weight_kind)

    def fit(self, X, y, fixed_effects, sample_weight=None, offset=None, names=None) -> "FixedEffectsGLM":
        """Fit to ``X`` (n_samples, n_features), ``y`` and the factors ``fixed_effects`` (a dict
        of name to labels, a DataFrame of factor columns, or one array of labels)."""
        v.check_choice(self.family, "family", FAMILIES)
        self._loss_for()
        X = v.check_X(X, "X")
        if sp.issparse(X):
            X = X.toarray()
        fe = _as_factors(fixed_effects)
        self.fixed_effects_ = FixedEffects(fe)
        if self.fixed_effects_.n != X.shape[0]:
            raise ValueError(f"fixed_effects has {self.fixed_effects_.n} rows, X has {X.shape[0]}")
        y01, classes = get_loss(self.family).check_target(y, X.shape[0], "y")
        if classes is not None:
            self.classes_ = classes
        s = v.check_sample_weight(sample_weight, X.shape[0])
        off = np.zeros(X.shape[0]) if offset is None else v.check_offset(offset, X.shape[0], "offset")
        E, enames = self.fixed_effects_.dummies()
        names = list(names) if names is not None else [f"x{j}" for j in range(X.shape[1])]
        self.n_regressors_ = X.shape[1]
        self.n_features_in_ = X.shape[1] + E.shape[1]
        self.feature_names_in_ = np.array(names + enames, dtype=object)
        self._data = (np.hstack([X, E]) if E.shape[1] else X, y01, off)
        self.encoding_, self.row_ids_, self.n_dropped_ = None, None, 0
        return self._solve(s)

    @classmethod
    def from_formula(cls, formula: str, data, family: str = "squared", sample_weight=None, offset=None,
                     missing: str = "raise", **options) -> "FixedEffectsGLM":
        """Fit ``"y ~ x1 + x2 | fe1 + fe2"`` (``fe1^fe2`` for an interaction) to ``data``."""
        from ..tables.fit import column_or_values
        from ..tables.formula import FormulaEncoding, factor_columns, split_fixed_effects
        from ..tables.frame import check_missing, missing_rows_error
        check_missing(missing)
        main, fe_terms = split_fixed_effects(formula)
        labels = factor_columns(data, fe_terms)
        na = labels.isna().any(axis=1)
        if na.any():
            if missing != "drop":
                raise missing_rows_error(data.index[na], [c for c in labels.columns if labels[c].isna().any()])
            data = data.loc[~na]
        enc, X, y, ids = FormulaEncoding.learn(main, data, missing)
        rows = data.index.isin(ids) if len(ids) < len(data.index) else slice(None)
        sw, off = (column_or_values(data, a, rows, name) for a, name in
                   ((sample_weight, "sample_weight"), (offset, "offset")))
        model = cls(family=family, **options)
        fe = {c: labels.loc[data.index[rows] if not isinstance(rows, slice) else data.index, c].to_numpy()
              for c in labels.columns}
        model.fit(X, y, fe, sw, off, names=list(enc.feature_names))
        model.encoding_, model.row_ids_ = enc, ids
        model.n_dropped_ = int(na.sum()) + len(data.index) - len(ids)
        model.formula_ = formula
        return model

    # ------------------------------------------------------------ the fit
    def _solve(self, s, init=None, check: bool = True) -> "FixedEffectsGLM":
        """Newton's method on (coefficients, absorbed levels), each step a weighted least
        squares on the demeaned design (one step is exact for the squared family)."""
        XE, y, off = self._data
        loss = get_loss(self.family)
        squared = self.family == "squared"
        groups = self.fixed_effects_.groups
        if check:
            self._check_columns(XE, s, groups)
        n, p = XE.shape
        beta = np.zeros(p) if init is None else np.asarray(init, dtype=np.float64).copy()
        alpha = np.zeros(groups.n_levels)
        scale = getattr(self, "_scale_value", None) or self._scale(XE, y, s, groups)
        self._scale_value = scale
        converged, it, gnorm = False, 0, np.inf
        value = None
        for it in range(1, self.max_iter + 1):
            eta = XE @ beta + alpha[groups.codes] + off
            r = s * loss.derivative(y, eta)
            gnorm = max(np.max(np.abs(XE.T @ r), initial=0.0), np.max(np.abs(groups.totals(r)), initial=0.0)) / scale
            if gnorm <= self.tol and it > 1:
                converged = True
                break
            w = s * loss.curvature(y, eta)
            t = np.divide(-r, w, out=np.zeros(n), where=w > 0)
            Xt = groups.demean(XE, w)
            tt = groups.demean(t, w)
            A = Xt.T @ (w[:, None] * Xt)
            try:
                L = np.linalg.cholesky(A)
            except np.linalg.LinAlgError:
                raise SingularHessianError(
                    "the Hessian of the fixed-effects fit is singular: a regressor is collinear with the fixed effects "
                    "and the other regressors on the rows left") from None
            db = np.linalg.solve(L.T, np.linalg.solve(L, Xt.T @ (w * tt))) if p else np.zeros(0)
            W = groups.totals(w)
            with np.errstate(invalid="ignore", divide="ignore"):
                da = np.where(W > 0, groups.totals(w * (t - XE @ db)) / W, 0.0)
            if squared:                          # the quadratic's exact minimiser
                beta, alpha = beta + db, alpha + da
                continue
            if value is None:
                value = float(s @ loss.value(y, eta))
            step = 1.0
            for _ in range(50):                  # backtracking: the objective must not rise
                nb, na_ = beta + step * db, alpha + step * da
                new = float(s @ loss.value(y, XE @ nb + na_[groups.codes] + off))
                if np.isfinite(new) and new <= value + 1e-12 * abs(value):
                    break
                step *= 0.5
            beta, alpha, value = nb, na_, new
        else:
            eta = XE @ beta + alpha[groups.codes] + off
            r = s * loss.derivative(y, eta)
            gnorm = max(np.max(np.abs(XE.T @ r), initial=0.0), np.max(np.abs(groups.totals(r)), initial=0.0)) / scale
            converged = gnorm <= self.tol
        # the partialled problem at the fit: the GLM on X~ (w-demeaned) whose linear
        # predictor equals the full model's, so l', l'' and the coefficients' Hessian are its own
        if not squared:                          # the working weights at the optimum (squared: s)
            w = s * loss.curvature(y, eta)
            Xt = groups.demean(XE, w)
        objective = make_objective(as_design(Xt, False), loss, y, s, 0.0, "fixed", False, eta - Xt @ beta)
        self.set_solution(objective, NewtonResult(beta, converged, it, float(gnorm)))
        kept = s > 0
        self.fixef_ = np.where(groups.totals(kept.astype(float)) > 0, alpha, np.nan)
        self.absorbed_ = groups
        self.absorbed_weights_ = w
        self.absorbed_leverage_ = groups.leverage(w)
        self.absorbed_dof_ = self.fixed_effects_.n_levels(self.fixed_effects_.absorbed, s)
        self.n_singletons_ = int(np.count_nonzero(kept & (groups.counts(s)[groups.codes] == 1)))
        return self

    def _scale(self, XE, y, s, groups):
        """The gradient's natural size: as :class:`~leaveout.GLM`'s tolerance, with the
        absorbed factor's indicator columns among the columns (a refit keeps its fit's)."""
        cols = np.abs(XE).T @ s if XE.shape[1] else np.zeros(1)
        scale = max(float(np.max(cols, initial=0.0)), float(np.max(groups.totals(s))), 1e-300)
        if self.family in ("squared", "poisson"):
            mu = float(s @ y) / float(s.sum())
            scale *= max(float(s @ np.abs(y - mu)) / float(s.sum()), 1e-12)
        return scale

    def _check_columns(self, XE, s, groups):
        """Refuse a regressor that does not vary within the absorbed groups (it is absorbed)."""
        if not XE.shape[1]:
            return
        Xt = groups.demean(XE, s)
        flat = np.max(np.abs(Xt), axis=0) <= 1e-12 * np.maximum(np.max(np.abs(XE), axis=0), 1.0)
        if flat.any():
            bad = [str(self.feature_names_in_[j]) for j in np.flatnonzero(flat)]
            raise SingularHessianError(
                f"{'columns' if len(bad) > 1 else 'column'} {', '.join(map(repr, bad[:5]))} "
                f"{'do' if len(bad) > 1 else 'does'} not vary within the levels of the fixed effect "
                f"{self.fixed_effects_.absorbed!r} on the rows used (absorbed by it); drop "
                f"{'them' if len(bad) > 1 else 'it'} from the formula")

    # ------------------------------------------------------------ refits
    def refit_without(self, T, tol=None, max_iter=None) -> "FixedEffectsGLM":
        """The exact refit without rows ``T`` (weight 0): the fixed effects demeaned again on
        the kept rows, warm-started from this fit."""
        s = np.array(self.objective_.s, dtype=np.float64)
        s[np.asarray(T, dtype=np.intp)] = 0.0
        if not np.any(s > 0):
            raise ValueError("T removes every row; the refit is undefined")
        if self.family == "logistic":
            y = self._data[1]
            if not ((s > 0) & (y == 1)).any() or not ((s > 0) & (y == 0)).any():
                raise ValueError("T removes every sample of one class; the refit is undefined")
        refit = FixedEffectsGLM(self.family, self.tol if tol is None else tol,
                                self.max_iter if max_iter is None else max_iter, self.weight_kind)
        for attr in ("classes_", "n_features_in_", "feature_names_in_", "row_ids_", "n_dropped_", "encoding_",
                     "fixed_effects_", "_data", "n_regressors_", "formula_", "_scale_value"):
            if hasattr(self, attr):
                setattr(refit, attr, getattr(self, attr))
        return refit._solve(s, init=self.theta_, check=False)

    def refitted(self, objective, init=None, precond=None, tol=None, max_iter=None, result=None):
        raise NotImplementedError("a fixed-effects model refits through refit_without(T)")

    # ------------------------------------------------------------ standard errors
    def dof_adjustment(self, clusters=None) -> int:
        """Parameters the standard errors count besides ``theta_``: the absorbed levels; for a
        cluster-robust SE, less the levels of every factor nested in the clusters but one
        (pyfixest's and fixest's ``fixef_k="nested"``)."""
        return self.fixed_effects_.dof_adjustment(self.absorbed_dof_, np.asarray(self.objective_.s), clusters)

    def describe_fixed_effects(self) -> str:
        """One line: ``"firm (11 levels, absorbed) + year (20)"``."""
        return self.fixed_effects_.describe(np.asarray(self.objective_.s))

    def __repr__(self):
        return f"FixedEffectsGLM(family={self.family!r})"


GLM.fixed_effects_class = FixedEffectsGLM


def _as_factors(fixed_effects) -> dict:
    if isinstance(fixed_effects, dict):
        return {str(k): np.asarray(v) for k, v in fixed_effects.items()}
    if hasattr(fixed_effects, "columns"):
        return {str(c): fixed_effects[c].to_numpy() for c in fixed_effects.columns}
    a = np.asarray(fixed_effects)
    if a.ndim == 1:
        return {"fe": a}
    if a.ndim == 2:
        return {f"fe{j}": a[:, j] for j in range(a.shape[1])}
    raise ValueError(f"fixed_effects must be a dict, a DataFrame or an array of labels, got shape {a.shape}")
