"""Input checks used at the public boundary only; inside, arrays are clean float64."""

from __future__ import annotations

import numbers
import os

import numpy as np
import scipy.sparse as sp


def _first_non_number(X):
    """The first entry of ``X`` that float() refuses (for a message)."""
    for v in np.asarray(X, dtype=object).ravel():
        try:
            float(v)
        except (TypeError, ValueError):
            return v
    return None


def check_X(X, name: str = "X"):
    """Return ``X`` as a 2-D float64 ndarray or CSR matrix with finite entries.

    Dense float16/float32 arrays are returned as they are (validated), so that the float64
    design matrix is the only full-size copy.
    """
    if isinstance(X, (str, os.PathLike)) and os.fspath(X).endswith(".npy"):
        try:
            X = np.load(os.fspath(X), mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{name}: cannot open {os.fspath(X)!r} as a .npy array: {exc}") from None
    if isinstance(X, np.memmap):
        return _check_memmap(X, name)
    if type(X).__module__.split(".")[0] == "dask":
        return _check_dask(X, name)
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {X.shape}")
        if not np.all(np.isfinite(X.data)):
            raise ValueError(f"{name} contains NaN or infinity; remove or impute those entries")
        X.sum_duplicates()
        return X
    if type(X).__module__.startswith("pandas"):
        X = X.to_numpy()
    # float16/32 are kept as stored (no float64 copy here); the design is built in float64
    if not (isinstance(X, np.ndarray) and X.dtype in (np.float16, np.float32)):
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold numbers; it has non-numeric entries such as "
                             f"{show(_first_non_number(X))}") from None
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features), got {X.ndim}-D")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape})")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinity; remove or impute those entries")
    return X


def _check_memmap(X, name):
    """A memory-mapped X stays on disk; its shape, type and finiteness are checked chunk by
    chunk (one sequential read)."""
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features), got {X.ndim}-D")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape})")
    if X.dtype.kind != "f":
        raise ValueError(f"{name} on disk must hold floats (float16/32/64), got {X.dtype}")
    from .design.chunked import release_rows
    step = max(1, (1 << 20) // X.shape[1])
    for start in range(0, X.shape[0], step):
        ok = np.all(np.isfinite(X[start:start + step]))
        release_rows(X, start, start + step)
        if not ok:
            raise ValueError(f"{name} contains NaN or infinity (in rows {start}..{min(start + step, X.shape[0]) - 1}); "
                             "remove or impute those entries")
    return X


def _check_dask(X, name):
    """A dask array stays distributed; its shape and type are checked here."""
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features), got {X.ndim}-D")
    if any(np.isnan(c) for c in X.shape) or any(np.isnan(c) for ch in X.chunks for c in ch):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape})")
    if X.dtype.kind != "f":
        raise ValueError(f"{name} must hold floats (float16/32/64), got {X.dtype}")
    return X      # finiteness: checked by the fit's first pass over X (column sums)


def _check_target_shape(y, n_samples: int, name: str) -> np.ndarray:
    """A 1-D target (a single column is flattened) with one entry per row of X."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} entries but X has {n_samples} rows; they must match")
    return y


def check_binary_y(y, n_samples: int, name: str = "y"):
    """Map binary labels to float64 0/1 and return ``(y01, classes)``.

    Accepts 0/1 numbers, booleans, or any two distinct values (mapped in sorted order).
    """
    y = _check_target_shape(np.asarray(y), n_samples, name)
    if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinity")
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(
            f"{name} has only one class ({show(classes[0])}); logistic regression needs two"
        )
    if classes.size > 2:
        if y.dtype.kind in "fc" and not np.all(y == np.round(y)):
            hint = "a continuous response: use family='squared' (--family squared)"
        elif y.dtype.kind in "iufcb" and np.all(classes >= 0):
            hint = ("counts: use family='poisson' (--family poisson); classes: family='multinomial' "
                    "(--family multinomial)")
        else:
            hint = "more than two classes: use family='multinomial' (--family multinomial)"
        raise ValueError(f"{name} has {classes.size} distinct values; binary logistic regression needs exactly "
                         f"two ({hint})")
    return (y == classes[1]).astype(np.float64), classes


#: what a sample weight means for standard errors (see leaveout.audit.se)
WEIGHT_KINDS = ("analytic", "frequency")


def check_weight_kind(weights) -> str:
    """``weights`` if it names a meaning of the sample weights, else a one-line ValueError."""
    if weights not in WEIGHT_KINDS:
        raise ValueError(f"weight_kind={weights!r} is not a meaning of the sample weights; choose 'analytic' "
                         "(statsmodels WLS / GLM var_weights) or 'frequency' (GLM freq_weights)")
    return weights


def show(x) -> str:
    """``repr`` of a label without numpy's type wrapper (``3``, not ``np.int64(3)``)."""
    return repr(x.item() if isinstance(x, np.generic) else x)


