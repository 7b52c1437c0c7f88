r"""IF, RIF, NS and retrain for the multinomial family: per-sample Hessians of rank C-1.

With the class-major parameters ``theta = vec(B)`` of :mod:`leaveout.glm.model` (``m = C-1``
blocks of length p) and ``E_i = I_m \otimes x_i`` (the (m p, m) matrix that places x_i in
every block), the per-sample pieces in sum form are

.. math::

    g_i = E_i r_i + s_i b, \qquad H_i = E_i K_i E_i^\top + c_i M,

with :math:`r_i = s_i Q^\top(p_i - e_{y_i})`, :math:`K_i = s_i Q^\top(\mathrm{diag}\,p_i -
p_i p_i^\top) Q` (m x m, rank m while every class has probability > 0) and, under the
"per_sample" penalty, :math:`b = \lambda M \hat\theta`, :math:`c_i = \lambda s_i` (zero under
"fixed").

RIF: with :math:`H' = H - c_i M`, the leverage block :math:`S_i = E_i^\top H'^{-1} E_i` (m x m)
and :math:`t = H'^{-1} b`, Woodbury on the m x m block gives

.. math::

    \mathrm{RIF}_i = H'^{-1} E_i \alpha_i + s_i t, \qquad
    \alpha_i = (I - K_i S_i)^{-1} (r_i + s_i K_i E_i^\top t),

the matrix form of ``(r_i + ...) / (1 - h_i)``. With ``K_i = R_i R_i^T`` the eigenvalues of
:math:`\Lambda_i = R_i^\top S_i R_i` lie in [0, 1) (1 means removing i leaves a singular
Hessian), and ``alpha_i = v + R_i (I - Lambda_i)^{-1} R_i^T S_i v`` is evaluated in that
stable form. NS: :math:`H_{-T} = H - C_T M - U U^\top` with
:math:`U = [E_i R_i]_{i \in T}`, Woodbury on the :math:`|T| m` block.

The leverage blocks of all samples come from the inverse Cholesky factor ``L^{-1}``: block
``a`` of ``E_i`` is x_i in rows ``a p .. (a+1) p``, so ``L^{-1} E_i e_a`` needs only those p
columns of ``L^{-1}`` (``p^2 n m^2`` flops in all, in matrix products). No inverse of H is
formed.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as la

from .._validation import show
from ..exceptions import LeverageError
from .curvature import Curvature
from .estimators import GLMEstimators
from .factors import PrimalFactor

__all__ = ["BlockEstimators"]

# bytes of triangular-solve results held at once while computing leverage blocks
_BLOCK_BYTES = 1 << 27


class BlockEstimators(GLMEstimators):
    """:class:`~leaveout.attribution.estimators.GLMEstimators` for the multinomial family:
    per-sample Hessians of rank C-1, leverage blocks instead of leverages.

    Parameter changes are in the class-major ``theta`` of :mod:`leaveout.glm.model`; only
    the primal (Cholesky) form exists.
    """

    eigen_shifts, direct_ratio = False, 2
    rows_downdate = False

    def _pieces(self, obj, form):
        if form not in ("auto", "primal"):
            raise ValueError(f"form={form!r} is not available for the multinomial family; use 'auto' or 'primal'")
        self._m = obj.n_blocks
        loss, y, s, u = obj.loss, obj.y, self.s, self.z
        self.r = s[:, None] * loss.derivative(y, u)               # (n, m)
        self.K = s[:, None, None] * loss.curvature(y, u)          # (n, m, m)
        ev, vec = np.linalg.eigh(self.K)
        self._R = vec * np.sqrt(np.clip(ev, 0.0, None))[:, None, :]  # K_i = R_i R_i^T
        factor = PrimalFactor(None, None, obj.lam, obj.pen, H=obj.hessian_at(u))
        self.curvature = Curvature(factor, self.b, self.eigen_shifts, self.direct_ratio)
        self.blocks = {}      # c -> leverage blocks S_i of every sample under H - c M

    def quad_scores(self, method: str) -> np.ndarray:
        """``d_i^T H d_i`` of every IF or RIF row, from the rows themselves."""
        return self.hess_quad(self.influence() if method == "if" else self.rescaled_influence())

    # ------------------------------------------------------------ E_i products
    @property
    def _p(self):
        return self.design.p

    def spread(self, rows, coef):
        """``E_i coef_i`` for each row (coef of shape (k, m)): shape (k, m p)."""
        return (coef[:, :, None] * rows[:, None, :]).reshape(rows.shape[0], -1)

    def spread_sum(self, rows, coef):
        """``sum_i E_i coef_i``: shape (m p,)."""
        return (coef.T @ rows).ravel()

    def _gather(self, rows, v):
        """``E_i^T v`` for each row: shape (k, m)."""
        return rows @ v.reshape(self._m, self._p).T

    def _gather_all(self, v):
        return self.objective.linear(self.design, v)

    def _gather_many(self, Q, rows=None):
        """``E_i^T Q`` for k columns of Q (m p, k) at once: shape (n or len(rows), m, k);
        every sample in one pass over X, or the given dense ``rows``."""
        m, p, k = self._m, self._p, Q.shape[1]
        Qb = Q.reshape(m, p, k).transpose(1, 0, 2).reshape(p, m * k)
        Z = self.design.matvec(Qb) if rows is None else rows @ Qb
        return Z.reshape(-1, m, k)

    def _columns(self, k):
        """Slices of k metric columns small enough that (n, m, columns) stays ~128 MiB."""
        step = max(1, (1 << 24) // max(1, self.n_samples * self._m))
        return [slice(j, min(k, j + step)) for j in range(0, k, step)]

    # ------------------------------------------------------------ leverage blocks
    def _all_blocks(self, factor):
        """``S_i = E_i^T H^{-1} E_i`` of every sample from the Cholesky factor of H.

        With the inverse factor ``G = L^{-1}`` (one LAPACK ``trtri``), ``L^{-1} E_i e_a`` is
        ``G[a p:, a p:(a+1) p] x_i``: a matrix product with the p columns of block a only,
        ``2 p^2 n m (m+1) / 2`` flops for all samples, against ``p^2 n m^3 / 3`` for
        triangular solves with the trailing factor (about 3x fewer for 10 classes)."""
        L, m, p, n = factor.L, self._m, self._p, self.n_samples
        Ginv_t, info = la.lapack.dtrtri(L.T, lower=0)          # inv(L^T), upper; its .T is L^{-1}
        if info != 0:
            raise LeverageError("the Hessian's Cholesky factor is singular; add an L2 penalty")
        G = Ginv_t.T
        for a in range(m):          # dtrtri leaves H's other triangle in place: clear it
            blk = G[a * p:(a + 1) * p, a * p:(a + 1) * p]
            blk[np.triu_indices(p, 1)] = 0.0
        per_row = 8 * p * m * (m + 1) // 2
        step = max(1, min(n, _BLOCK_BYTES // per_row))
        out = np.empty((n, m, m))
        for start in range(0, n, step):
            stop = min(n, start + step)
            rowsT = self.design.dense_rows(np.arange(start, stop)).T
            V = [G[a * p:, a * p:(a + 1) * p] @ rowsT for a in range(m)]
            for a in range(m):
                for b in range(a, m):
                    val = np.einsum("ij,ij->j", V[a][(b - a) * p:], V[b])
                    out[start:stop, a, b] = val
                    out[start:stop, b, a] = val
            del V
        return out

    def _blocks_for(self, c: float):
        """Leverage blocks of every sample under ``H - c M`` (cached per c)."""
        with self.curvature.lock:
            hit = self.blocks.get(c)
        if hit is None:
            factor = self.curvature.factor if c == 0.0 else self.curvature.factor.shifted(c)
            hit = self._all_blocks(factor)
            del factor
            with self.curvature.lock:
                self.blocks[c] = hit
        return hit

    def _blocks_of(self, idx, c: float):
        """Leverage blocks under ``H - c M`` for samples ``idx``; a few samples are solved
        directly, many trigger the all-sample computation."""
        with self.curvature.lock:
            hit = self.blocks.get(c)
        if hit is not None or idx.size > 64:
            return self._blocks_for(c)[idx]
        solver = self.curvature.shift(c)[0]
        rows = self.design.dense_rows(idx)
        k, m, p = idx.size, self._m, self._p
        E = np.zeros((k, m, m * p))
        for a in range(m):
            E[:, a, a * p:(a + 1) * p] = rows
        Y = solver.solve(E.reshape(k * m, m * p).T).T.reshape(k, m, m, p)
        return np.einsum("jp,jabp->jab", rows, Y)

    def _lambda(self, idx, S):
        """``Lambda_i = R_i^T S_i R_i``, the blocks whose eigenvalues are the leverages."""
        R = self._R[idx]
        return np.einsum("kba,kbc,kcd->kad", R, S, R)

    @property
    def leverage_blocks(self) -> np.ndarray:
        """``Lambda_i = R_i^T E_i^T H^{-1} E_i R_i`` (``K_i = R_i R_i^T``), shape
        (n_samples, C-1, C-1): the multinomial leverage. Its eigenvalues lie in [0, 1)."""
        idx = np.arange(self.n_samples)
        return self._lambda(idx, self._blocks_for(0.0))

    @property
    def leverage(self) -> np.ndarray:
        """Trace of each sample's leverage block, shape (n_samples,), in [0, C-1)."""
        if not hasattr(self, "_leverage"):
            self._leverage = np.einsum("kaa->k", self.leverage_blocks)
        return self._leverage

    @property
    def rif_leverage(self) -> np.ndarray:
        """Trace of the leverage block that enters RIF (the removed sample's penalty share
        taken out of H under "per_sample"); equal to :attr:`leverage` under "fixed"."""
        if not self.per_sample:
            return self.leverage
        out = np.empty(self.n_samples)
        for cv, sub in self.groups(np.arange(self.n_samples)):
            out[sub] = np.einsum("kaa->k", self._lambda(sub, self._blocks_for(cv)[sub]))
        return out

    # ------------------------------------------------------------ RIF
    def rif_coef(self, idx) -> np.ndarray:
        """``alpha_i`` (module docstring) for sorted ``idx``, shape (len(idx), m)."""
        idx = np.asarray(idx)
        alpha = np.empty((idx.size, self._m))
        eye = np.eye(self._m)
        for cv, sub in self.groups(idx):
            pos = np.searchsorted(idx, sub)
            S = self._blocks_of(sub, cv)
            lam = self._lambda(sub, S)
            top = np.linalg.eigvalsh(lam)[:, -1]
            bad = np.flatnonzero(top >= 1.0 - 1e-12)
            if bad.size:
                raise LeverageError(
                    f"sample {int(sub[bad[0]])} has a leverage eigenvalue >= 1 ({top[bad[0]]:.15g}): "
                    "removing it alone leaves a singular Hessian, so its RIF is infinite; add an L2 penalty")
            v = self.r[sub].copy()
            if self.per_sample:
                t = self.curvature.shift(cv)[1]
                Et = self._gather(self.design.dense_rows(sub), t)
                v += self.s[sub, None] * np.einsum("kab,kb->ka", self.K[sub], Et)
            R = self._R[sub]
            w = np.linalg.solve(eye - lam, np.einsum("kba,kb->ka", R, np.einsum("kab,kb->ka", S, v))[..., None])
            alpha[pos] = v + np.einsum("kab,kb->ka", R, w[..., 0])
        return alpha

    # ------------------------------------------------------------ per-sample estimators
    def if_scores(self, phi):
        """One solve and one pass over X; ``phi`` of shape (P, k): k metrics at once, shape
        (n, k)."""
        q = self.curvature.solve(phi)
        if q.ndim == 1:
            return np.einsum("na,na->n", self.r, self._gather_all(q)) + self.s * float(self.b @ q)
        out = np.empty((self.n_samples, q.shape[1]))
        for cols in self._columns(q.shape[1]):
            out[:, cols] = np.einsum("na,nak->nk", self.r, self._gather_many(q[:, cols]))
        return out + self.s[:, None] * (self.b @ q)

    def rif_scores(self, phi, on_singular: str = "raise"):
        """One solve and one pass over X after the leverage blocks (``phi`` of shape (P, k):
        k metrics at once, shape (n, k))."""
        idx = np.arange(self.n_samples)
        alpha = self.rif_coef(idx)
        out = np.empty((self.n_samples,) + np.shape(phi)[1:])
        for cv, sub in self.groups(idx):
            Fc, t = self.curvature.shift(cv)
            q = Fc.solve(phi)
            rows = None if sub.size == self.n_samples else self.design.dense_rows(sub)
            if q.ndim == 1:
                Eq = self._gather_all(q) if rows is None else self._gather(rows, q)
                out[sub] = np.einsum("na,na->n", alpha[sub], Eq) + self.s[sub] * float(phi @ t)
                continue
            for cols in self._columns(q.shape[1]):
                Eq = self._gather_many(q[:, cols], rows)
                out[sub, cols] = np.einsum("na,nak->nk", alpha[sub], Eq)
            out[sub] += self.s[sub, None] * (t @ phi)
        return out

    def hess_quad(self, D):
        """``d^T H d`` for each row d of ``D`` (k, n_params), without forming H."""
        D2 = np.atleast_2d(D)
        m, p = self._m, self._p
        out = np.empty(D2.shape[0])
        step = max(1, (1 << 23) // max(1, self.n_samples * m))
        for lo in range(0, D2.shape[0], step):
            Dc = D2[lo:lo + step]
            k = Dc.shape[0]
            Z = self.design.matvec(Dc.reshape(k * m, p).T).reshape(-1, k, m)   # (n, k, m)
            quad = np.einsum("nka,nab,nkb->k", Z, self.K, Z, optimize=True)
            out[lo:lo + k] = quad + self.objective.lam * np.einsum("kj,kj->k", Dc * self.objective.pen, Dc)
        return out if np.ndim(D) > 1 else float(out[0])

    # ------------------------------------------------------------ group estimators
    def removed_factor(self, T):
        """Columns ``E_i R_i[:, j]`` for i in T: ``U U^T`` = the data part of sum_T H_i."""
        rows = self.design.dense_rows(T)
        k, m, P = T.size, self._m, self.theta.size
        U = (self._R[T].transpose(0, 2, 1)[:, :, :, None] * rows[:, None, None, :]).reshape(k * m, P).T
        return np.ascontiguousarray(U)

    def check_weights_left(self, s):
        obj = self.objective
        if obj.pen[-1] == 0 or obj.l2 == 0:      # an intercept, or no penalty
            left = np.bincount(obj.y[s > 0], minlength=self._m + 1)
            if np.any(left == 0):
                raise ValueError(f"T removes every sample of class {show(self.classes[np.flatnonzero(left == 0)[0]])}; "
                                 "the refit is undefined (that class's logit goes to -infinity)")

    def self_loss_effects(self, deltas, XD=None):
        """Removal and linear (``d^T H d / 2``) effects on the training objective."""
        return [(self.objective.difference(self.theta, self.theta + d), 0.5 * self.hess_quad(d)) for d in deltas]
