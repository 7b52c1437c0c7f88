"""Newton solver for the penalised GLM objective in sum form.

    F(theta) = sum_i s_i l(y_i, a_i^T theta) + (lam / 2) sum_j m_j theta_j^2

Template: setup -> direction -> line search -> convergence check -> finalize.
The direction solves H(theta) p = -grad by conjugate gradients preconditioned with the
Cholesky factor of a Hessian from an earlier iterate; the factor is refreshed only when
conjugate gradients stop converging quickly. Near the optimum the Hessian hardly moves,
so each step costs a handful of passes over X instead of a fresh X^T W X.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la

from .exceptions import SingularHessianError

_SINGULAR_HINT = "add an L2 penalty (l2 > 0, or --l2 on the command line)"


@dataclass
class NewtonResult:
    theta: np.ndarray
    converged: bool
    n_iter: int
    grad_norm: float          # max |grad| / scale
    n_hessians: int
    n_hessvec: int


def cholesky(H: np.ndarray, what: str = "Hessian") -> np.ndarray:
    """Lower Cholesky factor of ``H``; raise SingularHessianError when not positive definite."""
    try:
        L = la.cholesky(H, lower=True, check_finite=False)
    except la.LinAlgError:
        raise SingularHessianError(f"the {what} is singular or not positive definite; {_SINGULAR_HINT}") from None
    d = np.diag(L)
    if d.min() <= np.sqrt(np.finfo(float).eps * H.shape[0]) * 1e-4 * d.max():
        raise SingularHessianError(f"the {what} is numerically singular; {_SINGULAR_HINT}")
    return L


def cholesky_inplace(H: np.ndarray, what: str = "Hessian") -> np.ndarray:
    """Overwrite the lower triangle of the symmetric ``H`` with its Cholesky factor and keep
    ``H``'s strict upper triangle as it was (one array holds both)."""
    L, info = la.lapack.dpotrf(H, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise SingularHessianError(f"the {what} is singular or not positive definite; {_SINGULAR_HINT}")
    d = np.diag(L)
    if d.min() <= np.sqrt(np.finfo(float).eps * H.shape[0]) * 1e-4 * d.max():
        raise SingularHessianError(f"the {what} is numerically singular; {_SINGULAR_HINT}")
    return L


def cho_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    return la.cho_solve((L, True), b, check_finite=False)


class Objective:
    """Value, gradient and Hessian of F over a design, in sum form."""

    def __init__(self, design, y, s, loss, lam: float, pen: np.ndarray, offset=0.0):
        self.design, self.y, self.s, self.loss = design, y, s, loss
        self.lam, self.pen, self.offset = lam, pen, offset

    def z(self, theta):
        """Linear predictors ``A theta + offset`` (no pass over X at theta = 0)."""
        if not np.any(theta):
            return self.offset + self.design.zeros()
        return self.design.matvec(theta) + self.offset

    def value_at(self, theta, z) -> float:
        return float(self.s @ self.loss.value(self.y, z) + 0.5 * self.lam * (self.pen * theta) @ theta)

    def gradient_at(self, theta, z) -> np.ndarray:
        r = self.s * self.loss.derivative(self.y, z)
        return self.design.rmatvec(r) + self.lam * self.pen * theta

    def value_gradient_at(self, theta, z):
        """``(value_at, gradient_at)`` computed in one go (one round trip on a cluster)."""
        r = self.s * self.loss.derivative(self.y, z)
        data, grad = self.design.sum_and_rmatvec(self.s * self.loss.value(self.y, z), r)
        return (float(data + 0.5 * self.lam * (self.pen * theta) @ theta),
                grad + self.lam * self.pen * theta)

    def zdir(self, v):
        """Change of the linear predictors along the parameter direction ``v``."""
        return self.design.matvec(v)

    def keep(self, v):
        """Materialise a per-sample vector where the design keeps them (see Design.keep)."""
        return self.design.keep(v)

    def separable(self, z) -> bool:
        """True when every weighted row is classified correctly (binary labels)."""
        return bool(np.all((self.s == 0) | ((2 * self.y - 1) * z > 0)))

    def weights_at(self, z) -> np.ndarray:
        return self.s * self.loss.curvature(self.y, z)

    def hessian_at(self, z) -> np.ndarray:
        H = self.design.gram(self.weights_at(z))
        H[np.diag_indices_from(H)] += self.lam * self.pen
        return H

    def hessvec(self, w, v) -> np.ndarray:
        return self.design.wprod(w, v) + self.lam * self.pen * v


class SoftmaxObjective:
    """The multinomial objective in sum form over ``theta = vec(B)``, B of shape (C-1, p).

    The parameters are class-major: entries ``a*p .. a*p + p - 1`` are the coefficients of
    sum-to-zero direction ``a`` (intercept last in each block). The "linear predictors" are
    ``U = A B^T`` of shape (n, C-1); the logits are ``U Q^T``. Same interface as
    :class:`Objective`, so :func:`newton_solve` fits both.
    """

    def __init__(self, design, y, s, loss, lam: float, pen: np.ndarray):
        self.design, self.y, self.s, self.loss = design, y, s, loss
        self.lam, self.pen = lam, pen
        self.m = loss.n_classes - 1

    def _blocks(self, theta):
        return np.asarray(theta).reshape(self.m, self.design.p)

    def zdir(self, v):
        return self.design.matvec(self._blocks(v).T)

    def keep(self, v):
        return self.design.keep(v)

    def z(self, theta):
        return self.zdir(theta)

    def _back(self, R):
        """``vec(A^T R)`` in the class-major order, R of shape (n, C-1)."""
        return self.design.rmatvec(R).T.ravel()

    def value_at(self, theta, z) -> float:
        return float(self.s @ self.loss.value(self.y, z) + 0.5 * self.lam * (self.pen * theta) @ theta)

    def gradient_at(self, theta, z) -> np.ndarray:
        R = self.s[:, None] * self.loss.derivative(self.y, z)
        return self._back(R) + self.lam * self.pen * theta

    def separable(self, z) -> bool:
        logits = self.loss.logits(z)
        rows = np.arange(logits.shape[0])
        own = logits[rows, self.y].copy()
        logits[rows, self.y] = -np.inf
        return bool(np.all((self.s == 0) | (own > logits.max(axis=1))))

    def weights_at(self, z) -> np.ndarray:
        return self.s[:, None, None] * self.loss.curvature(self.y, z)

    def hessian_at(self, z) -> np.ndarray:
        """The (m p, m p) Hessian: block (a, b) is ``A^T diag(s_i K_i[a, b]) A``."""
        K = self.weights_at(z)
        p, m = self.design.p, self.m
        H = np.empty((m * p, m * p))
        for a in range(m):
            for b in range(a, m):
                G = self.design.weighted_gram(np.ascontiguousarray(K[:, a, b]))
                H[a * p:(a + 1) * p, b * p:(b + 1) * p] = G
                if b != a:
                    H[b * p:(b + 1) * p, a * p:(a + 1) * p] = G.T
        H[np.diag_indices_from(H)] += self.lam * self.pen
        return H

    def hessvec(self, K, v) -> np.ndarray:
        Zv = self.zdir(v)
        return self._back(np.einsum("nab,nb->na", K, Zv)) + self.lam * self.pen * v


def _pcg(hv, b, precond, rtol, maxiter):
    """Preconditioned CG for H x = b, ``precond(r)`` ~ H^-1 r; returns (x, ok, iters)."""
    x = np.zeros_like(b)
    r = b.copy()
    zv = precond(r)
    p = zv.copy()
    rz = r @ zv
    bnorm = np.linalg.norm(b)
    for k in range(1, maxiter + 1):
        Hp = hv(p)
        pHp = p @ Hp
        if pHp <= 0:
            return x, False, k
        alpha = rz / pHp
        x += alpha * p
        r -= alpha * Hp
        if np.linalg.norm(r) <= rtol * bnorm:
            return x, True, k
        zv = precond(r)
        rz_new = r @ zv
        p = zv + (rz_new / rz) * p
        rz = rz_new
    return x, False, maxiter


def newton_solve(obj: Objective, theta0, scale: float, tol: float, max_iter: int,
                 check_separable: bool = False, max_cg: int = 12, precond=None) -> NewtonResult:
    """Minimise ``obj`` from ``theta0`` until ``max|grad| / scale <= tol``.

    ``precond``: optional function ``r -> approx H^-1 r`` from a Hessian close to the one at
    the optimum (for a retrain: the full-data Hessian), used until it goes stale.
    """
    theta = np.array(theta0, dtype=np.float64)
    z = obj.keep(obj.z(theta))
    # where every evaluation is a round trip (a dask cluster), value and gradient travel together
    fused = getattr(obj.design, "round_trips", False)
    if fused:
        f, g = obj.value_gradient_at(theta, z)
    else:
        f = obj.value_at(theta, z)
        g = obj.gradient_at(theta, z)
    M = precond          # current preconditioner; None means "factor a fresh Hessian"
    n_hess = n_hv = 0
    converged = False
    it = 0
    while True:
        rel = float(np.max(np.abs(g))) / scale
        if rel <= tol:
            converged = True
            break
        if it >= max_iter:
            break
        it += 1
        if check_separable and obj.separable(z):
            raise SingularHessianError(
                f"the training data are linearly separable, so the unpenalised fit has no finite optimum; {_SINGULAR_HINT}")
        w = obj.keep(obj.weights_at(z))
        if M is None:
            L = cholesky(obj.hessian_at(z))
            M = lambda r, L=L: cho_solve(L, r)  # noqa: E731
            n_hess += 1
            p = -M(g)
        else:
            eta = min(0.1, np.sqrt(rel))
            p, ok, k = _pcg(lambda v, w=w: obj.hessvec(w, v), -g, M, eta, max_cg)
            n_hv += k
            if not ok:
                M = None  # stale preconditioner: refresh at the next iterate
        gp = float(g @ p)
        if gp >= 0:  # not a descent direction (numerical noise at the optimum): refresh
            M = None
            if it >= max_iter:
                break
            continue
        Ap = obj.keep(obj.zdir(p))
        step, g_new = 1.0, None
        gmax = float(np.max(np.abs(g)))
        noise = 1e3 * np.finfo(float).eps * max(1.0, abs(f))
        while True:
            z_new = z + step * Ap
            th_new = theta + step * p
            if fused:
                f_new, g_new = obj.value_gradient_at(th_new, z_new)
            else:
                f_new = obj.value_at(th_new, z_new)
            if f_new <= f + 1e-4 * step * gp:
                break
            if -gp * step <= noise:
                # the objective cannot resolve a decrease this small: judge by the gradient
                g_new = g_new if fused else obj.gradient_at(th_new, z_new)
                if float(np.max(np.abs(g_new))) < gmax:
                    break
            g_new = None
            step *= 0.5
            if step < 1e-10:
                break
        if step < 1e-10:
            break  # no progress possible in floating point: the attainable optimum
        theta, z, f = th_new, obj.keep(z_new), f_new
        g = obj.gradient_at(theta, z) if g_new is None else g_new
    rel = float(np.max(np.abs(g))) / scale
    return NewtonResult(theta, converged or rel <= tol, it, rel, n_hess, n_hv)


def newton_solve_batch(design, y, S, loss, lams, pen, Theta0, scales, tol, max_iter, preconds,
                       max_cg: int = 30, offset=0.0):
    """Minimise m objectives at once, in lockstep, sharing every pass over X.

    Column j is the problem ``sum_i S[i, j] l(y_i, a_i^T theta) + (lams[j]/2) sum pen theta^2``
    (a leave-T-out refit: ``S[:, j]`` is zero on its removed rows). Each Newton direction is
    found by preconditioned CG with ``preconds(R, cols) -> approx H_j^{-1} R[:, j]`` for the
    active columns ``cols``; Hessian-vector products of all active columns are two matrix-
    matrix products with X. There is no Hessian refresh here: a column that does not
    converge is reported so that the caller can finish it with :func:`newton_solve`.

    Returns ``(Theta, converged (m,), n_iter (m,), grad_norm (m,))``.
    """
    Theta = np.array(Theta0, dtype=np.float64)
    m = Theta.shape[1]
    lams = np.asarray(lams, dtype=np.float64)
    pen2 = pen[:, None]
    Z = design.matvec(Theta) + (offset[:, None] if np.ndim(offset) else offset)

    def values(Th, Zc, cols):
        return (np.einsum("ij,ij->j", S[:, cols], loss.value(y[:, None], Zc))
                + 0.5 * lams[cols] * np.einsum("ij,ij->j", pen2 * Th, Th))

    def gradients(Th, Zc, cols):
        R = S[:, cols] * loss.derivative(y[:, None], Zc)
        return design.rmatvec(R) + lams[cols] * pen2 * Th

    F = values(Theta, Z, np.arange(m))
    G = gradients(Theta, Z, np.arange(m))
    rel = np.max(np.abs(G), axis=0) / scales
    n_iter = np.zeros(m, dtype=int)
    stalled = np.zeros(m, dtype=bool)
    for _ in range(max_iter):
        act = np.flatnonzero((rel > tol) & ~stalled)
        if act.size == 0:
            break
        n_iter[act] += 1
        W = S[:, act] * loss.curvature(y[:, None], Z[:, act])
        B = -G[:, act]
        eta = np.minimum(0.1, np.sqrt(rel[act]))
        # ---- lockstep preconditioned CG on the active columns
        X = np.zeros_like(B)
        R = B.copy()
        Pz = preconds(R, act)
        P = Pz.copy()
        rz = np.einsum("ij,ij->j", R, Pz)
        bnorm = np.linalg.norm(B, axis=0)
        live = np.ones(act.size, dtype=bool)
        for _k in range(max_cg):
            li = np.flatnonzero(live)
            HP = design.rmatvec(W[:, li] * design.matvec(P[:, li])) + lams[act[li]] * pen2 * P[:, li]
            pHp = np.einsum("ij,ij->j", P[:, li], HP)
            alpha = np.where(pHp > 0, rz[li] / np.where(pHp > 0, pHp, 1.0), 0.0)
            X[:, li] += alpha * P[:, li]
            R[:, li] -= alpha * HP
            done = (np.linalg.norm(R[:, li], axis=0) <= eta[li] * bnorm[li]) | (pHp <= 0)
            live[li[done]] = False
            li = np.flatnonzero(live)
            if li.size == 0:
                break
            Pz_li = preconds(R[:, li], act[li])
            rz_new = np.einsum("ij,ij->j", R[:, li], Pz_li)
            P[:, li] = Pz_li + (rz_new / rz[li]) * P[:, li]
            rz[li] = rz_new
        # ---- backtracking line search, column by column but vectorised
        gp = np.einsum("ij,ij->j", G[:, act], X)
        AX = design.matvec(X)
        step = np.ones(act.size)
        accept = np.zeros(act.size, dtype=bool)
        noise = 1e3 * np.finfo(float).eps * np.maximum(1.0, np.abs(F[act]))
        G_new = np.empty_like(X)
        have_g = np.zeros(act.size, dtype=bool)
        bad = gp >= 0
        while True:
            todo = np.flatnonzero(~accept & ~bad & (step >= 1e-10))
            if todo.size == 0:
                break
            cols = act[todo]
            Zt = Z[:, cols] + step[todo] * AX[:, todo]
            Tht = Theta[:, cols] + step[todo] * X[:, todo]
            Ft = values(Tht, Zt, cols)
            ok = Ft <= F[cols] + 1e-4 * step[todo] * gp[todo]
            tiny = (-gp[todo] * step[todo] <= noise[todo]) & ~ok
            if tiny.any():
                sub = np.flatnonzero(tiny)
                Gt = gradients(Tht[:, sub], Zt[:, sub], cols[sub])
                better = np.max(np.abs(Gt), axis=0) < np.max(np.abs(G[:, cols[sub]]), axis=0)
                G_new[:, todo[sub[better]]] = Gt[:, better]
                have_g[todo[sub[better]]] = True
                ok[sub[better]] = True
            accept[todo[ok]] = True
            step[todo[~ok]] *= 0.5
        moved = np.flatnonzero(accept)
        stalled[act[~accept]] = True
        if moved.size:
            cols = act[moved]
            Theta[:, cols] += step[moved] * X[:, moved]
            Z[:, cols] += step[moved] * AX[:, moved]
            F[cols] = values(Theta[:, cols], Z[:, cols], cols)
            need = moved[~have_g[moved]]
            if need.size:
                G[:, act[need]] = gradients(Theta[:, act[need]], Z[:, act[need]], act[need])
            got = moved[have_g[moved]]
            G[:, act[got]] = G_new[:, got]
            rel[cols] = np.max(np.abs(G[:, cols]), axis=0) / scales[cols]
    return Theta, rel <= tol, n_iter, rel
