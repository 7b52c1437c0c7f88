"""A design matrix held in memory: a dense float64 array or a CSR matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import Design

__all__ = ["InMemoryDesign"]

# Rows per block when a product needs a dense temporary of the block (~8 MB).
_BLOCK_ELEMENTS = 1 << 20
# Entries per row block of a Gram matrix's rank-k updates (a 32 MB float64 temporary).
_GRAM_ELEMENTS = 1 << 22


class InMemoryDesign(Design):
    """Dense or CSR design matrix of shape (n_samples, n_params), all in this process.

    Parameters
    ----------
    A : ndarray or csr_matrix of shape (n_samples, n_params)
        Clean float64 rows, the intercept column (if any) already appended last.
    """

    def __init__(self, A):
        self.A = A
        self.sparse = sp.issparse(A)
        self.n, self.p = A.shape

    @classmethod
    def from_X(cls, X, fit_intercept: bool) -> "InMemoryDesign":
        """From validated ``X`` (float64, or float16/32 as stored; dense or sparse), with a
        column of ones appended if asked. The result is always float64."""
        if not fit_intercept:
            return cls(X if sp.issparse(X) else np.asarray(X, dtype=np.float64))
        n, d = X.shape
        if sp.issparse(X):
            return cls(sp.hstack([X, np.ones((n, 1))], format="csr"))
        A = np.empty((n, d + 1))
        A[:, :d] = X
        A[:, d] = 1.0
        return cls(A)

    def block_rows(self) -> int:
        return max(1, _BLOCK_ELEMENTS // max(self.p, 1))

    def blocks(self):
        """Yield ``(start, stop, dense_block)`` over consecutive row blocks."""
        step = self.block_rows()
        for start in range(0, self.n, step):
            stop = min(start + step, self.n)
            blk = self.A[start:stop]
            yield start, stop, (blk.toarray() if self.sparse else blk)

    def dense_rows(self, idx) -> np.ndarray:
        """The rows ``idx`` as a dense array of shape (len(idx), n_params)."""
        rows = self.A[idx]
        return rows.toarray() if self.sparse else np.asarray(rows)

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``A @ v`` for v of shape (p,) or (p, k)."""
        out = self.A @ v
        return np.asarray(out)

    def rmatvec(self, r: np.ndarray) -> np.ndarray:
        """``A.T @ r`` for r of shape (n,) or (n, k)."""
        if r.ndim == 2 and not self.sparse:
            return (r.T @ self.A).T   # faster than A.T @ r for a few columns in OpenBLAS
        return np.asarray(self.A.T @ r)

    def gram(self, w: np.ndarray) -> np.ndarray:
        if self.sparse:
            return np.asarray((self.A.T @ self.A.multiply(w[:, None]).tocsr()).toarray())
        return self._gram(w, np.float64)

    def gram_approx(self, w: np.ndarray) -> np.ndarray:
        """``A.T @ diag(w) @ A`` from float32 products (dense X; about 1e-7 relative error, half
        the time of :meth:`gram`): for preconditioners, never for an answer."""
        if self.sparse:
            return self.gram(w)
        return self._gram(w, np.float32)

    def _gram(self, w, dtype):
        """Dense ``A.T @ diag(w) @ A`` by symmetric rank-k updates in ``dtype`` over row blocks of
        :data:`_GRAM_ELEMENTS` entries (fewer, longer updates than :meth:`blocks`' pieces:
        about 10 % faster at p = 1280), summed in float64."""
        G = np.zeros((self.p, self.p))
        sw = np.sqrt(w)
        step = max(1, _GRAM_ELEMENTS // max(self.p, 1))
        for start in range(0, self.n, step):
            B = (self.A[start:start + step] * sw[start:start + step, None]).astype(dtype, copy=False)
            G += B.T @ B      # numpy dispatches B.T @ B to a symmetric rank-k update
        return G

    def weighted_gram(self, w: np.ndarray) -> np.ndarray:
        if self.sparse:
            return np.asarray((self.A.T @ self.A.multiply(w[:, None]).tocsr()).toarray())
        return super().weighted_gram(w)

    def column_l1(self, s: np.ndarray) -> np.ndarray:
        if self.sparse:
            return np.asarray(abs(self.A).T @ s).ravel()
        return super().column_l1(s)
