"""Attribution for models fitted with scikit-learn, statsmodels, pyfixest or linearmodels (weights
trained anywhere else come in through :func:`leaveout.weights.from_weights`).

Each adapter maps the estimator's objective onto a :class:`~leaveout.GLM` exactly (family,
penalty convention, strength, intercept), refines the given coefficients to the certified
tolerance and returns an :class:`~leaveout.Attribution`. Neither library is imported here:
estimators are recognised by their class names.
"""

from __future__ import annotations

import warnings

import numpy as np

from .attribution import Attribution
from .glm import GLM

__all__ = ["from_sklearn", "from_statsmodels", "from_pyfixest", "from_linearmodels"]

_SKLEARN_SUPPORTED = ("LogisticRegression (binary or multinomial, L2 or no penalty, solver other than "
                      "liblinear, no class_weight), LinearRegression, Ridge, PoissonRegressor")
_SM_SUPPORTED = ("GLM with Binomial/logit, Gaussian/identity or Poisson/log (freq_weights, offset "
                 "and exposure allowed), Logit, OLS")


def _multinomial_theta(coef, intercept, fit_intercept):
    """The sum-to-zero parameters of :mod:`leaveout.glm.model` from (C, n_features) class
    coefficients and (C,) intercepts: centred over the classes (the softmax does not change)."""
    from .glm.losses import sum_to_zero_basis
    W = np.vstack([coef.T, intercept[None, :]]) if fit_intercept else coef.T.copy()
    W -= W.mean(axis=1, keepdims=True)
    return (W @ sum_to_zero_basis(coef.shape[0])).T.ravel()


def _sklearn_converged(est) -> bool:
    n_iter = getattr(est, "n_iter_", None)
    max_iter = getattr(est, "max_iter", None)
    return n_iter is None or max_iter is None or int(np.max(np.atleast_1d(n_iter))) < max_iter


def _statsmodels_converged(results) -> bool:
    flag = getattr(results, "converged", None)
    if flag is None:
        flag = getattr(results, "mle_retvals", {}).get("converged", True)
    return bool(flag)


def _refine(glm, X, y, sample_weight, theta0, tol_moved, who, tol, offset=None, classes=None, exact=None,
            converged=True, moved_note=None):
    """Refit ``glm`` from the estimator's coefficients to the certified tolerance; say whether
    they had not converged, or belong to other data (``exact``: refuse a larger move).

    An estimator that reports convergence leaves a small gradient of its objective on its own
    data; a relative gradient above 1e-3 at its coefficients means the data differ."""
    glm.tol = tol
    if classes is not None:
        glm.fit(X, y, sample_weight=sample_weight, init=theta0, classes=classes)
    else:
        glm.fit(X, y, sample_weight=sample_weight, init=theta0, offset=offset)
    moved = float(np.max(np.abs(glm.theta_ - theta0)) / max(1.0, float(np.max(np.abs(theta0)))))
    if exact is not None and moved > exact:
        raise ValueError(f"{who}: the refitted coefficients differ from the estimator's by {moved:.1e} (relative); "
                         "is alpha the one of the fit, and was it ridge (L1_wt=0) on these data?")
    # the relative gradient of this objective at the estimator's coefficients: a converged fit
    # of these data leaves it near the estimator's tolerance, other data leave it large
    obj = glm.objective_
    start = float(np.max(np.abs(obj.gradient(theta0)))) / obj.scale
    if converged and start > 1e-3 and moved > tol_moved:
        warnings.warn(f"{who}: X / y / sample_weight do not look like the data this estimator was fitted on "
                      f"(its coefficients leave a relative gradient of {start:.1e} here; refitting moved them "
                      f"by {moved:.1e}); the attribution is for the data given", UserWarning, stacklevel=3)
    elif moved > tol_moved and moved_note is not None:
        warnings.warn(moved_note.format(moved=moved, start=start), UserWarning, stacklevel=3)
    elif moved > tol_moved:
        warnings.warn(f"{who}: refining to the certified optimum moved the coefficients by {moved:.1e} "
                      f"(relative), more than the solver tolerance {tol_moved:g}; the estimator was not "
                      "fully converged", UserWarning, stacklevel=3)
    return Attribution(glm)


