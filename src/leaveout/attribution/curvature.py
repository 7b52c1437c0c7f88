r"""The curvature engine: the Hessian at the fit, factored once, and every system built on it.

With ``H`` the sum-form Hessian at the fit and ``M = P^T P`` the penalty mask, the
estimators need solves with

* ``H`` itself (IF, scores): the factor of :mod:`~leaveout.attribution.factors`;
* ``H - c M`` for each penalty share ``c = lam s_i`` under "per_sample" (RIF takes the
  removed sample's share out), with ``t_c = (H - c M)^{-1} b``;
* ``H_{-T} = H - C_T M - U U^T`` for a removal set (NS, and the preconditioner of its
  retrain): Woodbury on the factor of ``B = H - C_T M``, or a factor of ``H_{-T}`` itself
  once the |T| block is as large as H.

Factors of shifted matrices are cached (one eigendecomposition serves every shift in the
primal form); the caches are shared by worker threads behind one lock.

References
----------
Woodbury: ``(B - U U^T)^{-1} = B^{-1} + B^{-1} U (I - U^T B^{-1} U)^{-1} U^T B^{-1}``; with
``B = L L^T`` and ``V = L^{-1} U`` it is ``L^{-T} (I + V (I - V^T V)^{-1} V^T) L^{-1}``.
"""

from __future__ import annotations

import threading

import numpy as np
import scipy.linalg as la

from .._linalg import cho_solve, cholesky
from ..exceptions import SingularHessianError

__all__ = ["Curvature", "apply_many"]


class _Preconditioner:
    """A system with no half-solving base to share: ``apply`` is a given (approximate)
    inverse; used by :func:`apply_many` and the refits."""

    base = None
    half = False

    def __init__(self, solve):
        self.apply = solve

    def compact(self):
        pass


class _DirectSystem(_Preconditioner):
    """``H_{-T}^{-1}`` from its own Cholesky factor (used when |T| is as large as H)."""

    def __init__(self, L):
        self.L = L

    def apply(self, Y):
        return cho_solve(self.L, Y)


class _WoodburySystem:
    """``(B - U U^T)^{-1}`` from a factor of ``B`` and the |T| x |T| capacitance matrix."""

    def __init__(self, base, U, V=None):
        self.base = base
        self.half = base.half_solves
        self.U = None if self.half else U         # only the non-half form needs U again
        k = U.shape[1]
        if self.half:
            self.V = base.half(U) if V is None else V     # L^{-1} U (V: given, from cached rows)
            K = np.eye(k) - self.V.T @ self.V
        else:
            self.V = base.solve(U)                # B^{-1} U
            K = np.eye(k) - U.T @ self.V
        try:
            Lk = np.linalg.cholesky((K + K.T) / 2)
        except np.linalg.LinAlgError:
            raise SingularHessianError(
                "removing T leaves a singular Hessian (the remaining samples do not determine "
                "the parameters); add an L2 penalty") from None
        # K^{-1} explicitly (K's eigenvalues lie in (0, 1]: it is as well conditioned as
        # H_{-T} is next to H), so that each apply is two products, not two triangular solves
        # through scipy, whose own BLAS threads contend with numpy's on every call
        Li = la.lapack.dtrtri(Lk, lower=1)[0]      # the triangle's own inverse: half of a general inv
        self.Kinv = Li.T @ Li

    def correct_half(self, Yh):
        """``(I + V K^{-1} V^T) Yh`` in the half-solved space."""
        if self.V.dtype == np.float32:   # compacted: a preconditioner only
            z = self.Kinv @ (self.V.T @ Yh.astype(np.float32)).astype(np.float64)
            return Yh + self.V @ z.astype(np.float32)
        return Yh + self.V @ (self.Kinv @ (self.V.T @ Yh))

    def compact(self):
        """Keep ``V`` in float32 from now on: half the memory, for use as a preconditioner
        only (``apply`` is then exact to about 1e-7 relative, not to rounding)."""
        if self.half:
            self.V = self.V.astype(np.float32)

    def apply(self, Y):
        if self.half:
            return self.base.half_t(self.correct_half(self.base.half(Y)))
        x = self.base.solve(Y)
        return x + self.V @ (self.Kinv @ (self.U.T @ x))


