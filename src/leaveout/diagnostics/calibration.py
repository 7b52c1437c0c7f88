"""Calibration with certified retrains: do IF, RIF and NS track the truth on this model?

A budget of removal sets (default 30: at three sizes, half drawn at random and half from the
rows with the largest RIF scores, each metric and sign in turn, a random half of the top
``2k`` as in the paper's protocol) is retrained exactly; for each metric and estimator the predicted removal
effects are compared with the refits: slope through the origin, Spearman correlation and
median relative error.

An estimator is called **reliable** for a metric when its median relative error is at most
:data:`MAX_REL_ERR` (0.3), its slope lies in ``[MIN_SLOPE, 1 / MIN_SLOPE]`` (0.75 to 1.33) and
its Spearman correlation is at least :data:`MIN_SPEARMAN` (0.8): typically off by less than
a third, neither shrunk nor inflated by more than a quarter, and in the right order, on sets
up to the largest size checked. These thresholds are a choice, stated so that a verdict can
be read against the numbers beside it. With a few dozen sets the statistics are noisy: the
rule is re-checked on :data:`BOOTSTRAP` resamples of the sets, and an estimator is called
reliable only when it passes on at least :data:`SURE` (90 %) of them, unreliable when it passes
on at most 10 %, and **borderline** in between (a verdict that more sets, or refits, should
settle).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..exceptions import ConvergenceWarning

__all__ = ["calibrate", "MAX_REL_ERR", "MIN_SLOPE", "MIN_SPEARMAN", "DEFAULT_FRACTIONS"]

MAX_REL_ERR, MIN_SLOPE, MIN_SPEARMAN = 0.3, 0.75, 0.8
#: bootstrap resamples of the sets, and the share of them on which the rule must hold (or
#: fail) for a firm verdict; in between the verdict is "borderline"
BOOTSTRAP, SURE = 200, 0.9
DEFAULT_FRACTIONS = (0.005, 0.02, 0.05)
METHODS = ("if", "rif", "ns")
#: largest X @ steps (n x 4 per set) computed at once for the training objective's effects
_XD_BYTES = 1 << 28


def _sets(att, metrics, n_sets, fractions, rng):
    """``[(kind, T)]``: per size, alternately random and top-scored, the top sets taking each
    metric's RIF scores in turn, with both signs (as the paper's strategies do)."""
    alive = np.flatnonzero(np.asarray(att.estimators.objective.s) > 0)
    n = alive.size
    orders = []
    for metric in metrics.values():
        scores = np.asarray(att.scores(metric, "rif"))[alive]
        orders += [alive[np.argsort(-scores)], alive[np.argsort(scores)]]
    per_size = max(2, n_sets // len(fractions))
    out, top = [], 0
    for frac in fractions:
        k = max(1, int(round(frac * n)))
        for j in range(per_size):
            if j % 2 == 0:
                out.append(("random", np.sort(rng.choice(alive, k, replace=False))))
            else:
                pool = orders[top % len(orders)][:min(2 * k, n)]
                top += 1
                out.append(("top", np.sort(rng.choice(pool, k, replace=False))))
    return out[:max(n_sets, 1)]


def _systems(att, Ts):
    """``(G, system)`` of every set, or None when one of them has no well-posed refit (the
    refits then build their own, one set at a time)."""
    from ..exceptions import SingularHessianError
    if att.estimators.objective.n_blocks > 1 or not att.design.local:
        return None                      # refitted one set at a time, each with its own system
    try:
        return [att.newton_system(T, cache=False) for T in Ts]
    except (ValueError, SingularHessianError):
        return None


def _rule(a, p):
    """``(slope, median relative error)`` and whether they pass the reliability rule."""
    nz = a != 0
    slope = float(a @ p / (a @ a)) if a.size and a @ a > 0 else float("nan")
    med = float(np.median(np.abs(p[nz] - a[nz]) / np.abs(a[nz]))) if nz.any() else float("nan")
    return slope, med, bool(med <= MAX_REL_ERR and MIN_SLOPE <= slope <= 1 / MIN_SLOPE)


def _rule_many(A, P):
    """:func:`_rule`'s pass / fail for each row of ``A`` and ``P`` (resamples of the sets) at once."""
    aa = np.einsum("ij,ij->i", A, A)
    slope = np.einsum("ij,ij->i", A, P) / np.where(aa > 0, aa, 1.0)
    nz = A != 0
    rel = np.where(nz, np.abs(P - A) / np.where(nz, np.abs(A), 1.0), np.nan)
    some = nz.any(axis=1)
    med = np.full(A.shape[0], np.nan)
    if some.any():
        med[some] = np.nanmedian(rel[some], axis=1)
    with np.errstate(invalid="ignore"):
        return (aa > 0) & (med <= MAX_REL_ERR) & (MIN_SLOPE <= slope) & (slope <= 1 / MIN_SLOPE)