def from_sklearn(estimator, X, y, sample_weight=None, tol: float = 1e-9) -> Attribution:
    """Attribution for a fitted scikit-learn linear model.

    Parameters
    ----------
    estimator : fitted LogisticRegression, LinearRegression, Ridge or PoissonRegressor
    X, y, sample_weight : the data it was fitted on
        (attribution needs the training rows; the estimator does not keep them).
    tol : float, default=1e-9
        Certified tolerance of the refined fit (see :class:`~leaveout.GLM`).

    A UserWarning says so when refining moves the coefficients by more than
    ``max(10 * estimator.tol, 1e-5)`` relative (the estimator had not converged).

    Notes
    -----
    ``LogisticRegression(C=c)`` minimises ``c * sum_i s_i l_i + |w|^2 / 2``: the "fixed"
    convention with ``l2 = 1 / c`` (0 without a penalty). With more than two classes it is
    the multinomial family; its (C, n_features) coefficients are centred over the classes
    (the softmax does not change, and the penalised optimum is centred already) and
    mapped to the sum-to-zero parameters of :mod:`leaveout.model`, in the order of
    ``estimator.classes_`` (every class must occur in ``y``). ``Ridge(alpha=a)``:
    ``sum_i (y_i - x_i w)^2 / 2 + a |w|^2 / 2`` up to a factor 2, so ``l2 = a``, "fixed".
    ``PoissonRegressor(alpha=a)`` minimises the weighted mean half-deviance plus
    ``a |w|^2 / 2``: the "per_sample" convention with ``l2 = a``.
    """
    name = type(estimator).__name__
    if name not in ("LogisticRegression", "LinearRegression", "Ridge", "PoissonRegressor"):
        raise ValueError(f"from_sklearn: {name} is not supported; supported: {_SKLEARN_SUPPORTED}")
    if not hasattr(estimator, "coef_"):
        raise ValueError(f"from_sklearn: the {name} is not fitted; call its fit first")
    fit_intercept = bool(getattr(estimator, "fit_intercept", True))
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(getattr(estimator, "intercept_", 0.0), dtype=np.float64))
    if name == "LogisticRegression":
        penalty = getattr(estimator, "penalty", "l2")
        l1_ratio = getattr(estimator, "l1_ratio", None)
        if penalty not in ("l2", None, "none", "deprecated") or (l1_ratio not in (None, 0, 0.0)
                                                               and penalty != "l2"):
            raise ValueError(f"from_sklearn: penalty={penalty!r}, l1_ratio={l1_ratio!r} is not supported "
                             f"(L1 and elastic-net are not smooth); supported: {_SKLEARN_SUPPORTED}")
        if getattr(estimator, "class_weight", None) is not None:
            raise ValueError("from_sklearn: class_weight is not supported; pass the equivalent "
                             f"sample_weight instead. Supported: {_SKLEARN_SUPPORTED}")
        solver = getattr(estimator, "solver", "lbfgs")
        n_classes = len(estimator.classes_)
        if solver == "liblinear" and (fit_intercept or n_classes > 2):
            raise ValueError("from_sklearn: solver='liblinear' penalises the intercept and fits "
                             "one-vs-rest, which no convention here does; refit with another solver. "
                             f"Supported: {_SKLEARN_SUPPORTED}")
        if n_classes > 2 and getattr(estimator, "multi_class", "multinomial") == "ovr":
            raise ValueError("from_sklearn: multi_class='ovr' fits one binary model per class; refit with "
                             f"the multinomial loss. Supported: {_SKLEARN_SUPPORTED}")
        C = float(estimator.C)
        l2 = 0.0 if penalty in (None, "none") or not np.isfinite(C) else 1.0 / C
        if n_classes > 2:
            glm = GLM("multinomial", l2=l2, penalty="fixed", fit_intercept=fit_intercept)
            theta0 = _multinomial_theta(coef, intercept, fit_intercept)
            est_tol = float(getattr(estimator, "tol", 1e-4) or 1e-4)
            return _refine(glm, X, y, sample_weight, theta0, max(10 * est_tol, 1e-5),
                           f"from_sklearn({name})", tol, classes=estimator.classes_,
                           converged=_sklearn_converged(estimator))
        glm = GLM("logistic", l2=l2, penalty="fixed", fit_intercept=fit_intercept)
    elif name == "LinearRegression":
        glm = GLM("squared", l2=0.0, penalty="fixed", fit_intercept=fit_intercept)
    elif name == "Ridge":
        alpha = np.asarray(estimator.alpha, dtype=np.float64)
        if alpha.size != 1 or coef.shape[0] != 1:
            raise ValueError(f"from_sklearn: Ridge with several targets or alphas is not supported. "
                             f"Supported: {_SKLEARN_SUPPORTED}")
        glm = GLM("squared", l2=float(alpha), penalty="fixed", fit_intercept=fit_intercept)
    elif name == "PoissonRegressor":
        glm = GLM("poisson", l2=float(estimator.alpha), penalty="per_sample", fit_intercept=fit_intercept)
    else:
        raise ValueError(f"from_sklearn: {name} is not supported; supported: {_SKLEARN_SUPPORTED}")
    theta0 = np.concatenate([coef[0], intercept[:1]]) if fit_intercept else coef[0].copy()
    est_tol = float(getattr(estimator, "tol", 1e-4) or 1e-4)
    return _refine(glm, X, y, sample_weight, theta0, max(10 * est_tol, 1e-5), f"from_sklearn({name})", tol,
                   converged=_sklearn_converged(estimator))


