"""``report.md``: the run's settings, summary tables, poisoning result and figures."""

from __future__ import annotations

import os

import numpy as np

from .config import METRIC_NAMES
from .store import atomic_write
from .summary import summary_table

__all__ = ["write_report"]


def write_report(out, meta, summary, figs, rows, poison_rows):
    cfg = meta["config"]
    main = [d for d in meta["test_index"] if "[" not in d]
    variants = [d for d in meta["test_index"] if "[" in d]
    n_bad = sum(1 for r in rows if not r["retrain_converged"]) // len(METRIC_NAMES)
    gn = [r["retrain_grad_norm"] for r in rows if r["retrain_converged"]]
    l2s = ", ".join(f"{d}={meta['l2'][d]:g}" for d in main)
    parts = [
        "# leaveout reproduction report", "",
        f"Datasets: {', '.join(main) or '-'}; penalty `{cfg['penalty']}`; "
        f"l2 {l2s}; seed {cfg['seed']}; "
        f"{cfg['sizes']} sizes per strategy; strategies {', '.join(cfg['strategies'])}.", "",
        f"Removal sets evaluated: {len(rows) // len(METRIC_NAMES)}; retrains not converged (excluded): {n_bad}; "
        f"largest certified relative gradient: {max(gn) if gn else float('nan'):.1e}. "
        f"Run time: {meta.get('seconds', 0):.0f} s.", "",
        "Effect of removing T (positive: the metric goes up). Slope of predicted on actual "
        "through the origin (1 is exact), Spearman correlation, and median relative error.", "",
        "## Removal effect, " + ", ".join(main), "",
        summary_table(summary, datasets=set(main)), "",
        "## Linear effect (Figure 4)", "",
        summary_table(summary, methods=("if_linear", "rif_linear", "ns_linear"), datasets=set(main)), "",
    ]
    if variants:
        parts += ["## Figure 2 variants (self-loss)", "",
                  summary_table([r for r in summary if r["metric"] == "self-loss"], datasets=set(variants)), ""]
    if poison_rows:
        a = np.array([r["actual"] for r in poison_rows])
        err = {m: np.median(np.abs(np.array([r[m] for r in poison_rows]) - a) / np.abs(a)) for m in ("if", "rif")}
        parts += ["## Data poisoning (Figure 3)", "",
                  f"{len(poison_rows)} poisoned points; median relative error of the predicted change "
                  f"of the point's own logit: IF {err['if']:.3f}, RIF {err['rif']:.3f}.", ""]
    for title, png in figs:
        parts += [f"## {title}", "", f"![{title}]({png})", ""]
    atomic_write(os.path.join(out, "report.md"), "\n".join(parts))