def _stats(actual, predicted, rng):
    from scipy.stats import spearmanr
    a, p = np.asarray(actual, float), np.asarray(predicted, float)
    ok = np.isfinite(a) & np.isfinite(p)
    a, p = a[ok], p[ok]
    slope, med, passes = _rule(a, p)
    out = {"slope": slope, "spearman": float("nan"), "median_rel_err": med, "n_sets": int(a.size)}
    if a.size > 2 and np.ptp(a) > 0 and np.ptp(p) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["spearman"] = float(spearmanr(a, p)[0])
    # how sure: the share of bootstrap resamples of the sets on which the rule passes
    share = 0.0
    if a.size:
        picks = rng.integers(0, a.size, size=(BOOTSTRAP, a.size))
        share = float(np.mean(_rule_many(a[picks], p[picks])))
    ordered = out["spearman"] >= MIN_SPEARMAN
    out["confidence"] = share
    out["reliable"] = bool(passes and ordered and share >= SURE)
    out["borderline"] = bool(ordered and SURE > share > 1 - SURE)
    return out


def verdict(name, stats, max_fraction):
    """One line that says what the calibration numbers support for a metric."""
    rif, ns = stats["rif"], stats["ns"]
    upto = f"on sets up to {max_fraction:.1%} of n"
    if rif["borderline"]:
        return (f"{name}: RIF borderline here ({upto}: median relative error {rif['median_rel_err']:.0%}, slope "
                f"{rif['slope']:.2f}; the rule holds on {rif['confidence']:.0%} of resamples): refit the sets "
                "you act on, or calibrate with more sets")
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
    sets = _sets(att, metrics, n_sets, fractions, rng)
    Ts = [att._check_T(T) for _kind, T in sets]
    systems = _systems(att, Ts)          # each set's Newton system, built once for NS and its refit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        refits = att.retrain_many(Ts, skip_invalid=True, systems=systems)   # a set that empties a class gives None
    batched = None
    if systems is not None:          # IF and RIF of every set, their solves in a few products
        batched = (att.curvature.solve(np.column_stack([G for G, _s in systems])),
                   att.estimators.rif_deltas(Ts))
    done = []
    for j, ((kind, T), refit) in enumerate(zip(sets, refits)):
        if refit is None or not refit.converged_:
            continue
        deltas = {"actual": refit.theta_ - att.theta,
                  "if": att.delta(T, "if") if batched is None else batched[0][:, j],
                  "rif": att.delta(T, "rif") if batched is None else batched[1][:, j]}
        G, system = systems[j] if systems is not None else att.newton_system(T)
        deltas["ns"] = system.apply(G)
        done.append((kind, T, deltas, G))
    XD = None
    if (done and att.design.local and att.estimators.objective.n_blocks == 1
            and 8 * att.design.n * 4 * len(done) <= _XD_BYTES
            and any(getattr(f, "quadratic", False) for f in metrics.values())):
        # the training objective's effects of every step of every set: one pass over X
        XD = np.asarray(att.design.matvec(np.column_stack([d for _k, _T, ds, _G in done for d in ds.values()])))
    rows = []
    for i, (kind, T, deltas, G) in enumerate(done):
        eff = att.effects_of(deltas, metrics, None if XD is None else XD[:, 4 * i:4 * i + 4])
        steps = {"G": G, "ns": deltas["ns"], "rif": deltas["rif"]}      # shared by the set's rows
        if XD is not None:       # the training rows' change under NS, from the same pass over X
            steps["train_change"] = float(np.max(np.abs(XD[:, 4 * i + list(deltas).index("ns")])))
        for name in metrics:
            row = {"kind": kind, "k": int(T.size), "T": T, "metric": name, "steps": steps}
            row.update({m: eff[name][m][0] for m in deltas})
            rows.append(row)
    stats, verdicts = {}, {}
    n = int(np.count_nonzero(np.asarray(att.estimators.objective.s) > 0))
    for name in metrics:
        mine = [r for r in rows if r["metric"] == name]
        stats[name] = {m: _stats([r["actual"] for r in mine], [r[m] for r in mine], rng) for m in METHODS}
        verdicts[name] = verdict(name, stats[name], max(r["k"] for r in mine) / n if mine else 0.0)
    return stats, verdicts, rows