def _penalty_of(results, alpha, mname):
    """``(l2, penalty)`` of statsmodels results; penalised fits are refused unless mappable."""
    kind = type(getattr(results, "_results", results)).__name__
    if kind.startswith("L1"):
        raise ValueError(f"from_statsmodels: L1-penalised results ({kind}, from fit_regularized) are not "
                         "supported: IF, RIF and NS need a smooth objective; refit without the L1 penalty")
    if kind.startswith("Regularized"):
        if alpha is None:
            raise ValueError("from_statsmodels: results of fit_regularized do not record their penalty; for a "
                             "ridge fit (L1_wt=0) pass its alpha: from_statsmodels(results, alpha=...)")
        if mname == "GLM" and type(results.model.family).__name__ == "Gaussian":
            raise ValueError("from_statsmodels: a Gaussian GLM's fit_regularized profiles out the scale, so its "
                             "objective is not a penalised squared loss; use OLS(...).fit_regularized or lo.GLM")
        if not (np.ndim(alpha) == 0 and np.isfinite(alpha) and alpha >= 0):
            raise ValueError("from_statsmodels: alpha must be one finite number >= 0 (the same penalty on "
                             "every coefficient)")
        # statsmodels minimises -loglike/n + (alpha/2)|params|^2 (L1_wt=0): the mean-loss
        # ("per_sample") convention with every coefficient, the constant column too, penalised
        return float(alpha), "per_sample"
    if alpha is not None:
        raise ValueError(f"from_statsmodels: alpha= is for results of fit_regularized; {mname} results are "
                         "unpenalised")
    return 0.0, "fixed"


