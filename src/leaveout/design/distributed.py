"""X as a ``dask.array``: every product over X runs chunk by chunk where the chunks live.

Only (p,), (p, k) and (p, p) results and |T| x p row blocks are gathered to the client; the
per-sample vectors (linear predictors, weights, leverages, scores) stay dask arrays, kept
on the workers with ``persist`` between Newton iterations. Imported only when X is a dask
array, so the core package does not import dask.
"""

from __future__ import annotations

import numpy as np

from .base import Design, is_dask_array as is_dask
from .chunked import ChunkedDesign
from .memory import InMemoryDesign

__all__ = ["DaskDesign"]


def _local(blk, intercept):
    """A design over one chunk: dense chunks are streamed in cache-sized sub-blocks (the
    float64 copy of a sub-block never outlives its product), sparse ones kept as CSR."""
    if hasattr(blk, "toarray"):
        import scipy.sparse as sp
        return InMemoryDesign.from_X(sp.csr_matrix(blk, dtype=np.float64), intercept)
    return ChunkedDesign(blk if isinstance(blk, np.memmap) else np.asarray(blk), intercept)


def _cast(blk, intercept):
    if hasattr(blk, "toarray"):
        blk = blk.toarray()
    blk = np.asarray(blk, dtype=np.float64)
    if not intercept:
        return blk
    out = np.empty((blk.shape[0], blk.shape[1] + 1))
    out[:, :-1] = blk
    out[:, -1] = 1.0
    return out


def _mv(blk, v, intercept):
    return _local(blk, intercept).matvec(v)


def _rmv(blk, r, intercept):
    return _local(blk, intercept).rmatvec(r)


def _wprod(blk, w, v, intercept):
    return _local(blk, intercept).wprod(w, v)


def _gram(blk, w, intercept):
    return _local(blk, intercept).gram(w)


def _wgram(blk, w, intercept):
    return _local(blk, intercept).weighted_gram(w)


def _abs_t(blk, s, intercept):
    return _local(blk, intercept).column_l1(s)


def _quad(blk, L, intercept):
    return _local(blk, intercept).quad_rows(L)


def _sq_norms(blk, Z, intercept):
    return _local(blk, intercept).row_sq_norms(Z)


