"""Finding flipped labels: RIF and IF suspect rankings against training loss and cleanlab.

For each shared embedding dataset, 5 % and 10 % of the training labels are flipped (seeded);
an L2-penalised logistic regression (fixed penalty, l2 = 1) is fitted to the noisy labels and
every training row is ranked by: RIF and IF suspicion of kind validation, self and relabel
(`leaveout.suspects`, validation = half of the test split), the training loss, and
cleanlab's `find_label_issues` on 5-fold out-of-fold probabilities of the same model
(cleanlab is an optional benchmark dependency). Reported: the share of flipped rows among
the top 5 % / 10 % of the ranking, the area under the detection curve (recall against the
fraction inspected, 1 = perfect), the ranking's time, and the test accuracy (other half of
the test split) after removing, or relabelling, as many top-ranked rows as were flipped,
next to the noisy fit and the clean fit. Writes `label_errors.png` (detection curves).

    python benchmarks/bench_label_errors.py [--data-dir ../shared/datasets] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

import leaveout as lo
from leaveout.datasets import resolve
from leaveout.metrics import TestLoss
from leaveout.suspects import suspicion

DATASETS = ["cifar_catdog", "cifar_autotruck", "fashion_dogfish", "spam_bow", "imdb_minilm", "speech_lang"]
L2 = 1.0


def _rows(X, idx):
    return X[idx]


def oof_probs(X, y, folds=5, seed=0):
    """Out-of-fold P(y = 1) from the same penalised logistic model."""
    n = X.shape[0]
    fold = np.random.default_rng(seed).permutation(n) % folds
    p = np.empty(n)
    for f in range(folds):
        tr, te = fold != f, fold == f
        m = lo.GLM(l2=L2).fit(_rows(X, np.flatnonzero(tr)), y[tr])
        p[te] = m.predict_proba(_rows(X, np.flatnonzero(te)))[:, 1]
    return p


def cleanlab_ranking(X, y, seed):
    from cleanlab.filter import find_label_issues
    p1 = oof_probs(X, y, seed=seed)
    probs = np.column_stack([1 - p1, p1])
    flagged = find_label_issues(y.astype(int), probs, return_indices_ranked_by="self_confidence")
    # rows not flagged follow, least self-confident first
    conf = probs[np.arange(y.size), y.astype(int)]
    order = np.argsort(conf, kind="stable")
    rest = order[~np.isin(order, flagged)]
    return np.concatenate([flagged, rest]).astype(int)


def detection(order, flipped, n):
    hit = np.isin(order, flipped)
    recall = np.cumsum(hit) / max(1, flipped.size)
    frac = np.arange(1, n + 1) / n
    at = {q: float(recall[max(0, int(round(q * n)) - 1)]) for q in (0.05, 0.10)}
    return recall, frac, at, float(np.trapezoid(np.concatenate([[0], recall]), np.concatenate([[0], frac])))


def accuracy(model, X, y):
    return float(np.mean(model.predict(X) == y))


def run(name, data_dir, noise, seed=0):
    ds = resolve(name, data_dir)
    X, y0 = ds.X_train, (np.asarray(ds.y_train) == np.unique(ds.y_train)[1]).astype(int)
    Xt, yt = ds.X_test, (np.asarray(ds.y_test) == np.unique(ds.y_train)[1]).astype(int)
    rng = np.random.default_rng(seed)
    half = rng.permutation(Xt.shape[0])
    val, test = np.sort(half[: half.size // 2]), np.sort(half[half.size // 2:])
    n = X.shape[0]
    flipped = np.sort(rng.choice(n, int(round(noise * n)), replace=False))
    y = y0.copy()
    y[flipped] = 1 - y[flipped]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = lo.GLM(l2=L2).fit(X, y0)
        model = lo.GLM(l2=L2).fit(X, y)
        att = lo.Attribution(model)
        f = TestLoss(Xt[val], yt[val])
        rankings, times = {}, {}
        for method in ("rif", "if"):
            for kind in ("validation", "self", "relabel"):
                t0 = time.perf_counter()
                s = suspicion(att, kind, f if kind != "self" else None, method)
                times[f"{method.upper()} {kind}"] = time.perf_counter() - t0
                rankings[f"{method.upper()} {kind}"] = np.argsort(-s, kind="stable")
        t0 = time.perf_counter()
        z = np.asarray(att.estimators.z)
        loss = np.logaddexp(0, z) - y * z
        rankings["training loss"] = np.argsort(-loss, kind="stable")
        times["training loss"] = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            rankings["cleanlab"] = cleanlab_ranking(X, y, seed)
            times["cleanlab"] = time.perf_counter() - t0
        except ImportError:
            pass
        out = {}
        k = flipped.size
        for key, order in rankings.items():
            recall, frac, at, auc = detection(order, flipped, n)
            top = np.sort(order[:k])
            removed = att.retrain(top)
            yr = y.copy()
            yr[top] = 1 - yr[top]
            relabelled = lo.GLM(l2=L2).fit(X, yr, init=model.theta_)
            out[key] = {"at5": at[0.05], "at10": at[0.10], "auc": auc, "time": times[key],
                        "acc_removed": accuracy(removed, Xt[test], yt[test]),
                        "acc_relabelled": accuracy(relabelled, Xt[test], yt[test]), "curve": (frac, recall)}
    base = {"noisy": accuracy(model, Xt[test], yt[test]), "clean": accuracy(clean, Xt[test], yt[test])}
    return out, base


def relabel_accuracy(name, data_dir, rows=10, seed=0):
    """Median relative error, over ``rows`` random training rows, of the RIF and IF estimates
    of the change of the validation loss when one row's label is flipped, against refits."""
    from leaveout.suspects import relabel_deltas_dot
    ds = resolve(name, data_dir)
    X, y = ds.X_train, (np.asarray(ds.y_train) == np.unique(ds.y_train)[1]).astype(int)
    Xt, yt = ds.X_test, (np.asarray(ds.y_test) == np.unique(ds.y_train)[1]).astype(int)
    model = lo.GLM(l2=L2).fit(X, y)
    att = lo.Attribution(model)
    f = TestLoss(Xt, yt)
    phi = np.asarray(f.gradient(model, model.theta_))
    est = {m: relabel_deltas_dot(att, phi, m) for m in ("rif", "if")}
    err = {m: [] for m in est}
    for i in np.random.default_rng(seed).choice(X.shape[0], rows, replace=False):
        yy = y.copy()
        yy[i] = 1 - yy[i]
        refit = lo.GLM(l2=L2).fit(X, yy, init=model.theta_)
        actual = f.value(refit, refit.theta_) - f.value(model, model.theta_)
        for m in est:
            err[m].append(abs(est[m][i] - actual) / abs(actual))
    return {m: float(np.median(v)) for m, v in err.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data-dir", default=os.path.join(here, "..", "..", "shared", "datasets"))
    ap.add_argument("--out", default=".")
    ap.add_argument("--datasets", nargs="*", default=DATASETS)
    ap.add_argument("--relabel-only", action="store_true", help="only the relabelling estimate against refits")
    args = ap.parse_args()
    t_all = time.perf_counter()
    print("== relabelling estimate against refits (median relative error of the change of the test loss, 10 rows)")
    for name in args.datasets:
        t0 = time.perf_counter()
        r = relabel_accuracy(name, args.data_dir)
        print(f"{name:<16} RIF {r['rif']:.3f}   IF {r['if']:.3f}   ({time.perf_counter() - t0:.0f} s)")
    if args.relabel_only:
        return
    curves = {}
    for name in args.datasets:
        for noise in (0.05, 0.10):
            t0 = time.perf_counter()
            res, base = run(name, args.data_dir, noise)
            print(f"== {name}, {noise:.0%} flipped (test accuracy: clean fit {base['clean']:.4f}, noisy fit "
                  f"{base['noisy']:.4f}; {time.perf_counter() - t0:.0f} s)")
            print(f"{'ranking':<16} {'top 5%':>7} {'top 10%':>8} {'AUC':>6} {'time':>8} {'acc. removed':>13} {'acc. relabelled':>16}")
            for key, r in sorted(res.items(), key=lambda kv: -kv[1]["auc"]):
                print(f"{key:<16} {r['at5']:7.3f} {r['at10']:8.3f} {r['auc']:6.3f} {r['time']:7.2f}s "
                      f"{r['acc_removed']:13.4f} {r['acc_relabelled']:16.4f}")
            if noise == 0.10:
                curves[name] = {k: r["curve"] for k, r in res.items()}
    print(f"total {time.perf_counter() - t_all:.0f} s")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = min(3, len(curves))
    rows = int(np.ceil(len(curves) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (name, cs) in zip(axes.ravel(), curves.items()):
        for key, (frac, recall) in cs.items():
            style = "-" if key.startswith("RIF") else (":" if key.startswith("IF") else "--")
            ax.plot(frac, recall, style, lw=1.2, label=key)
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
        ax.set_xlim(0, 0.3)
        ax.set_title(f"{name} (10% flipped)", fontsize=9)
        ax.set_xlabel("fraction of rows inspected", fontsize=8)
        ax.set_ylabel("flipped rows found", fontsize=8)
    for ax in axes.ravel()[len(curves):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "label_errors.png"), dpi=110)


if __name__ == "__main__":
    main()
