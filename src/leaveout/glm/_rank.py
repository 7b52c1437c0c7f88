"""Which columns make an unpenalised design rank-deficient, by name.

An unpenalised fit (``l2 = 0``) has no unique optimum when the columns of the design (the
intercept included) are linearly dependent on the rows that carry weight. The Hessian is then
singular, or singular up to rounding (a Cholesky factor that exists, and standard errors of
1e7). :func:`collinear_groups` finds the dependent groups from the null space of the
column-scaled design (its right singular vectors with singular values below ``rtol`` times the
largest), so the error can say "column 'c' is constant" or "columns 'x', 'x2' are collinear"
instead of "the Hessian is singular".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["collinear_groups", "describe_groups", "CHECK_MAX_CELLS"]

#: the proactive check (a thin SVD, O(n p^2)) runs when n * p^2 is at most this
CHECK_MAX_CELLS = 5e8


def collinear_groups(X, s, fit_intercept: bool, rtol: float = 1e-9) -> list:
    """Groups of column indices (``p`` = the intercept, last) that are linearly dependent on
    the rows with positive weight; an empty list when the design has full column rank.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
    s : ndarray of shape (n_samples,)
        Row weights; rows of weight 0 do not count.
    """
    keep = np.asarray(s) > 0
    A = X[keep] if not sp.issparse(X) else X[np.flatnonzero(keep)].toarray()
    A = np.asarray(A, dtype=np.float64)
    if fit_intercept:
        A = np.column_stack([A, np.ones(A.shape[0])])
    norms = np.linalg.norm(A, axis=0)
    groups = [[j] for j in np.flatnonzero(norms == 0)]            # columns that are zero on every row
    live = np.flatnonzero(norms > 0)
    if live.size == 0:
        return groups
    B = A[:, live] / norms[live]
    _, sv, Vt = np.linalg.svd(B, full_matrices=False)
    if B.shape[0] < live.size:        # fewer rows than columns: every column is in some dependence
        return groups + [live.tolist()]
    for v in _echelon(Vt[sv <= rtol * sv[0]]):
        members = live[np.abs(v) > 1e-6 * np.abs(v).max()].tolist()
        if members not in groups:
            groups.append(members)
    return groups


def _echelon(N):
    """Rows spanning the same space as ``N``'s, in reduced row echelon form: each has a pivot
    column where the others are zero, which separates independent dependencies (a constant
    column and an unrelated collinear pair come out as two groups, not one mixture)."""
    N = np.array(N, dtype=np.float64)
    pivots = []
    for r in range(N.shape[0]):
        masked = np.abs(N[r]).copy()
        masked[pivots] = 0.0
        j = int(np.argmax(masked))
        N[r] /= N[r, j]
        for o in range(N.shape[0]):
            if o != r:
                N[o] -= N[o, j] * N[r]
        pivots.append(j)
    return N


def describe_groups(groups, names, n_rows) -> str:
    """One line naming the dependent columns, e.g. ``column 'c' is constant (the intercept
    already is)``; ``names`` has one entry per column, the intercept last when there is one."""
    parts = []
    for g in groups:
        cols = [names[j] for j in g]
        if len(g) == 1:
            parts.append(f"column {cols[0]!r} is zero on every row")
        elif len(g) == 2 and "Intercept" in cols:
            other = cols[0] if cols[1] == "Intercept" else cols[1]
            parts.append(f"column {other!r} is constant (the intercept already is)")
        elif len(g) > n_rows:
            parts.append(f"{len(g)} columns on {n_rows} rows")
        else:
            parts.append("columns " + ", ".join(repr(c) for c in cols) + " are collinear")
    return "; ".join(parts)