def _tree_sum(parts):
    """Pairwise sum of delayed objects (a balanced tree, so no worker adds them all)."""
    from dask import delayed
    add = delayed(np.add, pure=True)
    while len(parts) > 1:
        parts = [add(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return parts[0]


class DaskDesign(Design):
    """The design matrix of a row-chunked ``dask.array`` X (dense or scipy.sparse chunks)."""

    A = None
    sparse = False
    #: per-sample vectors are dask arrays, kept on the workers
    local = False
    #: every evaluation is a round trip to the scheduler: batch what can go together
    round_trips = True

    def __init__(self, X, fit_intercept: bool):
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})          # whole rows per chunk
        self.X = X
        self.fit_intercept = bool(fit_intercept)
        self.n, d = X.shape
        self.p = d + self.fit_intercept
        self.row_chunks = X.chunks[0]

    # ------------------------------------------------------------ per-sample vectors
    def vector(self, v):
        """A (n,) or (n, k) vector as a dask array chunked like X's rows."""
        import dask.array as da
        if is_dask(v):
            return v if v.chunks[0] == self.row_chunks else v.rechunk({0: self.row_chunks})
        v = np.asarray(v)
        return da.from_array(v, chunks=(self.row_chunks,) + tuple((k,) for k in v.shape[1:]))

    def zeros(self):
        import dask.array as da
        return da.zeros(self.n, chunks=(self.row_chunks,))

    def keep(self, v):
        """Compute ``v`` now and keep its chunks where they are (workers, or local memory)."""
        return v.persist() if is_dask(v) else v

    def gather(self, v, idx):
        """``v[idx]`` as a numpy array (a few entries brought to the client)."""
        return np.asarray(v[np.asarray(idx)].compute()) if is_dask(v) else np.asarray(v[idx])

    def unique(self, v) -> np.ndarray:
        """Distinct values, found chunk by chunk on the workers."""
        if not is_dask(v):
            return np.unique(np.asarray(v))
        return np.unique(v.map_blocks(np.unique).compute())

    def zeroed(self, v, idx):
        """``v`` with entries ``idx`` set to 0, kept on the workers."""
        mask = np.ones(self.n)
        mask[idx] = 0.0
        return self.keep(self.vector(v) * self.vector(mask))

    # ------------------------------------------------------------ products
    def _blocks_delayed(self):
        # X never changes: its optimised per-chunk graph is built once
        if not hasattr(self, "_delayed"):
            self._delayed = list(self.X.to_delayed().ravel())
        return self._delayed

    def _reduce(self, fn, *vectors, compute=True):
        """Sum over row chunks of ``fn(chunk, *vector chunks, intercept)``, computed (or
        the delayed sum)."""
        from dask import delayed
        vecs = [self.vector(v).to_delayed().ravel() for v in vectors]
        f = delayed(fn, pure=True)
        parts = [f(b, *[v[i] for v in vecs], self.fit_intercept) for i, b in enumerate(self._blocks_delayed())]
        total = _tree_sum(parts)
        return np.asarray(total.compute()) if compute else total

    def sum_and_rmatvec(self, u, r):
        import dask
        total, grad = dask.compute(self.vector(u).sum(), self._reduce(_rmv, r, compute=False))
        return float(total), np.asarray(grad)

    def matvec(self, v):
        v = np.asarray(v, dtype=np.float64)
        if v.ndim == 1:
            return self.X.map_blocks(_mv, v, self.fit_intercept, drop_axis=1, dtype=np.float64,
                                     meta=np.empty((0,)))
        return self.X.map_blocks(_mv, v, self.fit_intercept, chunks=(self.row_chunks, (v.shape[1],)),
                                 dtype=np.float64, meta=np.empty((0, 0)))

    def rmatvec(self, r):
        return self._reduce(_rmv, r)

    def wprod(self, w, v):
        from dask import delayed
        f = delayed(_wprod, pure=True)
        ws = self.vector(w).to_delayed().ravel()
        v = np.asarray(v, dtype=np.float64)
        parts = [f(b, ws[i], v, self.fit_intercept) for i, b in enumerate(self._blocks_delayed())]
        return np.asarray(_tree_sum(parts).compute())

    def gram(self, w):
        return self._reduce(_gram, w)

    def weighted_gram(self, w):
        return self._reduce(_wgram, w)

    def column_l1(self, s):
        return self._reduce(_abs_t, s)

    def quad_rows(self, L):
        """``a_i^T (L L^T)^{-1} a_i`` for every row, as a dask array (n,)."""
        return self.X.map_blocks(_quad, L, self.fit_intercept, drop_axis=1, dtype=np.float64,
                                 meta=np.empty((0,)))

    def row_sq_norms(self, Z):
        """``||a_i^T Z||^2`` for every row, as a dask array (n,)."""
        return self.X.map_blocks(_sq_norms, np.asarray(Z, dtype=np.float64), self.fit_intercept, drop_axis=1,
                                 dtype=np.float64, meta=np.empty((0,)))

    def dense_rows(self, idx):
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        order = np.argsort(idx, kind="stable")
        rows = self.X[idx[order]].compute()
        out = np.empty((idx.size, self.p))
        out[order] = _cast(rows, self.fit_intercept)
        return out

    def blocks(self):
        """Row chunks brought to the client one at a time (for rare whole-X loops)."""
        start = 0
        for b in self._blocks_delayed():
            blk = _cast(b.compute(), self.fit_intercept)
            yield start, start + blk.shape[0], blk
            start += blk.shape[0]

    def block_rows(self) -> int:
        return int(max(self.row_chunks))
