import numpy as np

from leaveout.losses import LogisticLoss, get_loss


def test_derivatives_match_finite_differences():
    z = np.linspace(-6, 6, 25)
    eps = 1e-6
    for y in (0.0, 1.0):
        num1 = (LogisticLoss.value(y, z + eps) - LogisticLoss.value(y, z - eps)) / (2 * eps)
        num2 = (LogisticLoss.derivative(y, z + eps) - LogisticLoss.derivative(y, z - eps)) / (2 * eps)
        np.testing.assert_allclose(LogisticLoss.derivative(y, z), num1, atol=1e-8)
        np.testing.assert_allclose(LogisticLoss.curvature(y, z), num2, atol=1e-8)


def test_value_is_stable_for_large_margins():
    z = np.array([-1000.0, -40.0, 40.0, 1000.0])
    v1 = LogisticLoss.value(1.0, z)
    assert np.all(np.isfinite(v1))
    np.testing.assert_allclose(v1, [1000.0, 40.0, np.log1p(np.exp(-40.0)), 0.0], rtol=1e-12, atol=1e-300)
    assert np.all(LogisticLoss.curvature(0.0, z) >= 0)


def test_unknown_family_is_named():
    import pytest
    with pytest.raises(ValueError, match="family='probit'"):
        get_loss("probit")
