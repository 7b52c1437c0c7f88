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
