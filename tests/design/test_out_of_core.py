"""X streamed from a .npy file on disk (numpy memmap) gives the in-memory results."""

import numpy as np
import pytest

import leaveout as lo
from leaveout.design import chunked as _design
from leaveout.metrics import SelfLoss, TestLoss, TestPrediction


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.fixture
def small_chunks(monkeypatch):
    # a few hundred elements per chunk, so that every product spans many chunks
    monkeypatch.setattr(_design, "_CHUNK_ELEMENTS", 300)


def write(tmp_path, X, dtype):
    path = tmp_path / "X.npy"
    np.save(path, X.astype(dtype))
    return path


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("penalty,fit_intercept", [("fixed", True), ("per_sample", True), ("fixed", False)])
def test_memmap_equals_in_memory(tmp_path, small_chunks, dtype, penalty, fit_intercept):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(130, 6))
    y = (rng.random(130) < 1 / (1 + np.exp(-X @ rng.normal(size=6)))).astype(int)
    path = write(tmp_path, X, dtype)
    Xm = np.load(path, mmap_mode="r")
    Xmem = Xm.astype(np.float64)                   # the same (rounded) numbers in memory
    l2 = 0.01 if penalty == "per_sample" else 1.0
    a = lo.GLM(l2=l2, penalty=penalty, fit_intercept=fit_intercept).fit(Xm, y)
    b = lo.GLM(l2=l2, penalty=penalty, fit_intercept=fit_intercept).fit(Xmem, y)
    assert isinstance(a.objective_.design, _design.ChunkedDesign) and a.objective_.design.A is None
    assert rel_err(a.theta_, b.theta_) < 1e-10
    aa, ab = lo.Attribution(a), lo.Attribution(b)
    assert rel_err(aa.leverage, ab.leverage) < 1e-9
    Xt = rng.normal(size=(10, 6))
    for metric in (TestPrediction(Xt), TestLoss(Xt, y[:10]), SelfLoss()):
        for meth in ("if", "rif"):
            assert rel_err(aa.scores(metric, meth), ab.scores(metric, meth)) < 1e-9
    T = np.array([3, 4, 50, 99])
    assert rel_err(aa.delta(T, "ns"), ab.delta(T, "ns")) < 1e-9
    assert rel_err(aa.delta(T, "retrain"), ab.delta(T, "retrain")) < 1e-7
    many = aa.retrain_many([T, np.array([7, 8, 9])])
    assert rel_err(many[0].theta_, aa.retrain(T).theta_) < 1e-8


def test_npy_path_and_multinomial(tmp_path, small_chunks):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 4))
    y = np.argmax(X @ rng.normal(size=(4, 3)) + rng.gumbel(size=(90, 3)), axis=1)
    path = write(tmp_path, X, np.float64)
    a = lo.GLM("multinomial", l2=0.5).fit(str(path), y)
    b = lo.GLM("multinomial", l2=0.5).fit(X, y)
    assert rel_err(a.theta_, b.theta_) < 1e-10
    aa, ab = lo.Attribution(a), lo.Attribution(b)
    assert rel_err(aa.leverage, ab.leverage) < 1e-9
    assert rel_err(aa.delta([1, 5], "rif"), ab.delta([1, 5], "rif")) < 1e-9


def test_bad_files_are_refused(tmp_path):
    bad = tmp_path / "bad.npy"
    X = np.ones((5, 2))
    X[3, 1] = np.nan
    np.save(bad, X)
    with pytest.raises(ValueError, match="NaN or infinity \\(in rows 0..4\\)"):
        lo.GLM().fit(str(bad), [0, 1, 0, 1, 0])
    ints = tmp_path / "ints.npy"
    np.save(ints, np.ones((5, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="must hold floats"):
        lo.GLM().fit(str(ints), [0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="cannot open"):
        lo.GLM().fit(str(tmp_path / "missing.npy"), [0, 1])
    Xm = np.load(write(tmp_path, np.random.default_rng(2).normal(size=(8, 20)), np.float32), mmap_mode="r")
    model = lo.GLM(l2=1.0).fit(Xm, np.arange(8) % 2)
    with pytest.raises(ValueError, match="form='dual' needs X in memory"):
        lo.Attribution(model, form="dual")
    assert lo.Attribution(model).form == "primal"
