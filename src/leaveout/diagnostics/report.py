"""The trust report: can IF, RIF and NS be believed on this model, for these metrics?

It puts together the theorem's constants over all rows (:mod:`.theorem`), the per-set
indicators on the calibration sets (:mod:`.indicators`) and the calibration against certified
retrains (:mod:`.calibration`). Where the theorem certifies nothing (its size threshold below
the set sizes that matter, as is usual on real data), the report says so and the verdicts
rest on the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .calibration import DEFAULT_FRACTIONS, calibrate
from .indicators import set_diagnostics_many
from .theorem import TheoremConstants, _Pieces, theorem_constants

__all__ = ["TrustReport", "diagnose"]


@dataclass
class TrustReport:
    """Result of :meth:`Attribution.diagnose` (``leaveout check``)."""

    constants: TheoremConstants | None          # None where the theorem does not apply (multinomial)
    eta: dict
    calibration: dict
    verdicts: dict
    sets: list = field(default_factory=list)
    indicator_spearman: dict = field(default_factory=dict)
    theorem_note: str | None = None

    def to_dict(self) -> dict:
        c = self.constants
        if c is None:
            return {"C_ell": None, "C_R": None, "delta": None, "epsilon": None, "eta": None, "k_threshold": None,
                    "exact": None, "theorem_note": self.theorem_note, "calibration": self.calibration,
                    "verdict": self.verdicts, "theorem": None, "indicator_spearman": {}}
        applies = [s for s in self.sets if s["applies"]]
        return {"C_ell": c.C_ell, "C_R": c.C_R, "delta": c.delta, "epsilon": c.epsilon,
                "eta": self.eta if len(self.eta) > 1 else next(iter(self.eta.values())),
                "k_threshold": c.k_threshold, "exact": c.exact, "n": c.n_rows,
                "calibration": self.calibration, "verdict": self.verdicts,
                "theorem": {"sets": len(self.sets), "applies_global": sum(bool(s["applies_global"]) for s in self.sets),
                            "applies_per_set": len(applies),
                            "held": all(s["held"] for s in applies) if applies else None},
                "indicator_spearman": self.indicator_spearman}

    def to_frame(self):
        """The calibration as a DataFrame (metric x method)."""
        import pandas as pd
        return pd.DataFrame([{"metric": m, "method": k, **v} for m, d in self.calibration.items()
                             for k, v in d.items()])

    def __repr__(self):
        c = self.constants
        if c is None:
            return "\n".join([f"Theorem 3.1: {self.theorem_note}"] + self._table())
        thr = f"{c.k_threshold:.3g}" if np.isfinite(c.k_threshold) else "inf"
        lines = [f"Theorem 3.1 constants ({'exact over all pairs' if c.exact else 'estimated from sampled rows'}, "
                 f"n = {c.n_rows}): C_ell {c.C_ell:.3g}, C_R {c.C_R:.3g}, delta {c.delta:.3g}, "
                 f"epsilon {c.epsilon:.3g}, eta " + ", ".join(f"{k} {v:.3g}" for k, v in self.eta.items()),
                 f"size threshold k <= 1/(2 delta C_R) = {thr}: "
                 + ("the theorem certifies no set of 1 row or more here" if c.k_threshold < 1 else
                    f"the bound covers sets of up to {int(c.k_threshold)} rows")]
        d = self.to_dict()["theorem"]
        if self.sets:
            lines.append(f"calibration sets: the theorem applies to {d['applies_global']} with the global constants, "
                         f"{d['applies_per_set']} with each set's own"
                         + ("" if d["held"] is None else f"; the bound held on {'all' if d['held'] else 'NOT all'} of those"))
        return "\n".join(lines + self._table())

    def _table(self):
        head = f"{'metric':<12} {'method':<6} {'slope':>7} {'Spearman':>9} {'med. rel. err.':>15} reliable"
        lines = ["", head, "-" * len(head)]
        for m, byk in self.calibration.items():
            for k, v in byk.items():
                word = "borderline" if v.get("borderline") else ("yes" if v["reliable"] else "no")
                lines.append(f"{m:<12} {k:<6} {v['slope']:7.3f} {v['spearman']:9.3f} {v['median_rel_err']:15.3f} {word}")
        return lines + [""] + list(self.verdicts.values())


def diagnose(att, metrics, n_sets: int = 30, fractions=DEFAULT_FRACTIONS, seed=0, exact_limit: int = 20000):
    """A :class:`TrustReport` for ``metrics`` (a Metric or a dict name -> Metric)."""
    if not isinstance(metrics, dict):
        metrics = {getattr(metrics, "name", "metric"): metrics}
    if not metrics:
        raise ValueError("diagnose needs at least one metric")
    names = list(metrics)
    if getattr(att.model, "absorbed_", None) is not None:
        raise ValueError("the trust report does not cover models with absorbed fixed effects yet; audit their "
                         "coefficients (every answer is verified by an exact refit) or compare estimates with "
                         "delta(T, 'retrain')")
    if att.estimators.objective.n_blocks > 1:
        stats, verdicts, _rows = calibrate(att, metrics, n_sets=n_sets, fractions=fractions, seed=seed)
        return TrustReport(None, {}, stats, verdicts, theorem_note=(
            "its constants do not apply to the multinomial family (per-row Hessians of rank C - 1, not one); "
            "the verdicts rest on the calibration"))
    att.prepare()          # every row's half solve, where it fits: leverages, pairs and systems share it
    from .._linalg import small_lapack
    with small_lapack():   # from here on: products and many small solves
        return _diagnose(att, metrics, names, n_sets, fractions, seed, exact_limit)


def _diagnose(att, metrics, names, n_sets, fractions, seed, exact_limit):
    pieces = {m: _Pieces(att, metrics[m]) for m in names}
    base = theorem_constants(att, metrics[names[0]], exact_limit=exact_limit, seed=seed, pieces=pieces[names[0]])
    alive = np.asarray(att.estimators.objective.s) > 0
    eta = {m: float(np.max(pieces[m].sw[alive] * np.abs(pieces[m].xf[alive]))) for m in names}
    stats, verdicts, rows = calibrate(att, metrics, n_sets=n_sets, fractions=fractions, seed=seed)
    sets, spearman = [], {}
    if n_sets and rows:
        base_by_metric = {m: TheoremConstants(**{**base.to_dict(), "eta": eta[m]}) for m in names}
        done = {}                       # the set's diagnostics, once for all metrics
        for r in rows:
            key = id(r["steps"])
            if key not in done:
                st = r["steps"]
                done[key] = set_diagnostics_many(att, metrics, r["T"], st["G"], st["ns"], st["rif"], pieces,
                                                 base_by_metric, st.get("train_change"))
            d = done[key][r["metric"]]
            rec = {**d.to_dict(), "metric": r["metric"], "kind": r["kind"],
                   "ns_error": abs(r["ns"] - r["actual"]) / max(abs(r["actual"]), 1e-300)}
            sets.append(rec)
        spearman = _indicator_spearman(sets, names, metrics)
    return TrustReport(base, eta, stats, verdicts, sets, spearman)


def _indicator_spearman(sets, names, metrics):
    """Per metric: Spearman correlation of each per-set indicator with the actual NS error.

    Not the gap ``|<grad f, NS - RIF>|`` of a metric whose gradient vanishes at the fit (the
    training objective, ``quadratic``): it is rounding noise there, and so would be its
    correlation."""
    from scipy.stats import spearmanr
    out = {}
    for m in names:
        mine = [s for s in sets if s["metric"] == m]
        err = np.array([s["ns_error"] for s in mine])
        out[m] = {}
        keys = ("newton_decrement", "max_train_change", "max_metric_change")
        for key in keys + (() if getattr(metrics[m], "quadratic", False) else ("gap",)):
            x = np.array([s[key] for s in mine])
            ok = np.isfinite(x) & np.isfinite(err)
            if ok.sum() > 2 and np.ptp(x[ok]) > 0 and np.ptp(err[ok]) > 0:
                out[m][key] = float(spearmanr(x[ok], err[ok])[0])
    return out
