"""Out-of-core X: fit + leverages + RIF scores with X streamed from a float32 .npy file,
against the same work with X loaded in memory.

Issue target (Dask / out-of-core): with X on disk, the work completes with bounded memory,
and its throughput (rows/s) is within 2x of the in-memory path on a 400,000-row slice.
Each path runs in its own process. Memory is reported two ways: the peak of anonymous
resident memory (RssAnon, sampled every 20 ms; what the process itself allocated) and
VmHWM (which also counts the file's pages mapped from the page cache, reclaimable).

    python benchmarks/bench_out_of_core.py [--n 400000] [--d 256] [--dir /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def _status(key):
    with open("/proc/self/status") as fh:
        return int([line.split()[1] for line in fh if line.startswith(key)][0]) * 1024


def work(X, y, Xt, yt):
    """Fit + all leverages + RIF scores of a test loss (the issue's workload): the model,
    seconds per stage, and the sums of the leverages and scores (to compare paths)."""
    import leaveout as lo
    times = {}
    t = time.perf_counter()
    model = lo.GLM(l2=1.0).fit(X, y)
    times["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    att = lo.Attribution(model)
    lev_sum = float(att.leverage.sum())
    times["factor+leverage"] = time.perf_counter() - t
    t = time.perf_counter()
    s_sum = float(att.scores(lo.metrics.TestLoss(Xt, yt), "rif").sum())
    times["rif scores"] = time.perf_counter() - t
    return model, times, (lev_sum, s_sum)


def child(mode, path, n_rows):
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _status("RssAnon:"))
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    X = np.load(path, mmap_mode="r")[:n_rows]
    y = np.load(path.replace(".npy", "_y.npy"))[:n_rows]
    if mode == "memory":
        X = np.ascontiguousarray(X)          # float32 in memory; the design is float64
    rng = np.random.default_rng(5)
    Xt = rng.normal(size=(100, X.shape[1])) * (2.0 / np.sqrt(X.shape[1]))
    yt = rng.integers(0, 2, 100)
    model, times, sums = work(X, y, Xt, yt)
    total = time.perf_counter() - t0
    stop.set()
    th.join()
    print(json.dumps({"mode": mode, "n": int(n_rows), "times": times, "total": total,
                      "rows_per_s": n_rows / total, "converged": bool(model.converged_),
                      "grad_norm": model.grad_norm_, "peak_anon_mib": peak[0] / 2**20,
                      "vmhwm_mib": _status("VmHWM:") / 2**20,
                      "checksum": list(sums)}))


def write_npy(path, n, d, seed=0):
    """Write X (float32) chunk by chunk, never holding it whole; labels beside it."""
    rng = np.random.default_rng(seed)
    beta = rng.normal(size=d)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    y = np.empty(n, dtype=np.uint8)
    step = 200_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        blk = rng.normal(size=(stop - start, d)) * (2.0 / np.sqrt(d))
        X[start:stop] = blk
        y[start:stop] = rng.random(stop - start) < 1 / (1 + np.exp(-(blk @ beta)))
    X.flush()
    del X
    np.save(path.replace(".npy", "_y.npy"), y)


def file_args(ap):
    """The options every file-based benchmark shares."""
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="folder for the .npy file")
    ap.add_argument("--keep", action="store_true", help="keep the .npy file")


def ensure_npy(folder, n, d):
    """Path of the benchmark file for (n, d) in ``folder``, written if missing."""
    path = os.path.join(folder, f"leaveout-bench-{n}x{d}.npy")
    if not os.path.exists(path):
        t = time.perf_counter()
        write_npy(path, n, d)
        print(f"wrote {path} ({os.path.getsize(path) / 2**30:.2f} GiB) in {time.perf_counter() - t:.0f} s")
    return path


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400_000, help="rows in the file (default 400,000)")
    ap.add_argument("--slice", type=int, default=None, help="rows for the in-memory comparison (default: all)")
    file_args(ap)
    ap.add_argument("--skip-memory", action="store_true", help="only the out-of-core run on all rows")
    args = ap.parse_args()
    path = ensure_npy(args.dir, args.n, args.d)
    sl = args.slice or args.n
    runs = [("disk", args.n)]
    if not args.skip_memory:
        runs = [("memory", sl), ("disk", sl)] + ([("disk", args.n)] if sl != args.n else [])
    results = []
    try:
        for mode, rows in runs:
            out = subprocess.run([sys.executable, __file__, "--child", mode, path, str(rows)],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            results.append(r)
            t = ", ".join(f"{k} {v:.1f} s" for k, v in r["times"].items())
            print(f"{mode:>6} n={rows:>9,}: {r['total']:6.1f} s ({t}); {r['rows_per_s']:9,.0f} rows/s; "
                  f"peak anonymous {r['peak_anon_mib']:6.0f} MiB, VmHWM {r['vmhwm_mib']:6.0f} MiB; "
                  f"converged {r['converged']} ({r['grad_norm']:.1e})", flush=True)
    finally:
        if not args.keep:
            for p in (path, path.replace(".npy", "_y.npy")):
                if os.path.exists(p):
                    os.unlink(p)
    mem = [r for r in results if r["mode"] == "memory"]
    disk = [r for r in results if r["mode"] == "disk" and r["n"] == sl]
    if mem and disk:
        ratio = mem[0]["rows_per_s"] / disk[0]["rows_per_s"]
        same = np.allclose(mem[0]["checksum"], disk[0]["checksum"], rtol=1e-9)
        print(f"in-memory / out-of-core throughput on {sl:,} rows: {ratio:.2f}x (target <= 2x); "
              f"results equal to 1e-9: {same}")


if __name__ == "__main__":
    main()
