r"""Factorisations of the GLM Hessian ``H = lam * M + U^T U`` with ``U = diag(sqrt(w)) A``.

``M`` is the identity with the intercept entry (last) zeroed when there is an intercept.
Two interchangeable forms answer the same questions (solves, weighted leverages
``w_i a_i^T H^{-1} a_i``, the same for shifted penalties ``lam - c``):

* :class:`PrimalFactor`: Cholesky ``L L^T`` of the (p, p) matrix; cost ``n p^2 + p^3 / 3``.
  It also offers the half solves ``L^{-1} B``, with which a Woodbury update needs one
  triangular solve instead of two.
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

from .._linalg import cho_solve, cholesky, cholesky_inplace
from ..exceptions import SingularHessianError


class PrimalFactor:
    """``H`` through its (p, p) Cholesky factor ``L``.

    One array holds both: ``L`` in the lower triangle, ``H``'s strict upper triangle above
    it (LAPACK solves read only the lower one), and ``H``'s diagonal in a vector.
    """

    kind = "primal"
    #: offers half solves L^{-1} B (a Woodbury update then needs one triangular solve)
    half_solves = True

    def __init__(self, design, w, lam, pen, H=None):
        self.design, self.w, self.lam, self.pen = design, w, float(lam), pen
        if H is None:
            H = design.gram(w)
            H[np.diag_indices_from(H)] += lam * pen
        self.hdiag = np.diag(H).copy()
        self.L = cholesky_inplace(H)

    def solve(self, B):
        return cho_solve(self.L, B)

    def half(self, B):
        """``L^{-1} B``, so that ``B^T H^{-1} B = half(B)^T half(B)``."""
        return la.solve_triangular(self.L, B, lower=True, check_finite=False)

    #: every row's half solve, ``(L^{-1} x_i)^T`` as an (n, p) array, once :meth:`cache_rows` ran
    rows = None

    def cache_rows(self, design):
        """Keep ``L^{-1} x_i`` of every row (one triangular solve of X, ``n p^2`` flops): the
        leverages, the theorem's pairs and every Woodbury update at this factor then need
        no solve of their own."""
        if self.rows is None:
            Z = np.empty((design.n, self.L.shape[0]))
            for start, stop, blk in design.blocks():
                Z[start:stop] = self.half(np.asarray(blk).T).T
            self.rows = Z

    def half_rows(self, idx):
        """``(L^{-1} x_i)^T`` for rows ``idx`` from the cache, or None without one."""
        return None if self.rows is None else self.rows[idx]

    def half_t(self, B):
        """``L^{-T} B`` (``H^{-1} B = half_t(half(B))``)."""
        return la.solve_triangular(self.L, B, lower=True, trans="T", check_finite=False)

    def _quad(self, rows):
        Z = la.solve_triangular(self.L, rows.T, lower=True, check_finite=False)
        return np.einsum("ij,ij->j", Z, Z)

    def leverage(self, idx=None):
        """``w_i a_i^T H^{-1} a_i`` for all rows, or rows ``idx`` (then a numpy array)."""
        if idx is not None:
            return self.design.gather(self.w, idx) * self._quad(self.design.dense_rows(idx))
        if self.rows is not None:
            return self.w * np.einsum("ij,ij->i", self.rows, self.rows)
        return self.w * self.design.quad_rows(self.L)

    def matrix(self):
        """A fresh copy of ``H``."""
        H = np.triu(self.L, 1)
        H += H.T
        H[np.diag_indices_from(H)] = self.hdiag
        return H

    def shifted(self, c):
        """The factor of ``H - c M``."""
        Hc = self.matrix()
        Hc[np.diag_indices_from(Hc)] -= c * self.pen
        return PrimalFactor(self.design, self.w, self.lam - c, self.pen, Hc)

    def refined(self, c):
        """A solver of ``(H - c M) x = b`` by refinement on this factor (no new factor)."""
        return _Refined(self, c)

    def shifts(self):
        """Square-root factors of ``H - c M`` for any ``c`` from one eigendecomposition."""
        return _EigenShifts(self, self.pen[-1] == 0)


class _EigenShifts:
    """Every ``B_c = H - c M`` from one eigendecomposition of the penalised block.

    With ``F = Q diag(ev) Q^T`` (``F`` = H without the intercept row and column) and
    ``D = ev - c``, ``B_c = R R^T`` for ``R = [[Q D^{1/2}, 0], [r^T, rho]]``,
    ``r = D^{-1/2} Q^T h`` and ``rho^2 = eta - r^T r`` (``h``, ``eta``: the intercept column and
    entry of H). ``R`` plays the role of a Cholesky factor in the Woodbury updates; its
    solves cost one product with ``Q`` each, and no factor is built per shift.
    """

    def __init__(self, factor, intercept):
        self.intercept = intercept
        self.w = factor.w
        H = factor.matrix()
        if intercept:
            h, self.eta = H[:-1, -1].copy(), float(H[-1, -1])
            F = np.asfortranarray(H[:-1, :-1])
            del H          # keep one (p, p) copy alive while the eigensolver runs
        else:
            F = np.asfortranarray(H)
        # numpy's (divide and conquer, its own BLAS threads): 0.19 s against scipy's evr 0.27 s
        # at p = 1280 right after numpy's products
        self.ev, self.Q = np.linalg.eigh(F)
        if intercept:
            self.Qh = self.Q.T @ h

    #: ``Q^T x_i`` of every row's penalised part, (n, p - 1) or (n, p), once :meth:`rotate` ran
    W = None

    def rotate(self, design):
        """Keep every row in the eigenbasis (one product with Q, ``n p^2`` flops): then the
        half solve of a row under any shift costs ``O(p)`` (:meth:`_EigenShift.half_rows`)."""
        if self.W is None:
            q = self.Q.shape[0]
            W = np.empty((design.n, q))
            last = np.empty(design.n) if self.intercept else None
            for start, stop, blk in design.blocks():
                blk = np.asarray(blk)
                W[start:stop] = blk[:, :q] @ self.Q
                if self.intercept:
                    last[start:stop] = blk[:, -1]
            self.W, self.last = W, last

    def factor(self, c):
        return _EigenShift(self, float(c))


class _EigenShift:
    """``B_c = R R^T`` for one shift (see :class:`_EigenShifts`)."""

    half_solves = True

    def __init__(self, eig, c):
        self.eig = eig
        D = eig.ev - c
        if D.min() <= 0:
            raise SingularHessianError("the leave-T-out Hessian is singular; add an L2 penalty")
        self.isd = 1.0 / np.sqrt(D)
        if eig.intercept:
            self.r = self.isd * eig.Qh
            rho2 = eig.eta - self.r @ self.r
            if rho2 <= 0:
                raise SingularHessianError("the leave-T-out Hessian is singular in the intercept direction")
            self.rho = np.sqrt(rho2)

    def _scale(self, Y):
        return self.isd[:, None] if Y.ndim == 2 else self.isd

    def half_rows(self, idx):
        """``(R^{-1} x_i)^T`` for rows ``idx`` (``O(p)`` each) from the rotated rows, or None
        before :meth:`_EigenShifts.rotate`."""
        eig = self.eig
        if eig.W is None:
            return None
        V1 = eig.W[idx] * self.isd
        if not eig.intercept:
            return V1
        return np.concatenate([V1, ((eig.last[idx] - V1 @ self.r) / self.rho)[:, None]], axis=1)

    def penalised_part(self, V):
        """``Q^T (P R^{-T} v)`` for rows ``v`` of ``V`` (half-solved rows, as :meth:`half_rows`
        gives): the penalised coordinates of ``B^{-1} x`` in the eigenbasis, so that
        ``x^T B^{-1} M B^{-1} x`` is their squared norm."""
        if not self.eig.intercept:
            return V * self.isd
        u2 = V[:, -1] / self.rho
        return (V[:, :-1] - np.multiply.outer(u2, self.r)) * self.isd

    def quads(self, idx, Qt=None):
        """From the rotated rows ``idx`` (a slice or indices), without forming the half solves:
        ``x_i^T B_c^{-1} x_i``, and with ``Qt`` (``Q^T`` times the penalised part of a vector
        ``t``) also ``|P B_c^{-1} x_i|^2`` and ``(P B_c^{-1} x_i)^T t``.

        With ``a = 1 / sqrt(ev - c)``, the rotated row ``W_i`` and (intercept) ``v_i = (x_i0 -
        W_i (a r)) / rho``, ``u_i = v_i / rho``: ``x^T B^{-1} x = (W_i^2) a^2 + v_i^2``,
        ``P B^{-1} x = Q (a^2 W_i - u_i a r)``; so two products of the rows with a few columns
        (of ``W_i^2`` and of ``W_i``) give all three."""
        eig, a = self.eig, self.isd
        Wp = eig.W[idx]
        a2 = a * a
        sq_cols = [a2] if Qt is None else [a2, a2 * a2]
        lin_cols = ([a * self.r] if eig.intercept else []) + ([] if Qt is None else
                                                               ([a2 * a * self.r] if eig.intercept else []) + [a2 * Qt])
        S = np.square(Wp)
        sq = S @ np.column_stack(sq_cols)
        del S
        lin = Wp @ np.column_stack(lin_cols) if lin_cols else None
        xu = sq[:, 0]
        u = None
        if eig.intercept:
            v = (eig.last[idx] - lin[:, 0]) / self.rho
            xu = xu + v * v
            u = v / self.rho
        if Qt is None:
            return xu
        puu, put = sq[:, 1], lin[:, -1]
        if u is not None:
            ra = self.r * a
            puu = puu - 2 * u * lin[:, 1] + u * u * float(ra @ ra)
            put = put - u * float(ra @ Qt)
        return xu, puu, put

    def leverage(self, idx=None):
        """``w_i x_i^T B_c^{-1} x_i`` for every row or rows ``idx``, from the rotated rows
        (after :meth:`_EigenShifts.rotate`)."""
        eig = self.eig
        idx = np.arange(eig.W.shape[0]) if idx is None else np.asarray(idx)
        V = self.half_rows(idx)
        return np.asarray(eig.w)[idx] * np.einsum("ij,ij->i", V, V)

    def half(self, Y):
        """``R^{-1} Y``."""
        Q, isd = self.eig.Q, self._scale(Y)
        if not self.eig.intercept:
            return isd * (Q.T @ Y)
        x1 = isd * (Q.T @ Y[:-1])
        x2 = (Y[-1] - self.r @ x1) / self.rho
        return np.concatenate([x1, x2[None] if Y.ndim == 2 else np.atleast_1d(x2)])

    def half_t(self, Y):
        """``R^{-T} Y``."""
        Q, isd = self.eig.Q, self._scale(Y)
        if not self.eig.intercept:
            return Q @ (isd * Y)
        x2 = Y[-1] / self.rho
        y1 = Y[:-1] - (np.multiply.outer(self.r, x2) if Y.ndim == 2 else self.r * x2)
        x1 = Q @ (isd * y1)
        return np.concatenate([x1, x2[None] if Y.ndim == 2 else np.atleast_1d(x2)])

    def solve(self, Y):
        return self.half_t(self.half(Y))


class _Refined:
    """``(H - c M)^{-1}`` by the fixed-point iteration ``x <- H^{-1} (b + c M x)``.

    It converges at rate ``c / lambda_min(H)``; for one sample's penalty share under
    "per_sample" that is at most ``1 / n``, so a few solves reach full precision. When it
    converges too slowly an explicit factor is built instead.
    """

    half_solves = False

    def __init__(self, base, c):
        self.base, self.c, self.w = base, float(c), base.w
        self.design, self.pen = base.design, base.pen
        self._explicit = None

    def solve(self, B):
        if self._explicit is None and np.ndim(B) == 2 and 8 * B.shape[1] >= B.shape[0]:
            # many right-hand sides: one factor (p^3 / 3 flops) costs less than refining them all
            self._explicit = self.base.shifted(self.c)
        if self._explicit is not None:
            return self._explicit.solve(B)
        cm = (self.c * self.pen).reshape(-1, *([1] * (B.ndim - 1)))
        x = self.base.solve(B)
        for _ in range(60):
            x_new = self.base.solve(B + cm * x)
            if np.max(np.abs(x_new - x)) <= 4 * np.finfo(float).eps * np.max(np.abs(x_new)):
                return x_new
            x = x_new
        self._explicit = self.base.shifted(self.c)
        return self._explicit.solve(B)

    def leverage(self, idx=None):
        if idx is None:
            return self.base.shifted(self.c).leverage()
        rows = self.design.dense_rows(idx)
        return self.design.gather(self.w, idx) * np.einsum("ij,ji->i", rows, self.solve(rows.T))


class _KernelInverse:
    """``K^{-1}`` for ``K = lam I + G`` by Cholesky."""

    def __init__(self, G, lam):
        self.n = G.shape[0]
        K = G.copy()
        K[np.diag_indices_from(K)] += lam
        self.L = cholesky(K, "kernel matrix")

    def solve(self, Y):
        return cho_solve(self.L, Y)

    def diag(self, idx=None):
        E = np.eye(self.n) if idx is None else np.eye(self.n)[:, idx]
        Z = la.solve_triangular(self.L, E, lower=True, check_finite=False)
        return np.einsum("ij,ij->j", Z, Z)


class DualFactor:
    """``H`` through the (n, n) kernel ``K = lam I + U U^T`` (see module docstring)."""

    kind = "dual"
    half_solves = False

    def __init__(self, design, w, lam, pen, G=None):
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
        self.kinv = _KernelInverse(G, lam)
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

    def refined(self, c):
        return self.shifted(c)


def make_factor(design, w, lam, pen, form="auto"):
    """The cheaper exact factorisation: dual when there are more parameters than samples."""
    if form not in ("auto", "primal", "dual"):
        raise ValueError(f"form={form!r} is not supported; choose 'auto', 'primal' or 'dual'")
    if form == "dual" and design.A is None:
        raise ValueError("form='dual' needs X in memory; X streamed from disk uses the primal form")
    if form == "dual" or (form == "auto" and design.p > design.n and lam > 0 and design.A is not None):
        return DualFactor(design, w, lam, pen)
    return PrimalFactor(design, w, lam, pen)
