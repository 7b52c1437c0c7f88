"""Squared (ridge) and Poisson families: the same estimators, checked against brute force."""

import numpy as np
import pytest
import scipy.sparse as sp

import leaveout as lo
from leaveout.losses import PoissonLoss, SquaredLoss
from leaveout.metrics import TestLoss, TestPrediction
from reference import design, pieces, tight_fit


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300)


def make(family, n=60, d=5, seed=0, sparse=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if sparse:
        X = X * (rng.random((n, d)) < 0.6)
    beta = rng.normal(size=d) / np.sqrt(d)
    z = X @ beta + 0.2
    y = z + rng.normal(size=n) if family == "squared" else rng.poisson(np.exp(z)).astype(float)
    return (sp.csr_matrix(X) if sparse else X), y


@pytest.mark.parametrize("loss", [SquaredLoss, PoissonLoss])
def test_loss_derivatives_match_finite_differences(loss):
    z = np.linspace(-3, 3, 13)
    y = np.full_like(z, 1.7)
    eps = 1e-6
    np.testing.assert_allclose(loss.derivative(y, z), (loss.value(y, z + eps) - loss.value(y, z - eps)) / (2 * eps), atol=1e-7)
    np.testing.assert_allclose(loss.curvature(y, z), (loss.derivative(y, z + eps) - loss.derivative(y, z - eps)) / (2 * eps), atol=1e-7)
    np.testing.assert_allclose(loss.mean_derivative(z), (loss.mean(z + eps) - loss.mean(z - eps)) / (2 * eps), atol=1e-7)


CASES = [(f, pen, icpt, sparse) for f in ("squared", "poisson") for pen in ("fixed", "per_sample")
         for icpt in (True, False) for sparse in (False, True)]


@pytest.mark.parametrize("family,penalty,icpt,sparse", CASES)
def test_fit_and_estimators_match_brute_force(family, penalty, icpt, sparse):
    X, y = make(family, sparse=sparse, seed=1)
    s = np.random.default_rng(2).uniform(0.5, 2.0, y.size).round(1)
    l2 = 0.5 if penalty == "fixed" else 0.02
    m = lo.GLM(family=family, l2=l2, penalty=penalty, fit_intercept=icpt, tol=1e-12).fit(X, y, sample_weight=s)
    assert m.converged_ and not hasattr(m, "classes_")
    A = design(X, icpt)
    np.testing.assert_allclose(m.theta_, tight_fit(A, y, s, l2, penalty, icpt, family), rtol=1e-8, atol=1e-10)
    g, Hs, H, w = pieces(A, y, s, m.theta_, l2, penalty, icpt, family)
    att = lo.Attribution(m)
    IF = np.linalg.solve(H, g.T).T
    RIF = np.array([np.linalg.solve(H - Hs[i], g[i]) for i in range(y.size)])
    assert rel_err(att.influence(), IF) < 1e-9
    assert rel_err(att.rescaled_influence(), RIF) < 1e-9
    T = np.array([3, 8, 9, 30])
    assert rel_err(att.delta(T, "ns"), np.linalg.solve(H - Hs[T].sum(0), g[T].sum(0))) < 1e-9
    keep = np.setdiff1d(np.arange(y.size), T)
    ref = tight_fit(A[keep], y[keep], s[keep], l2, penalty, icpt, family)
    refit = att.retrain(T)
    assert refit.converged_
    np.testing.assert_allclose(refit.theta_, ref, rtol=1e-8, atol=1e-10)
    Xt, yt = make(family, n=10, seed=5)
    for metric in (TestLoss(Xt, yt), TestPrediction(Xt)):
        phi = metric.gradient(m, m.theta_)
        assert rel_err(att.scores(metric, "rif"), RIF @ phi) < 1e-9


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_squared_loss_newton_step_is_the_exact_retrain(penalty):
    X, y = make("squared", n=80, d=6, seed=3)
    m = lo.GLM(family="squared", l2=0.3 if penalty == "fixed" else 0.01, penalty=penalty, tol=1e-13).fit(X, y)
    att = lo.Attribution(m)
    for T in ([4], [1, 7, 20, 33, 51]):
        assert rel_err(att.delta(T, "ns"), att.delta(T, "retrain")) < 1e-9


def test_squared_loss_rif_is_the_press_leave_one_out():
    # ridge leave-one-out in closed form (PRESS): theta_{-i} = theta + (X^T X + lam P)^-1 x_i r_i / (1 - h_i)
    X, y = make("squared", n=50, d=4, seed=4)
    lam = 0.7
    m = lo.GLM(family="squared", l2=lam, tol=1e-13).fit(X, y)
    A = np.hstack([X, np.ones((50, 1))])
    P = np.diag([1.0] * 4 + [0.0])
    loo = np.array([np.linalg.solve(np.delete(A, i, 0).T @ np.delete(A, i, 0) + lam * P,
                                    np.delete(A, i, 0).T @ np.delete(y, i)) for i in range(50)])
    assert rel_err(lo.Attribution(m).rescaled_influence(), loo - m.theta_) < 1e-9
    # and the fit itself is the closed-form ridge solution
    np.testing.assert_allclose(m.theta_, np.linalg.solve(A.T @ A + lam * P, A.T @ y), rtol=1e-10)


def test_regression_predictions_and_sparse_equals_dense():
    X, y = make("poisson", n=70, d=5, seed=6, sparse=True)
    a = lo.GLM(family="poisson", l2=0.1).fit(X, y)
    b = lo.GLM(family="poisson", l2=0.1).fit(X.toarray(), y)
    np.testing.assert_allclose(a.theta_, b.theta_, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(a.predict(X), np.exp(X.toarray() @ a.coef_ + a.intercept_), rtol=1e-12)
    with pytest.raises(ValueError, match="predict_proba is for the logistic and multinomial"):
        a.predict_proba(X)


def test_bad_targets_for_a_family():
    X, y = make("poisson", seed=7)
    with pytest.raises(ValueError, match="negative values; the Poisson family"):
        lo.GLM(family="poisson").fit(X, y - 5)
    with pytest.raises(ValueError, match="must be numeric for this family"):
        lo.GLM(family="squared").fit(X, np.where(y > 1, "a", "b"))
    with pytest.raises(ValueError, match="family='gamma'"):
        lo.GLM(family="gamma").fit(X, y)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_poisson_offset_is_exact_against_brute_force(penalty):
    X, _ = make("poisson", n=70, d=4, seed=11)
    rng = np.random.default_rng(12)
    off = np.log(rng.uniform(0.5, 3.0, 70))                     # log exposure
    y = rng.poisson(np.exp(X @ np.array([0.3, -0.2, 0.1, 0.2]) + off)).astype(float)
    l2 = 0.3 if penalty == "fixed" else 0.01
    m = lo.GLM("poisson", l2=l2, penalty=penalty, tol=1e-12).fit(X, y, offset=off)
    A = design(X, True)
    # an independent solve of the objective with the offset written out
    import scipy.optimize as opt
    P = np.diag([1.0] * 4 + [0.0])
    lam = l2 * (70 if penalty == "per_sample" else 1)
    f = lambda t: np.sum(np.exp(A @ t + off) - y * (A @ t + off)) + 0.5 * lam * t @ P @ t  # noqa: E731
    g = lambda t: A.T @ (np.exp(A @ t + off) - y) + lam * P @ t                           # noqa: E731
    h = lambda t: A.T @ (np.exp(A @ t + off)[:, None] * A) + lam * P                       # noqa: E731
    ref = opt.minimize(f, np.zeros(5), jac=g, hess=h, method="trust-exact", options={"gtol": 1e-12}).x
    np.testing.assert_allclose(m.theta_, ref, rtol=1e-8, atol=1e-10)
    # brute-force RIF and NS with the offset in the linear predictor
    mu = np.exp(A @ m.theta_ + off)
    c = lam / 70 if penalty == "per_sample" else 0.0
    b = (l2 * P @ m.theta_) if penalty == "per_sample" else np.zeros(5)
    G = (mu - y)[:, None] * A + b
    Hs = np.array([mu[i] * np.outer(A[i], A[i]) + c * P for i in range(70)])
    H = Hs.sum(0) + (lam * P if penalty == "fixed" else 0)
    att = lo.Attribution(m)
    RIF = np.array([np.linalg.solve(H - Hs[i], G[i]) for i in range(70)])
    assert rel_err(att.rescaled_influence(), RIF) < 1e-9
    T = np.array([2, 5, 40])
    assert rel_err(att.delta(T, "ns"), np.linalg.solve(H - Hs[T].sum(0), G[T].sum(0))) < 1e-9
    keep = np.setdiff1d(np.arange(70), T)
    m_keep = lo.GLM("poisson", l2=l2, penalty=penalty, tol=1e-12).fit(X[keep], y[keep], offset=off[keep])
    np.testing.assert_allclose(att.retrain(T).theta_, m_keep.theta_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(att.retrain_many([T])[0].theta_, m_keep.theta_, rtol=1e-8, atol=1e-10)
    # predictions take the offset of the new rows
    np.testing.assert_allclose(m.predict(X[:3], offset=off[:3]), mu[:3], rtol=1e-12)
    with pytest.raises(ValueError, match="offset must have shape"):
        lo.GLM("poisson").fit(X, y, offset=off[:5])