def from_statsmodels(results, tol: float = 1e-9, alpha=None) -> Attribution:
    """Attribution for fitted statsmodels ``GLM``, ``Logit`` or ``OLS`` results (unpenalised).

    Ridge results of ``fit_regularized(alpha=a, L1_wt=0)`` need ``alpha=a`` (statsmodels does
    not keep it); they map to ``GLM(l2=a, penalty="per_sample")`` with every coefficient
    penalised, statsmodels' objective ``-loglike/n + (a/2)|params|^2``, and the refined
    coefficients must match the results' (1e-3 relative: a wrong alpha is refused; statsmodels
    solves to about 1e-5 by default). L1-penalised results are refused.

    The design is the model's ``exog`` as it is (an intercept is a constant column there, so
    ``fit_intercept=False`` here); ``GLM`` ``freq_weights`` become sample weights and
    ``offset`` plus ``log(exposure)`` the GLM offset. The model's ``exog_names`` become
    ``feature_names_in_`` (so ``Coefficient("x1")`` and ``Coefficient("Intercept")`` work) and
    its row labels (a formula's DataFrame index) the row ids.
    """
    model = getattr(results, "model", None)
    if model is None or not hasattr(results, "params"):
        raise ValueError(f"from_statsmodels: expected fitted results (with .model and .params); "
                         f"supported: {_SM_SUPPORTED}")
    mname = type(model).__name__
    X, y = np.asarray(model.exog, dtype=np.float64), np.asarray(model.endog, dtype=np.float64)
    weights = offset = None
    if mname == "GLM":
        fam, link = type(model.family).__name__, type(model.family.link).__name__
        family = {("Binomial", "Logit"): "logistic", ("Gaussian", "Identity"): "squared",
                  ("Poisson", "Log"): "poisson"}.get((fam, link))
        if family is None:
            raise ValueError(f"from_statsmodels: GLM family {fam} with link {link} is not supported; "
                             f"supported: {_SM_SUPPORTED}")
        off = np.zeros(y.shape[0])
        if getattr(model, "offset", None) is not None:
            off = off + np.asarray(model.offset, dtype=np.float64)
        if getattr(model, "exposure", None) is not None:   # statsmodels keeps log(exposure)
            off = off + np.asarray(model.exposure, dtype=np.float64)
        offset = off if np.any(off != 0) else None
        var_w = np.asarray(getattr(model, "var_weights", 1.0))
        if np.any(var_w != 1.0):
            raise ValueError(f"from_statsmodels: var_weights are not supported; supported: {_SM_SUPPORTED}")
        fw = np.asarray(getattr(model, "freq_weights", 1.0), dtype=np.float64)
        weights = None if np.all(fw == 1.0) else np.broadcast_to(fw, y.shape).copy()
        if family == "logistic" and y.ndim > 1:
            raise ValueError("from_statsmodels: binomial counts (two-column endog) are not supported; "
                             "give 0/1 outcomes")
    elif mname == "Logit":
        family = "logistic"
    elif mname == "OLS":
        family = "squared"
    else:
        raise ValueError(f"from_statsmodels: {mname} is not supported; supported: {_SM_SUPPORTED}")
    if family == "logistic" and not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("from_statsmodels: logistic outcomes must be 0/1")
    l2, penalty = _penalty_of(results, alpha, mname)
    glm = GLM(family, l2=l2, penalty=penalty, fit_intercept=False)
    if family == "logistic":
        y = np.where(y == 1.0, 1, 0)
    names = getattr(model, "exog_names", None)
    if names is not None and len(names) == X.shape[1]:
        # a formula model (smf.ols, smf.logit, ...) keeps its column names and row labels, so
        # Coefficient("x1") and removal sets by row id work on it
        import pandas as pd
        rows = getattr(getattr(model, "data", None), "row_labels", None)
        index = pd.RangeIndex(X.shape[0]) if rows is None or len(rows) != X.shape[0] else rows
        X = pd.DataFrame(X, columns=[str(c) for c in names], index=index)
    return _refine(glm, X, y, weights, np.asarray(results.params, dtype=np.float64), 1e-5,
                   f"from_statsmodels({mname})", tol, offset, exact=1e-3 if l2 > 0 else None,
                   converged=_statsmodels_converged(results))


_PF_SUPPORTED = "feols (with fixed effects, or instrumental variables without them), fepois, feglm(family='logit')"
_LM_SUPPORTED = "IV2SLS, PanelOLS (entity and / or time effects)"


def _same_params(model, names, values, who, rtol=1e-5):
    """Refuse a refit whose coefficients differ from the library's (by name)."""
    ours = model.params_
    for name, value in zip(names, values):
        name = str(name)
        if name not in ours.index:
            raise ValueError(f"{who}: coefficient {name!r} has no counterpart here (ours: {list(ours.index)[:8]})")
        scale = max(abs(float(value)), float(np.max(np.abs(np.asarray(values, dtype=float)))) * 1e-3, 1e-12)
        if abs(float(ours[name]) - float(value)) > rtol * scale:
            raise ValueError(f"{who}: the refit's coefficient {name!r} is {float(ours[name]):.10g}, the library's "
                             f"{float(value):.10g}; the model was not reproduced")


def _set_se(model, kind, cluster=None, cluster_name=None, note=None):
    """The SE the library reported, as the default of :func:`leaveout.audit` and
    :func:`leaveout.summarize` (``se_kind_``, ``cluster_``), and a note where conventions differ."""
    model.se_kind_ = kind
    model.cluster_ = None if cluster is None else np.asarray(cluster)
    model.cluster_name_ = cluster_name
    model.se_note_ = note
    if note:
        warnings.warn(note, UserWarning, stacklevel=3)


