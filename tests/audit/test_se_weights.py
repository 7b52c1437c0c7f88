"""Weighted standard errors under both meanings of a weight, against statsmodels and against
the unweighted SEs of replicated rows, and their derivatives in the weights against finite
differences of weighted refits."""

import warnings

import numpy as np
import pytest

import leaveout as lo
from leaveout.audit.se import SECalculator

sm = pytest.importorskip("statsmodels.api")

SM_FAMILY = {"squared": "Gaussian", "logistic": "Binomial", "poisson": "Poisson"}


def _problem(family, n=90, seed=1, integer=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    if family == "squared":
        y = X @ [2.0, -1.0] + 1 + rng.normal(size=n) * (1 + np.abs(X[:, 0]))
    elif family == "logistic":
        y = (rng.random(n) < 1 / (1 + np.exp(-X @ [1.0, -1.0]))).astype(float)
    else:
        y = rng.poisson(np.exp(0.3 * X[:, 0] + 0.2)).astype(float)
    w = rng.integers(1, 4, n).astype(float) if integer else rng.uniform(0.3, 3.0, n)
    return X, y, w, rng.integers(0, 9, n)


def _sm_fit(family, X, y, cov_type, groups=None, correction=True, **weights):
    Xc = sm.add_constant(X, prepend=False)
    kw = {"groups": groups, "use_correction": correction} if groups is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fam = getattr(sm.families, SM_FAMILY[family])()
        return sm.GLM(y, Xc, family=fam, **weights).fit(cov_type=cov_type, cov_kwds=kw, tol=1e-14)


def _ours(family, X, y, w, kind, groups, weights):
    m = lo.GLM(family=family, l2=0.0, tol=1e-12, weight_kind=weights).fit(X, y, sample_weight=w)
    calc = SECalculator(lo.Attribution(m), kind, groups)
    return np.array([calc.se(e) for e in np.eye(3)])


@pytest.mark.parametrize("family", ["squared", "logistic", "poisson"])
@pytest.mark.parametrize("kind,clustered,correction", [
    ("nonrobust", False, None), ("HC0", False, None), ("HC1", False, None),
    ("HC0", True, False), ("HC1", True, True)])
def test_analytic_weights_equal_statsmodels_var_weights(family, kind, clustered, correction):
    X, y, w, groups = _problem(family)
    g = groups if clustered else None
    ours = _ours(family, X, y, w, kind, g, "analytic")
    cov_type = "cluster" if clustered else ("HC0" if kind == "HC1" else kind)
    ref = np.asarray(_sm_fit(family, X, y, cov_type, g, correction, var_weights=w).bse)
    if kind == "HC1" and not clustered:          # statsmodels' GLM has no HC1 factor: n / (n - p) here
        ref = ref * np.sqrt(len(y) / (len(y) - 3))
    np.testing.assert_allclose(ours, ref, rtol=1e-8)
    if family == "squared" and not clustered:    # and WLS, whose HC1 has the factor
        Xc = sm.add_constant(X, prepend=False)
        np.testing.assert_allclose(ours, sm.WLS(y, Xc, weights=w).fit(cov_type=kind).bse, rtol=1e-8)


@pytest.mark.parametrize("family", ["squared", "logistic", "poisson"])
@pytest.mark.parametrize("kind,clustered", [("nonrobust", False), ("HC0", False), ("HC0", True)])
def test_frequency_weights_equal_statsmodels_freq_weights(family, kind, clustered):
    X, y, w, groups = _problem(family, seed=2)
    g = groups if clustered else None
    ours = _ours(family, X, y, w, kind, g, "frequency")
    ref = _sm_fit(family, X, y, "cluster" if clustered else kind, g, False, freq_weights=w)
    np.testing.assert_allclose(ours, ref.bse, rtol=1e-8)


@pytest.mark.parametrize("family", ["squared", "logistic", "poisson"])
@pytest.mark.parametrize("kind,clustered", [("nonrobust", False), ("HC0", False), ("HC1", False),
                                            ("HC0", True), ("HC1", True)])
def test_frequency_weights_equal_replicated_rows(family, kind, clustered):
    """Integer frequency weights: every SE is the unweighted one of the rows repeated s_i times
    (statsmodels on the replicated data; its GLM HC1 has no factor, so the squared family is
    checked against OLS and the others by the factor N / (N - p))."""
    X, y, w, groups = _problem(family, n=60, seed=3, integer=True)
    g = groups if clustered else None
    ours = _ours(family, X, y, w, kind, g, "frequency")
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    Xr, yr, gr = X[rep], y[rep], groups[rep]
    N, p = len(rep), 3
    Xc = sm.add_constant(Xr, prepend=False)
    kw = {"groups": gr, "use_correction": kind == "HC1"} if clustered else None
    cov_type = "cluster" if clustered else kind
    if family == "squared":
        ref = sm.OLS(yr, Xc).fit(cov_type=cov_type, cov_kwds=kw).bse
    else:
        ref = np.asarray(_sm_fit(family, Xr, yr, "HC0" if cov_type == "HC1" else cov_type, gr if clustered else None,
                                 kind == "HC1").bse)
        if kind == "HC1" and not clustered:
            ref = ref * np.sqrt(N / (N - p))
    np.testing.assert_allclose(ours, ref, rtol=1e-8)


@pytest.mark.parametrize("weights", ["analytic", "frequency"])
@pytest.mark.parametrize("family,kind,clustered", [
    ("squared", "nonrobust", False), ("squared", "HC0", False), ("logistic", "HC1", False),
    ("poisson", "HC0", True), ("logistic", "nonrobust", False), ("squared", "HC1", True)])
def test_se_derivative_in_weights_matches_finite_differences(weights, family, kind, clustered):
    """d se / d w_i, where w_i multiplies the weight s_i of row i, at non-unit weights."""
    X, y, s, groups = _problem(family, n=50, seed=4)
    g = groups if clustered else None
    phi = np.array([1.0, 0.0, 0.0])

    def calc(mult):
        m = lo.GLM(family=family, l2=0.0, tol=1e-13, weight_kind=weights).fit(X, y, sample_weight=s * mult)
        return SECalculator(lo.Attribution(m), kind, g)

    grad = calc(np.ones(len(y))).gradient(phi)
    eps = 1e-6
    for i in (0, 11, 37):
        up, down = np.ones(len(y)), np.ones(len(y))
        up[i] += eps
        down[i] -= eps
        if weights == "frequency":           # n = sum s is held fixed in the derivative
            fd = _fd_fixed_n(calc, up, down, phi, float(s.sum()))
        else:
            fd = (calc(up).se(phi) - calc(down).se(phi)) / (2 * eps)
        assert grad[i] == pytest.approx(fd, rel=1e-4, abs=1e-9)


def _fd_fixed_n(calc, up, down, phi, n):
    hi, lo_ = calc(up), calc(down)
    hi.n = lo_.n = n
    return (hi.se(phi) - lo_.se(phi)) / (2e-6)


def test_meanings_agree_at_unit_weights_and_differ_otherwise():
    X, y, w, _ = _problem("squared")
    one = np.ones(len(y))
    for kind in ("nonrobust", "HC0", "HC1"):
        a, f = (_ours("squared", X, y, one, kind, None, m) for m in ("analytic", "frequency"))
        np.testing.assert_allclose(a, f, rtol=1e-12)
        a, f = (_ours("squared", X, y, w, kind, None, m) for m in ("analytic", "frequency"))
        assert np.all(np.abs(a / f - 1) > 1e-3)


def test_bad_weight_meaning():
    X, y, _, _ = _problem("squared")
    with pytest.raises(ValueError, match="weight_kind='fweight' is not a meaning"):
        lo.GLM(family="squared", weight_kind="fweight").fit(X, y)
    att = lo.Attribution(lo.GLM(family="squared", l2=0.0).fit(X, y))
    with pytest.raises(ValueError, match="weight_kind='x'"):
        SECalculator(att, "HC0", weights="x")


@pytest.mark.parametrize("se", ["HC0", "HC1"])
def test_weighted_audit_verdict_is_statsmodels_on_the_refit(se):
    """The new user's case: ccard with analytic weights; the audit's SEs at the fit and on its
    refit are statsmodels WLS's, so its verdict is the one statsmodels gives on the kept rows."""
    smf = pytest.importorskip("statsmodels.formula.api")
    from scipy import stats
    df = sm.datasets.ccard.load_pandas().data
    df["w"] = np.random.default_rng(0).uniform(0.3, 3.0, len(df))
    f = "AVGEXP ~ AGE + INCOME + INCOMESQ + OWNRENT"
    m = lo.GLM.from_formula(f, df, family="squared", l2=0, sample_weight="w")
    res = lo.audit(m, lo.metrics.Coefficient("OWNRENT"), target="significance", se=se)
    full = smf.wls(f, df, weights=df.w).fit(cov_type=se)
    assert res.original["se"] == pytest.approx(full.bse["OWNRENT"], rel=1e-8)
    assert res.reached
    kept = df.drop(df.index[res.positions])
    refit = smf.wls(f, kept, weights=kept.w).fit(cov_type=se)
    assert res.refit["se"] == pytest.approx(refit.bse["OWNRENT"], rel=1e-7)
    z = stats.norm.ppf(0.975)
    assert (abs(full.tvalues["OWNRENT"]) > z) != (abs(refit.tvalues["OWNRENT"]) > z)
