r"""A fitted GLM's coefficient table, as statsmodels prints it: estimate, standard error,
test statistic, p-value and confidence interval for every coefficient, with the model's
family, penalty, weights, SE type, number of observations and log-likelihood.

The standard errors are those of :mod:`.se` (so an audit and this table never disagree). The
test statistic is ``t`` with ``n - p`` degrees of freedom for the squared family's
classical SE (statsmodels ``OLS`` / ``WLS``) and ``z`` (normal) otherwise (statsmodels'
robust and GLM results). The log-likelihood is statsmodels' ``llf`` at the fit (the penalty
left out):

* squared: ``-n/2 (log(2 pi RSS / n) + 1)``, ``RSS = sum s e^2``, plus ``(1/2) sum log s`` under
  analytic weights (``WLS``; ``n`` = rows) and nothing more under frequency weights (``n = sum s``);
* logistic: ``sum s (y log p + (1 - y) log(1 - p))``;
* poisson: ``sum s (y log mu - mu - log y!)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammaln

from .se import se_calculator

__all__ = ["FitSummary", "summarize"]


@dataclass
class FitSummary:
    """What :func:`summarize` returns; ``str()`` prints the table, :meth:`to_dict` is JSON-ready."""

    table: object                     # pandas DataFrame, one row per coefficient
    family: str
    l2: float
    penalty: str
    weights: str                      # "none", "analytic" or "frequency"
    se: str                           # "nonrobust", "HC0", "HC1", with ", clustered (G groups)"
    n: float                          # observations (frequency weights: sum of the weights)
    n_rows: int
    loglike: float
    stat: str                         # "t" or "z"
    df_resid: float
    alpha: float
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        t = self.table
        col = lambda c: {str(k): float(v) for k, v in t[c].items()}   # noqa: E731
        lo_, hi = t.columns[-2], t.columns[-1]
        return {"family": self.family, "l2": self.l2, "penalty": self.penalty, "weights": self.weights,
                "se": self.se, "n": _num(self.n), "n_rows": self.n_rows, "df_resid": _num(self.df_resid),
                "loglike": self.loglike, "statistic": self.stat, "alpha": self.alpha,
                "params": col("coef"), "bse": col("std err"), "tvalues": col(self.stat),
                "pvalues": col(f"P>|{self.stat}|"),
                "conf_int": {str(k): [float(t.loc[k, lo_]), float(t.loc[k, hi])] for k in t.index},
                "notes": list(self.notes)}

    def __str__(self):
        head = (f"{self.family} fit: n = {_num(self.n)} ({self.n_rows} rows), l2 = {self.l2:g} ({self.penalty} "
                f"penalty), weights {self.weights}, se {self.se}, log-likelihood {self.loglike:.6g}")
        body = self.table.to_string(float_format=lambda v: f"{v:.6g}")
        return "\n".join([head, body] + [f"note: {n}" for n in self.notes])


def _num(x):
    x = float(x)
    return int(x) if x.is_integer() else x


def _loglike(model) -> float:
    if model.family == "2sls":                   # no likelihood for two-stage least squares
        return float("nan")
    obj = model.objective_
    s = np.asarray(obj.s, dtype=float)
    z = np.asarray(obj.z(model.theta_), dtype=float)
    y = np.asarray(obj.y, dtype=float)
    name = obj.loss.name
    if name == "squared":
        freq = model.weight_kind == "frequency"
        pos = s > 0
        n = s.sum() if freq else np.count_nonzero(pos)
        rss = float(s @ (y - z) ** 2)
        ll = -n / 2 * (math.log(2 * math.pi * rss / n) + 1)
        return float(ll if freq else ll + 0.5 * np.log(s[pos]).sum())
    if name == "poisson":
        return float(s @ (y * z - np.exp(z) - gammaln(y + 1)))
    return float(-(s @ obj.loss.value(y, z)))


def summarize(model, se: str | None = None, cluster=None, alpha: float = 0.05) -> FitSummary:
    """The coefficient table of a fitted single-response GLM (or its Attribution).

    Parameters
    ----------
    model : GLM or Attribution
    se : {"nonrobust", "HC0", "HC1"}, optional
        Standard errors as in :mod:`leaveout.audit.se` (the model's ``weight_kind`` says what
        its sample weights mean). Default: the SE (and clusters) of a model brought by
        :func:`~leaveout.from_pyfixest` or :func:`~leaveout.from_linearmodels`, else "nonrobust".
    cluster : array-like of shape (n_samples,), optional
        Cluster labels: cluster-robust SEs.
    alpha : float
        The confidence intervals are ``1 - alpha``.
    """
    import pandas as pd
    from ..attribution import Attribution
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if getattr(model, "family", None) == "2sls":
        from ..attribution.iv import IVAttribution
        att = IVAttribution(model)
    else:
        att = model if hasattr(model, "model") else Attribution(model)
    m = att.model
    if se is None:
        se = getattr(m, "se_kind_", "nonrobust")
        if cluster is None:
            cluster = getattr(m, "cluster_", None)
    calc = se_calculator(att, se, cluster)
    theta = m.theta_
    bse = np.array([calc.se(e) for e in np.eye(theta.size)])
    ratio = theta / bse
    use_t = calc.squared and se == "nonrobust"
    from scipy import stats          # here, not at import: scipy.stats alone takes 0.5 s to load
    df_resid = calc.n - calc.p
    if use_t:
        pvalues = 2 * stats.t.sf(np.abs(ratio), df_resid)
        crit = stats.t.ppf(1 - alpha / 2, df_resid)
    else:
        pvalues = 2 * stats.norm.sf(np.abs(ratio))
        crit = stats.norm.ppf(1 - alpha / 2)
    stat = "t" if use_t else "z"
    names = list(m.params_.index)
    notes = []
    shown = slice(None)
    if hasattr(m, "describe_instruments"):
        notes.append(f"two-stage least squares: {m.describe_instruments()}")
    if getattr(m, "fixed_effects_", None) is not None:     # the non-absorbed factors' dummies not shown
        hidden = set(m.fixed_effects_.dummies()[1])
        shown = [j for j, name in enumerate(m.params_.index) if name not in hidden]
        notes.append(f"fixed effects: {m.describe_fixed_effects()}; their levels are counted in the degrees of "
                     "freedom and not shown")
        if m.n_singletons_:
            notes.append(f"{m.n_singletons_} rows are alone in their group of {m.fixed_effects_.absorbed!r} "
                         "(leverage 1): they fix their group's effect and move no coefficient")
    table = pd.DataFrame({"coef": theta, "std err": bse, stat: ratio, f"P>|{stat}|": pvalues,
                          f"[{alpha / 2:g}": theta - crit * bse, f"{1 - alpha / 2:g}]": theta + crit * bse},
                         index=names).iloc[shown]
    s = np.asarray(m.objective_.s)
    weights = "none" if np.all(s == 1) else m.weight_kind
    se_kind = se + (f", clustered ({calc.n_groups} groups)" if calc.groups is not None else "")
    if m.l2 > 0:
        notes.append(f"l2 = {m.l2:g} > 0: the SEs use the penalised Hessian (a posterior covariance), not "
                     "a ridge estimate's sampling covariance; give l2 = 0 for statsmodels' numbers")
    if se == "HC1" and not calc.squared and calc.groups is None and m.family != "2sls":
        notes.append("HC1 is n/(n-p) times HC0 here; statsmodels' GLM applies no factor (its HC1 equals HC0)")
    return FitSummary(table, m.family, float(m.l2), m.penalty, weights, se_kind, calc.n, calc.n_rows,
                      _loglike(m), stat, float(df_resid), float(alpha), notes)
