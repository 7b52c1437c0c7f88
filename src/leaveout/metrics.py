"""Smooth functions of the parameters whose leave-T-out change we estimate.

Each metric gives its value and gradient at a parameter vector ``theta`` of a fitted
:class:`~leaveout.GLM` (intercept last). For the multinomial family ``theta`` is the class-major vector of
:mod:`leaveout.glm.model` and "the prediction" is the probability of one chosen class. The
*removal effect* of an estimate ``dtheta`` is
``f(theta_hat + dtheta) - f(theta_hat)``; the *linear effect* is ``<grad f(theta_hat), dtheta>``,
except for :class:`SelfLoss`, whose gradient vanishes at the optimum, where it is the
second-order term ``dtheta^T H dtheta / 2``.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._validation import show

__all__ = ["Metric", "TestPrediction", "TestLoss", "SelfLoss", "Coefficient", "Contrast", "Logit",
           "select_test_subset"]


class Metric:
    """Base class: a scalar function of theta."""

    name = "metric"
    #: True when the gradient vanishes at the fit and the linear effect is quadratic.
    quadratic = False
    #: True for ``phi^T theta`` with a constant ``phi`` (a standard error is then defined).
    linear = False

    def value(self, model, theta) -> float:
        raise NotImplementedError

    def gradient(self, model, theta) -> np.ndarray:
        raise NotImplementedError

    def difference(self, model, theta0, theta1) -> float:
        """``value(theta1) - value(theta0)``."""
        return self.value(model, theta1) - self.value(model, theta0)


class _TestRows(Metric):
    """A metric summed over fixed evaluation rows X (n_test, n_features): an array, or a
    DataFrame encoded as the model's training table was."""

    #: labels are needed (from ``y``, or from the table for a model fitted with a formula)
    needs_labels = False

    def __init__(self, X, y=None, offset=None):
        self.X = X
        self.y = y
        self.offset = offset
        self._cache = None

    def _rows(self, model):
        key = id(model)
        if self._cache is None or self._cache[0] != key:
            design = model.design_for(self.X, "X_test")
            y = None
            labels = self.y
            if labels is None and self.needs_labels:
                labels = model.response_for(self.X, "X_test")
            if labels is not None:
                yy = labels.to_numpy() if hasattr(labels, "to_numpy") else np.asarray(labels)
                if yy.shape[:1] != (design.n,):
                    raise ValueError(f"y_test has {yy.shape[0] if yy.ndim else 0} entries but X_test has {design.n} rows")
                classes = getattr(model, "classes_", None)
                if classes is None:
                    y, _ = model.objective_.loss.check_target(yy, design.n, "y_test")
                else:
                    if not np.all(np.isin(yy, classes)):
                        raise ValueError(f"y_test has labels outside the training classes {list(classes)}")
                    if model.family == "multinomial":
                        y = np.array([_class_code(model, c, "y_test") for c in yy], dtype=np.int64)
                    else:
                        y = (yy == classes[1]).astype(np.float64)
            off = 0.0
            if self.offset is not None:
                if model.family == "multinomial":
                    raise ValueError("offset is not supported for the multinomial family")
                from ._validation import check_offset
                off = check_offset(self.offset, design.n, "offset")
            self._cache = (key, design, y, off)
        return self._cache[1], self._cache[2]

    def _z(self, model, theta):
        """Linear predictors of the rows (offset included; multinomial: (n, C-1))."""
        self._rows(model)
        return model.objective_.linear(self._cache[1], theta) + self._cache[3]

    def _derivatives(self, model, theta):
        """The derivative of each row's output in its linear predictor(s): (n_test,), or
        (n_test, C-1) for the multinomial family."""
        raise NotImplementedError

    def values(self, model, theta) -> np.ndarray:
        """The output of each test row, shape (n_test,); :meth:`value` is their sum."""
        raise NotImplementedError

    def gradient(self, model, theta):
        design, _ = self._rows(model)
        return model.objective_.linear_t(design, self._derivatives(model, theta))

    def gradients(self, model, theta) -> np.ndarray:
        """The gradient of each test row's own output, shape (n_params, n_test); their sum
        is :meth:`gradient`. Per-test-point scores (``Attribution.scores(...,
        per_point=True)``) solve with all of them at once."""
        design, _ = self._rows(model)
        D = np.asarray(self._derivatives(model, theta), dtype=np.float64)
        rows = design.dense_rows(np.arange(design.n)).T              # (n_params, n_test)
        if D.ndim == 1:
            return rows * D
        return (D.T[:, None, :] * rows[None]).reshape(-1, design.n)   # class-major blocks


