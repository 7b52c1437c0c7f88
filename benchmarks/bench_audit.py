"""Robustness audits on the published cases of ../shared/datasets/amip (CASES.md) and
prediction flips on cifar_catdog: counts, refits and times.

Targets (issue: robustness audit): one-shot reproduces zaminfluence (Mexico 1 / 14 / 15
with refits 0.398 (3.194), -10.962 (5.565), 7.030 (2.549); the seven sites' sign counts;
cash transfers non-poor t = 9, 10: significance with 3 rows); adaptive never needs more rows
than one-shot, Ames 3 rows (-> -6.67), genomics <= 173 rows in under 10 s, ruggedness
(HC1) <= 2 / 5 / 11; cifar_catdog flips smaller than one-shot IF ranking, one audit < 60 s.

    python benchmarks/bench_audit.py [--data-dir ../shared/datasets] [--flips 20] [--skip-cifar]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

import leaveout as lo
from leaveout.metrics import Coefficient, Logit

RUGGED = ("log_rgdppc_2000 ~ rugged*cont_africa + diamonds*cont_africa + soil*cont_africa "
          "+ tropical*cont_africa + dist_coast*cont_africa")


def fit(path, formula):
    return lo.Attribution(lo.GLM.from_formula(formula, pd.read_csv(path), family="squared", l2=0.0))


def line(name, res):
    r = res.refit
    se = "" if r["se"] is None else f" ({r['se']:.3f}; full-n {r['se_full_n']:.3f})"
    return (f"{name:<38} {res.method:<9} k={res.k:<4} {'reached' if res.reached else 'NOT reached':<12}"
            f" refit {r['value']:.4g}{se}  [{res.seconds:.2f} s, {res.refits} refits]")


def timed(att, *args, **kw):
    t0 = time.perf_counter()
    res = lo.audit(att, *args, **kw)
    res.seconds = time.perf_counter() - t0
    return res


def amip(data):
    d = os.path.join(data, "amip")
    print("== microcredit (profit ~ treatment, plain OLS SE)")
    att = fit(os.path.join(d, "mc_profit_mexico.csv"), "profit ~ treatment")
    for target in ("sign", "significance", "opposite"):
        for method in ("one-shot", "adaptive"):
            print(line(f"mexico {target}", timed(att, Coefficient("treatment"), target, method=method)))
    for site in ("mongolia", "bosnia", "india", "morocco", "philippines", "ethiopia"):
        att = fit(os.path.join(d, f"mc_profit_{site}.csv"), "profit ~ treatment")
        for method in ("one-shot", "adaptive"):
            print(line(f"{site} sign", timed(att, Coefficient("treatment"), "sign", method=method)))
    print("== cash transfers, non-poor (cluster-robust by village, HC0 without factor)")
    for t in (8, 9, 10):
        path = os.path.join(d, f"cash_treatnp_t{t}.csv")
        att, village = fit(path, "Cind ~ . - village"), pd.read_csv(path).village.to_numpy()
        for target in ("sign", "significance", "opposite"):
            for method in ("one-shot", "adaptive"):
                print(line(f"t={t} {target}", timed(att, Coefficient("treatment"), target, se="HC0",
                                                    cluster=village, method=method)))
    print("== Ames (n = 340) and genomics (n = 65,539): sign of the slope")
    att = fit(os.path.join(d, "ames_poolarea_n340.csv"), "SalePrice ~ PoolArea")
    for method in ("one-shot", "adaptive"):
        res = timed(att, Coefficient("PoolArea"), "sign", method=method, max_fraction=0.5)
        print(line("ames sign", res), res.positions if res.k <= 10 else "")
    t0 = time.perf_counter()
    att = fit(os.path.join(d, "genomics_vip_gad1.csv"), "gad1 ~ vip")
    res = timed(att, Coefficient("vip"), "sign")
    print(line("genomics sign", res), f"(with the fit: {time.perf_counter() - t0:.2f} s)")
    print(line("genomics sign", timed(att, Coefficient("vip"), "sign", method="one-shot")))
    print("== ruggedness (baseline, HC1): significance / sign / opposite")
    att = fit(os.path.join(d, "rugged_nunn_puga.csv"), RUGGED)
    for target in ("significance", "sign", "opposite"):
        for method in ("one-shot", "adaptive"):
            print(line(f"rugged:cont_africa {target}", timed(att, Coefficient("rugged:cont_africa"), target,
                                                              se="HC1", method=method, max_fraction=0.3)))


def cifar(data, flips, seed):
    from leaveout.datasets import default_l2, load_npz
    ds = load_npz(os.path.join(data, "cifar_catdog.npz"))
    t0 = time.perf_counter()
    att = lo.Attribution(lo.GLM(l2=default_l2("cifar_catdog"), penalty="per_sample").fit(ds.X_train, ds.y_train))
    print(f"== cifar_catdog flips ({ds.X_train.shape[0]} x {ds.X_train.shape[1]}, l2 per_sample "
          f"{default_l2('cifar_catdog'):g}; fit + factor {time.perf_counter() - t0:.1f} s)")
    rows = np.random.default_rng(seed).choice(ds.X_test.shape[0], flips, replace=False)
    ks = {"one-shot": [], "rif": [], "adaptive": []}
    times = []
    for j in rows:
        f = Logit(ds.X_test[j:j + 1])
        out = []
        for method in ks:
            res = timed(att, f, "flip", method=method)
            ks[method].append(res.k if res.reached else np.nan)
            out.append(f"{method} {res.k}{'' if res.reached else ' (not reached)'}")
            if method == "adaptive":
                times.append(res.seconds)
        print(f"test row {int(j):5d}: " + ", ".join(out) + f"  [adaptive {times[-1]:.1f} s]")
    for method, k in ks.items():
        k = np.asarray(k, dtype=float)
        print(f"median k, {method:<9}: {np.nanmedian(k):.1f}  (reached {np.isfinite(k).sum()} of {k.size})")
    print(f"adaptive audit time: median {np.median(times):.1f} s, max {np.max(times):.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data-dir", default=os.path.join(here, "..", "..", "shared", "datasets"))
    ap.add_argument("--flips", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-cifar", action="store_true")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.data_dir, "amip")):
        raise SystemExit(f"no amip folder in {args.data_dir}; give --data-dir")
    amip(args.data_dir)
    if not args.skip_cifar:
        cifar(args.data_dir, args.flips, args.seed)


if __name__ == "__main__":
    main()
