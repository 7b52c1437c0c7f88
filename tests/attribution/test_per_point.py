"""Per-test-point scores (one multi-right-hand-side solve) against their slow twins: the
dense IF / RIF rows times each test row's gradient by central differences, and the
one-metric-at-a-time path."""

import numpy as np
import pytest

import leaveout as lo
from leaveout.metrics import Logit, TestLoss, TestPrediction


def _fd_gradient(f, theta, h=1e-6):
    g = np.empty(theta.size)
    for k in range(theta.size):
        e = np.zeros(theta.size)
        e[k] = h
        g[k] = (f(theta + e) - f(theta - e)) / (2 * h)
    return g


def _one_row(metric, j):
    X = metric.X[j:j + 1]
    if isinstance(metric, TestLoss):
        return TestLoss(X, metric.y[j:j + 1])
    if isinstance(metric, TestPrediction):
        return TestPrediction(X, label=metric.label)
    return Logit(X)


def _check(model, metric, n_test):
    att = lo.Attribution(model)
    rows = {"if": att.influence(), "rif": att.rescaled_influence()}
    for method in ("if", "rif"):
        tau = att.scores(metric, method, per_point=True)
        assert tau.shape == (att.n_samples, n_test)
        for j in range(n_test):
            one = _one_row(metric, j)
            grad = _fd_gradient(lambda t: one.value(model, t), att.theta)
            np.testing.assert_allclose(tau[:, j], rows[method] @ grad, rtol=1e-5, atol=1e-9)
            np.testing.assert_allclose(tau[:, j], att.scores(one, method), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(tau.sum(axis=1), att.scores(metric, method), rtol=1e-9, atol=1e-12)
    frame = att.scores(metric, "if", per_point=True, as_frame=True)
    assert list(frame.columns) == list(range(n_test)) and frame.shape == (att.n_samples, n_test)


@pytest.mark.parametrize("family,penalty", [("logistic", "per_sample"), ("logistic", "fixed"),
                                            ("squared", "fixed"), ("poisson", "per_sample")])
def test_single_response_families(family, penalty):
    rng = np.random.default_rng(4)
    n, d, m = 40, 3, 5
    X = rng.normal(size=(n, d))
    Xt = rng.normal(size=(m, d))
    eta = X @ np.array([0.6, -0.4, 0.3])
    if family == "logistic":
        y, yt = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), rng.integers(0, 2, m)
    elif family == "poisson":
        y, yt = rng.poisson(np.exp(0.5 * eta)), rng.poisson(1.0, m)
    else:
        y, yt = eta + rng.normal(size=n), rng.normal(size=m)
    s = rng.uniform(0.5, 2.0, n)                         # uneven weights: several penalty shares
    model = lo.GLM(family, l2=0.3, penalty=penalty, tol=1e-12).fit(X, y, sample_weight=s)
    _check(model, TestLoss(Xt, yt), m)
    _check(model, TestPrediction(Xt), m)
    _check(model, Logit(Xt), m)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_multinomial(penalty):
    rng = np.random.default_rng(5)
    n, d, m = 45, 3, 4
    X = rng.normal(size=(n, d))
    y = rng.integers(0, 3, n)
    Xt = rng.normal(size=(m, d))
    yt = rng.integers(0, 3, m)
    s = rng.uniform(0.5, 2.0, n)
    model = lo.GLM("multinomial", l2=0.4, penalty=penalty, tol=1e-12).fit(X, y, sample_weight=s)
    _check(model, TestLoss(Xt, yt), m)
    _check(model, TestPrediction(Xt, label=2), m)


def test_columns_are_chunked_without_changing_the_answer(monkeypatch):
    """More test points than one chunk of the multinomial gather holds."""
    from leaveout.attribution import multinomial
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(30, 2)), rng.integers(0, 3, 30)
    Xt, yt = rng.normal(size=(7, 2)), rng.integers(0, 3, 7)
    att = lo.Attribution(lo.GLM("multinomial", l2=0.5, tol=1e-12).fit(X, y))
    full = {m: att.scores(TestLoss(Xt, yt), m, per_point=True) for m in ("if", "rif")}
    monkeypatch.setattr(multinomial.BlockEstimators, "_columns", lambda self, k: [slice(j, min(k, j + 2)) for j in range(0, k, 2)])
    for m in ("if", "rif"):
        np.testing.assert_allclose(att.scores(TestLoss(Xt, yt), m, per_point=True), full[m], rtol=1e-12, atol=1e-15)


def test_per_point_needs_test_rows():
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(20, 2)), rng.integers(0, 2, 20)
    att = lo.Attribution(lo.GLM(l2=1.0).fit(X, y))
    with pytest.raises(ValueError, match="per_point=True needs one output per test row"):
        att.scores(lo.metrics.Coefficient(0), per_point=True)
