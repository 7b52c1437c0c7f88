"""Smooth functions of the parameters whose leave-T-out change we estimate.

Each metric gives its value and gradient at a parameter vector ``theta`` of a fitted
:class:`~leaveout.GLM` (intercept last). The *removal effect* of an estimate ``dtheta`` is
``f(theta_hat + dtheta) - f(theta_hat)``; the *linear effect* is ``<grad f(theta_hat), dtheta>``,
except for :class:`SelfLoss`, whose gradient vanishes at the optimum, where it is the
second-order term ``dtheta^T H dtheta / 2``.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["Metric", "TestPrediction", "TestLoss", "SelfLoss", "Coefficient", "Logit",
           "select_test_subset"]


class Metric:
    """Base class: a scalar function of theta."""

    name = "metric"
    #: True when the gradient vanishes at the fit and the linear effect is quadratic.
    quadratic = False

    def value(self, model, theta) -> float:
        raise NotImplementedError

    def gradient(self, model, theta) -> np.ndarray:
        raise NotImplementedError

    def difference(self, model, theta0, theta1) -> float:
        """``value(theta1) - value(theta0)``."""
        return self.value(model, theta1) - self.value(model, theta0)


class _TestRows(Metric):
    """A metric summed over fixed evaluation rows X (n_test, n_features)."""

    def __init__(self, X, y=None, offset=None):
        self.X = X
        self.y = y
        self.offset = offset
        self._cache = None

    def _rows(self, model):
        key = id(model)
        if self._cache is None or self._cache[0] != key:
            design = model._design_for(self.X, "X_test")
            y = None
            if self.y is not None:
                yy = np.asarray(self.y)
                if yy.shape[:1] != (design.n,):
                    raise ValueError(f"y_test has {yy.shape[0] if yy.ndim else 0} entries but X_test has {design.n} rows")
                classes = getattr(model, "classes_", None)
                if classes is None:
                    y, _ = model._loss.check_target(yy, design.n, "y_test")
                else:
                    if not np.all(np.isin(yy, classes)):
                        raise ValueError(f"y_test has labels outside the training classes {list(classes)}")
                    y = (yy == classes[1]).astype(np.float64)
            off = 0.0
            if self.offset is not None:
                from ._validation import check_offset
                off = check_offset(self.offset, design.n, "offset")
            self._cache = (key, design, y, off)
        return self._cache[1], self._cache[2]

    def _z(self, model, theta):
        """Linear predictors of the rows (offset included)."""
        self._rows(model)
        return self._cache[1].matvec(theta) + self._cache[3]


class TestPrediction(_TestRows):
    """Sum over the test rows of the predicted mean: ``P(y = 1)`` for the logistic family,
    ``x^T theta`` for squared, ``exp(x^T theta)`` for Poisson.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_test, n_features)
    offset : array-like of shape (n_test,), optional
        Offsets of the rows' linear predictors (e.g. log exposure for Poisson).
    """

    name = "test-pred"
    __test__ = False  # not a pytest test class

    def __init__(self, X, offset=None):
        super().__init__(X, None, offset)

    def value(self, model, theta):
        return float(np.sum(model._loss.mean(self._z(model, theta))))

    def difference(self, model, theta0, theta1):
        m = model._loss.mean
        return float(np.sum(m(self._z(model, theta1)) - m(self._z(model, theta0))))

    def gradient(self, model, theta):
        design, _ = self._rows(model)
        return design.rmatvec(model._loss.mean_derivative(self._z(model, theta)))


class TestLoss(_TestRows):
    """Sum over the test rows of the loss (no penalty).

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_test, n_features)
    y : array-like of shape (n_test,)
        Labels in the training classes (or responses, for squared / Poisson).
    offset : array-like of shape (n_test,), optional
    """

    name = "test-loss"
    __test__ = False

    def __init__(self, X, y, offset=None):
        super().__init__(X, y, offset)

    def value(self, model, theta):
        _, y = self._rows(model)
        return float(np.sum(model._loss.value(y, self._z(model, theta))))

    def difference(self, model, theta0, theta1):
        _, y = self._rows(model)
        lv = model._loss.value
        return float(np.sum(lv(y, self._z(model, theta1)) - lv(y, self._z(model, theta0))))

    def gradient(self, model, theta):
        design, y = self._rows(model)
        return design.rmatvec(model._loss.derivative(y, self._z(model, theta)))


class SelfLoss(Metric):
    """The whole training objective in sum form, penalty included.

    Under ``penalty="per_sample"`` this is ``S`` times the mean objective. Its gradient
    vanishes at the fit, so its linear effect is ``dtheta^T H dtheta / 2``.
    """

    name = "self-loss"
    quadratic = True

    def value(self, model, theta):
        return model.objective(theta)

    def difference(self, model, theta0, theta1):
        theta0 = np.asarray(theta0, dtype=np.float64)
        theta1 = np.asarray(theta1, dtype=np.float64)
        lv = model._loss.value
        data = float(model._s @ (lv(model._y, model._z(theta1)) - lv(model._y, model._z(theta0))))
        pen = 0.5 * model._lam * float((model._pen * (theta1 - theta0)) @ (theta1 + theta0))
        return data + pen

    def gradient(self, model, theta):
        return model.gradient(theta)


class Coefficient(Metric):
    """One coefficient ``coef_[j]`` (``j="intercept"`` for the intercept)."""

    def __init__(self, j):
        self.j = j
        self.name = f"coef[{j}]"

    def _index(self, model):
        model._check_fitted()
        if self.j == "intercept":
            if not model.fit_intercept:
                raise ValueError("Coefficient('intercept'): the model has no intercept")
            return model.theta_.size - 1
        if not isinstance(self.j, numbers.Integral) or not 0 <= self.j < model.n_features_in_:
            raise ValueError(f"Coefficient(j): j must be an integer in 0..{model.n_features_in_ - 1} or 'intercept', got {self.j!r}")
        return int(self.j)

    def value(self, model, theta):
        return float(np.asarray(theta)[self._index(model)])

    def gradient(self, model, theta):
        g = np.zeros(model.theta_.size)
        g[self._index(model)] = 1.0
        return g


class Logit(_TestRows):
    """Sum of the linear predictors ``x^T theta`` over the given rows (linear in theta)."""

    name = "logit"

    def __init__(self, X):
        super().__init__(X, None)

    def value(self, model, theta):
        design, _ = self._rows(model)
        return float(np.sum(design.matvec(theta)))

    def gradient(self, model, theta):
        design, _ = self._rows(model)
        return design.rmatvec(np.ones(design.n))


def select_test_subset(model, X_test, y_test, n_top: int = 50, n_random: int = 50,
                       seed: int = 0) -> np.ndarray:
    """Indices of the paper's evaluation subset: the ``n_top`` highest-loss test rows under
    the fit plus ``n_random`` others drawn uniformly with ``numpy.random.default_rng(seed)``.

    All rows (in order) when there are at most ``n_top + n_random``. Returned sorted.
    """
    loss = TestLoss(X_test, y_test)
    design, y = loss._rows(model)
    n = design.n
    if n <= n_top + n_random:
        return np.arange(n)
    losses = model._loss.value(y, loss._z(model, model.theta_))
    order = np.argsort(-losses, kind="stable")
    top = order[:n_top]
    rest = np.setdiff1d(np.arange(n), top)
    rng = np.random.default_rng(seed)
    extra = rng.choice(rest, size=n_random, replace=False)
    return np.sort(np.concatenate([top, extra]))
