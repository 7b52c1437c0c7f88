"""Design matrices: the rows ``x_i`` (intercept column appended) wherever they live.

:func:`as_design` picks the backend from what X is: an array or sparse matrix in memory
(:class:`InMemoryDesign`), a ``numpy.memmap`` streamed from disk (:class:`ChunkedDesign`),
or a ``dask.array`` (:class:`~leaveout.design.distributed.DaskDesign`, imported only when
one arrives, so the core never imports dask). All answer the interface of :class:`Design`.
"""

from __future__ import annotations

import numpy as np

from .base import Design, is_dask_array
from .chunked import ChunkedDesign
from .memory import InMemoryDesign

__all__ = ["Design", "InMemoryDesign", "ChunkedDesign", "as_design", "is_dask_array"]


def as_design(X, fit_intercept: bool) -> Design:
    """The design of validated ``X`` with this intercept convention (always float64)."""
    if isinstance(X, np.memmap):
        return ChunkedDesign(X, fit_intercept)
    if is_dask_array(X):
        from .distributed import DaskDesign
        return DaskDesign(X, fit_intercept)
    return InMemoryDesign.from_X(X, fit_intercept)
