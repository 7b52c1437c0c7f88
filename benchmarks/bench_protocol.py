"""The whole Figure-1 protocol of `leaveout reproduce` on a dense 9600 x 2048 problem.

Target (issue: fast certified ground truth): 7 strategies x 40 sizes = 280 removal sets,
3 metrics, IF/RIF/NS and a certified retrain for every set, with lambda = 1e-5
(per_sample), in at most 60x the BLAS floor (one X^T W X + Cholesky + triangular solve
against X^T) measured in the same run; every retrain certified (relative gradient
<= 1e-9); peak memory of the run (its maximum resident set size, which includes the
Python interpreter and libraries) below 3x the size of X in float64.

    python benchmarks/bench_protocol.py [--n 9600] [--d 2048] [--sizes 40] [--jobs 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import blas_floor, synthetic  # noqa: E402


# Runs `leaveout ...` and writes the process's own peak resident set size (VmHWM, kB) to a
# file. (The children's ru_maxrss would also count the pages the child shared with this
# benchmark process between fork and exec.)
_CHILD = """
import sys
from leaveout.cli import main
out, args = sys.argv[1], sys.argv[2:]
rc = main(args)
with open("/proc/self/status") as fh:
    hwm = [line.split()[1] for line in fh if line.startswith("VmHWM")][0]
with open(out, "w") as fh:
    fh.write(hwm)
sys.exit(rc)
"""


def _tree(pid):
    """pid and all its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out


def _pss(pids):
    """Total proportional set size in bytes (shared pages counted once overall)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def run_sampled(cmd):
    """Run ``cmd``; return (wall seconds, peak total PSS of its process tree, sampled every 50 ms)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        if os.path.exists("/proc/self/smaps_rollup"):
            peak = max(peak, _pss(_tree(proc.pid)))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"leaveout reproduce failed with exit status {proc.returncode}")
    return wall, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=9600)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--sizes", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--keep", metavar="DIR", help="keep the run folder here")
    args = ap.parse_args()
    X, y, Xt, yt = synthetic(args.n, args.d, n_test=2400)
    x_bytes = args.n * args.d * 8
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "synth.npz")
        np.savez(data, X_train=X, y_train=y, X_test=Xt, y_test=yt)
        floor = blas_floor(X)
        del X, Xt
        out = args.keep or os.path.join(tmp, "run")
        hwm_file = os.path.join(tmp, "hwm")
        wall, peak = run_sampled([sys.executable, "-c", _CHILD, hwm_file, "reproduce", data, "--figure", "1",
                                  "--quiet", "--sizes", str(args.sizes), "--jobs", str(args.jobs), "--out", out])
        with open(hwm_file) as fh:
            rss = int(fh.read()) * 1024
        with open(os.path.join(out, "results.csv"), newline="") as fh:
            rows = list(csv.DictReader(fh))
        floor = min(floor, blas_floor(np.load(data)["X_train"]))
    n_sets = len(rows) // 3
    conv = all(r["retrain_converged"] == "true" for r in rows)
    gmax = max(float(r["retrain_grad_norm"]) for r in rows)
    print(f"n={args.n} d={args.d}: {n_sets} removal sets, BLAS floor {floor:.2f} s")
    print(f"protocol wall time {wall:.1f} s = {wall / floor:.1f}x floor   (target <= 60x)")
    print(f"all retrains certified: {conv}; largest relative gradient {gmax:.1e} (target <= 1e-9)")
    print(f"peak memory (max resident set size of the run) {rss / 2**20:.0f} MiB = {rss / x_bytes:.2f}x X in "
          f"float64 ({x_bytes / 2**20:.0f} MiB)   (target < 3x); peak total PSS sampled every 50 ms "
          f"{peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
