"""Large removal sets (rank >= the number of parameters, e.g. half the data) are solved by
conjugate gradients preconditioned with the full Hessian's factor instead of a new p x p
factorisation. The fast path against its slow twin: a dense H_{-T}^{-1} G, and the refits of
the factorised path."""

import numpy as np
import pytest

import leaveout as lo
from leaveout.attribution.curvature import _IterativeSystem
from leaveout.attribution.estimators import GLMEstimators


def _fits(family, seed=0):
    rng = np.random.default_rng(seed)
    n, d = 120, 6
    X = rng.normal(size=(n, d))
    if family == "logistic":
        y = (rng.random(n) < 1 / (1 + np.exp(-X @ rng.normal(size=d)))).astype(int)
    else:
        y = rng.integers(0, 3, n)
        y[X[:, 0] > 0.8] = 2
    return X, y, np.sort(rng.choice(n, n // 2, replace=False))


@pytest.mark.parametrize("family,penalty,l2", [("logistic", "fixed", 1.0), ("logistic", "per_sample", 0.02),
                                               ("multinomial", "fixed", 2.0)])
def test_iterative_newton_step_and_refit_equal_the_factorised_ones(monkeypatch, family, penalty, l2):
    X, y, T = _fits(family)
    m = lo.GLM(family, l2=l2, penalty=penalty, tol=1e-12).fit(X, y)
    slow = lo.Attribution(m)
    ns_slow = slow.delta(T, "ns")
    refit_slow = slow.retrain(T)
    monkeypatch.setattr(GLMEstimators, "ITERATIVE_MIN_PARAMS", 0)
    fast = lo.Attribution(m)
    G, system = fast.newton_system(T)
    assert isinstance(system, _IterativeSystem)
    ns_fast = fast.delta(T, "ns")
    np.testing.assert_allclose(ns_fast, ns_slow, rtol=1e-9, atol=1e-12)
    # the dense twin: H_{-T} from the objective without T, at the fit
    H_T = m.objective_.without(T).hessian(m.theta_) if hasattr(m.objective_, "hessian") else None
    if H_T is not None:
        np.testing.assert_allclose(ns_fast, np.linalg.solve(H_T, G), rtol=1e-8, atol=1e-12)
    refit_fast = fast.retrain(T)
    assert refit_fast.converged_
    np.testing.assert_allclose(refit_fast.theta_, refit_slow.theta_, rtol=1e-8, atol=1e-10)
    many = fast.retrain_many([T, T[:50]])
    np.testing.assert_allclose(many[0].theta_, refit_slow.theta_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(many[1].theta_, slow.retrain(T[:50]).theta_, rtol=1e-8, atol=1e-10)