def _class_code(model, label, name="label"):
    """Position of ``label`` in ``model.classes_``."""
    hit = np.flatnonzero(np.asarray(model.classes_) == label)
    if hit.size != 1:
        raise ValueError(f"{name} {show(label)} is not one of the training classes {model.classes_.tolist()}")
    return int(hit[0])


class TestPrediction(_TestRows):
    """Sum over the test rows of the predicted mean: ``P(y = 1)`` for the logistic family,
    ``P(y = label)`` for multinomial, ``x^T theta`` for squared, ``exp(x^T theta)`` for Poisson.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_test, n_features)
    offset : array-like of shape (n_test,), optional
        Offsets of the rows' linear predictors (e.g. log exposure for Poisson).
    label : optional
        Multinomial family only (and required there): the class whose predicted
        probability is summed.
    """

    name = "test-pred"
    __test__ = False  # not a pytest test class

    def __init__(self, X, offset=None, label=None):
        super().__init__(X, None, offset)
        self.label = label

    def _code(self, model):
        if model.family != "multinomial":
            if self.label is not None:
                raise ValueError("TestPrediction(label=...) is for the multinomial family; the logistic "
                                 "prediction is always P(y = classes_[1])")
            return None
        if self.label is None:
            raise ValueError("TestPrediction needs label= for the multinomial family: the class whose "
                             f"probability is summed, one of {model.classes_.tolist()}")
        return _class_code(model, self.label)

    def _means(self, model, theta):
        k = self._code(model)
        mu = model.objective_.loss.mean(self._z(model, theta))
        return mu if k is None else mu[:, k]

    def values(self, model, theta):
        return np.asarray(self._means(model, theta), dtype=np.float64)

    def value(self, model, theta):
        return float(np.sum(self._means(model, theta)))

    def difference(self, model, theta0, theta1):
        return float(np.sum(self._means(model, theta1) - self._means(model, theta0)))

    def _derivatives(self, model, theta):
        k = self._code(model)
        if k is None:
            return model.objective_.loss.mean_derivative(self._z(model, theta))
        P = model.objective_.loss.mean(self._z(model, theta))
        Q = model.objective_.loss.Q
        # d p_k / d u = Q^T p_k (e_k - p)
        return P[:, k:k + 1] * (Q[k][None, :] - P @ Q)


class TestLoss(_TestRows):
    """Sum over the test rows of the loss (no penalty).

    Parameters
    ----------
    X : array-like, sparse matrix or DataFrame of shape (n_test, n_features)
    y : array-like of shape (n_test,), optional
        Labels in the training classes (or responses, for squared / Poisson). May be left
        out when X is a table and the model was fitted with a formula: the table's response
        column is used.
    offset : array-like of shape (n_test,), optional
    """

    name = "test-loss"
    __test__ = False
    needs_labels = True

    def __init__(self, X, y=None, offset=None):
        super().__init__(X, y, offset)

    def values(self, model, theta) -> np.ndarray:
        """The loss of each test row, shape (n_test,)."""
        _, y = self._rows(model)
        return model.objective_.loss.value(y, self._z(model, theta))

    def value(self, model, theta):
        return float(np.sum(self.values(model, theta)))

    def difference(self, model, theta0, theta1):
        _, y = self._rows(model)
        lv = model.objective_.loss.value
        return float(np.sum(lv(y, self._z(model, theta1)) - lv(y, self._z(model, theta0))))

    def _derivatives(self, model, theta):
        _, y = self._rows(model)
        return model.objective_.loss.derivative(y, self._z(model, theta))


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
        return model.objective_.difference(theta0, theta1)

    def gradient(self, model, theta):
        return model.gradient(theta)


