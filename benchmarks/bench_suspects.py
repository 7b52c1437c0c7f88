"""Which default finds flipped labels? Every `suspects` kind against cleanlab, on two tables
that ship with scikit-learn and statsmodels.

breast_cancer (scikit-learn, 569 rows, 30 standardised features) and fair (statsmodels,
6,366 rows, affairs > 0 against the 8 other columns, standardised): 10 % of the labels
flipped at random (seeds 0-9), a logistic regression with the fixed penalty l2 = 1 fitted
to the noisy labels, and every row ranked by each `leaveout.suspects` kind that needs no
validation rows (loss, loo and self, with IF and RIF) and by cleanlab's `find_label_issues`
on 5-fold out-of-fold probabilities of the same model (when cleanlab is installed: the
`bench` extra). Reported: the share of flipped rows among the top 10 % of each ranking
(mean over the seeds, and each seed), and the area under the detection curve.

    python benchmarks/bench_suspects.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import leaveout as lo
from leaveout.suspects import suspicion

L2 = 1.0
SEEDS = tuple(range(10))
NOISE = 0.10


def breast_cancer():
    from sklearn.datasets import load_breast_cancer
    X, y = load_breast_cancer(return_X_y=True)
    return X, y.astype(int)


def fair():
    import statsmodels.api as sm
    df = sm.datasets.fair.load_pandas().data
    y = (df.pop("affairs") > 0).astype(int).to_numpy()
    return df.to_numpy(dtype=float), y


def cleanlab_order(X, y, seed, folds=5):
    from cleanlab.filter import find_label_issues
    n = y.size
    fold = np.random.default_rng(seed).permutation(n) % folds
    p = np.empty(n)
    for f in range(folds):
        tr, te = fold != f, fold == f
        p[te] = lo.GLM(l2=L2).fit(X[tr], y[tr]).predict_proba(X[te])[:, 1]
    probs = np.column_stack([1 - p, p])
    flagged = find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
    conf = probs[np.arange(n), y]
    rest = np.argsort(conf, kind="stable")
    return np.concatenate([flagged, rest[~np.isin(rest, flagged)]]).astype(int)


def scores(order, flipped, n):
    hit = np.isin(order, flipped)
    top = int(round(NOISE * n))
    recall = np.cumsum(hit) / flipped.size
    auc = float(np.trapezoid(np.r_[0, recall], np.r_[0, np.arange(1, n + 1) / n]))
    return float(hit[:top].mean()), auc


def run(name, X, y0):
    X = (X - X.mean(0)) / X.std(0)
    n = y0.size
    res = {}
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        flipped = rng.choice(n, int(round(NOISE * n)), replace=False)
        y = y0.copy()
        y[flipped] = 1 - y[flipped]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            att = lo.Attribution(lo.GLM(l2=L2).fit(X, y))
            orders = {}
            for kind, method in (("loss", "rif"), ("loo", "rif"), ("loo", "if"), ("self", "rif"), ("self", "if")):
                t0 = time.perf_counter()
                s = suspicion(att, kind, method=method)
                key = kind if kind == "loss" else f"{kind} {method.upper()}"
                orders[key] = (np.argsort(-s, kind="stable"), time.perf_counter() - t0)
            try:
                t0 = time.perf_counter()
                orders["cleanlab"] = (cleanlab_order(X, y, seed), time.perf_counter() - t0)
            except ImportError:
                pass
        for key, (order, sec) in orders.items():
            res.setdefault(key, []).append((*scores(order, flipped, n), sec))
    print(f"== {name}: n = {n}, {NOISE:.0%} flipped, seeds {list(SEEDS)}, logistic l2 = {L2:g} (fixed)")
    print(f"{'ranking':<10} {'top 10%':>8} {'per seed':>22} {'AUC':>6} {'seconds':>8}")
    for key, rows in sorted(res.items(), key=lambda kv: -np.mean([r[0] for r in kv[1]])):
        at = [r[0] for r in rows]
        print(f"{key:<10} {np.mean(at):8.3f} {' / '.join(f'{a:.3f}' for a in at):>22} "
              f"{np.mean([r[1] for r in rows]):6.3f} {np.mean([r[2] for r in rows]):8.3f}")
    return res


if __name__ == "__main__":
    run("breast_cancer", *breast_cancer())
    run("fair", *fair())
