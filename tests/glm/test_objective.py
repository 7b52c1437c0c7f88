"""The objective written once: removing rows is the same objective with other weights, and a
batch of objectives is a weight column per problem. Checked against the explicit objective
of tests/reference.py on the kept rows (rows dropped, not zero-weighted)."""

import numpy as np
import pytest

import leaveout as lo
from leaveout.glm.solver import newton_solve
from reference import design, objective


def _problem(family, seed=0, n=70, d=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    beta = rng.normal(size=d) / np.sqrt(d)
    z = X @ beta
    if family == "logistic":
        y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    elif family == "poisson":
        y = rng.poisson(np.exp(0.5 * z)).astype(float)
    else:
        y = z + rng.normal(size=n)
    s = rng.uniform(0.5, 2.0, n)
    return X, y, s


@pytest.mark.parametrize("family", ["logistic", "squared", "poisson"])
@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_without_equals_the_objective_of_the_kept_rows(family, penalty):
    X, y, s = _problem(family)
    m = lo.GLM(family=family, l2=0.3, penalty=penalty).fit(X, y, sample_weight=s)
    T = np.array([2, 9, 30, 31])
    keep = np.setdiff1d(np.arange(X.shape[0]), T)
    f, g, h = objective(design(X[keep], True), y[keep], s[keep], 0.3, penalty, True, family)
    theta = m.theta_ + 0.1 * np.random.default_rng(1).normal(size=m.theta_.size)
    obj = m.objective_.without(T)
    assert obj.value(theta) == pytest.approx(f(theta), rel=1e-12)
    np.testing.assert_allclose(obj.gradient(theta), g(theta), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(obj.hessian(theta), h(theta), rtol=1e-10, atol=1e-12)
    # the gradient scale without T, derived without a pass over X, equals a fresh one
    fresh = lo.GLM(family=family, l2=0.3, penalty=penalty).fit(X[keep], y[keep], sample_weight=s[keep])
    assert obj.scale == pytest.approx(fresh.objective_.scale, rel=1e-12)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_a_batch_is_a_weight_column_per_problem(penalty):
    X, y, s = _problem("logistic", seed=2)
    m = lo.GLM(l2=0.3, penalty=penalty).fit(X, y, sample_weight=s)
    Ts = [np.array([0]), np.array([3, 4, 5]), np.array([10, 40])]
    batch = m.objective_.without_each(Ts)
    rng = np.random.default_rng(3)
    Theta = m.theta_[:, None] + 0.1 * rng.normal(size=(m.theta_.size, len(Ts)))
    Z = batch.z(Theta)
    cols = np.arange(len(Ts))
    values, grads = batch.value_at(Theta, Z, cols), batch.gradient_at(Theta, Z, cols)
    for j, T in enumerate(Ts):
        one = m.objective_.without(T)
        assert values[j] == pytest.approx(one.value(Theta[:, j]), rel=1e-12)
        np.testing.assert_allclose(grads[:, j], one.gradient(Theta[:, j]), rtol=1e-10, atol=1e-12)
        assert batch.scale[j] == pytest.approx(one.scale, rel=1e-12)


def test_the_solver_solves_a_batch_like_its_columns_alone():
    # the lockstep path against the single path, from the same start, identity preconditioner
    X, y, s = _problem("poisson", seed=4)
    m = lo.GLM(family="poisson", l2=0.5).fit(X, y, sample_weight=s)
    Ts = [np.array([1, 2]), np.array([7]), np.arange(20, 35)]
    batch = m.objective_.without_each(Ts)
    Theta0 = np.repeat(m.theta_[:, None], len(Ts), axis=1)
    H = m.hessian()
    res = newton_solve(batch, Theta0, 1e-10, 50, precond=lambda R, cols: np.linalg.solve(H, R))
    for j, T in enumerate(Ts):
        alone = newton_solve(m.objective_.without(T), m.theta_, 1e-10, 50)
        assert res[j].converged and alone.converged
        np.testing.assert_allclose(res[j].theta, alone.theta, rtol=1e-8, atol=1e-10)
