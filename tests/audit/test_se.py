"""Standard errors against statsmodels' cov_type results, and their derivatives in the row
weights against finite differences of refits."""

import warnings

import numpy as np
import pytest

import leaveout as lo
from leaveout.audit.se import SECalculator

sm = pytest.importorskip("statsmodels.api")


def _problem(family, n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    if family == "squared":
        y = X @ [2.0, -1.0] + 1 + rng.normal(size=n)
    elif family == "logistic":
        y = (rng.random(n) < 1 / (1 + np.exp(-X @ [1.0, -1.0]))).astype(float)
    else:
        y = rng.poisson(np.exp(0.3 * X[:, 0] + 0.2)).astype(float)
    groups = rng.integers(0, 12, n)
    return X, y, groups


SM_FAMILY = {"logistic": "Binomial", "poisson": "Poisson"}


def _statsmodels(family, X, y, cov_type, kw):
    Xc = sm.add_constant(X, prepend=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "squared":
            return sm.OLS(y, Xc).fit(cov_type=cov_type, cov_kwds=kw or None)
        fam = getattr(sm.families, SM_FAMILY[family])()
        return sm.GLM(y, Xc, family=fam).fit(cov_type=cov_type, cov_kwds=kw or None, tol=1e-14)


@pytest.mark.parametrize("family", ["squared", "logistic", "poisson"])
@pytest.mark.parametrize("kind,cov_type,use_groups,correction", [
    ("nonrobust", "nonrobust", False, None), ("HC0", "HC0", False, None), ("HC1", "HC1", False, None),
    ("HC1", "cluster", True, True), ("HC0", "cluster", True, False)])
def test_standard_errors_equal_statsmodels(family, kind, cov_type, use_groups, correction):
    X, y, groups = _problem(family)
    att = lo.Attribution(lo.GLM(family=family, l2=0.0).fit(X, y))
    kw = {"groups": groups, "use_correction": correction} if use_groups else {}
    ref = _statsmodels(family, X, y, "HC0" if (kind == "HC1" and family != "squared" and not use_groups) else cov_type, kw)
    bse = np.asarray(ref.bse)
    if kind == "HC1" and family != "squared" and not use_groups:
        # statsmodels' GLM applies no small-sample factor for HC1; here HC1 = n/(n-p) HC0 always
        n, p = X.shape[0], 3
        bse = bse * np.sqrt(n / (n - p))
    calc = SECalculator(att, kind, groups if use_groups else None)
    ours = np.array([calc.se(e) for e in np.eye(3)])
    np.testing.assert_allclose(ours, bse, rtol=1e-8)


@pytest.mark.parametrize("family", ["squared", "logistic", "poisson"])
@pytest.mark.parametrize("kind,use_groups", [("nonrobust", False), ("HC0", False), ("HC1", False), ("HC1", True)])
def test_se_derivative_matches_finite_differences(family, kind, use_groups):
    X, y, groups = _problem(family, n=60, seed=3)
    g = groups if use_groups else None
    phi = np.array([1.0, 0.0, 0.0])
    calc = SECalculator(lo.Attribution(lo.GLM(family=family, l2=0.0).fit(X, y)), kind, g)
    grad = calc.gradient(phi)

    def se_at(w):
        m = lo.GLM(family=family, l2=0.0, tol=1e-12).fit(X, y, sample_weight=w)
        return SECalculator(lo.Attribution(m), kind, g).se(phi)

    eps = 1e-6
    for i in (0, 7, 33):
        w = np.ones(X.shape[0])
        w[i] += eps
        up = se_at(w)
        w[i] -= 2 * eps
        fd = (up - se_at(w)) / (2 * eps)
        assert grad[i] == pytest.approx(fd, rel=1e-4, abs=1e-9)


def test_bad_standard_error_requests():
    X, y, groups = _problem("squared")
    att = lo.Attribution(lo.GLM(family="squared", l2=0.0).fit(X, y))
    with pytest.raises(ValueError, match="se='HC3' is not supported"):
        SECalculator(att, "HC3")
    with pytest.raises(ValueError, match="needs se='HC0' or 'HC1'"):
        SECalculator(att, "nonrobust", groups)
    with pytest.raises(ValueError, match="at least 2 groups"):
        SECalculator(att, "HC0", np.zeros(X.shape[0]))
    per = lo.Attribution(lo.GLM(family="squared", l2=1.0, penalty="per_sample").fit(X, y))
    with pytest.raises(ValueError, match="penalty='fixed'"):
        SECalculator(per, "HC0")
