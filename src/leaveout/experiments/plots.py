"""Figures of a reproduction run, drawn from the stored results only.

matplotlib is imported inside the functions, so ``import leaveout`` stays light.
"""

from __future__ import annotations

import os

import numpy as np

COLORS = {"if": "tab:green", "rif": "tab:blue", "ns": "tab:orange"}
#: NS is drawn with hollow markers, RIF and IF filled: told apart by hue and by fill
HOLLOW = {"ns"}
LABELS = {"if": "IF", "rif": "RIF", "ns": "NS"}
MARKERS = {"random": "o", "cluster-feature": "s", "cluster-l2": "D", "top-test-loss-pos": "^",
           "top-test-loss-neg": "v", "top-test-pred-pos": ">", "top-test-pred-neg": "<",
           "high-self-loss": "*"}
METRIC_TITLES = {"test-pred": "test prediction", "test-loss": "test loss", "self-loss": "self-loss"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _panel(ax, rows, x_col, suffix="", methods=("if", "ns", "rif")):
    """Predicted against actual. The axes cover the bulk of the points (the 1st to 99th
    percentile of every value drawn, padded); points beyond are drawn on the edge as crosses
    and counted in the corner, so that one outlier does not squash the panel."""
    xs = np.array([r[x_col] for r in rows], dtype=float)
    values = [xs] + [np.array([r[m + suffix] for r in rows], dtype=float) for m in methods]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if rows else np.array([0.0, 1.0])
    lo, hi = (np.percentile(finite, 1), np.percentile(finite, 99)) if finite.size else (0.0, 1.0)
    pad = 0.08 * (hi - lo if hi > lo else 1.0)
    lo, hi = lo - pad, hi + pad
    clipped = 0
    for m in methods:
        for strat in sorted({r["strategy"] for r in rows}):
            sub = [r for r in rows if r["strategy"] == strat]
            x = np.array([r[x_col] for r in sub], dtype=float)
            y = np.array([r[m + suffix] for r in sub], dtype=float)
            out = (x < lo) | (x > hi) | (y < lo) | (y > hi)
            clipped += int(out.sum())
            kw = ({"facecolors": "none", "edgecolors": COLORS[m], "linewidths": 0.9} if m in HOLLOW
                  else {"c": COLORS[m], "linewidths": 0})
            ax.scatter(x[~out], y[~out], s=14, marker=MARKERS.get(strat, "o"), alpha=0.75, **kw)
            if out.any():
                ax.scatter(np.clip(x[out], lo, hi), np.clip(y[out], lo, hi), s=18, marker="x",
                           c=COLORS[m], linewidths=0.9, clip_on=False)
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, zorder=0)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    if clipped:
        ax.text(0.02, 0.98, f"{clipped} beyond the axes (x)", transform=ax.transAxes, fontsize=6,
                va="top", ha="left", color="0.3")
    ax.grid(alpha=0.25)
    ax.tick_params(labelsize=7)


def _legend(fig, strategies, methods=("if", "rif", "ns")):
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], ls="", marker="o", color=COLORS[m], label=LABELS[m],
                      markerfacecolor="none" if m in HOLLOW else COLORS[m]) for m in methods]
    handles.append(Line2D([], [], color="black", lw=0.8, label="y = x (exact)"))
    handles += [Line2D([], [], ls="", marker=MARKERS.get(s, "o"), color="grey", label=s) for s in strategies]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)


def _save(fig, out, stem):
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out, f"{stem}.{ext}"), dpi=130, bbox_inches="tight")
    return f"{stem}.png"


def scatter_grid(rows, datasets, out, stem, linear=False):
    """Figures 1 and 4: datasets x metrics, predicted against actual."""
    plt = _plt()
    metrics = [m for m in METRIC_TITLES if any(r["metric"] == m for r in rows)]
    fig, axes = plt.subplots(len(datasets), len(metrics), figsize=(3.3 * len(metrics), 3.0 * len(datasets)),
                             squeeze=False)
    for i, ds in enumerate(datasets):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            sub = [r for r in rows if r["dataset"] == ds and r["metric"] == metric]
            if linear:
                _panel(ax, sub, "actual_linear", "_linear")
            else:
                _panel(ax, sub, "actual")
            ax.set_title(f"{ds}: {METRIC_TITLES[metric]}", fontsize=9)
            if i == len(datasets) - 1:
                ax.set_xlabel("actual effect (retrain)" + (", linear" if linear else ""), fontsize=8)
            if j == 0:
                ax.set_ylabel("predicted effect", fontsize=8)
    _legend(fig, sorted({r["strategy"] for r in rows}, key=lambda s: list(MARKERS).index(s) if s in MARKERS else 99))
    fig.suptitle("Effect of removing T: " + ("linear effect <grad f, dtheta>" if linear else "f(theta + dtheta) - f(theta)"),
                 fontsize=10)
    fig.tight_layout()
    name = _save(fig, out, stem)
    plt.close(fig)
    return name


