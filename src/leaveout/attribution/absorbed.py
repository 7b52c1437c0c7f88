"""Estimators of a model with absorbed fixed effects: :class:`GLMEstimators` on the partialled
design, with the absorbed factor's share of each leverage and Woodbury block (the
Frisch-Waugh-Lovell identities of :mod:`leaveout.glm.absorb`)."""

from __future__ import annotations

import numpy as np

from .estimators import _LEVERAGE_ONE, GLMEstimators

__all__ = ["AbsorbedEstimators"]


class AbsorbedEstimators(GLMEstimators):
    """:class:`GLMEstimators` of a model with absorbed fixed effects
    (:class:`~leaveout.glm.absorb.FixedEffectsGLM`), whose objective is the partialled
    design ``X~`` at the fit. The coefficients' IF is that design's own; the absorbed factor
    adds ``w_i / W_g(i)`` to each leverage (RIF) and ``[g(i) = g(j)] / W_g`` to the Woodbury
    block of a set (NS), the Frisch-Waugh-Lovell identities of :mod:`leaveout.glm.absorb`.
    A row alone in its group has leverage 1 and moves no coefficient: its RIF is 0."""

    def __init__(self, model, form: str = "auto"):
        super().__init__(model, "primal")
        self.absorbed = model.absorbed_
        self.absorbed_leverage = np.asarray(model.absorbed_leverage_, dtype=np.float64)
        self.model_weights = model.absorbed_weights_

    @property
    def leverage(self) -> np.ndarray:
        """``h_i = w_i x~_i^T H~^{-1} x~_i + w_i / W_g(i)``, cached."""
        if not hasattr(self, "_leverage"):
            self._leverage = np.asarray(self.curvature.factor.leverage()) + self.absorbed_leverage
        return self._leverage

    @property
    def rif_leverage(self) -> np.ndarray:
        # a singleton's own row is 0 in X~, so its IF is exactly 0: RIF 0 rather than 0 / 0
        return np.where(self.absorbed_leverage >= _LEVERAGE_ONE, 0.0, self.leverage)

    def rif_leverage_of(self, idx) -> np.ndarray:
        return self.rif_leverage[np.asarray(idx)]

    def quad_scores(self, method: str) -> np.ndarray:
        # the leverages carry the absorbed part: from the rows themselves
        return self.hess_quad(self.influence() if method == "if" else self.rescaled_influence())

    def ns_system(self, T, cache: bool = True):
        raise ValueError("the Newton system of a fixed-effects model is not exposed; use delta(T, 'ns')")

    def _returning_leverage(self, idx, w):
        # the group's part, w_i / W_g with W_g the group's weight in this fit; a row returning to
        # an emptied group recreates it and moves nothing (infinite leverage: change 0)
        W = self.absorbed.totals(np.asarray(self.model_weights))[self.absorbed.codes[idx]]
        with np.errstate(divide="ignore"):
            return np.where(W > 0, w / np.where(W > 0, W, 1.0), np.inf)

    def ns_delta(self, T):
        """NS: the coefficient part of ``H_{-T}^{-1} sum_{i in T} g_i`` in the full model.

        Woodbury with the absorbed block: ``H~^{-1} X~_T^T (I - W_T K)^{-1} r_T``, ``K = X~_T
        H~^{-1} X~_T^T + [g(i) = g(j)] / W_g``; where T empties a group (that block is then
        singular, the group's level leaves the model) the Newton step's weighted least
        squares on the kept rows, demeaned again."""
        T = np.asarray(T, dtype=np.intp)
        w, r = np.asarray(self.w), np.asarray(self.r)
        kept_w = self.absorbed.totals(w) - self.absorbed.totals(np.bincount(T, weights=w[T], minlength=w.size))
        if np.all(kept_w[self.absorbed.codes[T]] > 1e-12 * self.absorbed.totals(w)[self.absorbed.codes[T]]):
            XT = np.asarray(self.design.dense_rows(T))
            Q = np.asarray(self.curvature.solve(XT.T)).reshape(self.theta.size, T.size)
            K = XT @ Q + self.absorbed.kernel(T, w)
            u = np.linalg.solve(np.eye(T.size) - w[T][:, None] * K, r[T])
            return Q @ u
        wk = w.copy()
        wk[T] = 0.0
        t = np.divide(-r, w, out=np.zeros_like(r), where=w > 0)
        X = np.asarray(self.design.dense_rows(np.arange(self.n_samples)))
        Xt, tt = self.absorbed.demean(X, wk), self.absorbed.demean(t, wk)
        A = Xt.T @ (wk[:, None] * Xt)
        return np.linalg.solve(A, Xt.T @ (wk * tt))
