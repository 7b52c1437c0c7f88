"""The Newton solver's shortcuts against dense linear algebra."""

import numpy as np
import pytest

import leaveout as lo


@pytest.mark.parametrize("penalty,fit_intercept", [("fixed", True), ("fixed", False), ("per_sample", True)])
def test_multinomial_start_solves_with_the_dense_hessian(penalty, fit_intercept):
    """At theta = 0 every row has the same class probabilities; the structured solve there
    equals a dense solve with the Hessian, and is not offered anywhere else."""
    rng = np.random.default_rng(2)
    X, y, s = rng.normal(size=(120, 4)), rng.integers(0, 4, 120), rng.uniform(0.5, 2.0, 120)
    model = lo.GLM("multinomial", l2=0.3, penalty=penalty, fit_intercept=fit_intercept).fit(X, y, sample_weight=s)
    obj = model.objective_
    z0 = obj.z(np.zeros(model.theta_.size))
    R = rng.normal(size=(model.theta_.size, 3))
    solve = obj.structured_solver(z0)
    got = np.column_stack([solve(r) for r in R.T])
    np.testing.assert_allclose(got, np.linalg.solve(obj.hessian_at(z0), R), rtol=1e-10, atol=1e-13)
    assert obj.structured_solver(obj.z(model.theta_)) is None


def test_float32_hessian_steers_but_the_fit_is_exact(monkeypatch):
    """The solver's Hessians from float32 products: within 1e-6 of the exact Hessian, the fit's
    certificate unchanged (the same optimum as with exact Hessians, to the tolerance), and an
    approximate Hessian that will not factor falls back to the exact one."""
    from leaveout.glm import solver
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 30)) * rng.uniform(0.1, 10, size=30)
    y = (X @ rng.normal(size=30) / 10 + rng.logistic(size=400) > 0).astype(float)
    model = lo.GLM(l2=1e-2).fit(X, y)
    obj = model.objective_
    z = obj.z(model.theta_)
    H = obj.hessian_at(z)
    assert not np.array_equal(obj.approx_hessian_at(z), H)
    np.testing.assert_allclose(obj.approx_hessian_at(z), H, rtol=0, atol=1e-6 * np.abs(H).max())
    exact = obj.hessian_at
    monkeypatch.setattr(type(obj), "approx_hessian_at", lambda self, z: exact(z))
    ref = lo.GLM(l2=1e-2).fit(X, y)
    np.testing.assert_allclose(model.theta_, ref.theta_, rtol=1e-7, atol=1e-9)
    used = []
    monkeypatch.setattr(type(obj), "approx_hessian_at", lambda self, z: -np.eye(31))     # will not factor
    monkeypatch.setattr(type(obj), "hessian_at", lambda self, z: used.append(1) or exact(z))
    again = lo.GLM(l2=1e-2).fit(X, y)
    assert used
    np.testing.assert_allclose(again.theta_, ref.theta_, rtol=1e-7, atol=1e-9)