def check_class_y(y, n_samples: int, name: str = "y", classes=None):
    """Map class labels to int codes ``0..C-1`` and return ``(codes, classes)``.

    ``classes`` fixes the classes and their order (default: the sorted distinct labels);
    every label must be one of them and every class must occur in ``y``.
    """
    y = _check_target_shape(np.asarray(y), n_samples, name)
    if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinity")
    if classes is None:
        classes = np.unique(y)
    else:
        classes = np.asarray(classes)
        if classes.ndim != 1 or np.unique(classes).size != classes.size:
            raise ValueError("classes must be a 1-D list of distinct labels")
        outside = ~np.isin(y, classes)
        if outside.any():
            raise ValueError(f"{name} has label {show(y[outside][0])}, which is not in classes {classes.tolist()}")
        missing = classes[~np.isin(classes, y)]
        if missing.size:
            raise ValueError(f"class {show(missing[0])} does not occur in {name}; every class needs training "
                             "rows (drop it from classes)")
    if classes.size < 2:
        raise ValueError(f"{name} has only one class ({show(classes[0])}); a classifier needs at least two")
    order = np.argsort(classes, kind="stable")
    codes = order[np.searchsorted(classes[order], y)]
    return codes.astype(np.int64), classes


def check_real_y(y, n_samples: int, name: str = "y") -> np.ndarray:
    """Return a finite float64 target of shape (n_samples,)."""
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric for this family (got non-numeric labels)") from None
    y = _check_target_shape(y, n_samples, name)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinity")
    return y


def check_offset(offset, n_samples: int, name: str = "offset") -> np.ndarray:
    """Return a finite float64 offset of shape (n_samples,)."""
    o = np.asarray(offset, dtype=np.float64)
    if o.ndim == 0:
        o = np.full(n_samples, float(o))
    if o.shape != (n_samples,):
        raise ValueError(f"{name} must have shape ({n_samples},), got {o.shape}")
    if not np.all(np.isfinite(o)):
        raise ValueError(f"{name} contains NaN or infinity")
    return o


def check_sample_weight(sample_weight, n_samples: int):
    """Return non-negative finite float64 weights of shape (n_samples,)."""
    if sample_weight is None:
        return np.ones(n_samples)
    s = np.asarray(sample_weight, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(n_samples, float(s))
    if s.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    if not np.any(s > 0):
        raise ValueError("sample_weight is zero for every sample")
    return s


def check_l2(l2) -> float:
    if not isinstance(l2, numbers.Real) or isinstance(l2, bool) or not np.isfinite(l2):
        raise ValueError(f"l2 must be a finite real number, got {show(l2)}")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    return float(l2)


def check_choice(value, name: str, choices):
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {list(choices)}")
    return value


def check_indices(T, n_samples: int, name: str = "T", allow_all: bool = False) -> np.ndarray:
    """Return a removal set as a sorted int64 array of distinct, in-range indices."""
    if isinstance(T, numbers.Integral):
        T = [T]
    arr = np.asarray(T)
    if arr.dtype == bool:
        if arr.shape != (n_samples,):
            raise ValueError(f"{name} as a boolean mask must have shape ({n_samples},)")
        arr = np.flatnonzero(arr)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D list of sample indices")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; give at least one sample index to remove")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name} must contain integer sample indices")
    arr = arr.astype(np.int64)
    bad = arr[(arr < 0) | (arr >= n_samples)]
    if bad.size:
        raise ValueError(
            f"{name} has index {int(bad[0])} out of range; valid indices are 0..{n_samples - 1}"
        )
    uniq, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"{name} has duplicate index {int(uniq[counts > 1][0])}; list each sample once")
    if uniq.size >= n_samples and not allow_all:
        raise ValueError(f"{name} removes every sample ({n_samples}); keep at least one")
    return uniq
