r"""Penalised generalised linear model with a certified Newton fit.

The objective, in the "fixed" penalty convention (the scikit-learn / statsmodels one), is

.. math::

    L(\theta) = \sum_i s_i\,\ell(y_i, x_i^\top\theta) + \frac{\lambda}{2}\lVert P\theta\rVert^2,

and in the "per_sample" convention (the mean-loss one of the paper's experiments)

.. math::

    L(\theta) = \frac{1}{S}\sum_i s_i\,\ell(y_i, x_i^\top\theta) + \frac{\lambda}{2}\lVert P\theta\rVert^2,
    \qquad S = \sum_i s_i,

where ``s`` are sample weights (default 1) and ``P`` drops the intercept, which is never
penalised. Multiplying the per-sample objective by ``S`` gives the *sum form*
``sum_i s_i (l_i + (lam/2)||P theta||^2)``: each sample carries its share of the penalty and
takes it along when it is removed. Internally every quantity (gradient, Hessian, per-sample
terms) is in sum form, so that removing a set T means subtracting its terms.

The parameter vector ``theta`` has length ``n_features + fit_intercept`` with the intercept
last; ``coef_`` and ``intercept_`` are its two parts.

The multinomial family (softmax over C classes) has sum-to-zero logits: the coefficient
matrix ``W`` (n_features + fit_intercept, C) satisfies ``W 1 = 0`` and is written
``W = B^T Q^T`` with ``Q`` the orthonormal basis of
:func:`~leaveout.losses.sum_to_zero_basis` and ``B`` of shape (C-1, n_features +
fit_intercept). Then ``||W||^2 = ||B||^2``, so the penalty is the usual one on all C
columns (scikit-learn's), and ``theta = B.ravel()`` (class-major: C-1 blocks, each with its
intercept last) has length ``(C-1) * (n_features + fit_intercept)``. ``coef_`` (C, n_features)
and ``intercept_`` (C,) are ``W``'s parts; :meth:`GLM.unpack` maps any theta to them.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import _validation as v
from ._design import Design
from ._newton import Objective, SoftmaxObjective, newton_solve
from .exceptions import ConvergenceWarning, SingularHessianError
from .losses import SoftmaxLoss, get_loss

__all__ = ["GLM"]

PENALTIES = ("fixed", "per_sample")


class GLM:
    """L2-penalised generalised linear model fitted to a certified tolerance.

    Parameters
    ----------
    family : {"logistic", "squared", "poisson", "multinomial"}, default="logistic"
        Loss and link: binary cross-entropy with the logit link, squared error with the
        identity link (ridge regression), the Poisson deviance with the log link, or the
        multinomial cross-entropy with the softmax link (C >= 2 classes, sum-to-zero
        parameterisation: see the module docstring).
    l2 : float, default=1.0
        Penalty strength lambda >= 0 (see the module docstring for where it sits).
    penalty : {"fixed", "per_sample"}, default="fixed"
        ``"fixed"``: sum of losses plus ``(l2/2)||P theta||^2``. ``"per_sample"``: mean loss
        plus ``(l2/2)||P theta||^2``, so every sample carries a share of the penalty.
    fit_intercept : bool, default=True
        Add an unpenalised intercept.
    tol : float, default=1e-9
        Convergence when ``max_j |dL/dtheta_j| / max_j sum_i s_i |x_ij| <= tol`` (the gradient
        relative to its largest possible size for the logistic loss; the same in both
        conventions). For the squared and Poisson families the denominator is also
        multiplied by the weighted mean absolute deviation of y.
    max_iter : int, default=100
        Maximum number of Newton iterations.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,), or (n_classes, n_features) for multinomial
    intercept_ : float, or ndarray of shape (n_classes,) for multinomial
    classes_ : ndarray of shape (n_classes,)
        The original labels (logistic: ``classes_[1]`` is coded 1; multinomial: the order of
        the columns of ``predict_proba``). Classifiers only.
    converged_ : bool
    n_iter_ : int
    grad_norm_ : float
        Final relative gradient max-norm, as defined for ``tol``.
    """

    def __init__(self, family: str = "logistic", l2: float = 1.0, penalty: str = "fixed",
                 fit_intercept: bool = True, tol: float = 1e-9, max_iter: int = 100):
        self.family = family
        self.l2 = l2
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    # ------------------------------------------------------------------ fitting
    def _check_params(self):
        loss = get_loss(self.family)
        if loss is SoftmaxLoss and hasattr(self, "classes_"):
            loss = SoftmaxLoss(len(self.classes_))
        self._loss = loss
        self.l2 = v.check_l2(self.l2)
        v.check_choice(self.penalty, "penalty", PENALTIES)
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ValueError(f"tol must be a positive number, got {self.tol!r}")
        if not (isinstance(self.max_iter, int) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")

    def fit(self, X, y, sample_weight=None, init=None, offset=None, classes=None) -> "GLM":
        """Fit to ``X`` (n_samples, n_features), dense or scipy.sparse, and ``y``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Logistic: two distinct values (0/1, bool, or any two labels, mapped in sorted
            order). Multinomial: any labels. Squared / Poisson: real / non-negative values.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights; a weight of w counts as w copies of the row.
        init : array-like of shape (n_features + fit_intercept,), optional
            Warm start (intercept last; multinomial: ``theta`` as in the module docstring).
        offset : array-like of shape (n_samples,), optional
            Known part of each linear predictor, ``z_i = x_i^T theta + offset_i`` (e.g. the
            log exposure of a Poisson rate). A removed row takes its offset along. Not
            available for the multinomial family.
        classes : array-like, optional
            Multinomial only: the classes in the order of ``predict_proba``'s columns
            (default: the sorted distinct labels); each must occur in ``y``.
        """
        self.__dict__.pop("classes_", None)
        self._check_params()
        X = v.check_X(X, "X")
        multi = self.family == "multinomial"
        if classes is not None and not multi:
            raise ValueError("classes is for the multinomial family only")
        if multi:
            y01, classes = self._loss.check_target(y, X.shape[0], "y", classes)
            if offset is not None:
                raise ValueError("offset is not supported for the multinomial family")
        else:
            y01, classes = self._loss.check_target(y, X.shape[0], "y")
        s = v.check_sample_weight(sample_weight, X.shape[0])
        if classes is not None:
            self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        design = Design.from_X(X, self.fit_intercept)
        off = None if offset is None else v.check_offset(offset, X.shape[0], "offset")
        if design.A is None and type(design).__name__ == "DaskDesign":
            if multi:
                raise ValueError("the multinomial family needs X in memory or on disk, not a dask array")
            # held on the workers once, so that no graph carries them again
            y01, s = design.keep(design.vector(y01)), design.keep(design.vector(s))
            off = None if off is None else design.keep(design.vector(off))
        return self._fit_design(design, y01, s, init, offset=off)

    def _setup(self, design: Design, y01, s, scale=None, offset=None):
        """Attach training rows and derived constants (penalty mask, lambda in sum form, scale)."""
        self._check_params()
        self._design, self._y, self._s = design, y01, s
        self._offset = design.zeros() if offset is None else offset
        pen = np.ones(design.p)
        if self.fit_intercept:
            pen[-1] = 0.0
        self._pen = np.tile(pen, self._n_blocks())
        lam = self.l2 * (float(s.sum()) if self.penalty == "per_sample" else 1.0)
        self._lam = lam
        n_eff = int(np.count_nonzero(s))
        if lam == 0 and design.p > n_eff:
            raise SingularHessianError(
                f"with l2=0 and {design.p} parameters for {n_eff} samples the Hessian is singular; "
                "add an L2 penalty (l2 > 0, or --l2 on the command line)")
        self.__dict__.pop("_col_l1", None)
        if scale is None:
            col = self._column_l1()
            if not np.all(np.isfinite(col)):     # a dask X is checked here, in this pass
                raise ValueError("X contains NaN or infinity; remove or impute those entries")
            scale = self._gradient_scale(float(np.max(col)), y01, s)
        if scale == 0:
            raise ValueError("X is all zeros (with zero sample weights elsewhere); nothing to fit")
        self._scale = scale

    def _finish(self, theta, converged, n_iter, grad_norm, n_hessians=0, n_hessvec=0):
        self._set_theta(theta)
        self.converged_ = bool(converged)
        self.n_iter_ = int(n_iter)
        self.grad_norm_ = float(grad_norm)
        self.n_hessians_ = int(n_hessians)    # Hessians formed and factored
        self.n_hessvec_ = int(n_hessvec)      # Hessian-vector products (conjugate gradients)
        if not self.converged_:
            warnings.warn(
                f"GLM fit stopped after {self.n_iter_} iterations with relative gradient "
                f"{self.grad_norm_:.2e} > tol={self.tol:g}; raise max_iter or l2",
                ConvergenceWarning, stacklevel=3)
        return self

    def _fit_design(self, design: Design, y01, s, init=None, precond=None, scale=None, offset=None) -> "GLM":
        """Fit on a prepared design; used by ``fit`` and by exact retraining."""
        self._setup(design, y01, s, scale, offset)
        n_params = self._pen.size
        if init is None:
            theta0 = np.zeros(n_params)
        else:
            theta0 = np.asarray(init, dtype=np.float64).ravel()
            if theta0.shape != (n_params,) or not np.all(np.isfinite(theta0)):
                raise ValueError(f"init must be a finite vector of length {n_params}")
        res = newton_solve(self._objective(), theta0, self._scale, self.tol, self.max_iter,
                           check_separable=(self._lam == 0 and self.family in ("logistic", "multinomial")),
                           precond=precond)
        return self._finish(res.theta, res.converged, res.n_iter, res.grad_norm, res.n_hessians, res.n_hessvec)

    def _gradient_scale(self, col_l1_max: float, y, s) -> float:
        """The denominator of the relative gradient (see ``tol``)."""
        if self._loss.bounded_derivative:
            return col_l1_max
        # |l'| is not bounded by 1: measure the gradient against the spread of y too
        spread = float(s @ np.abs(y - (s @ y) / s.sum()) / s.sum())
        return col_l1_max * (spread if spread > 0 else 1.0)

    def _column_l1(self) -> np.ndarray:
        """``sum_i s_i |x_ij|`` per column (the gradient scale), cached."""
        if "_col_l1" not in self.__dict__:
            self._col_l1 = self._design.column_l1(self._s)
        return self._col_l1

    def _n_blocks(self) -> int:
        """Number of parameter blocks of length p: C-1 for multinomial, else 1."""
        return self._loss.n_classes - 1 if self.family == "multinomial" else 1

    def _objective(self):
        if self.family == "multinomial":
            return SoftmaxObjective(self._design, self._y, self._s, self._loss, self._lam, self._pen)
        return Objective(self._design, self._y, self._s, self._loss, self._lam, self._pen, self._offset)

    def _linear(self, design, theta) -> np.ndarray:
        """Linear predictors of ``design``'s rows without offset: ``A theta``, or for
        multinomial the (n, C-1) coordinates ``A B^T`` of the logits."""
        if self.family == "multinomial":
            return design.matvec(np.asarray(theta).reshape(self._n_blocks(), design.p).T)
        return design.matvec(theta)

    def _linear_t(self, design, R) -> np.ndarray:
        """The adjoint of :meth:`_linear`: the gradient in theta of ``sum(R * linear)``."""
        if self.family == "multinomial":
            return design.rmatvec(R).T.ravel()
        return design.rmatvec(R)

    def _z(self, theta) -> np.ndarray:
        """Training linear predictors ``A theta + offset`` (multinomial: (n, C-1))."""
        if self.family == "multinomial":
            return self._linear(self._design, theta)
        return self._design.matvec(theta) + self._offset

    def unpack(self, theta=None):
        """``(coef, intercept)`` of a parameter vector (default: the fit).

        Multinomial: ``coef`` of shape (n_classes, n_features) and ``intercept`` (n_classes,),
        both summing to zero over the classes. Other families: ``coef`` (n_features,) and a
        float ``intercept``. Useful to read a change ``att.delta(T)`` in the usual layout.
        """
        self._check_fitted()
        theta = self.theta_ if theta is None else np.asarray(theta, dtype=np.float64)
        if self.family == "multinomial":
            W = theta.reshape(self._n_blocks(), -1).T @ self._loss.Q.T     # (p, C)
            if self.fit_intercept:
                return W[:-1].T.copy(), W[-1].copy()
            return W.T.copy(), np.zeros(W.shape[1])
        if self.fit_intercept:
            return theta[:-1].copy(), float(theta[-1])
        return theta.copy(), 0.0

    def _set_theta(self, theta):
        self.theta_ = np.asarray(theta, dtype=np.float64)
        if self.family == "multinomial":
            self.coef_, self.intercept_ = self.unpack(self.theta_)
        elif self.fit_intercept:
            self.coef_, self.intercept_ = self.theta_[:-1].copy(), float(self.theta_[-1])
        else:
            self.coef_, self.intercept_ = self.theta_.copy(), 0.0

    # ------------------------------------------------------------- prediction
    def _check_fitted(self):
        if not hasattr(self, "theta_"):
            raise ValueError("this GLM is not fitted yet; call fit(X, y) first")

    def _design_for(self, X, name: str = "X") -> Design:
        """Validated design of new rows, with this model's intercept convention."""
        self._check_fitted()
        X = v.check_X(X, name)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} has {X.shape[1]} features but the model was fitted with {self.n_features_in_}")
        return Design.from_X(X, self.fit_intercept)

    def decision_function(self, X, offset=None) -> np.ndarray:
        """Linear predictor ``x^T coef + intercept (+ offset)`` for each row; for the
        multinomial family the sum-to-zero logits, shape (n_samples, n_classes)."""
        design = self._design_for(X)
        if self.family == "multinomial":
            if offset is not None:
                raise ValueError("offset is not supported for the multinomial family")
            return self._loss.logits(self._linear(design, self.theta_))
        z = design.matvec(self.theta_)
        return z if offset is None else z + v.check_offset(offset, design.n, "offset")

    def predict_proba(self, X, offset=None) -> np.ndarray:
        """Logistic: probability of ``classes_[1]``, shape (n_samples,). Multinomial: the
        probability of each class in ``classes_``, shape (n_samples, n_classes)."""
        if self.family == "multinomial":
            design = self._design_for(X)
            if offset is not None:
                raise ValueError("offset is not supported for the multinomial family")
            return self._loss.mean(self._linear(design, self.theta_))
        if self.family != "logistic":
            raise ValueError(f"predict_proba is for the logistic and multinomial families; use predict for {self.family!r}")
        return self._loss.mean(self.decision_function(X, offset))

    def predict(self, X, offset=None) -> np.ndarray:
        """Predicted class (logistic, multinomial) or mean response (squared: x^T theta;
        poisson: exp)."""
        if self.family == "logistic":
            return self.classes_[(self.decision_function(X, offset) > 0).astype(int)]
        if self.family == "multinomial":
            return self.classes_[np.argmax(self.decision_function(X, offset), axis=1)]
        return self._loss.mean(self.decision_function(X, offset))

    # ---------------------------------------------------- objective in sum form
    def objective(self, theta=None) -> float:
        """Training objective in sum form at ``theta`` (default: the fit)."""
        self._check_fitted()
        theta = self.theta_ if theta is None else np.asarray(theta, dtype=np.float64)
        return self._objective().value_at(theta, self._z(theta))

    def gradient(self, theta=None) -> np.ndarray:
        """Gradient of the sum-form objective, shape (n_params,)."""
        self._check_fitted()
        theta = self.theta_ if theta is None else np.asarray(theta, dtype=np.float64)
        return self._objective().gradient_at(theta, self._z(theta))

    def hessian(self, theta=None) -> np.ndarray:
        """Hessian of the sum-form objective, shape (n_params, n_params)."""
        self._check_fitted()
        theta = self.theta_ if theta is None else np.asarray(theta, dtype=np.float64)
        return self._objective().hessian_at(self._z(theta))

    @property
    def n_samples_(self) -> int:
        self._check_fitted()
        return self._design.n

    def __repr__(self):
        return (f"GLM(family={self.family!r}, l2={self.l2!r}, penalty={self.penalty!r}, "
                f"fit_intercept={self.fit_intercept!r})")