class _IterativeSystem:
    """``H_{-T}^{-1}`` by conjugate gradients on Hessian-vector products of the objective
    without T, preconditioned by the factor of the full Hessian. For a removal set whose
    rank is as large as H (half the data): neither the |T| x |T| Woodbury block nor a new
    p x p factor is formed; each product is one pass over X. Solves to ``rtol`` relative
    residual; a solve that does not get there raises (no silent approximation)."""

    base = None
    half = False
    rtol, max_iter = 1e-12, 2000

    def __init__(self, hessvec, precond):
        self.hessvec, self.precond = hessvec, precond
        self.n_hessvec = 0
        self._last = None        # (right-hand side, rtol, solution): NS then its retrain solve once

    def compact(self):
        pass

    def preconditioner(self):
        """What a refit should precondition with: the full Hessian's factor (this system's own
        preconditioner), not a conjugate-gradient solve inside each of its iterations."""
        return _Preconditioner(self.precond)

    def apply(self, Y, rtol=None):
        """``H_{-T}^{-1} Y`` to relative residual ``rtol`` (default :attr:`rtol`)."""
        from ..glm.solver import _pcg
        rtol = self.rtol if rtol is None else rtol
        Y = np.asarray(Y, dtype=np.float64)
        last = self._last
        if last is not None and last[1] <= rtol and last[0].shape == Y.shape and np.array_equal(last[0], Y):
            return last[2].copy()
        out = self._solve(Y, rtol, _pcg)
        self._last = (Y.copy(), rtol, out.copy())
        return out

    def _solve(self, Y, rtol, _pcg):
        cols = Y.reshape(Y.shape[0], -1)
        out = np.empty_like(cols)
        for j in range(cols.shape[1]):
            if not np.any(cols[:, j]):
                out[:, j] = 0.0
                continue
            x, ok, k = _pcg(self.hessvec, cols[:, j], self.precond, rtol, self.max_iter)
            self.n_hessvec += k
            if not ok:
                raise SingularHessianError(
                    "conjugate gradients on the leave-T-out Hessian did not converge (it is singular or "
                    "nearly so); add an L2 penalty")
            out[:, j] = x
        return out.reshape(Y.shape)


def apply_many(systems, R):
    """Column j of the result is ``systems[j].apply(R[:, j])``; columns whose systems share a
    half-solving base go through its triangular solves together."""
    out = np.empty_like(R)
    groups = {}
    for j, sysj in enumerate(systems):
        groups.setdefault(id(sysj.base) if sysj.half else None, []).append(j)
    for key, cols in groups.items():
        if key is None:
            for j in cols:
                out[:, j] = systems[j].apply(R[:, j])
            continue
        base = systems[cols[0]].base
        Yh = base.half(R[:, cols])
        for c, j in enumerate(cols):
            Yh[:, c] = systems[j].correct_half(Yh[:, c])
        out[:, cols] = base.half_t(Yh)
    return out


