"""Removal sets given by row id or by position, told apart without guessing.

A model fitted on a DataFrame keeps its index as the row ids. A removal set ``T`` is read as

* **ids** when it is a pandas Index or Series, or holds labels that are not integers
  (strings, dates, ...): each must be a row id of the model;
* **positions** (0-based) when it is a boolean mask or a numpy integer array (what
  ``argsort``, ``flatnonzero`` and :func:`positions_of` return), or holds integers and the
  model's ids are the positions themselves (no ids, or the default index 0..n-1);
* for a list of integers when the model's ids are other integers: ids if every entry is an
  id and not every one is a position, positions if the reverse; when every entry is both,
  the two readings differ and the input is refused as ambiguous (pass ``pandas.Index(ids)``
  for ids, ``numpy.array(positions)`` for positions).
"""

from __future__ import annotations

import numpy as np

from .frame import is_frame, is_series

__all__ = ["positions_of", "resolve_rows"]


def _is_index(x) -> bool:
    import sys
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, pd.Index)


def _lookup(ids, labels, name):
    """Positions of ``labels`` among ``ids`` (every label must be there)."""
    order = {v: i for i, v in enumerate(ids.tolist())}
    out, missing = [], []
    for lab in labels:
        key = lab.item() if hasattr(lab, "item") else lab
        if key in order:
            out.append(order[key])
        else:
            missing.append(key)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        raise ValueError(f"{name} has row ids that are not in the training rows: {shown}"
                         + (", ..." if len(missing) > 5 else ""))
    return np.array(out, dtype=np.int64)


def positions_of(ids, labels, name: str = "T") -> np.ndarray:
    """Positions of the rows with ids ``labels`` (an error names the ones not found)."""
    return _lookup(np.asarray(ids), list(np.asarray(labels).ravel()), name)


def resolve_rows(T, ids, n_samples: int, name: str = "T"):
    """``T`` as positions (see the module docstring); non-id input is returned unchanged."""
    if ids is None:
        return T
    ids = np.asarray(ids)
    trivial = ids.dtype.kind in "iu" and np.array_equal(ids, np.arange(n_samples))
    if _is_index(T) or is_series(T):
        return positions_of(ids, np.asarray(T), name)
    if is_frame(T):
        raise ValueError(f"{name} must be a list of row ids or positions, not a DataFrame")
    if isinstance(T, np.ndarray) and T.dtype.kind in "biu":
        return T
    arr = np.asarray(T)
    if arr.dtype == bool or trivial:
        return T
    if arr.dtype.kind in "iu" or (arr.dtype == object and all(isinstance(a, (int, np.integer)) for a in arr.ravel())):
        if ids.dtype.kind not in "iu":
            return T          # integer input, non-integer ids: positions
        vals = arr.astype(np.int64).ravel()
        as_pos = bool(np.all((vals >= 0) & (vals < n_samples)))
        as_ids = bool(np.all(np.isin(vals, ids)))
        if as_pos and as_ids:
            raise ValueError(f"{name} is ambiguous: every entry is both a row id and a position of the "
                             "training rows; pass pandas.Index([...]) for ids or numpy.array([...]) for positions")
        return positions_of(ids, vals, name) if as_ids else T
    if arr.dtype.kind in "fc":
        return T              # floats: positions (validated as integers later)
    return positions_of(ids, arr.ravel(), name)
