"""The Newton solver for every objective of :mod:`leaveout.glm.objective`.

Template: setup -> direction -> line search -> convergence check -> finalize.

The direction solves ``H(theta) p = -grad`` by conjugate gradients preconditioned with a
factor of a Hessian close to the current one: the Cholesky factor of a Hessian from an
earlier iterate, refreshed only when conjugate gradients stop converging quickly, or a
preconditioner handed in by the caller (for a retrain, the leave-T-out Hessian at the
full-data fit). Near the optimum the Hessian hardly moves, so each step costs a handful of
passes over X instead of a fresh ``X^T W X``. Where X is dense in memory those Hessians are
formed from float32 products (half the time): they steer the steps, while every gradient, the
line search and the convergence test stay in float64.

One entry point, :func:`newton_solve`, serves the fit, a retrain and a lockstep batch of
retrains. A batch (an objective with weights of shape (n, k)) runs its k problems in
lockstep so that every pass over X is one matrix-matrix product for all of them; a column
that does not converge that way is finished alone, where the solver may factor a fresh
Hessian.

Convergence is certified by ``max_j |dL/dtheta_j| / scale <= tol`` (see
:attr:`~leaveout.glm.objective.Objective.scale`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._linalg import SINGULAR_HINT, cho_solve, cholesky, small_lapack
from ..exceptions import SingularHessianError

__all__ = ["NewtonResult", "newton_solve"]


@dataclass
class NewtonResult:
    theta: np.ndarray
    converged: bool
    n_iter: int
    grad_norm: float          # max |grad| / scale
    n_hessians: int = 0       # Hessians formed and factored
    n_hessvec: int = 0        # Hessian-vector products (conjugate gradients)


def newton_solve(obj, theta0, tol: float, max_iter: int, precond=None, max_cg=None):
    """Minimise ``obj`` from ``theta0`` until ``max|grad| / obj.scale <= tol``.

    Parameters
    ----------
    obj : Objective
        A single objective, or a batch (weights of shape (n, k)).
    theta0 : ndarray of shape (n_params,), or (n_params, k) for a batch
    tol, max_iter : float, int
    precond : callable, optional
        Single objective: ``r -> approx H^{-1} r`` from a Hessian close to the one at the
        optimum, used until it goes stale (then a fresh Hessian is factored). Batch:
        ``(R, cols) -> approx H_j^{-1} R[:, i]`` for columns ``j = cols[i]``; required.
    max_cg : int, optional
        Conjugate-gradient iterations per Newton step (12 alone, 30 in lockstep).

    Returns
    -------
    NewtonResult, or a list of k NewtonResult for a batch.
    """
    with small_lapack():      # the solves between products: scipy's LAPACK on one thread
        return _newton_solve(obj, theta0, tol, max_iter, precond, max_cg)


def _newton_solve(obj, theta0, tol, max_iter, precond, max_cg):
    if not obj.batch:
        return _solve_one(obj, theta0, tol, max_iter, precond, max_cg or 12)
    Theta, conv, n_iter, rel = _solve_lockstep(obj, theta0, tol, max_iter, precond, max_cg or 30)
    out = []
    for j in range(Theta.shape[1]):
        if conv[j]:
            out.append(NewtonResult(Theta[:, j], True, int(n_iter[j]), float(rel[j])))
        else:       # finish alone, with this column's preconditioner and Hessian refreshes
            one = obj.column(j)
            out.append(_solve_one(one, Theta[:, j], tol, max_iter,
                                  lambda r, j=j: precond(r[:, None], np.array([j]))[:, 0], max_cg or 12))
    return out


def _solve_one(obj, theta0, tol, max_iter, precond, max_cg) -> NewtonResult:
    """One objective: CG on a lagged factor, Hessian refreshes when CG stalls."""
    scale = obj.scale
    check_separable = obj.unbounded_if_separable
    theta = np.array(theta0, dtype=np.float64)
    z = obj.keep(obj.z(theta))
    # where every evaluation is a round trip (a dask cluster), value and gradient travel together
    fused = obj.design.round_trips
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
                f"the training data are linearly separable, so the unpenalised fit has no finite optimum; {SINGULAR_HINT}")
        w = obj.keep(obj.weights_at(z))
        if M is None:
            # an objective may solve with H exactly without forming it (the multinomial start)
            M = getattr(obj, "structured_solver", lambda z: None)(z)
            if M is None:
                L = _factor(obj, z)
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


def _factor(obj, z):
    """Cholesky factor of the Hessian at ``z`` for a Newton direction or a preconditioner:
    from float32 products where the objective offers them (each step's gradient and the final
    certificate are exact, so this only changes how fast the steps converge), the exact
    Hessian where that factor fails."""
    approx = getattr(obj, "approx_hessian_at", None)
    if approx is not None:
        try:
            return cholesky(approx(z))
        except SingularHessianError:
            pass
    return cholesky(obj.hessian_at(z))


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


def _solve_lockstep(obj, Theta0, tol, max_iter, preconds, max_cg):
    """k objectives at once, sharing every pass over X; no Hessian refresh here: a column
    that does not converge is reported (``converged`` False) for :func:`_solve_one`.

    Returns ``(Theta, converged (k,), n_iter (k,), grad_norm (k,))``.
    """
    Theta = np.array(Theta0, dtype=np.float64)
    m = Theta.shape[1]
    scales = np.asarray(obj.scale, dtype=np.float64)
    values, gradients = obj.value_at, obj.gradient_at
    Z = obj.z(Theta)
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
        W = obj.weights_at(Z[:, act], act)
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
            HP = obj.hessvec(W[:, li], P[:, li], act[li])
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
        AX = obj.zdir(X)
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
