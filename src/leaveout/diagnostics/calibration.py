"""Calibration with certified retrains: do IF, RIF and NS track the truth on this model?

A budget of removal sets (default 30: at three sizes, half drawn at random and half from the
rows with the largest RIF scores on a metric, a random half of the top ``2k`` as in the
paper's protocol) is retrained exactly; for each metric and estimator the predicted removal
effects are compared with the refits: slope through the origin, Spearman correlation and
median relative error.

An estimator is called **reliable** for a metric when its median relative error is at most
:data:`MAX_REL_ERR` (0.3), its slope lies in ``[MIN_SLOPE, 1 / MIN_SLOPE]`` (0.75 to 1.33) and
its Spearman correlation is at least :data:`MIN_SPEARMAN` (0.8): typically off by less than
a third, neither shrunk nor inflated by more than a quarter, and in the right order, on sets
up to the largest size checked. These thresholds are a choice, stated so that a verdict can
be read against the numbers beside it.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..exceptions import ConvergenceWarning

__all__ = ["calibrate", "MAX_REL_ERR", "MIN_SLOPE", "MIN_SPEARMAN", "DEFAULT_FRACTIONS"]

MAX_REL_ERR, MIN_SLOPE, MIN_SPEARMAN = 0.3, 0.75, 0.8
DEFAULT_FRACTIONS = (0.005, 0.02, 0.05)
METHODS = ("if", "rif", "ns")


def _sets(att, metric, n_sets, fractions, rng):
    """``[(kind, T)]``: per size, alternately random and top-scored (by RIF, both signs)."""
    alive = np.flatnonzero(np.asarray(att.estimators.objective.s) > 0)
    n = alive.size
    scores = np.asarray(att.scores(metric, "rif"))[alive]
    order_pos, order_neg = alive[np.argsort(-scores)], alive[np.argsort(scores)]
    per_size = max(2, n_sets // len(fractions))
    out = []
    for frac in fractions:
        k = max(1, int(round(frac * n)))
        for j in range(per_size):
            if j % 2 == 0:
                T = rng.choice(alive, k, replace=False)
                kind = "random"
            else:
                top = (order_pos if (j // 2) % 2 == 0 else order_neg)[:min(2 * k, n)]
                T = rng.choice(top, k, replace=False)
                kind = "top"
            out.append((kind, np.sort(T)))
    return out[:max(n_sets, 1)]


def _stats(actual, predicted):
    from scipy.stats import spearmanr
    a, p = np.asarray(actual, float), np.asarray(predicted, float)
    ok = np.isfinite(a) & np.isfinite(p)
    a, p = a[ok], p[ok]
    nz = a != 0
    out = {"slope": float(a @ p / (a @ a)) if a.size and a @ a > 0 else float("nan"),
           "spearman": float("nan"),
           "median_rel_err": float(np.median(np.abs(p[nz] - a[nz]) / np.abs(a[nz]))) if nz.any() else float("nan"),
           "n_sets": int(a.size)}
    if a.size > 2 and np.ptp(a) > 0 and np.ptp(p) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["spearman"] = float(spearmanr(a, p)[0])
    out["reliable"] = bool(out["median_rel_err"] <= MAX_REL_ERR and MIN_SLOPE <= out["slope"] <= 1 / MIN_SLOPE
                           and out["spearman"] >= MIN_SPEARMAN)
    return out


def verdict(name, stats, max_fraction):
    """One line that says what the calibration numbers support for a metric."""
    rif, ns = stats["rif"], stats["ns"]
    upto = f"on sets up to {max_fraction:.1%} of n"
    if rif["reliable"]:
        return (f"{name}: RIF reliable here ({upto}: median relative error {rif['median_rel_err']:.0%}, "
                f"slope {rif['slope']:.2f}, Spearman {rif['spearman']:.2f})")
    if ns["reliable"]:
        return (f"{name}: RIF unreliable here (median relative error {rif['median_rel_err']:.0%}, slope "
                f"{rif['slope']:.2f}); NS reliable ({ns['median_rel_err']:.0%}): use method='ns' or refit")
    errs = ", ".join(f"{m.upper()} {stats[m]['median_rel_err']:.0%}" for m in METHODS)
    return (f"{name}: one-step estimates unreliable here ({upto}: median relative error {errs}; slopes "
            + ", ".join(f"{stats[m]['slope']:.2f}" for m in METHODS) + "): refit the sets you act on")


def calibrate(att, metrics: dict, n_sets: int = 30, fractions=DEFAULT_FRACTIONS, seed=0):
    """Retrain a budget of removal sets and compare IF, RIF and NS with the truth.

    Returns ``(stats, verdicts, rows)``: ``stats[metric][method]`` with ``slope``,
    ``spearman``, ``median_rel_err``, ``n_sets``, ``reliable``; one verdict line per metric;
    and one dict per (set, metric) with the effects, for per-set indicators.
    """
    rng = np.random.default_rng(seed)
    first = next(iter(metrics.values()))
    sets = _sets(att, first, n_sets, fractions, rng)
    Ts = [T for _kind, T in sets]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            refits = att.retrain_many(Ts)
        except ValueError:                                  # e.g. a set empties a class
            refits = []
            for T in Ts:
                try:
                    refits.append(att.retrain(T))
                except ValueError:
                    refits.append(None)
    rows = []
    for (kind, T), refit in zip(sets, refits):
        if refit is None or not refit.converged_:
            continue
        deltas = {"actual": refit.theta_ - att.theta}
        deltas.update({m: att.delta(T, m) for m in METHODS})
        eff = att.effects_of(deltas, metrics)
        for name in metrics:
            row = {"kind": kind, "k": int(T.size), "T": T, "metric": name}
            row.update({m: eff[name][m][0] for m in deltas})
            rows.append(row)
    stats, verdicts = {}, {}
    n = int(np.count_nonzero(np.asarray(att.estimators.objective.s) > 0))
    for name in metrics:
        mine = [r for r in rows if r["metric"] == name]
        stats[name] = {m: _stats([r["actual"] for r in mine], [r[m] for r in mine]) for m in METHODS}
        verdicts[name] = verdict(name, stats[name], max(r["k"] for r in mine) / n if mine else 0.0)
    return stats, verdicts, rows
