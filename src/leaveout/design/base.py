"""The interface every design matrix answers, whatever holds its rows.

A design is the training (or test) matrix ``A`` of shape (n_samples, n_params): the rows
``x_i`` with the intercept column, if any, appended last. Every product over ``A`` that the
layers above need goes through this interface, so the model, the attribution engines and the
metrics never see where the rows are:

* :class:`~leaveout.design.memory.InMemoryDesign`: a dense array or CSR matrix in memory;
* :class:`~leaveout.design.chunked.ChunkedDesign`: rows kept in a ``numpy.memmap`` and
  streamed in chunks;
* :class:`~leaveout.design.distributed.DaskDesign`: a row-chunked ``dask.array`` whose
  chunks are processed on the workers that hold them.

Backends differ in *behaviour*, which they state as attributes rather than by class:

``A``
    The whole matrix as a numpy array or CSR matrix in this process, or ``None``.
``local``
    True when per-sample vectors (linear predictors, weights, leverages, scores) are numpy
    arrays in this process; False when they live elsewhere (dask arrays on workers). Code
    that needs (n, k) work arrays in memory, such as lockstep refits, checks this.
``round_trips``
    True when every evaluation costs a round trip (a cluster): batch what can go together.
"""

from __future__ import annotations

import sys

import numpy as np
import scipy.linalg as la

__all__ = ["Design", "is_dask_array"]


def is_dask_array(x) -> bool:
    """True for a ``dask.array.Array`` (without importing dask: if dask.array has not been
    imported, nothing can be one)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)


class Design:
    """Base class: shapes, capabilities and the products that follow from :meth:`blocks`.

    Subclasses provide ``n``, ``p``, :meth:`blocks`, :meth:`dense_rows` and usually faster
    versions of the products.
    """

    A = None
    sparse = False
    local = True
    round_trips = False
    n: int
    p: int

    # ------------------------------------------------------------ per-sample vectors
    def vector(self, v):
        """A per-sample vector, (n,) or (n, k), in this design's storage (numpy here)."""
        return np.asarray(v)

    def zeros(self):
        return np.zeros(self.n)

    def keep(self, v):
        """Materialise a lazily computed per-sample vector where it lives (no-op here)."""
        return v

    def gather(self, v, idx) -> np.ndarray:
        """Entries ``idx`` of a per-sample vector, as a numpy array."""
        return np.asarray(v[idx])

    def unique(self, v) -> np.ndarray:
        """The distinct values of a per-sample vector, sorted, as a numpy array."""
        return np.unique(np.asarray(v))

    def zeroed(self, v, idx):
        """A copy of the per-sample vector ``v`` with entries ``idx`` set to 0."""
        out = np.array(v, dtype=np.float64)
        out[idx] = 0.0
        return out

    # ------------------------------------------------------------ rows
    def block_rows(self) -> int:
        raise NotImplementedError

    def blocks(self):
        """Yield ``(start, stop, dense float64 block)`` over consecutive row blocks."""
        raise NotImplementedError

    def dense_rows(self, idx) -> np.ndarray:
        """The rows ``idx`` as a dense float64 array of shape (len(idx), n_params)."""
        raise NotImplementedError

    # ------------------------------------------------------------ products
    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``A @ v`` for v of shape (p,) or (p, k)."""
        v = np.asarray(v)
        out = np.empty((self.n,) + v.shape[1:])
        for start, stop, blk in self.blocks():
            out[start:stop] = blk @ v
        return out

    def rmatvec(self, r: np.ndarray) -> np.ndarray:
        """``A.T @ r`` for r of shape (n,) or (n, k)."""
        r = np.asarray(r)
        out = np.zeros((self.p,) + r.shape[1:])
        for start, stop, blk in self.blocks():
            out += blk.T @ r[start:stop]
        return out

    def sum_and_rmatvec(self, u, r):
        """``(sum(u), A.T @ r)`` for per-sample vectors u and r (one round trip)."""
        return float(np.sum(u)), self.rmatvec(r)

    def wprod(self, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``A.T @ (w * (A @ v))``: the data part of a Hessian-vector product."""
        return self.rmatvec(w * self.matvec(v))

    def gram(self, w: np.ndarray) -> np.ndarray:
        """``A.T @ diag(w) @ A`` as a dense (p, p) array, for w >= 0."""
        G = np.zeros((self.p, self.p))
        sw = np.sqrt(w)
        for start, stop, blk in self.blocks():
            B = blk * sw[start:stop, None]
            G += B.T @ B      # numpy dispatches B.T @ B to a symmetric rank-k update
        return G

    def weighted_gram(self, w: np.ndarray) -> np.ndarray:
        """``A.T @ diag(w) @ A`` as a dense (p, p) array, for weights of any sign."""
        G = np.zeros((self.p, self.p))
        for start, stop, blk in self.blocks():
            G += blk.T @ (blk * w[start:stop, None])
        return G

    def column_l1(self, s: np.ndarray) -> np.ndarray:
        """``sum_i s_i |A_ij|`` for each column j."""
        out = np.zeros(self.p)
        for start, stop, blk in self.blocks():
            out += np.abs(blk).T @ s[start:stop]
        return out

    def row_sq_norms(self, Z) -> np.ndarray:
        """``||a_i^T Z||^2`` for every row (Z of shape (p, k))."""
        out = np.empty(self.n)
        for start, stop, blk in self.blocks():
            XZ = blk @ Z
            out[start:stop] = np.einsum("ij,ij->i", XZ, XZ)
        return out

    def quad_rows(self, L) -> np.ndarray:
        """``a_i^T (L L^T)^{-1} a_i`` for every row, L lower triangular (p, p)."""
        out = np.empty(self.n)
        for start, stop, blk in self.blocks():
            Z = la.solve_triangular(L, blk.T, lower=True, check_finite=False)
            out[start:stop] = np.einsum("ij,ij->j", Z, Z)
        return out
