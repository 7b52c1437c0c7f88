"""Loaders for data files in the benchmark-bundle format (``.npz`` with ``X_train``,
``y_train``, ``X_test``, ``y_test``; features may be float16/32/64, dense or as CSR parts)."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = ["Dataset", "load_npz", "load_bundled", "resolve", "list_datasets", "BUNDLED", "default_l2"]


@dataclass
class Dataset:
    """A train/test split ready for fitting (features as stored, float16/32/64 or CSR float64;
    labels as stored)."""

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
    # float16/32 stay as stored (exact in float64 later); the model builds its float64 copy
    return X if X.dtype in (np.float16, np.float32, np.float64) else X.astype(np.float64)


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


class _NpyFile:
    """A .npy file as an array-like whose slices are read-only views of the file (a
    memmap opened on the worker that asks): what ``dask.array.from_array`` needs."""

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        # a view of the file, not a copy: the products stream it in cache-sized pieces and
        # hand the pages back as they go (see leaveout.design.chunked.ChunkedDesign)
        return np.load(self.path, mmap_mode="r")[key]


def npy_as_dask(path, rows_per_chunk: int | None = None):
    """A ``.npy`` file as a row-chunked ``dask.array``, each chunk read by the worker that
    needs it (nothing passes through the client; needs the ``dask`` extra).

    Parameters
    ----------
    path : str or path-like
        A 2-D ``.npy`` file (e.g. float32 embeddings).
    rows_per_chunk : int, optional
        Rows per chunk (default: about 64 MB per chunk).
    """
    import dask.array as da
    path = os.path.abspath(os.fspath(path))
    try:
        head = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot open {path!r} as a .npy array: {exc}") from None
    if head.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array, got shape {head.shape}")
    n, d = head.shape
    dtype = head.dtype
    del head
    step = rows_per_chunk or max(1, (64 << 20) // max(1, d * dtype.itemsize))
    if not isinstance(step, int) or step < 1:
        raise ValueError(f"rows_per_chunk must be a positive integer, got {rows_per_chunk!r}")
    return da.from_array(_NpyFile(path, (n, d), dtype), chunks=(step, d), asarray=False, fancy=False,
                         inline_array=True, meta=np.empty((0, 0), dtype=dtype))


# --------------------------------------------------------------------------- bundled data
def _digits_rff() -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images), odd (1) vs even (0), embedded by a fixed
    random-feature map so that the model is high-dimensional relative to n.

    Pipeline (all fixed by seed 0): split 80/20 with ``default_rng(0).permutation``;
    standardise pixels and keep the top 6 principal components (fitted on the training
    rows); map them through 512 random Fourier features ``sqrt(2) cos(W^T u + b)`` with
    ``W ~ N(0, 2 gamma)``, ``gamma = 2`` (a Gaussian-kernel approximation) and
    ``b ~ U(0, 2 pi)``. Result: n = 1,437 training and 360 test rows, d = 512.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    y = (y % 2).astype(np.uint8)
    perm = np.random.default_rng(0).permutation(X.shape[0])
    n_train = int(0.8 * X.shape[0])
    tr, te = perm[:n_train], perm[n_train:]
    mu, sd = X[tr].mean(axis=0), X[tr].std(axis=0)
    sd[sd == 0] = 1.0
    Z = (X - mu) / sd
    _, S, Vt = np.linalg.svd(Z[tr], full_matrices=False)
    U = Z @ Vt[:6].T
    U /= U[tr, 0].std()
    rng = np.random.default_rng(0)
    D, gamma = 512, 2.0
    W = rng.normal(scale=np.sqrt(2 * gamma), size=(U.shape[1], D))
    b = rng.uniform(0, 2 * np.pi, D)
    F = np.sqrt(2.0) * np.cos(U @ W + b)
    meta = {"source": "scikit-learn load_digits (UCI optical digits, 8x8)",
            "task": "odd (1) vs even (0) digit",
            "embedder": "6 principal components -> 512 random Fourier features (gamma=2, seed 0)",
            "split": "default_rng(0).permutation, 80% train"}
    return Dataset("digits_rff", F[tr], y[tr], F[te], y[te], meta)


#: Datasets that ship with the install: name -> (builder, one-line description).
BUNDLED = {
    "digits_rff": (_digits_rff, "scikit-learn digits, odd vs even, 512 random Fourier features"),
}

#: Penalty strengths of the paper's experiments (per_sample convention), by dataset name.
_PAPER_L2 = {"fashion_dogfish": 2.2e-2, "spam_bow": 1e-3}


def default_l2(name: str) -> float:
    """The paper's lambda for a dataset: 2.2e-2 DogFish-like, 1e-3 spam, else 1e-5."""
    return _PAPER_L2.get(name, 1e-5)


def load_bundled(name: str) -> Dataset:
    """Build a bundled dataset by name (see ``BUNDLED``)."""
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled dataset {name!r}; choose one of {sorted(BUNDLED)}")
    return BUNDLED[name][0]()


def _candidates(data_dir):
    if not data_dir:
        return []
    if not os.path.isdir(data_dir):
        raise ValueError(f"--data-dir {data_dir!r} is not a folder")
    return sorted(f[:-4] for f in os.listdir(data_dir) if f.endswith(".npz"))


def resolve(spec: str, data_dir=None) -> Dataset:
    """Load a dataset from a bundle name, a name in ``data_dir``, or a path to an ``.npz``."""
    spec = os.fspath(spec)
    if spec.endswith(".npz") or os.sep in spec:
        return load_npz(spec)
    if data_dir:
        path = os.path.join(data_dir, spec + ".npz")
        if os.path.isfile(path):
            return load_npz(path)
    if spec in BUNDLED:
        return load_bundled(spec)
    known = sorted(BUNDLED) + _candidates(data_dir)
    raise ValueError(f"unknown dataset {spec!r}; available: {', '.join(known)} "
                     "(or give a path to an .npz file, or --data-dir DIR)")


def list_datasets(data_dir=None) -> list[dict]:
    """One dict per available dataset: name, n, d, n_test, source, where."""
    rows = []
    for name, (_builder, desc) in BUNDLED.items():
        rows.append({"name": name, "n": 1437, "d": 512, "n_test": 360, "source": desc, "where": "bundled"})
    for name in _candidates(data_dir):
        path = os.path.join(data_dir, name + ".npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
                if "X_train_shape" in z.files:
                    n, d = (int(v) for v in z["X_train_shape"])
                    n_test = int(z["X_test_shape"][0])
                else:
                    n, d = z["X_train"].shape
                    n_test = z["X_test"].shape[0]
        except Exception as exc:  # listing must not die on one bad file
            rows.append({"name": name, "n": None, "d": None, "n_test": None,
                         "source": f"unreadable: {exc}", "where": path})
            continue
        rows.append({"name": name, "n": n, "d": d, "n_test": n_test,
                     "source": meta.get("source", meta.get("task", "")), "where": path})
    return rows