def _se_gap(model, se, cluster, reported) -> float:
    """Largest relative difference between our SEs and a library's, by coefficient name."""
    from .audit.se import se_calculator
    calc = se_calculator(Attribution(model), se, cluster)
    names = list(model.params_.index)
    return max(abs(calc.se(np.eye(len(names))[names.index(str(k))]) / float(v) - 1) for k, v in reported.items())


def from_pyfixest(fit, tol: float = 1e-10) -> Attribution:
    """Attribution for a pyfixest fit (``feols``, ``fepois``, ``feglm(family="logit")``).

    The formula, data, weights and SE type are read from the fit and the model is refitted here
    (absorbed fixed effects: :class:`~leaveout.FixedEffectsGLM`; instruments:
    :class:`~leaveout.IV2SLS`); its coefficients must equal pyfixest's (1e-5 relative, the
    tolerance pyfixest demeans to). The SE becomes the default of :func:`leaveout.audit` and
    :func:`leaveout.summarize`: ``"iid"`` the classical SE, ``"hetero"`` / ``"HC1"`` HC1 and
    ``"CRV1"`` with one cluster variable HC1 clustered by it (pyfixest's small-sample factors
    throughout). pyfixest is not imported here; the fit's formula and data are.
    """
    method = getattr(fit, "_method", None)
    fml, data = getattr(fit, "_fml", None), getattr(fit, "_data", None)
    if method is None or fml is None or data is None or not hasattr(fit, "coef"):
        raise ValueError(f"from_pyfixest: expected a pyfixest fit; supported: {_PF_SUPPORTED}")
    family = {"feols": "squared", "fepois": "poisson", "feglm-logit": "logistic"}.get(method)
    if family is None:
        raise ValueError(f"from_pyfixest: {method} is not supported; supported: {_PF_SUPPORTED}")
    weights = getattr(fit, "_weights_name", None) if getattr(fit, "_has_weights", False) else None
    kind = {"aweights": "analytic", "fweights": "frequency"}.get(getattr(fit, "_weights_type", "aweights"), "analytic")
    who = f"from_pyfixest({method})"
    extra = {"tol": tol} if getattr(fit, "_has_fixef", False) else {}
    model = GLM.from_formula(fml, data, family=family, l2=0, sample_weight=weights, missing="drop",
                             weight_kind=kind, **extra)
    coef = fit.coef()
    _same_params(model, list(coef.index), list(coef.to_numpy()), who)
    detail = str(getattr(fit, "_vcov_type_detail", "iid"))
    clusters = list(getattr(fit, "_clustervar", None) or [])
    note = None
    if detail == "iid":
        se = "nonrobust"
        if family != "squared":
            note = (f"{who}: pyfixest's iid SE of a {family} model carries (n - 1)/(n - k); leaveout's classical "
                    "SE (statsmodels') does not")
    elif detail in ("hetero", "HC1"):
        se = "HC1"
    elif detail == "CRV1" and len(clusters) == 1:
        se = "HC1"
    else:
        se = "nonrobust"
        note = (f"{who}: pyfixest's vcov {detail!r} has no twin here; audits default to the classical SE "
                "(give se= and cluster= to choose)")
    cluster = None
    if detail == "CRV1" and len(clusters) == 1:
        cluster = data.loc[model.row_ids_, clusters[0]].to_numpy()
    _set_se(model, se, cluster, clusters[0] if cluster is not None else None, note)
    return Attribution(model)


