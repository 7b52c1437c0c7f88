"""Multinomial attribution at d = 512, C = 10, n = 5000: time per stage and peak memory.

Target (issue: more model families): fit, leverage blocks, IF/RIF scores for two metrics,
IF/RIF/NS for removal sets and a certified retrain, on this machine, without forming a
dense (dC) x (dC) inverse, with peak memory (the process's maximum resident set size,
interpreter and libraries included) under 2 GB.

    python benchmarks/bench_multinomial.py [--n 5000] [--d 512] [--classes 10] [--penalty fixed]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import leaveout as lo


def peak_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        kb = [line.split()[1] for line in fh if line.startswith("VmHWM")][0]
    return int(kb) / 1024


def make(n, d, C, seed=0, n_test=500):
    """Gaussian class means in d dimensions with noise: a softmax problem that is not separable."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(C, d)) * (1.5 / np.sqrt(d))
    y = rng.integers(0, C, n + n_test)
    X = means[y] + rng.normal(size=(n + n_test, d)) / np.sqrt(d) * 2.0
    return X[:n], y[:n], X[n:], y[n:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--penalty", choices=["fixed", "per_sample"], default="fixed")
    args = ap.parse_args()
    X, y, Xt, yt = make(args.n, args.d, args.classes)
    P = (args.d + 1) * (args.classes - 1)
    print(f"n={args.n} d={args.d} C={args.classes}: {P} parameters; a dense {P}x{P} matrix is "
          f"{P * P * 8 / 2**20:.0f} MiB; X is {X.nbytes / 2**20:.0f} MiB; penalty={args.penalty} l2={args.l2}")
    times = {}

    def stage(name, fn):
        t0 = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t0
        print(f"  {name:<28} {times[name]:7.2f} s   peak RSS so far {peak_rss_mib():7.0f} MiB", flush=True)
        return out

    model = stage("fit", lambda: lo.GLM("multinomial", l2=args.l2, penalty=args.penalty).fit(X, y))
    print(f"    converged={model.converged_} in {model.n_iter_} iterations, relative gradient "
          f"{model.grad_norm_:.1e}, {model.n_hessians_} Hessians factored")
    att = stage("factor Hessian", lambda: lo.Attribution(model))
    lev = stage("leverage blocks (all n)", lambda: att.leverage)
    print(f"    mean trace leverage {lev.mean():.3f} (max {lev.max():.3f}, of at most {args.classes - 1})")
    pred = lo.metrics.TestPrediction(Xt, label=0)
    loss = lo.metrics.TestLoss(Xt, yt)
    stage("scores IF test-pred", lambda: att.scores(pred, "if"))
    stage("scores RIF test-pred", lambda: att.scores(pred, "rif"))
    stage("scores RIF test-loss", lambda: att.scores(loss, "rif"))
    rng = np.random.default_rng(1)
    for k in (50, 500):
        T = np.sort(rng.choice(args.n, k, replace=False))
        for meth in ("if", "rif", "ns"):
            stage(f"delta {meth.upper()} |T|={k}", lambda T=T, meth=meth: att.delta(T, meth))
    T = np.sort(rng.choice(args.n, 50, replace=False))
    res = stage("compare (retrain) |T|=50", lambda: att.compare(T, {"test-pred": pred, "test-loss": loss}))
    print(f"    retrain converged in {res['retrain']['n_iter']} iterations (relative gradient "
          f"{res['retrain']['grad_norm']:.1e})")
    for name, row in res["removal"].items():
        print(f"    {name}: actual {row['actual']:.4g}  IF {row['if']:.4g}  RIF {row['rif']:.4g}  NS {row['ns']:.4g}")
    total = sum(times.values())
    peak = peak_rss_mib()
    print(f"total {total:.1f} s; peak RSS {peak:.0f} MiB ({'under' if peak < 2048 else 'OVER'} the 2 GB target)")


if __name__ == "__main__":
    main()
