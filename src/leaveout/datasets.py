"""Loaders for data files in the benchmark-bundle format (``.npz`` with ``X_train``,
``y_train``, ``X_test``, ``y_test``; features may be float16/32/64, dense or as CSR parts)."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = ["Dataset", "load_npz"]


@dataclass
class Dataset:
    """A train/test split ready for fitting (features float64, labels as stored)."""

    name: str
    X_train: object
    y_train: np.ndarray
    X_test: object
    y_test: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.X_train.shape[0]

    @property
    def d(self) -> int:
        return self.X_train.shape[1]


def _part(z, key, path):
    if key not in z.files:
        raise ValueError(f"{path}: missing array {key!r} (expected X_train, y_train, X_test, y_test)")
    return z[key]


def _matrix(z, stem, path):
    if f"{stem}_data" in z.files:
        try:
            shape = tuple(int(v) for v in _part(z, f"{stem}_shape", path))
            return sp.csr_matrix((_part(z, f"{stem}_data", path).astype(np.float64),
                                  _part(z, f"{stem}_indices", path),
                                  _part(z, f"{stem}_indptr", path)), shape=shape)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: malformed sparse matrix {stem}: {exc}") from None
    X = _part(z, stem, path)
    if X.ndim != 2 or X.dtype.kind not in "fiub":
        raise ValueError(f"{path}: {stem} must be a 2-D numeric array, got {X.dtype} of shape {X.shape}")
    return X.astype(np.float64)


def load_npz(path, name: str | None = None) -> Dataset:
    """Load a dataset file; ``name`` defaults to the file stem.

    Raises ValueError with the file name when the file is missing, unreadable or lacks
    the expected arrays.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"data file {path!r} does not exist")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"cannot read data file {path!r}: {exc}") from None
    if not hasattr(z, "files"):
        raise ValueError(f"{path}: expected an .npz archive with X_train, y_train, X_test, y_test")
    with z:
        try:
            X_train = _matrix(z, "X_train", path)
            X_test = _matrix(z, "X_test", path)
            y_train = np.asarray(_part(z, "y_train", path)).ravel()
            y_test = np.asarray(_part(z, "y_test", path)).ravel()
            meta = {}
            if "meta" in z.files:
                try:
                    meta = json.loads(str(z["meta"]))
                except (ValueError, TypeError):
                    meta = {}
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ValueError(f"cannot read data file {path!r}: {exc}") from None
    if X_train.shape[0] != y_train.shape[0]:
        raise ValueError(f"{path}: X_train has {X_train.shape[0]} rows but y_train has {y_train.shape[0]}")
    if X_test.shape[0] != y_test.shape[0]:
        raise ValueError(f"{path}: X_test has {X_test.shape[0]} rows but y_test has {y_test.shape[0]}")
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"{path}: X_train has {X_train.shape[1]} features but X_test has {X_test.shape[1]}")
    stem = os.path.splitext(os.path.basename(path))[0]
    return Dataset(name or stem, X_train, y_train, X_test, y_test, meta)
