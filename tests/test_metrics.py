import numpy as np
import pytest

import leaveout as lo
from conftest import make_data
from leaveout.metrics import Coefficient, Logit, SelfLoss, TestLoss, TestPrediction, select_test_subset


@pytest.fixture
def fitted():
    X, y = make_data(n=60, d=5, seed=0)
    return lo.GLM(l2=0.2, penalty="per_sample").fit(X, y)


def test_metric_gradients_match_finite_differences(fitted):
    m = fitted
    Xt, yt = make_data(n=12, d=5, seed=1)
    theta = m.theta_ + np.random.default_rng(0).normal(size=m.theta_.size) * 0.2
    eps = 1e-6
    for f in (TestLoss(Xt, yt), TestPrediction(Xt), SelfLoss(), Coefficient(3), Coefficient("intercept"), Logit(Xt)):
        num = [(f.value(m, theta + eps * e) - f.value(m, theta - eps * e)) / (2 * eps) for e in np.eye(theta.size)]
        np.testing.assert_allclose(f.gradient(m, theta), num, rtol=1e-6, atol=1e-7)
        d = np.random.default_rng(2).normal(size=theta.size) * 0.1
        assert f.difference(m, theta, theta + d) == pytest.approx(f.value(m, theta + d) - f.value(m, theta), rel=1e-9, abs=1e-12)


def test_metric_values_are_the_documented_sums(fitted):
    m = fitted
    Xt, yt = make_data(n=12, d=5, seed=1)
    z = Xt @ m.coef_ + m.intercept_
    p = 1 / (1 + np.exp(-z))
    assert TestPrediction(Xt).value(m, m.theta_) == pytest.approx(p.sum(), rel=1e-12)
    assert TestLoss(Xt, yt).value(m, m.theta_) == pytest.approx(-np.sum(yt * np.log(p) + (1 - yt) * np.log(1 - p)), rel=1e-12)
    X, y = m.objective_.design.A[:, :-1], m.objective_.y
    zz = X @ m.coef_ + m.intercept_
    mean_obj = np.mean(np.logaddexp(0, zz) - y * zz) + 0.5 * m.l2 * m.coef_ @ m.coef_
    assert SelfLoss().value(m, m.theta_) == pytest.approx(X.shape[0] * mean_obj, rel=1e-12)
    assert np.allclose(SelfLoss().gradient(m, m.theta_), 0, atol=1e-9 * X.shape[0])


def test_metric_errors(fitted):
    Xt, yt = make_data(n=12, d=4, seed=1)
    with pytest.raises(ValueError, match="X_test has 4 features"):
        TestPrediction(Xt).value(fitted, fitted.theta_)
    with pytest.raises(ValueError, match="Coefficient"):
        Coefficient(9).value(fitted, fitted.theta_)
    Xt, yt = make_data(n=12, d=5, seed=1)
    with pytest.raises(ValueError, match="outside the training classes"):
        TestLoss(Xt, yt + 5).value(fitted, fitted.theta_)


def test_select_test_subset_takes_top_losses_and_random_rest(fitted):
    Xt, yt = make_data(n=300, d=5, seed=3)
    idx = select_test_subset(fitted, Xt, yt)
    assert idx.size == 100 and np.unique(idx).size == 100 and idx.min() >= 0 and idx.max() < 300
    z = Xt @ fitted.coef_ + fitted.intercept_
    loss = np.logaddexp(0, z) - yt * z
    top50 = set(np.argsort(-loss)[:50])
    assert top50 <= set(idx.tolist())
    np.testing.assert_array_equal(idx, select_test_subset(fitted, Xt, yt))        # seeded
    assert not np.array_equal(idx, select_test_subset(fitted, Xt, yt, seed=1))
    np.testing.assert_array_equal(select_test_subset(fitted, Xt[:90], yt[:90]), np.arange(90))


def test_metric_offsets_enter_every_test_prediction_and_loss():
    # brute force: the offset shifts each test row's linear predictor
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 3))
    counts = rng.poisson(np.exp(0.3 * X[:, 0] + 0.2))
    m = lo.GLM(family="poisson", l2=0.5).fit(X, counts)
    Xt = rng.normal(size=(10, 3))
    yt = rng.poisson(2.0, 10).astype(float)
    off = rng.normal(size=10)
    z = Xt @ m.coef_ + m.intercept_ + off
    assert TestPrediction(Xt, offset=off).value(m, m.theta_) == pytest.approx(np.exp(z).sum(), rel=1e-12)
    assert TestLoss(Xt, yt, offset=off).value(m, m.theta_) == pytest.approx(np.sum(np.exp(z) - yt * z), rel=1e-12)
    A = np.column_stack([Xt, np.ones(10)])
    np.testing.assert_allclose(TestPrediction(Xt, offset=off).gradient(m, m.theta_), A.T @ np.exp(z), rtol=1e-12)
    np.testing.assert_allclose(TestLoss(Xt, yt, offset=off).gradient(m, m.theta_), A.T @ (np.exp(z) - yt), rtol=1e-12)
