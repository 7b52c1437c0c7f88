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
import scipy.sparse as sp

from .. import _validation as v
from ..design import Design, as_design
from ..exceptions import ConvergenceWarning
from ..tables.fit import column_or_values, frame_for_fit
from ..tables.frame import ColumnEncoding, check_missing, is_frame
from .losses import SoftmaxLoss, get_loss
from .objective import PENALTIES, make_objective
from .solver import newton_solve

__all__ = ["GLM"]


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
    weight_kind : {"analytic", "frequency"}, default="analytic"
        What a sample weight means for standard errors (the fit, and every removal estimate,
        is the same under both). ``"analytic"``: row i is one observation whose loss counts
        ``s_i`` times (statsmodels ``WLS(weights=)``, ``GLM(var_weights=)``); ``"frequency"``: row
        i stands for ``s_i`` identical rows (``GLM(freq_weights=)``), so the number of
        observations is ``sum s``. See :mod:`leaveout.audit.se`.

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
    objective_ : Objective
        The training objective that was minimised (design, loss, coded labels, sample
        weights, penalty in sum form, offsets); :meth:`objective` is its value.
    feature_names_in_ : ndarray of str
        Column names, when fitted on a DataFrame or a formula (formulaic's names).
    row_ids_ : ndarray or None
        The index of the training rows used, when fitted on a DataFrame or a formula
        (``None`` for arrays: rows are known by position).
    n_dropped_ : int
        Rows left out for missing values (``missing="drop"``).
    encoding_ : ColumnEncoding or FormulaEncoding or None
        How any other table is turned into this model's columns.
    params_ : Series or DataFrame
        The coefficients by name (see the property).
    """

    #: the classes of formulas with absorbed fixed effects (``|``) and with instruments
    #: (``| e ~ z``), set by :mod:`.absorb` and :mod:`.iv`
    fixed_effects_class = iv_class = None

    def __init__(self, family: str = "logistic", l2: float = 1.0, penalty: str = "fixed",
                 fit_intercept: bool = True, tol: float = 1e-9, max_iter: int = 100,
                 weight_kind: str = "analytic"):
        self.family = family
        self.l2 = l2
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.weight_kind = weight_kind

    # ------------------------------------------------------------------ fitting
    def _loss_for(self, n_classes=None):
        """Validate the settings; return the loss (multinomial: for ``n_classes``)."""
        loss = get_loss(self.family)
        if loss is SoftmaxLoss:
            loss = SoftmaxLoss(n_classes if n_classes is not None else len(self.classes_))
        self.l2 = v.check_l2(self.l2)
        v.check_choice(self.penalty, "penalty", PENALTIES)
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ValueError(f"tol must be a positive number, got {self.tol!r}")
        if not (isinstance(self.max_iter, int) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        v.check_weight_kind(self.weight_kind)
        return loss

    def fit(self, X, y, sample_weight=None, init=None, offset=None, classes=None,
            missing: str = "raise") -> "GLM":
        """Fit to ``X`` (n_samples, n_features), dense or scipy.sparse, and ``y``.

        Parameters
        ----------
        X : array-like, sparse matrix or DataFrame of shape (n_samples, n_features)
            Also a ``numpy.memmap`` or ``.npy`` path (streamed from disk) or a
            ``dask.array`` (computed where its chunks live). A pandas DataFrame of numeric
            columns keeps its column names (``feature_names_in_``) and its index (the row
            ids, ``row_ids_``); for categorical columns use :meth:`from_formula`.
        y : array-like of shape (n_samples,)
            Logistic: two distinct values (0/1, bool, or any two labels, mapped in sorted
            order). Multinomial: any labels. Squared / Poisson: real / non-negative values.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights: row i's loss counts ``s_i`` times. Whether a weight is
            analytic or a frequency matters only for standard errors (``weight_kind``).
        init : array-like of shape (n_features + fit_intercept,), optional
            Warm start (intercept last; multinomial: ``theta`` as in the module docstring).
        offset : array-like of shape (n_samples,), optional
            Known part of each linear predictor, ``z_i = x_i^T theta + offset_i`` (e.g. the
            log exposure of a Poisson rate). A removed row takes its offset along. Not
            available for the multinomial family.
        classes : array-like, optional
            Multinomial only: the classes in the order of ``predict_proba``'s columns
            (default: the sorted distinct labels); each must occur in ``y``.
        missing : {"raise", "drop"}, default="raise"
            DataFrame X only: a row with a missing value is an error naming how many and the
            first ids, or (``"drop"``) is left out, like statsmodels' ``missing="drop"``;
            ``n_dropped_`` counts them and ``row_ids_`` stays aligned.
        """
        for attr in ("classes_", "objective_", "theta_", "feature_names_in_"):
            self.__dict__.pop(attr, None)
        self.encoding_, self.row_ids_, self.n_dropped_ = None, None, 0
        get_loss(self.family)
        check_missing(missing)
        if is_frame(X):
            table = frame_for_fit(X, y, sample_weight, offset, missing)
            X, y, sample_weight, offset = table.X, table.y, table.sample_weight, table.offset
        elif missing != "raise":
            raise ValueError("missing='drop' needs X as a DataFrame (its index keeps track of the dropped rows)")
        else:
            table = None
        self._fit_arrays(X, y, sample_weight, init, offset, classes,
                         names=None if table is None else table.encoding.feature_names)
        if table is not None:
            self.encoding_, self.row_ids_, self.n_dropped_ = table.encoding, table.row_ids, table.n_dropped
            self.feature_names_in_ = table.encoding.feature_names
        return self

    @classmethod
    def from_formula(cls, formula: str, data, family: str = "logistic", l2: float | None = None,
                     penalty: str = "fixed", sample_weight=None, offset=None, missing: str = "raise",
                     classes=None, **options) -> "GLM":
        """Fit ``formula`` (``"y ~ x1 + C(g) + x1:x2"``) to the DataFrame ``data``.

        Fixed effects after a ``|`` (``"y ~ x1 + x2 | firm + year"``, fixest's syntax) are
        absorbed: the result is a :class:`~leaveout.glm.absorb.FixedEffectsGLM` (unpenalised).
        Instruments (``"y ~ w | e ~ z1 + z2"``, pyfixest's syntax; family "squared") give a
        :class:`~leaveout.glm.iv.IV2SLS`.

        The formula is encoded by formulaic: ``C(g)`` treatment-coded dummies named like
        ``"C(g)[T.b]"``, ``x1:x2`` interactions, ``np.log(x)`` transforms. The encoding is kept
        (``encoding_``) and reused for any other table given to ``predict``,
        ``TestPrediction``, ``TestLoss`` (whose labels then come from the table), so test rows
        are encoded as the training rows were; a level the training table did not have is an
        error naming it. The formula's intercept (there unless ``- 1`` or ``0 +``) decides
        ``fit_intercept`` and stays unpenalised.

        Parameters
        ----------
        formula : str
        data : DataFrame
        family, l2, penalty : as for :class:`GLM`
        sample_weight, offset : str or array-like, optional
            A column of ``data``, or one value per row of ``data``.
        missing : {"raise", "drop"}
            Rows with a missing value in a column the formula uses: an error, or dropped.
        classes : array-like, optional
            Multinomial only (see :meth:`fit`).
        **options
            ``tol``, ``max_iter``.

        Returns
        -------
        GLM
            Fitted, with ``feature_names_in_``, ``row_ids_`` (the index of the rows used) and
            ``n_dropped_``.
        """
        from ..tables.formula import FormulaEncoding
        if not is_frame(data):
            raise ValueError("from_formula needs data as a pandas DataFrame")
        check_missing(missing)
        from ..tables.formula import is_iv_formula
        if is_iv_formula(formula):
            IV2SLS = GLM.iv_class                            # registered by .iv (no import cycle)
            if family != "squared" or l2 not in (None, 0) or penalty != "fixed" or classes is not None:
                raise ValueError("instrumental variables ('y ~ w | e ~ z') are two-stage least squares: give "
                                 "family='squared' (--family squared) and no l2 penalty")
            return IV2SLS.from_formula(formula, data, sample_weight=sample_weight, missing=missing,
                                       weight_kind=options.pop("weight_kind", "analytic"))
        if isinstance(formula, str) and "|" in formula:
            FixedEffectsGLM = GLM.fixed_effects_class       # registered by .absorb (no import cycle)
            if l2 not in (None, 0) or penalty != "fixed" or classes is not None:
                raise ValueError("a model with fixed effects is unpenalised: leave l2 at 0 (and penalty, classes "
                                 "at their defaults)")
            return FixedEffectsGLM.from_formula(formula, data, family=family, sample_weight=sample_weight,
                                                offset=offset, missing=missing, **options)
        l2 = 1.0 if l2 is None else l2
        enc, X, y, ids = FormulaEncoding.learn(formula, data, missing)
        rows = data.index.isin(ids) if len(ids) < len(data.index) else slice(None)
        sw, off = (column_or_values(data, a, rows, name) for a, name in
                   ((sample_weight, "sample_weight"), (offset, "offset")))
        model = cls(family=family, l2=l2, penalty=penalty, fit_intercept=enc.has_intercept, **options)
        model._fit_arrays(X, y, sw, None, off, classes, names=enc.feature_names)
        model.encoding_, model.row_ids_, model.n_dropped_ = enc, ids, len(data.index) - len(ids)
        model.feature_names_in_ = enc.feature_names
        return model

    def _fit_arrays(self, X, y, sample_weight, init, offset, classes, names=None) -> "GLM":
        X = v.check_X(X, "X")
        multi = self.family == "multinomial"
        if classes is not None and not multi:
            raise ValueError("classes is for the multinomial family only")
        if multi:
            y01, classes = SoftmaxLoss.check_target(y, X.shape[0], "y", classes)
            if offset is not None:
                raise ValueError("offset is not supported for the multinomial family")
        else:
            y01, classes = get_loss(self.family).check_target(y, X.shape[0], "y")
        loss = self._loss_for(None if classes is None else len(classes))
        s = v.check_sample_weight(sample_weight, X.shape[0])
        off = None if offset is None else v.check_offset(offset, X.shape[0], "offset")
        design = as_design(X, self.fit_intercept)
        if multi and not design.local:
            raise ValueError("the multinomial family needs X in memory or on disk, not a dask array")
        # where per-sample vectors live elsewhere (a cluster), send them there once
        y01, s = design.keep(design.vector(y01)), design.keep(design.vector(s))
        off = None if off is None else design.keep(design.vector(off))
        if classes is not None:
            self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        objective = make_objective(design, loss, y01, s, self.l2, self.penalty, self.fit_intercept, off)
        objective = objective.check()
        if self.l2 == 0:
            self._check_rank(X, np.asarray(s), names)
        return self.fit_objective(objective, init=init)

    def _check_rank(self, X, s, names):
        """Unpenalised: refuse a design whose columns are linearly dependent on the weighted
        rows, naming them (see :mod:`._rank`); skipped for designs too large to check cheaply
        (there the solver's singular-Hessian error stands)."""
        from ._rank import CHECK_MAX_CELLS, collinear_groups, describe_groups
        if not (isinstance(X, np.ndarray) or sp.issparse(X)):
            return
        n, p = X.shape
        if n * (p + self.fit_intercept) ** 2 > CHECK_MAX_CELLS:
            return
        groups = collinear_groups(X, s, self.fit_intercept)
        if groups:
            from ..exceptions import SingularHessianError
            cols = list(names) if names is not None else [f"x{j}" for j in range(p)]
            cols += ["Intercept"] * self.fit_intercept
            n_rows = int(np.count_nonzero(s > 0))
            raise SingularHessianError(
                f"the unpenalised fit is not unique: {describe_groups(groups, cols, n_rows)}; drop or combine "
                "them, or add an L2 penalty (l2 > 0, or --l2 on the command line)")

    def fit_objective(self, objective, init=None, precond=None) -> "GLM":
        """Minimise a prepared :class:`~leaveout.glm.objective.Objective` to the certified
        tolerance: the one path of :meth:`fit` and of every refit.

        Parameters
        ----------
        objective : Objective
            This model's training objective, or the same with other sample weights
            (``model.objective_.without(T)`` removes the rows T).
        init : ndarray of shape (n_params,), optional
            Warm start (default: zeros).
        precond : callable, optional
            ``r -> approx H^{-1} r`` for a Hessian close to the one at the optimum.
        """
        n_params = objective.pen.size
        if init is None:
            theta0 = np.zeros(n_params)
        else:
            theta0 = np.asarray(init, dtype=np.float64).ravel()
            if theta0.shape != (n_params,) or not np.all(np.isfinite(theta0)):
                raise ValueError(f"init must be a finite vector of length {n_params}")
        result = newton_solve(objective, theta0, self.tol, self.max_iter, precond=precond)
        return self.set_solution(objective, result)

    def set_solution(self, objective, result) -> "GLM":
        """Attach a solved objective and the solver's result (as :meth:`fit_objective` does);
        warns with a ConvergenceWarning when the result is not converged."""
        self.objective_ = objective
        self._set_theta(result.theta)
        self.converged_ = bool(result.converged)
        self.n_iter_ = int(result.n_iter)
        self.grad_norm_ = float(result.grad_norm)
        self.n_hessians_ = int(result.n_hessians)    # Hessians formed and factored
        self.n_hessvec_ = int(result.n_hessvec)      # Hessian-vector products (conjugate gradients)
        if not self.converged_:
            warnings.warn(
                f"GLM fit stopped after {self.n_iter_} iterations with relative gradient "
                f"{self.grad_norm_:.2e} > tol={self.tol:g}; raise max_iter or l2",
                ConvergenceWarning, stacklevel=3)
        return self

    def refitted(self, objective, init=None, precond=None, tol=None, max_iter=None, result=None) -> "GLM":
        """A new GLM with this model's settings and classes, fitted to ``objective`` (this
        model's training objective with other weights), or given its solved ``result``."""
        refit = GLM(family=self.family, l2=self.l2, penalty=self.penalty, fit_intercept=self.fit_intercept,
                    tol=self.tol if tol is None else tol, max_iter=self.max_iter if max_iter is None else max_iter,
                    weight_kind=self.weight_kind)
        for attr in ("classes_", "n_features_in_", "feature_names_in_", "row_ids_", "n_dropped_", "encoding_"):
            if hasattr(self, attr):
                setattr(refit, attr, getattr(self, attr))
        if result is not None:
            return refit.set_solution(objective, result)
        return refit.fit_objective(objective, init=init, precond=precond)

    def unpack(self, theta=None):
        """``(coef, intercept)`` of a parameter vector (default: the fit).

        Multinomial: ``coef`` of shape (n_classes, n_features) and ``intercept`` (n_classes,),
        both summing to zero over the classes. Other families: ``coef`` (n_features,) and a
        float ``intercept``. Useful to read a change ``att.delta(T)`` in the usual layout.
        """
        self.check_fitted()
        theta = self.theta_ if theta is None else np.asarray(theta, dtype=np.float64)
        if self.family == "multinomial":
            obj = self.objective_
            W = theta.reshape(obj.n_blocks, -1).T @ obj.loss.Q.T     # (p, C)
            if self.fit_intercept:
                return W[:-1].T.copy(), W[-1].copy()
            return W.T.copy(), np.zeros(W.shape[1])
        if self.fit_intercept:
            return theta[:-1].copy(), float(theta[-1])
        return theta.copy(), 0.0

    def _set_theta(self, theta):
        self.theta_ = np.asarray(theta, dtype=np.float64)
        self.coef_, self.intercept_ = self.unpack(self.theta_)

    # ------------------------------------------------------------- prediction
    def check_fitted(self):
        """Raise a ValueError unless the model is fitted."""
        if not hasattr(self, "theta_"):
            raise ValueError("this GLM is not fitted yet; call fit(X, y) first")

    def design_for(self, X, name: str = "X") -> Design:
        """Validated design of new rows, with this model's intercept convention; a DataFrame
        is encoded as the training table was (columns by name, or the formula)."""
        self.check_fitted()
        if is_frame(X):
            enc = getattr(self, "encoding_", None) or ColumnEncoding.learn(X, name)
            X = enc.transform(X, name)[0]
        X = v.check_X(X, name)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} has {X.shape[1]} features but the model was fitted with {self.n_features_in_}")
        return as_design(X, self.fit_intercept)

    def decision_function(self, X, offset=None) -> np.ndarray:
        """Linear predictor ``x^T coef + intercept (+ offset)`` for each row; for the
        multinomial family the sum-to-zero logits, shape (n_samples, n_classes)."""
        design = self.design_for(X)
        if self.family == "multinomial":
            if offset is not None:
                raise ValueError("offset is not supported for the multinomial family")
            return self.objective_.loss.logits(self.objective_.linear(design, self.theta_))
        z = design.matvec(self.theta_)
        return z if offset is None else z + v.check_offset(offset, design.n, "offset")

    def predict_proba(self, X, offset=None) -> np.ndarray:
        """The probability of each class in ``classes_``, shape (n_samples, n_classes), as in
        scikit-learn: for the logistic family two columns, ``P(classes_[0])`` and
        ``P(classes_[1])``, so ``predict_proba(X)[:, 1]`` is the probability of the class coded 1
        (what ``TestPrediction`` sums). (Before version 0.2 the logistic family returned that
        column alone, shape (n_samples,).)"""
        if self.family == "multinomial":
            design = self.design_for(X)
            if offset is not None:
                raise ValueError("offset is not supported for the multinomial family")
            return self.objective_.loss.mean(self.objective_.linear(design, self.theta_))
        if self.family != "logistic":
            raise ValueError(f"predict_proba is for the logistic and multinomial families; use predict for {self.family!r}")
        p1 = self.objective_.loss.mean(self.decision_function(X, offset))
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X, offset=None) -> np.ndarray:
        """Predicted class (logistic, multinomial) or mean response (squared: x^T theta;
        poisson: exp)."""
        if self.family == "logistic":
            return self.classes_[(self.decision_function(X, offset) > 0).astype(int)]
        if self.family == "multinomial":
            return self.classes_[np.argmax(self.decision_function(X, offset), axis=1)]
        return self.objective_.loss.mean(self.decision_function(X, offset))

    def response_for(self, data, name: str = "X") -> np.ndarray:
        """The response column of another table, for a model fitted with a formula."""
        self.check_fitted()
        enc = getattr(self, "encoding_", None)
        if enc is None or not is_frame(data):
            raise ValueError(f"labels for {name} are needed: only a model fitted with a formula reads "
                             "them from a table")
        return enc.response(data, name)

    @property
    def params_(self):
        """The coefficients by name, intercept included (as ``"Intercept"``, last): a pandas
        Series, or for the multinomial family a DataFrame with one column per class.
        Names are ``feature_names_in_`` when the model was fitted on a table, else
        ``"x0", "x1", ...``."""
        import pandas as pd
        self.check_fitted()
        names = list(getattr(self, "feature_names_in_", [f"x{j}" for j in range(self.n_features_in_)]))
        coef, intercept = self.coef_, self.intercept_
        if self.family == "multinomial":
            W = np.vstack([coef.T, intercept[None]]) if self.fit_intercept else coef.T
            return pd.DataFrame(W, index=names + ["Intercept"] * self.fit_intercept, columns=list(self.classes_))
        values = np.append(coef, intercept) if self.fit_intercept else coef
        return pd.Series(values, index=names + ["Intercept"] * self.fit_intercept, name="coef")

    # ---------------------------------------------------- objective in sum form
    def objective(self, theta=None) -> float:
        """Training objective in sum form at ``theta`` (default: the fit)."""
        self.check_fitted()
        theta = self.theta_ if theta is None else np.asarray(theta, dtype=np.float64)
        return self.objective_.value(theta)

    def gradient(self, theta=None) -> np.ndarray:
        """Gradient of the sum-form objective, shape (n_params,)."""
        self.check_fitted()
        theta = self.theta_ if theta is None else np.asarray(theta, dtype=np.float64)
        return self.objective_.gradient(theta)

    def hessian(self, theta=None) -> np.ndarray:
        """Hessian of the sum-form objective, shape (n_params, n_params)."""
        self.check_fitted()
        theta = self.theta_ if theta is None else np.asarray(theta, dtype=np.float64)
        return self.objective_.hessian(theta)

    @property
    def n_samples_(self) -> int:
        self.check_fitted()
        return self.objective_.design.n

    def __repr__(self):
        return (f"GLM(family={self.family!r}, l2={self.l2!r}, penalty={self.penalty!r}, "
                f"fit_intercept={self.fit_intercept!r}" + (f", weight_kind={self.weight_kind!r})"
                                                           if self.weight_kind != "analytic" else ")"))
