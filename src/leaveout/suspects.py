r"""Which training rows are probably mislabelled or harmful? Rankings by (rescaled) influence.

Five kinds of suspicion, higher = more suspicious:

* ``"loss"``: the row's own training loss ``l_i(theta)`` (no estimator; the baseline that
  flipped-label detectors are measured against).
* ``"loo"``: the row's loss when it is left out of the fit, ``l_i(theta + Delta theta_i)``: the
  leave-one-out analogue of the out-of-fold confidence that cleanlab ranks by (IF or RIF
  ``Delta theta_i``; RIF is Sherman-Morrison-exact for the linearised fit).

and three that ask what the row *does*, each with an IF and a RIF version:

* ``"validation"``: how much removing the row alone lowers a validation loss,
  ``-<grad L_val, Delta theta_i>`` (Koh and Liang, 2017, section 5.4).
* ``"self"``: how much the row's own loss rises when it is removed, ``l_i(theta + Delta
  theta_i) - l_i(theta)``: a row the fit bends towards (the paper's poisoning experiment).
* ``"relabel"`` (binary logistic): how much flipping the row's label lowers the validation
  loss. Flipping ``y_i`` changes only that row's gradient, by ``s_i (2 y_i - 1) x_i`` (its
  curvature ``sigma (1 - sigma)`` does not depend on the label). IF's counterpart is one Newton
  step at the fit, ``-H^{-1} s_i (2 y_i - 1) x_i``, which ignores that the flipped row's
  curvature grows as its logit moves (it overshoots badly for confidently fitted rows). The
  RIF version follows the row out and back in with the leverage algebra of RIF: remove it
  (``Delta_1 = RIF_i = H_{-i}^{-1} g_i``, exact Sherman-Morrison, moving its logit to
  ``z1 = z_i + x_i^T Delta_1``), then add it back with the other label *exactly* within the
  quadratic model of the other rows, ``(1/2) d^T H_{-i} d + s_i l(1 - y_i, z1 + x_i^T d)``: the
  row's loss depends on ``x_i^T d`` only, so the minimiser is ``d = -t H_{-i}^{-1} x_i`` with the
  scalar ``t`` solving ``t = s_i (sigma(z1 - t a'_i) - (1 - y_i))``, ``a'_i = x_i^T H_{-i}^{-1} x_i``
  (a monotone equation, solved by bisection). ``Delta theta = Delta_1 + d``.
  Needs the fixed penalty (under "per_sample" a removed row would take a penalty share along
  that a relabelled one keeps).

References
----------
Koh and Liang (2017), Understanding black-box predictions via influence functions; the paper
in ``shared/paper`` (RIF, and its poisoning experiment, Figure 3).
"""

from __future__ import annotations

import warnings

import numpy as np

from .exceptions import ConvergenceWarning

__all__ = ["KINDS", "suspicion", "relabel_deltas_dot", "suspects", "verify"]

KINDS = ("loss", "loo", "self", "validation", "relabel")
#: the default: the best detector of flipped labels in benchmarks/bench_suspects.py (the
#: leave-one-out loss by IF, narrowly ahead of the training loss and cleanlab; RIF stays the
#: default of the kinds that ask what a removal or a relabelling does, where it is the better
#: estimate)
DEFAULT_KIND = "loo"
DEFAULT_METHOD = {"loss": "if", "loo": "if", "self": "rif", "validation": "rif", "relabel": "rif"}


def _check(att, kind, validation, method):
    if kind in KINDS and method is None:
        method = DEFAULT_METHOD[kind]
    if att.model.family == "multinomial":
        raise ValueError("suspects are ranked for single-response families (binary logistic, squared, poisson)")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not supported; choose one of {list(KINDS)}")
    if method not in ("rif", "if"):
        raise ValueError(f"method={method!r} is not supported; choose 'rif' or 'if'")
    if kind in ("validation", "relabel") and validation is None:
        raise ValueError(f"kind={kind!r} needs a validation set: validation=TestLoss(X_val, y_val) or (X_val, y_val)")
    if kind == "relabel":
        m = att.model
        if m.family != "logistic":
            raise ValueError("kind='relabel' is for the binary logistic family")
        if m.penalty == "per_sample" and m.l2 > 0:
            raise ValueError("kind='relabel' needs penalty='fixed' (under per_sample a removed row takes a "
                             "penalty share along that a relabelled one keeps)")
    return method


def _validation_metric(validation):
    from .metrics import Metric, TestLoss
    if isinstance(validation, Metric):
        return validation
    X, y = validation
    return TestLoss(X, y)


def _row_pieces(att):
    """Per row: ``s``, ``y`` (0/1), ``z``, curvature ``w`` and ``a_ii = x_i^T H^{-1} x_i``."""
    est = att.estimators
    obj = est.objective
    s, y, z = np.asarray(est.s), np.asarray(obj.y), np.asarray(est.z)
    w = np.asarray(est.w)
    return s, y, z, w, _diag_h_inv(att)


