"""Shared helpers for the benchmark scripts: synthetic data and the BLAS floor."""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg as la


def synthetic(n: int, d: int, seed: int = 0, n_test: int = 2000, dtype=np.float32):
    """Dense embedding-like features with a logistic signal (labels 0/1)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + n_test, d))
    X *= 2.0 / np.sqrt(d)
    beta = rng.normal(size=d)
    y = (rng.random(n + n_test) < 1 / (1 + np.exp(-(X @ beta)))).astype(np.uint8)
    X = X.astype(dtype)
    return X[:n], y[:n], X[n:], y[n:]


def blas_floor(X: np.ndarray, repeats: int = 2) -> float:
    """Seconds for one X^T W X + Cholesky + triangular solve against X^T (best of ``repeats``)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    w = np.random.default_rng(1).uniform(0.05, 0.25, X.shape[0])
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        B = X * np.sqrt(w)[:, None]
        H = B.T @ B
        del B
        H[np.diag_indices_from(H)] += 1.0
        L = la.cholesky(H, lower=True, check_finite=False)
        la.solve_triangular(L, X.T, lower=True, check_finite=False)
        best = min(best, time.perf_counter() - t0)
    return best
