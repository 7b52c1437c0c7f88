"""Attribution for weights trained anywhere (PyTorch, JAX, a hand-written solver): refined to
the certified optimum of the objective they are meant to minimise."""

from __future__ import annotations

import warnings

import numpy as np

from . import _validation as v
from .adapters import _multinomial_theta, _refine
from .attribution import Attribution
from .exceptions import ConvergenceWarning
from .glm import GLM

__all__ = ["from_weights"]


_WEIGHT_FAMILIES = ("logistic", "multinomial", "squared", "poisson")


def from_weights(X, y, coef, intercept=None, *, family: str = "logistic", l2: float, penalty: str = "fixed",
                 sample_weight=None, classes=None, tol: float = 1e-9, max_move: float = 1e-3) -> Attribution:
    """Attribution for weights trained elsewhere (PyTorch, JAX, a hand-written solver).

    Parameters
    ----------
    X, y, sample_weight : the training data
    coef : array of shape (n_features,), or (C, n_features) for ``family="multinomial"``
        The weights, in the layout of ``torch.nn.Linear(n_features, C).weight`` (a binary
        model's ``(1, n_features)`` is accepted); pass NumPy arrays (``t.detach().numpy()``).
    intercept : float or array of shape (C,), optional
        The bias; None for a model without an intercept.
    family : {"logistic", "multinomial", "squared", "poisson"}
    l2, penalty : float and {"fixed", "per_sample"}
        The objective the weights are meant to minimise, in leaveout's conventions (see
        :class:`~leaveout.GLM`): the intercept is never penalised. A mean loss with PyTorch's
        ``weight_decay=wd`` is ``penalty="per_sample", l2=wd`` (PyTorch also decays the
        bias, leaveout does not).
    classes : array-like, optional
        The label of each of the C rows of ``coef`` (default ``0 .. C - 1``).
    tol : float
        Certified tolerance of the refined fit.
    max_move : float
        A UserWarning says so when refining moves the weights by more than this (relative).

    The attribution is of a certified optimum: the weights are refined by Newton's method
    from where they are to the optimum of the stated objective. Weights from stochastic
    training or early stopping are not an optimum of any such objective; then the
    attribution is of the optimum nearest them (the warning says how far it is), never of
    the given weights themselves. A ValueError is raised when that objective has no finite
    optimum to refine to (with ``l2=0`` and separable classes).
    """
    v.check_choice(family, "family", _WEIGHT_FAMILIES)
    if not (np.ndim(l2) == 0 and np.isfinite(l2) and l2 >= 0):
        raise ValueError(f"from_weights: l2 must be one finite number >= 0, got {l2!r}")
    coef = np.asarray(coef, dtype=np.float64)
    fit_intercept = intercept is not None
    if family == "multinomial":
        if coef.ndim != 2 or coef.shape[0] < 3:
            raise ValueError(f"from_weights: the multinomial coef must be (C, n_features) with C >= 3 classes, "
                             f"got shape {coef.shape}")
        n_classes = coef.shape[0]
        icpt = np.zeros(n_classes) if intercept is None else np.asarray(intercept, dtype=np.float64).reshape(-1)
        if icpt.shape != (n_classes,):
            raise ValueError(f"from_weights: intercept must have one entry per class ({n_classes}), got shape "
                             f"{np.shape(intercept)}")
        classes = np.arange(n_classes) if classes is None else np.asarray(classes)
        if classes.shape != (n_classes,):
            raise ValueError(f"from_weights: classes must name the {n_classes} rows of coef, got {classes.shape[0]}")
        theta0 = _multinomial_theta(coef, icpt, fit_intercept)
    else:
        if classes is not None:
            raise ValueError("from_weights: classes= is for family='multinomial'")
        if coef.ndim == 2 and coef.shape[0] == 1:
            coef = coef[0]
        if coef.ndim != 1:
            raise ValueError(f"from_weights: coef must be (n_features,) for family={family!r}, got shape {coef.shape}")
        icpt = np.asarray(intercept, dtype=np.float64).reshape(-1) if fit_intercept else None
        if fit_intercept and icpt.size != 1:
            raise ValueError(f"from_weights: intercept must be one number for family={family!r}")
        theta0 = np.concatenate([coef, icpt]) if fit_intercept else coef.copy()
    n_features = np.shape(X)[1] if len(np.shape(X)) == 2 else None
    if n_features is not None and coef.shape[-1] != n_features:
        raise ValueError(f"from_weights: coef has {coef.shape[-1]} features, X has {n_features} columns")
    glm = GLM(family, l2=float(l2), penalty=penalty, fit_intercept=fit_intercept)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            return _refine(glm, X, y, sample_weight, theta0, max_move, "from_weights", tol,
                           classes=classes if family == "multinomial" else None, converged=False,
                           moved_note=("from_weights: the weights are not an optimum of this objective (relative "
                                       "gradient {start:.1e} there); refining moved them by {moved:.1e} (relative): "
                                       "the attribution is of the certified optimum nearest them"))
        except ConvergenceWarning:
            raise ValueError(f"from_weights: refining the weights did not converge to an optimum of the {family} "
                             f"objective with l2={l2:g} ({penalty}); with l2=0 the classes may be separable (no "
                             "finite optimum): give the l2 > 0 the weights are meant for") from None