def from_linearmodels(results, cluster=None) -> Attribution:
    """Attribution for a linearmodels ``IV2SLS`` or ``PanelOLS`` result.

    IV2SLS becomes :class:`~leaveout.IV2SLS` (its exogenous constant the intercept); PanelOLS
    with entity and / or time effects a :class:`~leaveout.FixedEffectsGLM` whose factors are
    the index levels (``"entity"``, ``"time"``). Coefficients must equal linearmodels'. The SE
    type becomes the default of :func:`leaveout.audit`: unadjusted the classical SE, robust HC1
    (HC0 for an IV fitted with ``debiased=False``), clustered HC1 (HC0 likewise) with the
    cluster labels of the IV fit, or ``cluster=`` (PanelOLS keeps none). A one-line warning
    says where linearmodels' small-sample convention differs from the one used here.
    """
    model = getattr(results, "model", None)
    name = type(model).__name__
    who = f"from_linearmodels({name})"
    if name == "IV2SLS":
        from .glm.iv import IV2SLS
        y = model.dependent.pandas
        exog, endog, instr = model.exog.pandas, model.endog.pandas, model.instruments.pandas
        const = [c for c in exog.columns if np.all(exog[c].to_numpy() == 1.0)]
        w = np.asarray(model.weights.ndarray, dtype=np.float64).ravel()
        m = IV2SLS(fit_intercept=bool(const))
        keep = [c for c in exog.columns if c not in const]
        m.fit(exog[keep].to_numpy(), endog.to_numpy(), instr.to_numpy(), y.to_numpy().ravel(),
              None if np.all(w == 1) else w,
              names={"exog": [str(c) for c in keep], "endog": [str(c) for c in endog.columns],
                     "instruments": [str(c) for c in instr.columns]})
        m.row_ids_ = np.asarray(y.index)
        params = results.params.rename({c: "Intercept" for c in const})
        _same_params(m, list(params.index), list(params.to_numpy()), who, rtol=1e-8)
        cov = str(results.cov_type).lower()
        debiased = bool(results.cov_config.get("debiased", False))
        note = None
        if cov in ("unadjusted", "homoskedastic"):
            se = "nonrobust"
            if not debiased:
                note = f"{who}: linearmodels' unadjusted SE (debiased=False) divides by n; leaveout's by n - p"
        elif cov in ("robust", "heteroskedastic", "clustered"):
            se = "HC1" if debiased else "HC0"
            if cov == "clustered":
                cluster = results.cov_config.get("clusters") if cluster is None else cluster
                if debiased is False:
                    note = (f"{who}: linearmodels' clustered SE (debiased=False) has a G/(G-1) factor; leaveout's "
                            "cluster HC0 has none")
        else:
            se, note = "nonrobust", f"{who}: cov_type {cov!r} has no twin here; audits default to the classical SE"
        _set_se(m, se, None if cluster is None else np.asarray(cluster).ravel(), "cluster" if cluster is not None else None,
                note)
        return Attribution(m)
    if name == "PanelOLS":
        from .glm.absorb import FixedEffectsGLM
        if getattr(model, "other_effects", False):
            raise ValueError(f"{who}: other_effects are not supported; entity and time effects are")
        y = model.dependent.dataframe
        X = model.exog.dataframe
        index = y.index
        factors = {}
        if model.entity_effects:
            factors["entity"] = np.asarray(index.get_level_values(0))
        if model.time_effects:
            factors["time"] = np.asarray(index.get_level_values(1))
        w = np.asarray(model.weights.values2d, dtype=np.float64).ravel()
        if not factors:
            raise ValueError(f"{who}: a PanelOLS without entity or time effects is a plain OLS; use "
                             "from_statsmodels or GLM.from_formula")
        const = [c for c in X.columns if np.all(X[c].to_numpy() == 1.0)]
        keep = [c for c in X.columns if c not in const]
        m = FixedEffectsGLM("squared").fit(X[keep].to_numpy(), y.to_numpy().ravel(), factors,
                                           None if np.all(w == 1) else w, names=[str(c) for c in keep])
        m.row_ids_ = np.asarray(index)
        params = results.params.drop(index=const)
        _same_params(m, list(params.index), list(params.to_numpy()), who)
        cov = str(getattr(results, "_cov_type", "unadjusted")).lower()
        note = None
        if cov == "unadjusted":
            se = "nonrobust"
        elif cov == "robust":
            se = "HC1"
        elif cov == "clustered":
            se = "HC1"
            if cluster is None:
                note = (f"{who}: linearmodels keeps no cluster labels; pass cluster= (e.g. the entity level) for the "
                        "clustered SE; audits default to HC1 without clusters")
            else:
                gap = _se_gap(m, se, cluster, results.std_errors.drop(index=const))
                note = (f"{who}: linearmodels' clustered SE has its own small-sample factor; leaveout's is pyfixest's "
                        f"CRV1 (effects nested in the clusters not counted): the SEs differ by {gap:.2%} here")
        else:
            se, note = "nonrobust", f"{who}: cov_type {cov!r} has no twin here; audits default to the classical SE"
        _set_se(m, se, cluster, "cluster" if cluster is not None else None, note)
        return Attribution(m)
    raise ValueError(f"from_linearmodels: expected an IV2SLS or PanelOLS result; supported: {_LM_SUPPORTED}")
