"""Summaries of a results table: slopes, correlations and relative errors per estimator,
as CSV and Markdown."""

from __future__ import annotations

import csv
import io
import warnings

import numpy as np

from .config import METHODS, METRIC_NAMES
from .store import atomic_write

__all__ = ["summarize", "write_summary", "summary_table", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = ["dataset", "metric", "method", "n_sets", "slope", "pearson", "spearman", "median_rel_error"]


def summarize(rows) -> list[dict]:
    """Per dataset x metric x method: slope of predicted on actual through the origin,
    Pearson and Spearman correlation, and the median relative error |pred - actual| / |actual|.

    ``*_linear`` methods are compared with the linear effect of the exact retrain.
    Rows whose retrain did not converge are left out.
    """
    from scipy.stats import pearsonr, spearmanr
    groups = {}
    for r in rows:
        if r["retrain_converged"]:
            groups.setdefault((r["dataset"], r["metric"]), []).append(r)
    out = []
    for (ds, metric), rs in groups.items():
        for method in METHODS + tuple(f"{m}_linear" for m in METHODS):
            ref = "actual_linear" if method.endswith("_linear") else "actual"
            a = np.array([r[ref] for r in rs])
            p = np.array([r[method] for r in rs])
            ok = np.isfinite(a) & np.isfinite(p)
            a, p = a[ok], p[ok]
            rec = {"dataset": ds, "metric": metric, "method": method, "n_sets": int(a.size)}
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rec["slope"] = float(a @ p / (a @ a)) if a.size and a @ a > 0 else float("nan")
                rec["pearson"] = float(pearsonr(a, p)[0]) if a.size > 2 else float("nan")
                rec["spearman"] = float(spearmanr(a, p)[0]) if a.size > 2 else float("nan")
                nz = a != 0
                rec["median_rel_error"] = float(np.median(np.abs(p[nz] - a[nz]) / np.abs(a[nz]))) if nz.any() else float("nan")
            out.append(rec)
    return out


def write_summary(summary, path):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in summary:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write(path, buf.getvalue())


def summary_table(summary, methods=("if", "rif", "ns"), datasets=None) -> str:
    """The summary as a Markdown table (one row per dataset x metric)."""
    lines = ["| dataset | metric | sets | " + " | ".join(
        f"{m.upper()} slope | {m.upper()} Spearman | {m.upper()} med. rel. err." for m in methods) + " |"]
    lines.append("|" + "---|" * (3 + 3 * len(methods)))
    index = {(r["dataset"], r["metric"], r["method"]): r for r in summary}
    keys = sorted({(r["dataset"], r["metric"]) for r in summary},
                  key=lambda k: (k[0], METRIC_NAMES.index(k[1]) if k[1] in METRIC_NAMES else 9))
    for ds, metric in keys:
        if datasets is not None and ds not in datasets:
            continue
        cells = []
        for m in methods:
            r = index.get((ds, metric, m))
            cells += [f"{r['slope']:.3f}", f"{r['spearman']:.3f}", f"{r['median_rel_error']:.3f}"] if r else ["", "", ""]
        n = index.get((ds, metric, methods[0]), {}).get("n_sets", 0)
        lines.append(f"| {ds} | {metric} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
