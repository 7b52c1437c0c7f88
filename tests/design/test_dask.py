"""X as a dask array on a real dask.distributed LocalCluster (worker processes, loopback):
every result equals the in-memory one to 1e-9."""

import numpy as np
import pytest
import scipy.sparse as sp

import leaveout as lo
from leaveout.metrics import TestLoss, TestPrediction

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")


def rel_err(a, b):
    a = np.asarray(a.compute() if hasattr(a, "compute") else a)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def problem(family, n=900, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    z = X @ rng.normal(size=d) / np.sqrt(d)
    if family == "logistic":
        y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    elif family == "squared":
        y = z + rng.normal(size=n)
    else:
        y = rng.poisson(np.exp(z)).astype(float)
    return X, y


CASES = [("logistic", "fixed", 1.0, True), ("logistic", "per_sample", 1e-3, True),
         ("squared", "fixed", 2.0, False), ("poisson", "per_sample", 1e-3, False)]


@pytest.mark.parametrize("family,penalty,l2,weights", CASES)
def test_distributed_results_equal_in_memory(client, family, penalty, l2, weights):
    X, y = problem(family)
    s = np.random.default_rng(1).choice([1.0, 2.0], size=len(y)) if weights else None
    offset = 0.1 * np.arange(len(y)) / len(y) if family == "poisson" else None
    Xd = da.from_array(X, chunks=(200, 3))             # column chunks are merged inside
    md = lo.GLM(family, l2=l2, penalty=penalty).fit(Xd, y, sample_weight=s, offset=offset)
    mm = lo.GLM(family, l2=l2, penalty=penalty).fit(X, y, sample_weight=s, offset=offset)
    assert md.converged_ and rel_err(md.theta_, mm.theta_) < 1e-9
    ad, am = lo.Attribution(md), lo.Attribution(mm)
    assert isinstance(ad.leverage, da.Array)           # per-sample results stay distributed
    assert rel_err(ad.leverage, am.leverage) < 1e-9
    assert rel_err(ad.rif_leverage, am.rif_leverage) < 1e-9
    Xt = X[:15] + 0.1
    metric = TestPrediction(Xt) if family != "poisson" else TestLoss(Xt, y[:15])
    for meth in ("if", "rif"):
        sc = ad.scores(metric, meth)
        assert isinstance(sc, da.Array)
        assert rel_err(sc, am.scores(metric, meth)) < 1e-9
    T = np.array([3, 10, 11, 500, 899])
    for meth in ("if", "rif", "ns", "retrain"):
        assert rel_err(ad.delta(T, meth), am.delta(T, meth)) < 1e-9
    a, b = ad.compare(T, {"m": metric}), am.compare(T, {"m": metric})
    for k in ("actual", "if", "rif", "ns"):
        assert a["removal"]["m"][k] == pytest.approx(b["removal"]["m"][k], rel=1e-9)
    refits = ad.retrain_many([T, np.array([1, 2])])
    assert rel_err(refits[1].theta_, am.retrain([1, 2]).theta_) < 1e-9


def test_dask_labels_sparse_chunks_and_npy_files(client, tmp_path):
    X, y = problem("logistic", n=600, seed=2)
    X[np.abs(X) < 0.8] = 0.0
    ref = lo.GLM(l2=0.5).fit(X, y)
    Xs = da.from_array(X, chunks=(150, 6)).map_blocks(sp.csr_matrix)
    m = lo.GLM(l2=0.5).fit(Xs, da.from_array(y, chunks=100))
    assert rel_err(m.theta_, ref.theta_) < 1e-9
    assert rel_err(lo.Attribution(m).scores(TestLoss(X[:5], y[:5])), lo.Attribution(ref).scores(TestLoss(X[:5], y[:5]))) < 1e-9
    path = tmp_path / "X.npy"
    np.save(path, X.astype(np.float32))
    from leaveout.datasets import npy_as_dask
    Xn = npy_as_dask(path, rows_per_chunk=128)
    assert Xn.chunks[0] == (128, 128, 128, 128, 88)
    m2 = lo.GLM(l2=0.5).fit(Xn, y)
    ref2 = lo.GLM(l2=0.5).fit(X.astype(np.float32), y)
    assert rel_err(m2.theta_, ref2.theta_) < 1e-9
    assert rel_err(lo.Attribution(m2).leverage, lo.Attribution(ref2).leverage) < 1e-9


def test_dask_bad_input_and_unsupported(client):
    X, y = problem("logistic", n=100)
    Xd = da.from_array(X, chunks=(50, 6))
    att = lo.Attribution(lo.GLM().fit(Xd, y))
    with pytest.raises(ValueError, match="dask X does not allow; use scores"):
        att.rescaled_influence()
    bad = X.copy()
    bad[70, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        lo.GLM().fit(da.from_array(bad, chunks=(50, 6)), y)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        lo.GLM().fit(Xd[Xd[:, 0] > 0], y[: 50])
    with pytest.raises(ValueError, match="multinomial family needs X in memory"):
        lo.GLM("multinomial").fit(Xd, np.arange(100) % 3)
    with pytest.raises(ValueError, match="form='dual' needs X in memory"):
        lo.Attribution(lo.GLM().fit(Xd, y), form="dual")


def test_scaling_example_runs():
    import pathlib
    import subprocess
    import sys
    script = pathlib.Path(__file__).resolve().parents[2] / "examples" / "dask_scaling.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300).stdout
    assert "converged=True" in out and "same scores as in memory (1e-9): True" in out


def test_leverage_sketch_on_the_cluster(client):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 150)) / 12
    y = (rng.random(400) < 0.5).astype(int)
    ad = lo.Attribution(lo.GLM(l2=1.0).fit(da.from_array(X, chunks=(100, 150)), y))
    am = lo.Attribution(lo.GLM(l2=1.0).fit(X, y))
    sk_d, sk_m = ad.leverage_sketch(eps=0.9, seed=4), am.leverage_sketch(eps=0.9, seed=4)
    assert 0 < sk_d.n_projections < 151
    assert isinstance(sk_d.values, da.Array) and rel_err(sk_d.values, sk_m.values) < 1e-9