class Coefficient(Metric):
    """One coefficient ``coef_[j]``: ``j`` a position, a column name (``"x1"``,
    ``"C(g)[T.b]"`` for a model fitted on a table or a formula) or ``"intercept"``; for the
    multinomial family ``coef_[label, j]`` (``label`` is then required)."""

    linear = True

    def __init__(self, j, label=None):
        self.j = j
        self.label = label
        self.name = f"coef[{j}]" if label is None else f"coef[{label}, {j}]"

    def _index(self, model):
        model.check_fitted()
        names = getattr(model, "feature_names_in_", None)
        if isinstance(self.j, str) and names is not None and self.j in set(names):
            return int(np.flatnonzero(np.asarray(names) == self.j)[0])
        if self.j in ("intercept", "Intercept"):
            if not model.fit_intercept:
                raise ValueError(f"Coefficient({show(self.j)}): the model has no intercept")
            return model.objective_.design.p - 1
        if isinstance(self.j, str):
            known = "" if names is None else f"; the model's columns are {list(names)[:8]}" + (
                " ..." if len(names) > 8 else "")
            raise ValueError(f"Coefficient({show(self.j)}): no column of that name{known}")
        if not isinstance(self.j, numbers.Integral) or not 0 <= self.j < model.n_features_in_:
            raise ValueError(f"Coefficient(j): j must be an integer in 0..{model.n_features_in_ - 1}, a column "
                             f"name or 'intercept', got {show(self.j)}")
        return int(self.j)

    def gradient(self, model, theta):
        j = self._index(model)
        g = np.zeros(model.theta_.size)
        if model.family != "multinomial":
            if self.label is not None:
                raise ValueError("Coefficient(label=...) is for the multinomial family")
            g[j] = 1.0
            return g
        if self.label is None:
            raise ValueError(f"Coefficient needs label= for the multinomial family, one of {model.classes_.tolist()}")
        # W[j, k] = sum_a B[a, j] Q[k, a]
        p = model.objective_.design.p
        g[j::p] = model.objective_.loss.Q[_class_code(model, self.label)]
        return g

    def value(self, model, theta):
        return float(self.gradient(model, theta) @ np.asarray(theta))


class Contrast(Metric):
    """A linear combination of coefficients, ``sum_j c_j coef_j``: ``Contrast({"x1": 1, "x2":
    -1})`` by name (or position, or ``"intercept"``); single-response families."""

    linear = True

    def __init__(self, weights: dict):
        if not isinstance(weights, dict) or not weights:
            raise ValueError("Contrast needs a non-empty dict {coefficient: weight}")
        self.weights = dict(weights)
        self.name = " + ".join(f"{w:g}*{k}" for k, w in self.weights.items())

    def gradient(self, model, theta):
        g = np.zeros(model.theta_.size)
        for j, w in self.weights.items():
            g += float(w) * Coefficient(j).gradient(model, theta)
        return g

    def value(self, model, theta):
        return float(self.gradient(model, theta) @ np.asarray(theta))


class Logit(_TestRows):
    """Sum of the linear predictors ``x^T theta`` over the given rows (linear in theta)."""

    name = "logit"
    linear = True

    def __init__(self, X):
        super().__init__(X, None)

    def _check(self, model):
        if model.family == "multinomial":
            raise ValueError("Logit is not defined for the multinomial family; use TestPrediction(label=...)")
        return self._rows(model)[0]

    def values(self, model, theta):
        return np.asarray(self._check(model).matvec(theta), dtype=np.float64)

    def value(self, model, theta):
        return float(np.sum(self.values(model, theta)))

    def _derivatives(self, model, theta):
        return np.ones(self._check(model).n)


def select_test_subset(model, X_test, y_test, n_top: int = 50, n_random: int = 50,
                       seed: int = 0) -> np.ndarray:
    """Indices of the paper's evaluation subset: the ``n_top`` highest-loss test rows under
    the fit plus ``n_random`` others drawn uniformly with ``numpy.random.default_rng(seed)``.

    All rows (in order) when there are at most ``n_top + n_random``. Returned sorted.
    """
    losses = TestLoss(X_test, y_test).values(model, model.theta_)
    n = losses.size
    if n <= n_top + n_random:
        return np.arange(n)
    order = np.argsort(-losses, kind="stable")
    top = order[:n_top]
    rest = np.setdiff1d(np.arange(n), top)
    rng = np.random.default_rng(seed)
    extra = rng.choice(rest, size=n_random, replace=False)
    return np.sort(np.concatenate([top, extra]))
