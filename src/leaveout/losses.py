"""Pointwise losses of a generalised linear model.

Each loss is a function of the label ``y`` and the linear predictor ``z = x^T theta``
and provides its value and its first two derivatives in ``z``. Everything above this
layer (the model, the estimators) only ever sees these three pointwise arrays, so a new
family plugs in here.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

__all__ = ["LogisticLoss", "SquaredLoss", "PoissonLoss", "get_loss"]


class LogisticLoss:
    r"""Binary cross-entropy with the logit link.

    .. math::

        \ell(y, z) = \log(1 + e^{z}) - y z, \qquad
        \ell'(y, z) = \sigma(z) - y, \qquad
        \ell''(y, z) = \sigma(z)\,\sigma(-z),

    for labels :math:`y \in \{0, 1\}`. The value uses ``logaddexp`` and is finite for
    every finite ``z``.
    """

    name = "logistic"

    @staticmethod
    def value(y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Pointwise loss, shape of ``z``.

        Written as ``(1 - y) log(1 + e^z) + y log(1 + e^-z)`` (equal to the formula above
        for every y), which keeps full relative accuracy for confident correct predictions.
        """
        return (1.0 - y) * np.logaddexp(0.0, z) + y * np.logaddexp(0.0, -z)

    @staticmethod
    def derivative(y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """First derivative in ``z``."""
        return expit(z) - y

    @staticmethod
    def curvature(y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Second derivative in ``z`` (non-negative)."""
        p = expit(z)
        return p * expit(-z)

    @staticmethod
    def mean(z: np.ndarray) -> np.ndarray:
        """Mean of the response, here the probability ``P(y = 1)``."""
        return expit(z)

    @staticmethod
    def mean_derivative(z: np.ndarray) -> np.ndarray:
        """Derivative of :meth:`mean` in ``z``."""
        return expit(z) * expit(-z)

    #: |l'| <= 1, so the gradient scale is the data scale alone.
    bounded_derivative = True

    @staticmethod
    def check_target(y, n_samples: int, name: str = "y"):
        """Labels as float 0/1 and the original classes (two distinct values)."""
        from ._validation import check_binary_y
        return check_binary_y(y, n_samples, name)


class SquaredLoss:
    r"""Squared error, identity link (linear / ridge regression).

    .. math:: \ell(y, z) = (z - y)^2 / 2, \qquad \ell' = z - y, \qquad \ell'' = 1.
    """

    name = "squared"
    bounded_derivative = False

    @staticmethod
    def value(y, z):
        return 0.5 * (z - y) ** 2

    @staticmethod
    def derivative(y, z):
        return z - y

    @staticmethod
    def curvature(y, z):
        return np.ones_like(z)

    @staticmethod
    def mean(z):
        return np.asarray(z, dtype=np.float64)

    @staticmethod
    def mean_derivative(z):
        return np.ones_like(z)

    @staticmethod
    def check_target(y, n_samples: int, name: str = "y"):
        from ._validation import check_real_y
        return check_real_y(y, n_samples, name), None


class PoissonLoss:
    r"""Poisson deviance up to a constant, log link (counts or rates).

    .. math:: \ell(y, z) = e^{z} - y z, \qquad \ell' = e^{z} - y, \qquad \ell'' = e^{z}

    (the term :math:`\log y!` does not depend on the parameters and is left out).
    """

    name = "poisson"
    bounded_derivative = False

    @staticmethod
    def value(y, z):
        return np.exp(z) - y * z

    @staticmethod
    def derivative(y, z):
        return np.exp(z) - y

    @staticmethod
    def curvature(y, z):
        return np.exp(z)

    @staticmethod
    def mean(z):
        return np.exp(z)

    @staticmethod
    def mean_derivative(z):
        return np.exp(z)

    @staticmethod
    def check_target(y, n_samples: int, name: str = "y"):
        from ._validation import check_real_y
        y = check_real_y(y, n_samples, name)
        if np.any(y < 0):
            raise ValueError(f"{name} has negative values; the Poisson family needs counts or rates >= 0")
        return y, None


_LOSSES = {"logistic": LogisticLoss, "squared": SquaredLoss, "poisson": PoissonLoss}


def get_loss(family: str):
    """Return the loss class registered for ``family``."""
    try:
        return _LOSSES[family]
    except KeyError:
        raise ValueError(
            f"family={family!r} is not supported; choose one of {sorted(_LOSSES)}"
        ) from None