def _diag_h_inv(att):
    """``x_i^T H^{-1} x_i`` for every row (not leverage / w_i: that is 0 / 0 where a row's
    curvature underflows, as it does for confidently fitted rows)."""
    factor = att.curvature.factor
    if factor.half_solves:
        return np.asarray(att.design.quad_rows(factor.L))
    out = np.empty(att.n_samples)
    step = max(1, (1 << 22) // max(att.theta.size, 1))
    for lo in range(0, att.n_samples, step):
        rows = att.design.dense_rows(np.arange(lo, min(att.n_samples, lo + step)))
        out[lo:lo + rows.shape[0]] = np.einsum("ij,ji->i", rows, factor.solve(rows.T))
    return out


def relabel_deltas_dot(att, phi, method: str = "rif") -> np.ndarray:
    """``<phi, Delta theta_i>`` for flipping the label of each row alone (module docstring)."""
    from scipy.special import expit
    s, y, z, w, a = _row_pieces(att)
    xq = np.asarray(att.design.matvec(att.curvature.solve(phi)))       # x_i^T H^{-1} phi
    if method == "if":
        return -s * (2 * y - 1) * xq
    r = np.asarray(att.estimators.r)
    h = w * a
    one = 1 - h
    z1 = z + r * a / one                       # the row's logit once it is removed (RIF)
    a1 = a / one                               # x_i^T H_{-i}^{-1} x_i
    # add it back with label 1 - y: the minimiser of the quadratic model of the other rows plus
    # this row's loss lies on theta_{-i} - t H_{-i}^{-1} x_i, where t = s (sigma(z1 - t a1) - (1 - y))
    lo, hi = -s * (1 - y), s * y               # sigma in (0, 1) brackets t
    for _ in range(100):                       # F(t) = t - s (sigma(z1 - t a1) - (1 - y)) rises in t
        t = 0.5 * (lo + hi)
        up = t - s * (expit(z1 - t * a1) - (1 - y)) > 0
        hi = np.where(up, t, hi)
        lo = np.where(up, lo, t)
    t = 0.5 * (lo + hi)
    return r * xq / one - t * xq / one


def suspicion(att, kind: str = DEFAULT_KIND, validation=None, method: str | None = None) -> np.ndarray:
    """Suspicion score of every training row, shape (n_samples,); higher = more suspicious.
    ``method`` (``"if"`` or ``"rif"``) defaults to ``DEFAULT_METHOD[kind]``."""
    method = _check(att, kind, validation, method)
    if kind == "validation":
        return -np.asarray(att.scores(_validation_metric(validation), method))
    if kind == "relabel":
        f = _validation_metric(validation)
        phi = np.asarray(f.gradient(att.model, att.theta), dtype=np.float64)
        return -relabel_deltas_dot(att, phi, method)
    est = att.estimators
    obj = est.objective
    loss = obj.loss
    if kind == "loss":
        return np.asarray(loss.value(np.asarray(obj.y), np.asarray(est.z)), dtype=np.float64)
    # self: the row's own loss after removing it alone, minus before; loo: after
    s, y, z, w, a = _row_pieces(att)
    r = np.asarray(est.r)
    if method == "if":
        dz = r * a
    else:
        h = w * a
        with np.errstate(divide="ignore"):
            dz = np.where(h < 1 - 1e-12, r * a / (1 - h), np.inf)
    after = np.asarray(loss.value(y, z + dz))
    return after if kind == "loo" else after - np.asarray(loss.value(y, z))


def suspects(att, kind: str = DEFAULT_KIND, k=None, validation=None, method: str | None = None):
    """Training rows ranked by suspicion: a DataFrame sorted by ``score`` (descending) with the
    columns ``id``, ``score``, ``label`` (the row's label) and ``prob`` (the fitted probability
    of that label; logistic), the first ``k`` rows when given."""
    import pandas as pd
    if getattr(att.model, "family", None) == "2sls":
        raise ValueError("suspects does not cover two-stage least squares yet")
    if getattr(att.model, "absorbed_", None) is not None:
        raise ValueError("suspects does not cover models with absorbed fixed effects yet (a row's loss when "
                         "left out needs its group's change too); fit the fixed effects as C(fe) dummies")
    score = suspicion(att, kind, validation, method)
    model = att.model
    est = att.estimators
    y = np.asarray(est.objective.y)
    ids = att.row_ids if att.row_ids is not None else np.arange(att.n_samples)
    classes = getattr(model, "classes_", None)
    labels = classes[y.astype(int)] if classes is not None and model.family == "logistic" else y
    frame = pd.DataFrame({"id": ids, "score": score, "label": labels})
    if model.family == "logistic":
        p1 = est.objective.loss.mean(np.asarray(est.z))
        frame["prob"] = np.where(y == 1, p1, 1 - p1)
    alive = np.asarray(est.s) > 0
    frame = frame[alive].sort_values("score", ascending=False, kind="stable")
    return frame if k is None else frame.head(int(k))


def verify(att, positions, kind: str, validation):
    """Validation loss and accuracy of the certified refit without (``relabel``: with flipped
    labels of) the rows at ``positions``, next to the fit's own."""
    f = _validation_metric(validation)
    model = att.model
    T = np.sort(np.asarray(positions, dtype=np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if kind == "relabel":
            obj = model.objective_
            y = np.asarray(obj.y, dtype=np.float64).copy()
            y[T] = 1 - y[T]
            flipped = type(obj)(obj.design, obj.loss, y, obj.s, obj.l2, obj.penalty, obj.pen, obj.offset)
            refit = model.refitted(flipped, init=model.theta_)
        else:
            refit = att.retrain(T)
    before = {"loss": f.value(model, model.theta_), "accuracy": _accuracy(model, f)}
    after = {"loss": f.value(refit, refit.theta_), "accuracy": _accuracy(refit, f),
             "converged": bool(refit.converged_)}
    return {"k": int(T.size), "kind": kind, "before": before, "after": after}


def _accuracy(model, f):
    """Share of validation rows whose predicted class is their label (classifiers)."""
    X = getattr(f, "X", None)
    if model.family not in ("logistic", "multinomial") or X is None:
        return None
    y = f.y if f.y is not None else model.response_for(X, "validation")
    return float(np.mean(model.predict(X) == np.asarray(y)))
