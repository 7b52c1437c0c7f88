"""A design matrix whose rows stay in a file (``numpy.memmap``) and are streamed in chunks."""

from __future__ import annotations

import mmap
import threading

import numpy as np
import scipy.linalg as la

from .base import Design

__all__ = ["ChunkedDesign", "release_rows"]

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

    def dense_rows(self, idx) -> np.ndarray:
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        order = np.argsort(idx, kind="stable")
        out = np.empty((idx.size, self.p))
        out[order] = self._rows(idx[order])    # sorted reads are sequential on disk
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

    def quad_rows(self, L) -> np.ndarray:
        out = np.empty(self.n)
        for start, stop, blk in self.blocks():
            Z = la.solve_triangular(L, blk.T, lower=True, overwrite_b=True, check_finite=False)
            out[start:stop] = np.einsum("ij,ij->j", Z, Z)
        return out
