r"""Factorisations of the GLM Hessian ``H = lam * M + U^T U`` with ``U = diag(sqrt(w)) A``.

``M`` is the identity with the intercept entry (last) zeroed when there is an intercept.
Two interchangeable forms answer the same questions (solves, weighted leverages
``w_i a_i^T H^{-1} a_i``, the same for shifted penalties ``lam - c``):

* :class:`PrimalFactor`: Cholesky of the (p, p) matrix; cost ``n p^2 + p^3 / 3``.
* :class:`DualFactor`: Cholesky of the (n, n) kernel ``K = lam I + U U^T``; cost
  ``n^2 p + n^3 / 3``, cheaper when p > n. With ``B = lam I + U^T U`` (every entry
  penalised), ``B^{-1} = (I - U^T K^{-1} U) / lam`` and ``U B^{-1} U^T = I - lam K^{-1}``; an
  unpenalised intercept is the rank-one correction ``H = B - lam e e^T`` (Sherman-Morrison),
  with ``gamma = u0^T K^{-1} u0`` and ``B^{-1} e = (e - U^T K^{-1} u0) / lam`` where
  ``u0 = U e = sqrt(w)``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as la

from ._newton import cho_solve, cholesky
from .exceptions import SingularHessianError


class PrimalFactor:
    """``H`` through its (p, p) Cholesky factor."""

    kind = "primal"

    def __init__(self, design, w, lam, pen, H=None):
        self.design, self.w, self.lam, self.pen = design, w, float(lam), pen
        if H is None:
            H = design.gram(w)
            H[np.diag_indices_from(H)] += lam * pen
        self.H = H
        self.L = cholesky(H)

    def solve(self, B):
        return cho_solve(self.L, B)

    def _quad(self, rows):
        Z = la.solve_triangular(self.L, rows.T, lower=True, check_finite=False)
        return np.einsum("ij,ij->j", Z, Z)

    def leverage(self, idx=None):
        """``w_i a_i^T H^{-1} a_i`` for all rows, or rows ``idx``."""
        if idx is not None:
            return self.w[idx] * self._quad(self.design.dense_rows(idx))
        out = np.empty(self.design.n)
        for start, stop, blk in self.design.blocks():
            out[start:stop] = self._quad(blk)
        return self.w * out

    def matrix(self):
        return self.H

    def shifted(self, c):
        """The factor of ``H - c M``."""
        Hc = self.H.copy()
        Hc[np.diag_indices_from(Hc)] -= c * self.pen
        return PrimalFactor(self.design, self.w, self.lam - c, self.pen, Hc)

    def shift_solver(self):
        return _PrimalShifts(self.H, self.pen[-1] == 0)


class _PrimalShifts:
    """Solve ``(H - c M) x = y`` for any shift ``c`` from one eigendecomposition.

    With an intercept, it is eliminated by a Schur complement so only the penalised block,
    positive definite for every admissible shift, is diagonalised.
    """

    def __init__(self, H, intercept):
        self.intercept = intercept
        F = H[:-1, :-1] if intercept else H
        self.ev, self.Q = la.eigh(F, check_finite=False)
        if intercept:
            self.Qh = self.Q.T @ H[:-1, -1]
            self.eta = H[-1, -1]

    def solve(self, c, y):
        den = self.ev - c
        if den.min() <= 0:
            raise SingularHessianError("the leave-T-out Hessian is singular; add an L2 penalty")
        y2 = y.reshape(y.shape[0], -1)
        if not self.intercept:
            return (self.Q @ ((self.Q.T @ y2) / den[:, None])).reshape(y.shape)
        Ky = (self.Q.T @ y2[:-1]) / den[:, None]
        Kh = self.Qh / den
        schur = self.eta - self.Qh @ Kh
        if schur <= 0:
            raise SingularHessianError("the leave-T-out Hessian is singular in the intercept direction")
        x0 = (y2[-1] - self.Qh @ Ky) / schur
        x = self.Q @ (Ky - Kh[:, None] * x0[None, :])
        return np.vstack([x, x0[None, :]]).reshape(y.shape)


class _KernelInverse:
    """``K^{-1}`` for ``K = lam I + G`` by Cholesky (one shift) or eigenvectors (any shift)."""

    def __init__(self, G, lam=None, eig=None):
        self.n = G.shape[0] if G is not None else eig[1].shape[0]
        if eig is not None:
            self.ev, self.V = eig
            self.lam = lam
            den = self.ev + lam
            if den.min() <= 0:
                raise SingularHessianError("the leave-T-out Hessian is singular; add an L2 penalty")
            self.den = den
            self.L = None
        else:
            K = G.copy()
            K[np.diag_indices_from(K)] += lam
            self.L = cholesky(K, "kernel matrix")

    def solve(self, Y):
        if self.L is not None:
            return cho_solve(self.L, Y)
        Y2 = Y.reshape(self.n, -1)
        return (self.V @ ((self.V.T @ Y2) / self.den[:, None])).reshape(Y.shape)

    def diag(self, idx=None):
        if self.L is not None:
            E = np.eye(self.n) if idx is None else np.eye(self.n)[:, idx]
            Z = la.solve_triangular(self.L, E, lower=True, check_finite=False)
            return np.einsum("ij,ij->j", Z, Z)
        V = self.V if idx is None else self.V[idx]
        return np.einsum("ij,ij->i", V * (1.0 / self.den)[None, :], V)


class DualFactor:
    """``H`` through the (n, n) kernel ``K = lam I + U U^T`` (see module docstring)."""

    kind = "dual"

    def __init__(self, design, w, lam, pen, G=None, kinv=None):
        if lam <= 0:
            raise SingularHessianError("the n x n form needs l2 > 0; add an L2 penalty")
        self.design, self.w, self.lam, self.pen = design, w, float(lam), pen
        self.sw = np.sqrt(w)
        self.intercept = pen[-1] == 0
        if G is None:
            A = design.A
            AA = A @ A.T
            AA = AA.toarray() if hasattr(AA, "toarray") else np.asarray(AA)
            G = self.sw[:, None] * AA * self.sw[None, :]
        self.G = G
        self.kinv = kinv if kinv is not None else _KernelInverse(G, lam)
        if self.intercept:
            self.Ku0 = self.kinv.solve(self.sw)
            self.gamma = float(self.sw @ self.Ku0)
            if self.gamma <= 0:
                raise SingularHessianError("the Hessian is singular in the intercept direction")
            e = np.zeros(design.p)
            e[-1] = 1.0
            self.a = (e - self._Ut(self.Ku0)) / self.lam      # B^{-1} e

    def _U(self, B):
        return self.sw.reshape(-1, *([1] * (B.ndim - 1))) * self.design.matvec(B)

    def _Ut(self, R):
        return self.design.rmatvec(self.sw.reshape(-1, *([1] * (R.ndim - 1))) * R)

    def solve(self, B):
        x = (B - self._Ut(self.kinv.solve(self._U(B)))) / self.lam
        if self.intercept:
            coef = self.lam * np.tensordot(self.a, B, axes=(0, 0)) / self.gamma
            x = x + np.multiply.outer(self.a, coef) if B.ndim > 1 else x + self.a * coef
        return x

    def leverage(self, idx=None):
        sel = slice(None) if idx is None else idx
        h = 1.0 - self.lam * self.kinv.diag(idx)
        if self.intercept:
            h = h + self.lam * self.Ku0[sel] ** 2 / self.gamma
        return h

    def matrix(self):
        H = self.design.gram(self.w)
        H[np.diag_indices_from(H)] += self.lam * self.pen
        return H

    def shifted(self, c):
        return DualFactor(self.design, self.w, self.lam - c, self.pen, G=self.G)

    def shift_solver(self):
        return _DualShifts(self)


class _DualShifts:
    """Solve ``(H - c M) x = y`` for any ``c`` from one eigendecomposition of ``U U^T``."""

    def __init__(self, base: DualFactor):
        self.base = base
        self.eig = la.eigh(base.G, check_finite=False)
        self.cache = {}

    def solve(self, c, y):
        if c not in self.cache:
            b = self.base
            kinv = _KernelInverse(None, b.lam - c, eig=self.eig)
            self.cache = {c: DualFactor(b.design, b.w, b.lam - c, b.pen, G=b.G, kinv=kinv)}
        return self.cache[c].solve(y)


def make_factor(design, w, lam, pen, form="auto"):
    """The cheaper exact factorisation: dual when there are more parameters than samples."""
    if form not in ("auto", "primal", "dual"):
        raise ValueError(f"form={form!r} is not supported; choose 'auto', 'primal' or 'dual'")
    if form == "dual" or (form == "auto" and design.p > design.n and lam > 0):
        return DualFactor(design, w, lam, pen)
    return PrimalFactor(design, w, lam, pen)
