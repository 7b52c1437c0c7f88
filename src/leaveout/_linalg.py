"""Cholesky helpers shared by the solver and the attribution engines: positive definite or
a SingularHessianError that says what to do, never a silent pseudo-inverse."""

from __future__ import annotations

import numpy as np
import scipy.linalg as la

from .exceptions import SingularHessianError

SINGULAR_HINT = "add an L2 penalty (l2 > 0, or --l2 on the command line)"


def _check_diagonal(L, n, what):
    d = np.diag(L)
    if d.min() <= np.sqrt(np.finfo(float).eps * n) * 1e-4 * d.max():
        raise SingularHessianError(f"the {what} is numerically singular; {SINGULAR_HINT}")


def cholesky(H: np.ndarray, what: str = "Hessian") -> np.ndarray:
    """Lower Cholesky factor of ``H``; raise SingularHessianError when not positive definite."""
    try:
        L = la.cholesky(H, lower=True, check_finite=False)
    except la.LinAlgError:
        raise SingularHessianError(f"the {what} is singular or not positive definite; {SINGULAR_HINT}") from None
    _check_diagonal(L, H.shape[0], what)
    return L


def cholesky_inplace(H: np.ndarray, what: str = "Hessian") -> np.ndarray:
    """Overwrite the lower triangle of the symmetric ``H`` with its Cholesky factor and keep
    ``H``'s strict upper triangle as it was (one array holds both)."""
    L, info = la.lapack.dpotrf(H, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise SingularHessianError(f"the {what} is singular or not positive definite; {SINGULAR_HINT}")
    _check_diagonal(L, H.shape[0], what)
    return L


def cho_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(L L^T)^{-1} b``."""
    return la.cho_solve((L, True), b, check_finite=False)
