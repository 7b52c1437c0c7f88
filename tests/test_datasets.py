import numpy as np
import pytest
import scipy.sparse as sp

import leaveout as lo
from leaveout.datasets import load_npz


def test_sparse_variant_loads_as_csr(tmp_path):
    rng = np.random.default_rng(0)
    X = sp.random(30, 12, density=0.3, format="csr", random_state=1) * 5
    Xt = sp.random(10, 12, density=0.3, format="csr", random_state=2)
    parts = {}
    for stem, M in (("X_train", X), ("X_test", Xt)):
        parts.update({f"{stem}_data": M.data.astype(np.float32), f"{stem}_indices": M.indices,
                      f"{stem}_indptr": M.indptr, f"{stem}_shape": np.array(M.shape)})
    np.savez(tmp_path / "s.npz", y_train=rng.integers(0, 2, 30), y_test=rng.integers(0, 2, 10), **parts)
    ds = load_npz(tmp_path / "s.npz")
    assert sp.issparse(ds.X_train) and ds.X_train.dtype == np.float64 and ds.name == "s"
    np.testing.assert_allclose(ds.X_train.toarray(), X.astype(np.float32).toarray())


def test_missing_arrays_are_named(tmp_path):
    np.savez(tmp_path / "bad.npz", X_train=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="missing array 'X_test'"):
        load_npz(tmp_path / "bad.npz")


@pytest.mark.parametrize("name", ["fashion_dogfish.npz", "spam_bow.npz"])
def test_shared_bundle_fits_and_attributes(shared_dataset, name):
    ds = load_npz(shared_dataset(name))
    m = lo.GLM(l2=1e-3, penalty="per_sample").fit(ds.X_train, ds.y_train)
    assert m.converged_ and m.grad_norm_ <= 1e-9
    acc = np.mean(m.predict(ds.X_test) == ds.y_test)
    assert acc > 0.9
    att = lo.Attribution(m)
    T = np.arange(5)
    assert att.effect(T, lo.metrics.SelfLoss(), "retrain") > 0


def test_bundled_dataset_is_high_leverage_and_rif_differs_from_if():
    from leaveout.datasets import default_l2, load_bundled
    ds = load_bundled("digits_rff")
    assert ds.X_train.shape == (1437, 512) and ds.X_test.shape == (360, 512)
    assert set(np.unique(ds.y_train)) == {0, 1}
    m = lo.GLM(l2=default_l2("digits_rff"), penalty="per_sample").fit(ds.X_train, ds.y_train)
    att = lo.Attribution(m)
    assert att.leverage.mean() >= 0.2
    f = lo.metrics.TestLoss(ds.X_test, ds.y_test)
    s_if, s_rif = att.scores(f, "if"), att.scores(f, "rif")
    # RIF's total attribution is several times IF's on this high-dimensional problem
    assert np.abs(s_rif - s_if).sum() > 2 * np.abs(s_if).sum()


def test_resolve_and_list(tmp_path):
    from leaveout.datasets import list_datasets, resolve
    X = np.random.default_rng(0).normal(size=(20, 3))
    np.savez(tmp_path / "mine.npz", X_train=X, y_train=np.arange(20) % 2, X_test=X, y_test=np.arange(20) % 2)
    assert resolve("mine", str(tmp_path)).name == "mine"
    assert resolve(str(tmp_path / "mine.npz")).X_train.shape == (20, 3)
    names = [r["name"] for r in list_datasets(str(tmp_path))]
    assert names == ["digits_rff", "mine"]
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*digits_rff.*mine"):
        resolve("nope", str(tmp_path))


def test_datasets_command(tmp_path, capsys):
    from leaveout.cli import main
    X = np.random.default_rng(0).normal(size=(20, 3))
    np.savez(tmp_path / "mine.npz", X_train=X, y_train=np.arange(20) % 2, X_test=X[:5], y_test=np.arange(5) % 2)
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits_rff" in out and "1437" in out and "mine" in out and "20" in out
