"""Preparing a DataFrame (and the labels, weights and offsets that go with it) for a fit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .frame import ColumnEncoding, is_frame, is_series, missing_rows_error

__all__ = ["TableFit", "frame_for_fit", "column_or_values"]


@dataclass
class TableFit:
    X: np.ndarray
    y: np.ndarray
    sample_weight: object
    offset: object
    encoding: ColumnEncoding
    row_ids: np.ndarray
    n_dropped: int


def _aligned(v, X, name):
    """A per-row argument as an array; a Series must carry X's index."""
    if v is None:
        return None
    if is_series(v):
        if not v.index.equals(X.index):
            raise ValueError(f"{name} is a Series whose index differs from X's; align them (e.g. "
                             f"{name}.loc[X.index]) or pass plain values")
        return v.to_numpy()
    if is_frame(v):
        raise ValueError(f"{name} must be one column (a Series or an array), not a DataFrame")
    return np.asarray(v)


def frame_for_fit(X, y, sample_weight, offset, missing) -> TableFit:
    """Numbers, names and ids of a training DataFrame; rows with a missing value (in X or a
    numeric y) are refused or, under ``missing="drop"``, dropped from every argument."""
    enc = ColumnEncoding.learn(X)
    y = _aligned(y, X, "y")
    sw, off = _aligned(sample_weight, X, "sample_weight"), _aligned(offset, X, "offset")
    if y is not None and y.shape[:1] != (X.shape[0],):
        raise ValueError(f"y has {y.shape[0] if y.ndim else 0} entries but X has {X.shape[0]} rows")
    bad_y = np.zeros(X.shape[0], dtype=bool)
    if y is not None and y.ndim == 1:
        import pandas as pd
        bad_y = np.asarray(pd.isna(y))
    values, ids, kept = enc.transform(X, "X", "drop")
    bad = ~kept | bad_y
    if bad.any() and missing != "drop":
        cols = [c for c in enc.columns if X[c].isna().any()] + ["y"] * bool(bad_y.any())
        raise missing_rows_error(X.index[bad], cols)
    if bad_y.any():
        values, ids = values[~bad_y[kept]], ids[~bad_y[kept]]
        kept = kept & ~bad_y
    n_dropped = int((~kept).sum())
    if n_dropped:
        y = y[kept]
        sw = None if sw is None or np.ndim(sw) == 0 else sw[kept]
        off = None if off is None else off[kept]
    return TableFit(values, y, sw, off, enc, ids, n_dropped)


def column_or_values(data, arg, rows, name):
    """``arg`` as one value per used row: a column name of ``data`` or per-row values."""
    if arg is None:
        return None
    if isinstance(arg, str):
        if arg not in data.columns:
            raise ValueError(f"{name}={arg!r} is not a column of data")
        return data[arg].to_numpy()[rows]
    values = np.asarray(arg)
    if values.shape[:1] != (len(data.index),):
        raise ValueError(f"{name} must be a column name or have one value per row of data ({len(data.index)})")
    return values[rows]
