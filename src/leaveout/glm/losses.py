"""Pointwise losses of a generalised linear model.

Each loss is a function of the label ``y`` and the linear predictor ``z = x^T theta``
and provides its value and its first two derivatives in ``z``. Everything above this
layer (the model, the estimators) only ever sees these three pointwise arrays, so a new
family plugs in here.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

__all__ = ["LogisticLoss", "SquaredLoss", "PoissonLoss", "SoftmaxLoss", "get_loss",
           "sum_to_zero_basis"]


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
    #: a classifier: separable data leave the unpenalised fit without a finite optimum
    classifier = True

    @staticmethod
    def check_target(y, n_samples: int, name: str = "y"):
        """Labels as float 0/1 and the original classes (two distinct values)."""
        from .._validation import check_binary_y
        return check_binary_y(y, n_samples, name)


class SquaredLoss:
    r"""Squared error, identity link (linear / ridge regression).

    .. math:: \ell(y, z) = (z - y)^2 / 2, \qquad \ell' = z - y, \qquad \ell'' = 1.
    """

    name = "squared"
    bounded_derivative = False
    classifier = False

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
        from .._validation import check_real_y
        return check_real_y(y, n_samples, name), None


class PoissonLoss:
    r"""Poisson deviance up to a constant, log link (counts or rates).

    .. math:: \ell(y, z) = e^{z} - y z, \qquad \ell' = e^{z} - y, \qquad \ell'' = e^{z}

    (the term :math:`\log y!` does not depend on the parameters and is left out).
    """

    name = "poisson"
    bounded_derivative = False
    classifier = False

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
        from .._validation import check_real_y
        y = check_real_y(y, n_samples, name)
        if np.any(y < 0):
            raise ValueError(f"{name} has negative values; the Poisson family needs counts or rates >= 0")
        return y, None


def sum_to_zero_basis(n_classes: int) -> np.ndarray:
    """Orthonormal basis ``Q`` (C, C-1) of the vectors in R^C whose entries sum to zero.

    Column ``a`` (0-based) is the Helmert contrast ``(1, ..., 1, -(a+1), 0, ..., 0)``
    (``a + 1`` ones) scaled to unit length, so ``Q^T Q = I`` and ``Q Q^T = I - 11^T / C``.
    """
    C = int(n_classes)
    Q = np.zeros((C, C - 1))
    for a in range(1, C):
        Q[:a, a - 1] = 1.0
        Q[a, a - 1] = -float(a)
        Q[:, a - 1] /= np.sqrt(a * (a + 1.0))
    return Q


class SoftmaxLoss:
    r"""Multinomial cross-entropy (softmax link) over ``C`` classes, sum-to-zero logits.

    The logits of a row are ``z = Q u`` with ``u`` in R^{C-1} and ``Q`` the orthonormal
    basis of :func:`sum_to_zero_basis`, so ``sum_c z_c = 0``. In ``u``,

    .. math::

        \ell(y, u) = \log\sum_c e^{z_c} - z_y, \qquad
        \nabla_u \ell = Q^\top (p - e_y), \qquad
        \nabla^2_u \ell = Q^\top (\mathrm{diag}(p) - p p^\top) Q,

    with ``p = softmax(z)``. The Hessian has rank C-1 in ``u`` (positive definite while every
    ``p_c > 0``). Labels are class codes ``0..C-1``.
    """

    name = "multinomial"
    #: every entry of the gradient in u is at most sqrt(2) in size
    bounded_derivative = True
    classifier = True

    def __init__(self, n_classes: int):
        if int(n_classes) < 2:
            raise ValueError("the multinomial family needs at least two classes")
        self.n_classes = int(n_classes)
        self.Q = sum_to_zero_basis(self.n_classes)

    def logits(self, u: np.ndarray) -> np.ndarray:
        """Sum-to-zero logits ``Q u`` of shape (n, C) from ``u`` of shape (n, C-1)."""
        return u @ self.Q.T

    def mean(self, u: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, C)."""
        z = self.logits(u)
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def value(self, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Pointwise loss ``log sum_c exp(z_c - z_y)``, shape (n,).

        Rows whose own class has the largest logit use ``log1p`` of the other terms, which
        keeps full relative accuracy for confident correct predictions.
        """
        z = self.logits(u)
        rows = np.arange(z.shape[0])
        dz = z - z[rows, y][:, None]
        top = dz.max(axis=1)
        e = np.exp(dz - top[:, None])
        e[rows, y] = 0.0
        others = e.sum(axis=1)
        own_top = top <= 0
        out = np.empty(z.shape[0])
        out[own_top] = np.log1p(others[own_top])
        t = top[~own_top]
        out[~own_top] = t + np.log(others[~own_top] + np.exp(-t))
        return out

    def derivative(self, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Gradient in ``u``: ``Q^T (p - e_y)``, shape (n, C-1)."""
        r = self.mean(u)
        r[np.arange(r.shape[0]), y] -= 1.0
        return r @ self.Q

    def curvature(self, y: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Hessian blocks in ``u``: ``Q^T (diag(p) - p p^T) Q``, shape (n, C-1, C-1)."""
        p = self.mean(u)
        Qp = p @ self.Q
        K = np.einsum("ca,nc,cb->nab", self.Q, p, self.Q, optimize=True)
        K -= Qp[:, :, None] * Qp[:, None, :]
        return K

    @staticmethod
    def check_target(y, n_samples: int, name: str = "y", classes=None):
        """Class codes ``0..C-1`` and the original classes."""
        from .._validation import check_class_y
        return check_class_y(y, n_samples, name, classes)


_LOSSES = {"logistic": LogisticLoss, "squared": SquaredLoss, "poisson": PoissonLoss,
           "multinomial": SoftmaxLoss}


def get_loss(family: str):
    """Return the loss class registered for ``family``."""
    try:
        return _LOSSES[family]
    except KeyError:
        raise ValueError(
            f"family={family!r} is not supported; choose one of {sorted(_LOSSES)}"
        ) from None
