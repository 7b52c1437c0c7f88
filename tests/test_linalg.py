"""The dense linear-algebra helpers: numpy's and scipy's Cholesky paths agree, refuse the same
matrices, and the LAPACK thread setting touches only scipy's own BLAS."""

import numpy as np
import pytest

from leaveout import _linalg
from leaveout.exceptions import SingularHessianError


@pytest.mark.parametrize("limit", [0, 10_000])              # scipy's path, numpy's path
def test_cholesky_paths_agree_and_refuse_alike(limit, monkeypatch):
    monkeypatch.setattr(_linalg, "NUMPY_LAPACK_MAX", limit)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(40, 9))
    H = A.T @ A + 0.1 * np.eye(9)
    L = _linalg.cholesky(H)
    np.testing.assert_allclose(L @ L.T, H, rtol=1e-13, atol=1e-13)
    assert np.all(np.triu(L, 1) == 0)
    both = H.copy()
    upper = np.triu(H, 1)
    out = _linalg.cholesky_inplace(both)
    np.testing.assert_allclose(np.tril(out), L, rtol=1e-13, atol=1e-14)
    assert np.array_equal(np.triu(out, 1), upper)                   # H's strict upper triangle kept
    np.testing.assert_allclose(_linalg.cho_solve(out, np.ones(9)), np.linalg.solve(H, np.ones(9)), rtol=1e-12)
    bad = H.copy()
    bad[0, 0] = -1.0
    for f in (_linalg.cholesky, _linalg.cholesky_inplace):
        with pytest.raises(SingularHessianError, match="not positive definite"):
            f(bad.copy())


def test_cho_solve_takes_either_memory_order_and_reads_only_the_factor():
    """A row-major factor goes to LAPACK as its transpose (no copy): the solves equal
    ``solve(H, b)`` for numpy's factor, scipy's column-major one and the in-place array whose
    upper triangle still holds H, with one and several right-hand sides."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(60, 12))
    H = A.T @ A + 0.5 * np.eye(12)
    B = rng.normal(size=(12, 3))
    want = np.linalg.solve(H, B)
    inplace = _linalg.cholesky_inplace(H.copy())
    layouts = {"numpy (C order)": np.linalg.cholesky(H), "Fortran order": np.asfortranarray(np.linalg.cholesky(H)),
               "in place, H above": inplace}
    assert layouts["numpy (C order)"].flags.c_contiguous and np.any(np.triu(inplace, 1) != 0)
    for name, L in layouts.items():
        np.testing.assert_allclose(_linalg.cho_solve(L, B), want, rtol=1e-11, err_msg=name)
        np.testing.assert_allclose(_linalg.cho_solve(L, B[:, 0]), want[:, 0], rtol=1e-11, err_msg=name)


def test_small_lapack_sets_only_scipys_own_blas_to_one_thread_and_restores_it():
    import os

    import numpy as np
    from leaveout import _linalg
    libs = _linalg._scipy_own_blas()
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    assert all(not os.path.realpath(c.filepath).startswith(os.path.join(numpy_dir, "numpy")) for c in libs)
    before = [c.num_threads for c in libs]
    with _linalg.small_lapack():
        assert [c.num_threads for c in libs] == [1] * len(libs)
    assert [c.num_threads for c in libs] == before


def test_small_lapack_nests_and_leaves_worker_threads_alone():
    """Nested blocks restore the setting once, at the outermost exit; a block in a worker
    thread changes nothing (OpenBLAS would not take the restored count from there)."""
    import threading
    libs = _linalg._scipy_own_blas()
    before = [c.num_threads for c in libs]
    with _linalg.small_lapack():
        with _linalg.small_lapack():
            pass
        assert [c.num_threads for c in libs] == [1] * len(libs)      # the inner exit kept it
    assert [c.num_threads for c in libs] == before
    seen = []

    def worker():
        with _linalg.small_lapack():
            seen.append([c.num_threads for c in libs])

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert seen == [before] and [c.num_threads for c in libs] == before
    wrapped = _linalg.with_small_lapack(lambda: [c.num_threads for c in libs])
    assert wrapped() == [1] * len(libs) and [c.num_threads for c in libs] == before
