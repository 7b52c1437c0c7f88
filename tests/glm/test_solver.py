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
