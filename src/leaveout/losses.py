"""Pointwise losses of a generalised linear model.

Each loss is a function of the label ``y`` and the linear predictor ``z = x^T theta``
and provides its value and its first two derivatives in ``z``. Everything above this
layer (the model, the estimators) only ever sees these three pointwise arrays, so a new
family plugs in here.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

__all__ = ["LogisticLoss", "get_loss"]


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


_LOSSES = {"logistic": LogisticLoss}


def get_loss(family: str):
    """Return the loss class registered for ``family``."""
    try:
        return _LOSSES[family]
    except KeyError:
        raise ValueError(
            f"family={family!r} is not supported; choose one of {sorted(_LOSSES)}"
        ) from None
