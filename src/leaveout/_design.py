"""The design matrix: rows x_i (with the intercept column appended) and the few
products over it that every layer needs. All matrix work over X happens here."""

from __future__ import annotations

import mmap
import threading

import numpy as np
import scipy.sparse as sp

# Rows per block when a product needs a dense temporary of the block (~8 MB).
_BLOCK_ELEMENTS = 1 << 20


class Design:
    """Dense or CSR design matrix of shape (n_samples, n_params).

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
    def from_X(cls, X, fit_intercept: bool) -> "Design":
        """Build from validated ``X`` (float64, or float16/32 as stored), appending a column
        of ones if asked. The result is always float64. A ``numpy.memmap`` stays on disk:
        its rows are streamed in chunks (:class:`ChunkedDesign`)."""
        if isinstance(X, np.memmap):
            return ChunkedDesign(X, fit_intercept)
        if type(X).__module__.split(".")[0] == "dask":
            from ._dask import DaskDesign
            return DaskDesign(X, fit_intercept)
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

    # per-sample vectors live in memory here; a distributed design keeps them where X is
    def vector(self, v):
        """A per-sample vector in this design's storage (here: a numpy array)."""
        return np.asarray(v)

    def zeros(self):
        return np.zeros(self.n)

    def keep(self, v):
        """Materialise a lazily computed per-sample vector (no-op in memory)."""
        return v

    def gather(self, v, idx) -> np.ndarray:
        """Entries ``idx`` of a per-sample vector, as a numpy array."""
        return np.asarray(v[idx])

    def row_sq_norms(self, Z) -> np.ndarray:
        """``||a_i^T Z||^2`` for every row (Z of shape (p, k))."""
        out = np.empty(self.n)
        for start, stop, blk in self.blocks():
            XZ = blk @ Z
            out[start:stop] = np.einsum("ij,ij->i", XZ, XZ)
        return out

    def sum_and_rmatvec(self, u, r):
        """``(sum(u), A.T @ r)`` for per-sample vectors u and r."""
        return float(np.sum(u)), self.rmatvec(r)

    def quad_rows(self, L) -> np.ndarray:
        """``a_i^T (L L^T)^{-1} a_i`` for every row, L lower triangular (p, p)."""
        import scipy.linalg as la
        out = np.empty(self.n)
        for start, stop, blk in self.blocks():
            Z = la.solve_triangular(L, blk.T, lower=True, check_finite=False)
            out[start:stop] = np.einsum("ij,ij->j", Z, Z)
        return out

    def blocks(self):
        """Yield ``(start, stop, dense_block)`` over consecutive row blocks."""
        step = self.block_rows()
        for start in range(0, self.n, step):
            stop = min(start + step, self.n)
            blk = self.A[start:stop]
            yield start, stop, (blk.toarray() if self.sparse else blk)

    def take(self, idx) -> "Design":
        """The rows ``idx`` (a copy) as a new design."""
        return Design(self.A[idx])

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

    def wprod(self, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``A.T @ (w * (A @ v))``: the data part of a Hessian-vector product."""
        return self.rmatvec(w * self.matvec(v))

    def gram(self, w: np.ndarray) -> np.ndarray:
        """``A.T @ diag(w) @ A`` as a dense (p, p) array, for w >= 0."""
        if self.sparse:
            G = self.A.T @ self.A.multiply(w[:, None]).tocsr()
            return np.asarray(G.toarray())
        G = np.zeros((self.p, self.p))
        sw = np.sqrt(w)
        for start, stop, blk in self.blocks():
            B = blk * sw[start:stop, None]
            G += B.T @ B  # numpy dispatches X.T @ X to a symmetric rank-k update
        return G

    def weighted_gram(self, w: np.ndarray) -> np.ndarray:
        """``A.T @ diag(w) @ A`` as a dense (p, p) array, for weights of any sign."""
        if self.sparse:
            return np.asarray((self.A.T @ self.A.multiply(w[:, None]).tocsr()).toarray())
        G = np.zeros((self.p, self.p))
        for start, stop, blk in self.blocks():
            G += blk.T @ (blk * w[start:stop, None])
        return G

    def column_l1(self, s: np.ndarray) -> np.ndarray:
        """``sum_i s_i |A_ij|`` for each column j."""
        if self.sparse:
            return np.asarray(abs(self.A).T @ s).ravel()
        out = np.zeros(self.p)
        for start, stop, blk in self.blocks():
            out += np.abs(blk).T @ s[start:stop]
        return out


# Elements per chunk read from disk: a float64 chunk of 4 MB stays in cache between its
# cast and its product, which makes a streamed pass nearly as fast as an in-memory one.
_CHUNK_ELEMENTS = 1 << 19


_BUFFERS = threading.local()


def _buffer(rows: int, cols: int):
    """A float64 (rows, cols) work array reused by this thread, or a fresh one while the
    thread's buffer is in use (nested loops); returns ``(array, owned)``."""
    if getattr(_BUFFERS, "busy", False):
        return np.empty((rows, cols)), False
    have = getattr(_BUFFERS, "arr", None)
    if have is None or have.size < rows * cols:
        have = _BUFFERS.arr = np.empty(rows * cols)
    _BUFFERS.busy = True
    return have[:rows * cols].reshape(rows, cols), True


def release_rows(X, start: int, stop: int) -> None:
    """Unmap the file pages of rows ``start..stop`` of a memmap from this process once they
    are used (Linux ``MADV_DONTNEED``; they stay in the page cache), so that the resident
    set does not grow to the size of the file. A no-op where that is not available."""
    mm = getattr(X, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    view = np.frombuffer(mm, dtype=np.uint8)
    base, size = view.ctypes.data, view.size
    del view
    row = X.strides[0]
    lo = X.ctypes.data + start * row - base
    hi = min(X.ctypes.data + stop * row - base, size)
    lo -= lo % mmap.PAGESIZE
    if 0 <= lo < hi:
        try:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        except (OSError, ValueError):
            pass


class ChunkedDesign(Design):
    """Dense rows kept where they are (a ``numpy.memmap``, e.g. ``np.load(path,
    mmap_mode="r")``) and streamed in row chunks; each chunk is cast to float64 and gets the
    intercept column on the fly. Products over X cost one sequential read of the file and
    hold one chunk at a time; only (p,), (p, k), (p, p) and (n,) results are kept.
    """

    sparse = False
    A = None

    def __init__(self, X, fit_intercept: bool, chunk_rows: int | None = None):
        self.X = X
        self.fit_intercept = bool(fit_intercept)
        self.n, d = X.shape
        self.p = d + self.fit_intercept
        self._chunk = chunk_rows or max(1, _CHUNK_ELEMENTS // max(self.p, 1))

    def block_rows(self) -> int:
        return self._chunk

    def _rows(self, part) -> np.ndarray:
        raw = self.X[part]
        if not self.fit_intercept:
            return np.asarray(raw, dtype=np.float64)
        out = np.empty((raw.shape[0], self.p))
        out[:, :-1] = raw
        out[:, -1] = 1.0
        return out

    def blocks(self):
        """Row chunks as float64 (intercept appended). The array yielded is a reused
        buffer, valid until the next step: copy it to keep it. (Fresh 4 MB arrays per chunk
        would each cost page faults, which dominate where the allocator hands memory back
        to the system at once, as dask workers do.)"""
        buf, owned = _buffer(min(self._chunk, self.n), self.p)
        try:
            for start in range(0, self.n, self._chunk):
                stop = min(start + self._chunk, self.n)
                blk = buf[:stop - start]
                raw = self.X[start:stop]
                if self.fit_intercept:
                    blk[:, :-1] = raw
                    blk[:, -1] = 1.0
                else:
                    blk[...] = raw
                yield start, stop, blk
                self._release(start, stop)
        finally:
            if owned:
                _BUFFERS.busy = False

    def _release(self, start, stop):
        release_rows(self.X, start, stop)

    def take(self, idx) -> Design:
        return Design(self.dense_rows(idx))

    def dense_rows(self, idx) -> np.ndarray:
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        order = np.argsort(idx, kind="stable")
        out = np.empty((idx.size, self.p))
        out[order] = self._rows(idx[order])    # sorted reads are sequential on disk
        return out

    def matvec(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v)
        out = np.empty((self.n,) + v.shape[1:])
        for start, stop, blk in self.blocks():
            out[start:stop] = blk @ v
        return out

    def rmatvec(self, r: np.ndarray) -> np.ndarray:
        r = np.asarray(r)
        out = np.zeros((self.p,) + r.shape[1:])
        for start, stop, blk in self.blocks():
            out += blk.T @ r[start:stop]
        return out

    def wprod(self, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Fused: each chunk is read once for both products."""
        out = np.zeros(self.p)
        for start, stop, blk in self.blocks():
            out += blk.T @ (w[start:stop] * (blk @ v))
        return out

    # the chunks from blocks() are scratch buffers: scaled and solved in place, no new arrays
    def gram(self, w: np.ndarray) -> np.ndarray:
        G = np.zeros((self.p, self.p))
        sw = np.sqrt(w)
        for start, stop, blk in self.blocks():
            blk *= sw[start:stop, None]
            G += blk.T @ blk
        return G

    def weighted_gram(self, w: np.ndarray) -> np.ndarray:
        G = np.zeros((self.p, self.p))
        for start, stop, blk in self.blocks():
            Bw = blk * w[start:stop, None]
            G += blk.T @ Bw
        return G

    def quad_rows(self, L) -> np.ndarray:
        import scipy.linalg as la
        out = np.empty(self.n)
        for start, stop, blk in self.blocks():
            Z = la.solve_triangular(L, blk.T, lower=True, overwrite_b=True, check_finite=False)
            out[start:stop] = np.einsum("ij,ij->j", Z, Z)
        return out

    def column_l1(self, s: np.ndarray) -> np.ndarray:
        out = np.zeros(self.p)
        for start, stop, blk in self.blocks():
            out += np.abs(blk).T @ s[start:stop]
        return out