def figure2(rows, out):
    """Self-loss, predicted against actual: (a) varying n/d, (b) varying the penalty."""
    plt = _plt()
    sl = [r for r in rows if r["metric"] == "self-loss"]
    ds_n = sorted({r["dataset"] for r in sl if r["dataset"].endswith("]") and "[l2=" not in r["dataset"]},
                  key=lambda s: int(s.rsplit("[n=", 1)[1].rstrip("]")))
    ds_l = sorted({r["dataset"] for r in sl if "[l2=" in r["dataset"]},
                  key=lambda s: float(s.rsplit("[l2=", 1)[1].rstrip("]")))
    ncol = max(len(ds_n), len(ds_l), 1)
    fig = plt.figure(figsize=(3.0 * ncol, 6.6))
    rows_of = [(g, t) for g, t in ((ds_n, "(a) vary n / d"), (ds_l, "(b) vary the penalty l2")) if g]
    subfigs = np.atleast_1d(fig.subfigures(len(rows_of), 1))
    for sfig, (group, title) in zip(subfigs, rows_of):
        axes = np.atleast_1d(sfig.subplots(1, len(group)))     # as many panels as variants: none empty
        for j, (ax, ds) in enumerate(zip(axes, group)):
            _panel(ax, [r for r in sl if r["dataset"] == ds], "actual")
            ax.set_title(ds, fontsize=8)
            ax.set_xlabel("actual", fontsize=8)
            if j == 0:
                ax.set_ylabel("predicted self-loss", fontsize=8)
        sfig.suptitle(title, fontsize=9)
    fig.suptitle("Figure 2: self-loss, predicted against actual, as n / d and the penalty vary", fontsize=10, y=1.02)
    _legend(fig, sorted({r["strategy"] for r in sl}, key=lambda s: list(MARKERS).index(s) if s in MARKERS else 99))
    name = _save(fig, out, "figure2")
    plt.close(fig)
    return name


def figure3(poison_rows, out):
    """Poisoning: predicted vs actual change of a poisoned point's own logit when it is removed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    rows = [r for r in poison_rows if r["retrain_converged"]]
    _panel(ax, [dict(r, strategy="poisoned point") for r in rows], "actual", methods=("if", "rif"))
    ax.set_xlabel("actual change of its own logit (retrain)", fontsize=8)
    ax.set_ylabel("predicted change", fontsize=8)
    ds = sorted({r["dataset"] for r in rows})
    ax.set_title(f"Removing a poisoned point ({', '.join(ds)}, {len(rows)} points)", fontsize=9)
    _legend(fig, [], methods=("if", "rif"))
    fig.tight_layout()
    name = _save(fig, out, "figure3")
    plt.close(fig)
    return name


def make_figures(out, figures, datasets, rows, poison_rows=()):
    """Draw the requested figures into ``out`` from a results table.

    Parameters
    ----------
    out : str
        Folder for the PNG and PDF files.
    figures : sequence of int
    datasets : sequence of str
        Dataset names in run order ("name[...]" for the figure-2 variants).
    rows : list of dict
        Rows of ``results.csv`` (columns of ``RESULT_COLUMNS``).
    poison_rows : list of dict
        Rows of ``poisoning.csv``.

    Returns a list of ``(title, png_file_name)``.
    """
    rows = [r for r in rows if r["retrain_converged"]]
    main = [d for d in datasets if "[" not in d and any(r["dataset"] == d for r in rows)]
    made = []
    if 1 in figures and main:
        made.append(("Figure 1: predicted vs actual removal effect",
                     scatter_grid(rows, main, out, "figure1")))
    if 2 in figures and any("[" in r["dataset"] for r in rows):
        made.append(("Figure 2: self-loss as n/d and the penalty vary", figure2(rows, out)))
    if 3 in figures:
        if poison_rows:
            made.append(("Figure 3: data poisoning", figure3(list(poison_rows), out)))
    if 4 in figures and main:
        made.append(("Figure 4: predicted vs actual linear effect",
                     scatter_grid(rows, main, out, "figure4", linear=True)))
    return made
