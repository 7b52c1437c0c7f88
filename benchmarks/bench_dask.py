"""Dask-distributed attribution of an X bigger than a worker's memory.

Issue target (Dask / out-of-core): n = 4,000,000, d = 256 float32 stored as one .npy on disk
(3.8 GiB), a local dask.distributed cluster whose workers are limited to 1.5 GB each: fit +
leverages + RIF scores for one metric complete, each worker's peak memory stays under its
limit, and throughput (rows/s) is within 2x of the in-memory path on a 400,000-row slice.

X reaches the workers through `leaveout.datasets.npy_as_dask` (each chunk is read by the
worker that needs it); only (p,) and (p, p) results come back to the client; per-sample
vectors stay on the workers. Worker peak memory is the maximum of each worker process's
resident set size (VmRSS, mapped file pages included), sampled every 10 ms on the worker.

    python benchmarks/bench_dask.py [--n 4000000] [--slice 400000] [--d 256] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_out_of_core import ensure_npy, file_args, work  # noqa: E402


def _start_sampler():
    """On a worker: sample the process's current resident set size (VmRSS, which includes
    mapped file pages) every 10 ms in a daemon thread, keeping the maximum. (ru_maxrss would
    also count the parent's pages at the fork that started the worker.)"""
    import threading
    state = {"peak": 0}

    def run():
        while True:
            with open("/proc/self/status") as fh:
                kb = int([line.split()[1] for line in fh if line.startswith("VmRSS:")][0])
            state["peak"] = max(state["peak"], kb * 1024)
            time.sleep(0.01)

    threading.Thread(target=run, daemon=True).start()
    sys._leaveout_rss_sampler = state       # this module is re-created per call on the worker


def _peak_rss():
    return sys._leaveout_rss_sampler["peak"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4_000_000)
    ap.add_argument("--slice", type=int, default=400_000)
    file_args(ap)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="1.5GB")
    ap.add_argument("--rows-per-chunk", type=int, default=50_000)
    ap.add_argument("--slice-only", action="store_true", help="skip the run on all n rows")
    args = ap.parse_args()
    from dask.distributed import Client, LocalCluster

    from leaveout.datasets import npy_as_dask

    path = ensure_npy(args.dir, args.n, args.d)
    y_all = np.load(path.replace(".npy", "_y.npy"))
    rng = np.random.default_rng(5)
    Xt = rng.normal(size=(100, args.d)) * (2.0 / np.sqrt(args.d))
    yt = rng.integers(0, 2, 100)
    try:
        # in memory, this process (BLAS on all cores), on the slice
        Xs = np.ascontiguousarray(np.load(path, mmap_mode="r")[:args.slice])
        t0 = time.perf_counter()
        _, times, sums_mem = work(Xs, y_all[:args.slice], Xt, yt)
        t_mem = time.perf_counter() - t0
        del Xs
        print(f"in memory   n={args.slice:>9,}: {t_mem:6.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in times.items())}); "
              f"{args.slice / t_mem:9,.0f} rows/s")
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          memory_limit=args.memory_limit, dashboard_address=None) as cluster, Client(cluster) as client:
            client.run(_start_sampler)
            X = npy_as_dask(path, rows_per_chunk=args.rows_per_chunk)
            for rows in (args.slice,) if args.slice_only else (args.slice, args.n):
                t0 = time.perf_counter()
                model, times, sums = work(X[:rows], y_all[:rows], Xt, yt)
                total = time.perf_counter() - t0
                print(f"dask {args.workers}x{args.memory_limit} n={rows:>9,}: {total:6.1f} s "
                      f"({', '.join(f'{k} {v:.1f} s' for k, v in times.items())}); {rows / total:9,.0f} rows/s; "
                      f"converged {model.converged_} ({model.grad_norm_:.1e})", flush=True)
                if rows == args.slice:
                    t_dask = total
                    same = np.allclose(sums, sums_mem, rtol=1e-9)
            peaks = client.run(_peak_rss)
            n_workers = len(client.scheduler_info()["workers"])
        print(f"worker peak RSS: {', '.join(f'{v / 2**20:.0f} MiB' for v in peaks.values())} "
              f"(limit {args.memory_limit}; {n_workers} of {args.workers} workers alive at the end)")
        print(f"in-memory / dask time on {args.slice:,} rows: {t_dask / t_mem:.2f}x (target <= 2x); "
              f"leverage and score sums equal to 1e-9: {same}")
    finally:
        if not args.keep:
            for p in (path, path.replace(".npy", "_y.npy")):
                if os.path.exists(p):
                    os.unlink(p)


if __name__ == "__main__":
    main()
