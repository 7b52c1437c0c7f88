"""End-to-end `leaveout scores` on a dense 9600 x 2048 problem, against the BLAS floor.

Target (issue: core library): wall time of the whole command (start-up, loading the file,
fit to the certified tolerance, factorisation, leverages, IF and RIF scores, CSV) at most
4x the BLAS floor = one X^T W X + Cholesky + triangular solve against X^T, measured in the
same run on the same matrix.

    python benchmarks/bench_scores.py [--n 9600] [--d 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import blas_floor, synthetic  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=9600)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--metric", default="test-loss")
    args = ap.parse_args()
    X, y, Xt, yt = synthetic(args.n, args.d)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "bench.npz")
        np.savez(data, X_train=X, y_train=y, X_test=Xt, y_test=yt)
        floor = blas_floor(X)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "leaveout", "scores", data, "--metric", args.metric,
                            "--out", os.path.join(tmp, "scores.csv")], check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        floor = min(floor, blas_floor(X))
    best = min(times)
    print(f"n={args.n} d={args.d}  BLAS floor {floor:.2f} s")
    print(f"leaveout scores end-to-end: best {best:.2f} s, median {np.median(times):.2f} s")
    print(f"ratio (best / floor) = {best / floor:.2f}x   (target <= 4x)")


if __name__ == "__main__":
    main()
