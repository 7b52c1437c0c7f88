"""Cholesky helpers shared by the solver and the attribution engines: positive definite or
a SingularHessianError that says what to do, never a silent pseudo-inverse."""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager

import numpy as np
import scipy.linalg as la

from .exceptions import SingularHessianError

SINGULAR_HINT = "add an L2 penalty (l2 > 0, or --l2 on the command line)"


def _check_diagonal(L, n, what):
    d = np.diag(L)
    if d.min() <= np.sqrt(np.finfo(float).eps * n) * 1e-4 * d.max():
        raise SingularHessianError(f"the {what} is numerically singular; {SINGULAR_HINT}")


#: up to this size dense Cholesky factors come from numpy's LAPACK (see :func:`cholesky`)
NUMPY_LAPACK_MAX = 4096


def cholesky(H: np.ndarray, what: str = "Hessian") -> np.ndarray:
    """Lower Cholesky factor of ``H``; raise SingularHessianError when not positive definite.

    Up to :data:`NUMPY_LAPACK_MAX` rows by numpy: where numpy and scipy bundle separate
    OpenBLAS builds, scipy's factor right after numpy's products (a Gram matrix) waits for
    numpy's still-spinning BLAS threads, 2-3 times as long as numpy's own."""
    try:
        if H.shape[0] <= NUMPY_LAPACK_MAX:
            L = np.linalg.cholesky(H)
        else:
            L = la.cholesky(H, lower=True, check_finite=False)
    except (la.LinAlgError, np.linalg.LinAlgError):
        raise SingularHessianError(f"the {what} is singular or not positive definite; {SINGULAR_HINT}") from None
    _check_diagonal(L, H.shape[0], what)
    return L


def cholesky_inplace(H: np.ndarray, what: str = "Hessian") -> np.ndarray:
    """Overwrite the lower triangle of the symmetric ``H`` with its Cholesky factor and keep
    ``H``'s strict upper triangle as it was (one array holds both)."""
    n = H.shape[0]
    if n <= NUMPY_LAPACK_MAX:                 # numpy's LAPACK, as in :func:`cholesky`
        try:
            L = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            raise SingularHessianError(f"the {what} is singular or not positive definite; {SINGULAR_HINT}") from None
        np.copyto(H, L, where=np.tri(n, dtype=bool))
        L = H
    else:
        L, info = la.lapack.dpotrf(H, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            raise SingularHessianError(f"the {what} is singular or not positive definite; {SINGULAR_HINT}")
    _check_diagonal(L, n, what)
    return L


def cho_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(L L^T)^{-1} b``.

    LAPACK reads column-major arrays; a row-major ``L`` (numpy's factors) is handed over as
    its transpose, the upper factor ``L^T`` in column-major order, since scipy would otherwise
    copy the whole factor on every call (at p = 1280 that copy took 4 of a single solve's 5 ms)."""
    if L.flags.c_contiguous and not L.flags.f_contiguous:
        return la.cho_solve((L.T, False), b, check_finite=False)
    return la.cho_solve((L, True), b, check_finite=False)


_SEPARATE = None


def _scipy_own_blas():
    """threadpoolctl's controllers of a BLAS that scipy loaded apart from numpy's (the PyPI
    wheels each bundle their own OpenBLAS), or ``[]`` where both use one library."""
    global _SEPARATE
    if _SEPARATE is None:
        import os

        import scipy
        from threadpoolctl import ThreadpoolController
        here = os.path.dirname(scipy.__file__)
        own = (here + os.sep, here + ".libs" + os.sep)
        blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        mine = [c for c in blas if os.path.realpath(c.filepath).startswith(own)]
        _SEPARATE = mine if len(mine) < len(blas) else []
    return _SEPARATE


_DEPTH = 0
_SAVED: list = []


@contextmanager
def small_lapack():
    """Run scipy's LAPACK calls in this block on one thread; numpy's products keep theirs.

    Where numpy and scipy each bundle their own OpenBLAS (the PyPI wheels), a scipy solve
    right after a numpy product competes with numpy's BLAS threads, which still spin: on two
    cores a triangular solve with a few right-hand sides then takes several times as long.
    For stretches of many small solves between products (Newton systems and refits, the
    dual form's kernel solves); a no-op where both share one library.

    Only the main thread changes the setting (OpenBLAS ignores a thread count raised from
    another thread, so a worker could not restore it); nested blocks restore it once, when
    the outermost one ends. In worker threads this is a no-op."""
    global _DEPTH, _SAVED
    libs = _scipy_own_blas() if threading.current_thread() is threading.main_thread() else []
    if libs:
        if _DEPTH == 0:
            _SAVED = [c.num_threads for c in libs]
            for c in libs:
                c.set_num_threads(1)
        _DEPTH += 1
    try:
        yield
    finally:
        if libs:
            _DEPTH -= 1
            if _DEPTH == 0:
                for c, k in zip(libs, _SAVED):
                    c.set_num_threads(k)


def with_small_lapack(method):
    """Decorator: run ``method`` inside :func:`small_lapack`."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with small_lapack():
            return method(*args, **kwargs)
    return wrapper
