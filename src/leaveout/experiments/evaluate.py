"""One unit of work of the protocol: certified retrains plus IF / RIF / NS for a batch of
removal sets, as result rows."""

from __future__ import annotations

import warnings

import numpy as np

from ..exceptions import ConvergenceWarning

__all__ = ["evaluate_batch", "batches", "WORK", "BATCH_SETS", "BATCH_ROWS"]

#: Removal sets whose retrains run in lockstep (one batch is the unit of work in flight):
#: at most this many sets, and at most this many removed rows in all (memory).
BATCH_SETS = 14
BATCH_ROWS = 2000


def batches(todo):
    """Consecutive sets (same or neighbouring sizes) grouped so that they share passes over X."""
    out, cur, rows = [], [], 0
    for task in todo:
        k = len(task[1])
        if cur and (len(cur) >= BATCH_SETS or rows + k > BATCH_ROWS):
            out.append(cur)
            cur, rows = [], 0
        cur.append(task)
        rows += k
    if cur:
        out.append(cur)
    return out


#: the attribution and metrics that worker threads share during a run (set by the runner)
WORK = {}


TRUST_NAN = {"ns_rif_gap": float("nan"), "set_bound": float("nan"), "set_applies": False,
             "global_applies": False, "newton_decrement": float("nan"), "max_change": float("nan")}


def evaluate_batch(tasks, att=None, metrics=None, trust=None):
    """Certified retrains plus IF / RIF / NS for a batch of removal sets -> rows per set.

    The retrains of the batch run in lockstep (:meth:`~leaveout.Attribution.retrain_many`), so every
    pass over X serves all of them. ``att``, ``metrics`` and ``trust`` (a
    :class:`~leaveout.diagnostics.indicators.ProtocolTrust`: the per-set trust columns) default
    to the ones shared by the worker threads; a dask worker receives its own copies.
    """
    if att is None:
        att, metrics, trust = WORK["att"], WORK["metrics"], WORK.get("trust")
    deltas, systems, Ts, Gs = [], [], [], []
    for _key, T in tasks:
        d = {"if": att.delta(T, "if"), "rif": att.delta(T, "rif")}
        try:
            G, system = att.newton_system(T, cache=False)
        except ValueError:       # e.g. the set removes a whole class: no Newton step, no refit
            d["ns"], system, G = np.full(att.theta.size, np.nan), None, None
        else:
            d["ns"] = system.apply(G)
            system.compact()      # from here on only a preconditioner: float32 halves its memory
        deltas.append(d)
        systems.append(None if system is None else (G, system))
        Ts.append(T)
        Gs.append(G)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # a set that removes a whole class gives None (flagged as not converged)
        refits = att.retrain_many(Ts, systems=None if None in systems else systems, skip_invalid=True)
    status = []
    for d, refit in zip(deltas, refits):
        if refit is not None:
            d["actual"] = refit.theta_ - att.theta
            status.append((bool(refit.converged_), float(refit.grad_norm_)))
        else:
            status.append((False, float("nan")))
    # one pass over X for the self-loss of every estimate of every set in the batch
    XD_all = att.design.matvec(np.column_stack([v for d in deltas for v in d.values()]))
    out = []
    col = 0
    for (key, T), d, (converged, gnorm), G in zip(tasks, deltas, status, Gs):
        dataset, strategy, k = key
        XD = XD_all[:, col:col + len(d)]
        eff = att.effects_of(d, metrics, XD=XD)
        col += len(d)
        tr = None
        if trust is not None and G is not None:
            tr = trust.row(T, G, d["ns"], d["rif"], np.max(np.abs(XD[:, list(d).index("ns")])))
        rows = []
        for name in metrics:
            row = {"dataset": dataset, "strategy": strategy, "k": int(k), "metric": name,
                   "retrain_converged": converged, "retrain_grad_norm": gnorm}
            row.update(TRUST_NAN if tr is None else tr[name])
            for m, (removal, linear) in eff[name].items():
                row[m] = removal
                row[f"{m}_linear"] = linear
            row.setdefault("actual", float("nan"))
            row.setdefault("actual_linear", float("nan"))
            rows.append(row)
        out.append(rows)
    return out
