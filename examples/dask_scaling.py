"""Attribution with X on disk, computed by a local dask cluster (needs `pip install 'leaveout[dask]'`).

Writes a small float32 .npy (stand-in for a large embedding file), opens it as a dask
array whose chunks each worker reads itself, and fits, scores and retrains on the cluster;
then checks the numbers against the same work in memory.

    python examples/dask_scaling.py
"""

import os
import tempfile

import numpy as np
from dask.distributed import Client, LocalCluster

import leaveout as lo
from leaveout.datasets import npy_as_dask


def main():
    rng = np.random.default_rng(0)
    n, d = 20_000, 32
    X = (rng.normal(size=(n, d)) / np.sqrt(d)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ rng.normal(size=d) * 3))).astype(int)
    X_test, y_test = X[:200], y[:200]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "embeddings.npy")
        np.save(path, X)
        with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1.5GB", host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster):
            Xd = npy_as_dask(path, rows_per_chunk=5_000)       # 4 chunks, read on the workers
            model = lo.GLM(l2=1.0).fit(Xd, y)
            att = lo.Attribution(model)
            scores = att.scores(lo.metrics.TestLoss(X_test, y_test), "rif")   # a dask array (n,)
            values = scores.compute()
            top = np.argsort(-values)[:20]           # the rows whose removal raises the test loss most
            effect = att.effect(top, lo.metrics.TestLoss(X_test, y_test), "retrain")
            print(f"fit on the cluster: converged={model.converged_}, relative gradient {model.grad_norm_:.1e}")
            print(f"scores: {type(scores).__name__} of {scores.shape[0]} rows, in {scores.npartitions} chunks")
            print(f"removing the 20 top-scored rows changes the test loss by {effect:+.4f} (certified retrain)")
    ref = lo.Attribution(lo.GLM(l2=1.0).fit(X, y))
    same = np.allclose(values, ref.scores(lo.metrics.TestLoss(X_test, y_test), "rif"), rtol=1e-9)
    print(f"same scores as in memory (1e-9): {same}")


if __name__ == "__main__":
    main()
