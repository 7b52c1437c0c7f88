"""The answer of an audit: which rows, how many, and what the verified refit says."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["AuditResult"]


@dataclass
class AuditResult:
    """Result of :func:`leaveout.audit.audit`.

    Attributes
    ----------
    quantity, target, method : str
    se_kind : str or None
        The standard error used (``"HC1, clustered"``, ...), None for targets without one.
    alpha, z : float
    original : dict
        ``{"value", "se"}`` at the full fit.
    k, n : int
        Rows removed and rows fitted.
    fraction : float
        ``k / n``.
    reached : bool
        Whether the certified refit without ``rows`` reaches the target.
    positions : list of int
        The removed rows (0-based positions in the training rows).
    rows : list
        The removed rows by id (the training table's index), or positions when there is none.
    refit : dict
        ``{"value", "se", "se_full_n"}`` of the refit without ``rows``; ``se_full_n`` keeps the
        full-data n in the SE's small-sample factors, as zaminfluence's refits do.
    one_shot : dict
        ``{"k", "predicted"}``: zaminfluence's one-shot count and its predicted value.
    path : list of (k, value, se)
        The refits along the search (for a plot).
    note : str or None
        Why the target was not reached ("not reached within ...").
    lower : int or None
        With ``certify=True``: a proven lower bound, no set of fewer rows reaches the target
        (None: no certificate, see ``certificate_note``).
    lower_method : str or None
        How ``lower`` was proven (:mod:`leaveout.audit.certify`).
    certified_exact : bool or None
        ``lower == k`` for a reached target: ``k`` is then the true minimum.
    gap : int or None
        ``k - lower`` for a reached target.
    certificate_note : str or None
        Why there is no certificate, or what limited it (a time limit, the singularity).
    """

    quantity: str
    target: str
    method: str
    se_kind: str | None
    alpha: float
    z: float
    original: dict
    k: int
    n: int
    fraction: float
    reached: bool
    positions: list
    rows: list
    refit: dict
    one_shot: dict
    path: list = field(default_factory=list)
    note: str | None = None
    refits: int = 0
    seconds: float = 0.0
    lower: int | None = None
    lower_method: str | None = None
    certified_exact: bool | None = None
    gap: int | None = None
    certificate_note: str | None = None
    certificate_seconds: float | None = None
    emptied: str | None = None          # fixed effects: groups of the absorbed factor the rows empty

    @classmethod
    def build(cls, att, quantity, target, method, se_kind, clustered, rows, fit, base, reached, one_shot,
              path, note, max_rows, refits, seconds, certificate=None):
        n = int(np.count_nonzero(np.asarray(att.model.objective_.s) > 0))
        ids = att.row_ids
        labels = [(_plain(ids[i]) if ids is not None else int(i)) for i in rows]
        se_full = fit.snap.se
        if fit.calc is not None and rows:
            se_full = fit.snap.se * _full_n_factor(fit.calc, base.calc.n if base.calc is not None else n)
        k1, pred1 = one_shot
        if note is not None and not reached:
            note = f"not reached within {max_rows} rows ({max_rows / n:.1%} of {n}): {note}"
        return cls(
            quantity=getattr(quantity, "name", type(quantity).__name__), target=target.name, method=method,
            se_kind=None if se_kind is None else se_kind + (", clustered" if clustered else ""),
            alpha=target.alpha, z=target.z,
            original={"value": base.snap.value, "se": _num(base.snap.se)},
            k=len(rows), n=n, fraction=len(rows) / n, reached=bool(reached), positions=[int(i) for i in rows],
            rows=labels, refit={"value": fit.snap.value, "se": _num(fit.snap.se), "se_full_n": _num(se_full)},
            one_shot={"k": None if k1 is None else int(k1), "predicted": _num(pred1)},
            path=_dedupe([(int(k), float(v), _num(s)) for k, v, s in path]), note=note, refits=refits,
            seconds=seconds, emptied=_emptied(att.model, rows), **_certificate_fields(certificate, len(rows), reached))

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (``fraction`` and ``rows`` as the CLI's ``--json``)."""
        return asdict(self)

    def to_frame(self):
        """The path as a DataFrame: rows removed, refit value, SE and interval ends."""
        import pandas as pd
        df = pd.DataFrame(self.path, columns=["k", "value", "se"])
        df["lower"] = df["value"] - self.z * df["se"]
        df["upper"] = df["value"] + self.z * df["se"]
        return df

    def __str__(self):
        o, r = self.original, self.refit
        se = f" ({o['se']:.6g})" if o["se"] is not None else ""
        rse = f" ({r['se']:.6g})" if r["se"] is not None else ""
        if r["se"] is not None and r["se_full_n"] is not None and abs(r["se_full_n"] - r["se"]) > 1e-9 * r["se"]:
            rse += f" [SE {r['se_full_n']:.6g} with the full-data n, as zaminfluence]"
        head = (f"{self.quantity}: {o['value']:.6g}{se}; target {self.target}"
                + (f" at alpha={self.alpha:g}, se {self.se_kind}" if self.se_kind else "") + f"; method {self.method}")
        if self.reached:
            body = (f"reached by removing {self.k} of {self.n} rows ({self.fraction:.3%}): refit {r['value']:.6g}{rse}"
                    f"\nrows: {', '.join(map(str, self.rows[:20]))}" + (" ..." if self.k > 20 else ""))
        else:
            body = self.note or "not reached"
        one = self.one_shot
        tail = (f"one-shot (zaminfluence): {one['k']} rows, predicted {one['predicted']:.6g}"
                if one["k"] is not None else "one-shot (zaminfluence): not reachable")
        lines = [head, body, tail, f"{self.refits} certified refits, {self.seconds:.1f} s"]
        if self.lower is not None:
            exact = (" = k: the minimum" if self.certified_exact
                     else (f" (gap {self.gap} to the verified k)" if self.gap is not None else ""))
            lines.append(f"certified: no set of fewer than {self.lower} rows reaches the target{exact} "
                         f"[{self.lower_method}, {self.certificate_seconds:.1f} s]")
        if self.certificate_note:
            lines.append(f"certificate: {self.certificate_note}")
        if self.emptied:
            lines.append(f"fixed effects: {self.emptied}")
        return "\n".join(lines)

    def plot(self, path=None):
        """Value +- z SE against rows removed along the search, with the one-shot prediction.
        Returns the matplotlib Figure (saved to ``path`` when given)."""
        import matplotlib
        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        df = self.to_frame()
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.plot(df["k"], df["value"], "o-", color="tab:blue", label=f"refit ({self.method})")
        if df["se"].notna().any():
            ax.fill_between(df["k"], df["lower"], df["upper"], color="tab:blue", alpha=0.2,
                            label=f"value ± {self.z:.2f}·SE")
        one = self.one_shot
        if one["k"] is not None and one["predicted"] is not None:
            ax.plot([0, one["k"]], [self.original["value"], one["predicted"]], "s--", color="tab:orange",
                    label="one-shot prediction")
        if self.lower is not None and self.lower > 1:
            ax.axvspan(0, self.lower - 1, color="tab:green", alpha=0.12, lw=0,
                       label=f"certified: fewer than {self.lower} rows cannot")
        ax.axhline(0.0, color="0.4", lw=0.8)
        ax.set_xlabel("rows removed")
        ax.set_ylabel(self.quantity)
        ax.set_title(f"{self.quantity}: target {self.target}" + (" (reached)" if self.reached else " (not reached)"),
                     fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _certificate_fields(cert, k, reached):
    if cert is None:
        return {}
    lower = cert.lower
    return {"lower": lower, "lower_method": cert.method,
            "certified_exact": None if lower is None else bool(reached and lower == k),
            "gap": None if lower is None or not reached else int(k - lower),
            "certificate_note": cert.note, "certificate_seconds": float(cert.seconds)}


def _full_n_factor(calc, n_full):
    """SE ratio when the small-sample factor keeps the full-data n (zaminfluence's refits)."""
    n, p = calc.n, calc.p
    if calc.kind == "nonrobust" and calc.squared:
        return float(np.sqrt((n - p) / (n_full - p)))
    if calc.kind == "HC1":
        if calc.groups is not None:
            return float(np.sqrt(((n_full - 1) / (n_full - p)) / ((n - 1) / (n - p))))
        return float(np.sqrt((n_full / (n_full - p)) / (n / (n - p))))
    return 1.0


def _dedupe(path):
    out = []
    for step in path:
        if not out or out[-1] != step:
            out.append(step)
    return out


def _num(x):
    return None if x is None or not np.isfinite(x) else float(x)


def _plain(x):
    return x.item() if hasattr(x, "item") else x


def _emptied(model, rows):
    """For absorbed fixed effects, the groups the removed rows empty (their levels leave the
    refit), said in words; None otherwise."""
    fe = getattr(model, "fixed_effects_", None)
    if fe is None or not len(rows):
        return None
    s = np.asarray(model.objective_.s) > 0
    codes = fe.groups.codes
    left = np.bincount(codes, weights=s.astype(float), minlength=fe.groups.n_levels)
    gone = np.bincount(codes[np.asarray(rows, dtype=np.intp)], minlength=fe.groups.n_levels)
    n = int(np.count_nonzero((gone > 0) & (gone >= left)))
    return None if n == 0 else (f"the removed rows empty {n} group{'s' * (n > 1)} of {fe.absorbed!r}; "
                                "their levels leave the refit")
