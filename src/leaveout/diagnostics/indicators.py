"""Per removal set: the theorem restricted to the set, the exact gap between NS and RIF, and
two signs of a step too large for its quadratic model.

* the Newton decrement of the leave-T-out objective at the fit, ``sqrt(g_T^T H_{-T}^{-1} g_T)``
  (affine invariant; for self-concordant objectives Newton's method converges quadratically
  once it is below 1/4 and the quadratic model is trusted below about 1/2; Boyd and
  Vandenberghe, Convex Optimization, section 9.6);
* the largest change of any training row's or metric row's linear predictor under NS: a
  logit or log-rate that moves by more than 1 changes that row's curvature by up to a
  factor e, so a one-step estimate built on the curvature at the fit is out of its depth.

:data:`DECREMENT_LIMIT` and :data:`CHANGE_LIMIT` are those two thresholds; for the squared
loss the quadratic model is exact and no step is flagged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .theorem import TheoremConstants, _Pieces, set_pairs

__all__ = ["SetDiagnostics", "set_diagnostics", "set_diagnostics_many", "step_indicators", "ProtocolTrust", "DECREMENT_LIMIT", "CHANGE_LIMIT"]

DECREMENT_LIMIT = 0.5
CHANGE_LIMIT = 1.0


@dataclass
class SetDiagnostics:
    """What one removal set says about the one-step estimates of one metric."""

    k: int
    gap: float                  # |<grad f, NS - RIF>|, exact
    bound: float                # the theorem's bound with the set's constants
    applies: bool               # k <= the set's size threshold
    applies_global: bool | None  # k <= the global threshold (None when not computed)
    held: bool | None           # gap <= bound where the theorem applies
    newton_decrement: float
    max_train_change: float
    max_metric_change: float
    outside: bool               # a step too large for its quadratic model

    def to_dict(self) -> dict:
        return asdict(self)


def _metric_rows(att, metric):
    X = getattr(metric, "X", None)
    return None if X is None else att.model.design_for(X, "X_test")


def step_indicators(att, metric, T):
    """``(decrement, max linear-predictor change, outside)`` of the Newton step for ``T``."""
    G, system = att.newton_system(T)
    ns = system.apply(G)
    decrement = float(np.sqrt(max(float(G @ ns), 0.0)))
    change = float(np.max(np.abs(np.asarray(att.design.matvec(ns)))))
    rows = _metric_rows(att, metric)
    if rows is not None:
        change = max(change, float(np.max(np.abs(rows.matvec(ns)))))
    quadratic = att.estimators.objective.loss.name == "squared"
    return decrement, change, bool(not quadratic and (decrement > DECREMENT_LIMIT or change > CHANGE_LIMIT))


def _set_part(att, pc, T):
    """``(C_R, C_ell, delta, epsilon, threshold)`` of the rows of ``T``; delta, epsilon and the
    threshold are NaN where a probe of T's pairs shows that the theorem cannot apply to T
    (:func:`~leaveout.diagnostics.theorem.set_pairs`), so its bound is NaN there."""
    C_R = float(np.max(1.0 / (1.0 - np.clip(pc.lev[T], None, 1 - 1e-16))))
    C_ell = float(np.max(pc.grad_norms(T)))
    found = set_pairs(pc, att.curvature.factor, T, C_R)
    if found is None:
        nan = float("nan")
        return C_R, C_ell, nan, nan, nan
    delta, eps = found
    return C_R, C_ell, delta, eps, (1.0 / (2 * delta * C_R) if delta > 0 else float("inf"))


def set_diagnostics(att, metric, T, global_constants=None, pieces=None) -> SetDiagnostics:
    """:class:`SetDiagnostics` of removing ``T`` for ``metric`` (linear effects)."""
    T = np.sort(np.asarray(T))
    phi = np.asarray(metric.gradient(att.model, att.theta), dtype=np.float64)
    G, system = att.newton_system(T)
    ns = system.apply(G)
    rif = att.delta(T, "rif")
    gap = abs(float(phi @ (ns - rif)))
    pc = pieces if pieces is not None else _Pieces(att, metric)
    C_R, C_ell, delta, eps, k_thr = _set_part(att, pc, T)
    eta = float(np.max(pc.sw[T] * np.abs(pc.xf[T])))
    c = TheoremConstants(C_ell, C_R, delta, eps, eta, k_thr, True, int(T.size))
    bound = c.bound(T.size)
    applies = c.applies(T.size)
    decrement = float(np.sqrt(max(float(G @ ns), 0.0)))
    train = float(np.max(np.abs(np.asarray(att.design.matvec(ns)))))
    rows = _metric_rows(att, metric)
    test = float(np.max(np.abs(rows.matvec(ns)))) if rows is not None else 0.0
    quadratic = att.estimators.objective.loss.name == "squared"
    outside = not quadratic and (decrement > DECREMENT_LIMIT or max(train, test) > CHANGE_LIMIT)
    g_applies = None if global_constants is None else bool(global_constants.applies(T.size))
    return SetDiagnostics(int(T.size), gap, bound, bool(applies), g_applies,
                          (gap <= bound * (1 + 1e-9)) if applies else None, decrement, train, test, bool(outside))


def set_diagnostics_many(att, metrics: dict, T, G, ns, rif, pieces: dict, global_constants: dict | None = None,
                         train_change: float | None = None) -> dict:
    """:func:`set_diagnostics` of every metric for one set, from the set's gradient ``G`` and
    NS / RIF steps already computed: the set's constants (its pairs), the decrement and the
    training rows' change are computed once; eta, the gap and the metric rows' change per
    metric. ``train_change``: ``max |X ns|`` when the caller has it (a pass over X saved).
    Returns metric name -> :class:`SetDiagnostics`."""
    T = np.sort(np.asarray(T))
    first = pieces[next(iter(metrics))]
    C_R, C_ell, delta, eps, k_thr = _set_part(att, first, T)
    decrement = float(np.sqrt(max(float(G @ ns), 0.0)))
    train = (float(np.max(np.abs(np.asarray(att.design.matvec(ns))))) if train_change is None
             else float(train_change))
    quadratic = att.estimators.objective.loss.name == "squared"
    out = {}
    for name, metric in metrics.items():
        gap = abs(float(pieces[name].phi @ (ns - rif)))
        eta = float(np.max(pieces[name].sw[T] * np.abs(pieces[name].xf[T])))
        c = TheoremConstants(C_ell, C_R, delta, eps, eta, k_thr, True, int(T.size))
        bound, applies = c.bound(T.size), c.applies(T.size)
        pc = pieces[name]
        if not hasattr(pc, "metric_rows"):
            pc.metric_rows = _metric_rows(att, metric)       # built once, for every set
        rows = pc.metric_rows
        test = float(np.max(np.abs(rows.matvec(ns)))) if rows is not None else 0.0
        outside = not quadratic and (decrement > DECREMENT_LIMIT or max(train, test) > CHANGE_LIMIT)
        g = None if global_constants is None else bool(global_constants[name].applies(T.size))
        out[name] = SetDiagnostics(int(T.size), gap, bound, bool(applies), g,
                                   (gap <= bound * (1 + 1e-9)) if applies else None, decrement, train, test,
                                   bool(outside))
    return out


class ProtocolTrust:
    """The per-set trust quantities of ``leaveout reproduce`` for several metrics, with what
    every set shares computed once: the global constants (exact up to ``exact_limit`` rows)
    and each metric's pieces.

    :meth:`row` gives, per metric, ``ns_rif_gap`` (``|<grad f, NS - RIF>|``), ``set_bound``
    (the theorem's bound with the set's constants), ``set_applies`` / ``global_applies``
    (whether the set's size is within the threshold of the set's / the global constants),
    ``newton_decrement`` and ``max_change`` (the largest change of a training row's linear
    predictor under NS).

    The set's constants need every pair of its rows (a solve per row): they are computed for
    sets of at most :attr:`set_limit` rows (64), where ``set_bound`` is NaN and
    ``set_applies`` false beyond it. No dataset measured comes near: the global thresholds
    are below one row, and the largest set where a set's own threshold applied had 29 rows.
    """

    set_limit = 64

    def __init__(self, att, metrics: dict, exact_limit: int = 20000):
        from .theorem import theorem_constants
        self.att, self.names = att, list(metrics)
        self.pieces = {m: _Pieces(att, metrics[m]) for m in self.names}
        self.phi = {m: np.asarray(metrics[m].gradient(att.model, att.theta), dtype=np.float64) for m in self.names}
        self.constants = theorem_constants(att, metrics[self.names[0]], exact_limit=exact_limit,
                                           pieces=self.pieces[self.names[0]])

    def row(self, T, G, ns, rif, max_change):
        from .theorem import TheoremConstants, _pairs_from_half
        T = np.sort(np.asarray(T))
        first = self.pieces[self.names[0]]
        factor = self.att.curvature.factor
        checked = T.size <= self.set_limit
        if not checked:
            delta = eps = float("nan")
        elif T.size > 1 and factor.half_solves:
            delta, eps = _pairs_from_half(first, factor, T)
        else:
            delta, eps = first.pair_maxima(T, T) if T.size > 1 else (0.0, 0.0)
        C_R = float(np.max(1.0 / (1.0 - np.clip(first.lev[T], None, 1 - 1e-16))))
        C_ell = float(np.max(first.grad_norms(T)))
        k_thr = (1.0 / (2 * delta * C_R) if delta > 0 else float("inf")) if checked else float("nan")
        decrement = float(np.sqrt(max(float(G @ ns), 0.0)))
        out = {}
        for m in self.names:
            eta = float(np.max(self.pieces[m].sw[T] * np.abs(self.pieces[m].xf[T])))
            c = TheoremConstants(C_ell, C_R, delta, eps, eta, k_thr, True, int(T.size))
            out[m] = {"ns_rif_gap": abs(float(self.phi[m] @ (ns - rif))),
                      "set_bound": c.bound(T.size) if checked else float("nan"),
                      "set_applies": bool(checked and T.size <= k_thr),
                      "global_applies": bool(T.size <= self.constants.k_threshold),
                      "newton_decrement": decrement, "max_change": float(max_change)}
        return out