class Curvature:
    """The factored Hessian at the fit and the shifted and downdated systems built on it.

    Parameters
    ----------
    factor : PrimalFactor or DualFactor
        The factor of ``H`` (see :func:`~leaveout.attribution.factors.make_factor`).
    b : ndarray of shape (n_params,)
        The per-unit-weight penalty gradient ``lam P theta`` under "per_sample" (zeros
        otherwise): ``t_c = (H - c M)^{-1} b``.
    eigen_shifts : bool
        Whether the Newton-step bases ``H - C M`` come from one eigendecomposition (primal
        form only) rather than one factor per distinct C.
    direct_ratio : int
        Factor ``H_{-T}`` directly once ``direct_ratio * rank(U) >= n_params``.
    """

    def __init__(self, factor, b, eigen_shifts: bool = True, direct_ratio: int = 1):
        self.factor = factor
        self.b = b
        self.pen = factor.pen
        self.eigen_shifts = eigen_shifts and factor.kind == "primal"
        self.direct_ratio = direct_ratio
        self.keep_bases = 1       # Newton-step bases kept (one per worker thread)
        self._shifted = {}        # (c, by eigenbasis) -> (solver of H - c M, t_c)
        self._bases = {}          # C -> factor of H - C M
        self._eig = None          # primal form: eigendecomposition for every shift
        self._last = None         # (key, system) of the last removal set
        self.lock = threading.Lock()

    def __getstate__(self):
        # picklable (e.g. sent to dask workers): the lock is per process
        state = self.__dict__.copy()
        state.pop("lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.lock = threading.Lock()

    @property
    def form(self) -> str:
        """"primal" (p x p Cholesky) or "dual" (n x n kernel)."""
        return self.factor.kind

    @property
    def hessian(self) -> np.ndarray:
        return self.factor.matrix()

    def solve(self, B):
        """``H^{-1} B``."""
        return self.factor.solve(B)

    def shift(self, c: float):
        """``(solver of H - c M, (H - c M)^{-1} b)`` for one sample's penalty share ``c``.

        In the primal form the solver refines on the full factor (no second p x p factor is
        kept); the leverages of all samples use a transient explicit factor. After
        :meth:`prepare_rows` (the shifts' eigendecomposition and every row in its basis) it
        solves exactly instead, with two products by Q.
        """
        if c == 0.0:
            return self.factor, np.zeros_like(self.b)
        with self.lock:
            eig = self._eig if self._eig is not None and self._eig.W is not None else None
            key = (c, eig is not None)        # after prepare: exact solves by two products
            hit = self._shifted.get(key)
        if hit is None:
            Fc = self.factor.refined(c) if eig is None else eig.factor(c)
            hit = (Fc, Fc.solve(self.b))
            with self.lock:
                self._shifted[key] = hit
        return hit

    def base(self, C: float):
        """Factor of ``B = H - C M`` (``C`` = the penalty share of a removal set)."""
        if C == 0.0:
            return self.factor
        if self.eigen_shifts:
            with self.lock:
                if self._eig is None:
                    self._eig = self.factor.shifts()
            return self._eig.factor(C)
        with self.lock:
            hit = self._bases.get(C)
            if hit is not None:
                return hit
            # drop the oldest entries first (a factor still in use stays alive with its user)
            while len(self._bases) >= self.keep_bases:
                self._bases.pop(next(iter(self._bases)))
            factor = self.factor.shifted(C)    # under the lock: threads share one factor per C
            self._bases[C] = factor
        return factor

    def prepare_bases(self, C_min: float):
        """Build the shared eigendecomposition for Newton steps now (primal form)."""
        if self.eigen_shifts:
            self.base(C_min or 1e-300)

    def downdate(self, U, C: float, rows=None, scale=None):
        """A system with ``apply(Y) = (H - C M - U U^T)^{-1} Y``; ``U``'s columns are the
        design rows ``rows`` times ``scale`` (when given, their half solves come from the
        cached rows of :meth:`prepare_rows`)."""
        if self.direct_ratio * U.shape[1] >= U.shape[0] and self.form == "primal":
            Hm = self.hessian - U @ U.T
            Hm[np.diag_indices_from(Hm)] -= C * self.pen
            return _DirectSystem(cholesky(Hm, "leave-T-out Hessian"))
        base = self.base(C)
        V = None
        if rows is not None and hasattr(base, "half_rows"):
            R = base.half_rows(rows)
            V = None if R is None else (R * scale[:, None]).T
        return _WoodburySystem(base, U, V)

    #: the largest (n, p) array of half-solved rows kept by :meth:`prepare_rows`
    ROWS_BYTES = 1 << 28

    def prepare_rows(self, design):
        """Keep every row's half solve (primal form, X local, at most :attr:`ROWS_BYTES`):
        under "fixed" ``L^{-1} x_i``; with shifted penalties the rows in the eigenbasis, which
        give ``R_c^{-1} x_i`` for every shift c in ``O(p)``. Leverages, RIF leverages, the
        theorem's pairs and every Newton system then need no solve per row."""
        if (self.form != "primal" or not design.local or self.factor.L.shape[0] != design.p
                or 8 * design.n * design.p > self.ROWS_BYTES):
            return
        if self.eigen_shifts:
            with self.lock:
                if self._eig is None:
                    self._eig = self.factor.shifts()
            self._eig.rotate(design)
        else:
            self.factor.cache_rows(design)

    def half_rows(self, c: float, idx):
        """``(R_c^{-1} x_i)^T`` for rows ``idx``, ``R_c R_c^T = H - c M``, from the rows kept by
        :meth:`prepare_rows`; None without them."""
        if self._eig is not None and self._eig.W is not None:
            return self._eig.factor(c).half_rows(idx)
        if c == 0.0 and getattr(self.factor, "rows", None) is not None:
            return self.factor.half_rows(idx)
        return None

    def row_quads(self, c: float, idx):
        """``x_i^T (H - c M)^{-1} x_i`` for rows ``idx`` (a slice or indices) from the rows kept
        by :meth:`prepare_rows`, without forming their half solves in the eigenbasis; None
        without kept rows."""
        if self._eig is not None and self._eig.W is not None:
            return self._eig.factor(c).quads(idx)
        if self.half_rows(c, np.arange(0)) is None:
            return None
        V = self.half_rows(c, np.arange(self.factor.design.n)[idx] if isinstance(idx, slice) else idx)
        return np.einsum("ij,ij->i", V, V)

    def remembered(self, key: bytes, build):
        """The last system built for ``key``, or ``build()`` (then remembered): a retrain
        right after ``delta(T, "ns")`` reuses the Newton step's system as preconditioner."""
        with self.lock:
            hit = self._last
        if hit is not None and hit[0] == key:
            return hit[1]
        out = build()
        with self.lock:
            self._last = (key, out)
        return out
