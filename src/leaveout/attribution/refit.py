"""The refit engine: certified retrains without a removal set, alone or in lockstep batches.

A retrain minimises the model's own training objective with the removed rows at weight 0
(:meth:`~leaveout.glm.objective.Objective.without`: X stays in place), with the same
Newton solver as the fit, warm-started from the Newton step and preconditioned by the
leave-T-out Hessian at the full-data fit (a Woodbury update of the factor already computed),
so it needs a few passes over X and no new factorisation. A batch of removal sets is one
objective with a weight column per set, solved in lockstep so that each pass over X serves
all of them (matrix-matrix products).
"""

from __future__ import annotations

import numpy as np

from ..exceptions import SingularHessianError
from ..glm.solver import newton_solve
from .curvature import apply_many

__all__ = ["RefitEngine"]


class RefitEngine:
    """Certified refits of ``model`` without given rows.

    Parameters
    ----------
    model : GLM
        The fitted model (its ``objective_`` is refitted with other weights).
    estimators : GLMEstimators
        Supplies the Newton-step systems (warm start and preconditioner) and the check
        that a removal set leaves a well-posed refit.
    """

    def __init__(self, model, estimators):
        self.model, self.estimators = model, estimators

    def retrain(self, T, tol=None, max_iter=None, init=None):
        """The certified refit without the sorted indices ``T`` (a fitted GLM)."""
        est = self.estimators
        objective = self.model.objective_.without(T)
        est.check_weights_left(objective.s)
        try:
            G, system = est.ns_system(T)
            iterative = hasattr(system, "preconditioner")
            if init is None:            # a warm start needs no 1e-12 solve (a cached one is reused)
                init = est.theta + (system.apply(G, rtol=1e-8) if iterative else system.apply(G))
            precond = (system.preconditioner() if iterative else system).apply
        except SingularHessianError:
            precond = est.curvature.solve
            init = est.theta if init is None else init
        return self.model.refitted(objective, init=init, precond=precond, tol=tol, max_iter=max_iter)

    def retrain_many(self, Ts, tol=None, max_iter=None, systems=None):
        """Refits for several sorted removal sets, in lockstep where the design allows it.

        ``systems``: ``(G, system)`` of :meth:`GLMEstimators.ns_system` for each set, when
        the caller already has them.
        """
        if not Ts:
            return []
        if not self.estimators.design.local or self.estimators.objective.n_blocks > 1:
            return [self.retrain(T, tol=tol, max_iter=max_iter) for T in Ts]     # one set at a time
        model, est = self.model, self.estimators
        tol = model.tol if tol is None else tol
        max_iter = model.max_iter if max_iter is None else max_iter
        batch = model.objective_.without_each(Ts)
        for j in range(len(Ts)):
            est.check_weights_left(batch.s[:, j])
        pairs = systems if systems is not None else [est.ns_system(T) for T in Ts]
        sys_list = [system.preconditioner() if hasattr(system, "preconditioner") else system for _G, system in pairs]
        Theta0 = np.column_stack([est.theta + (system.apply(G, rtol=1e-8) if hasattr(system, "preconditioner")
                                               else system.apply(G)) for G, system in pairs])

        def preconds(R, cols):
            return apply_many([sys_list[c] for c in cols], R)

        results = newton_solve(batch, Theta0, tol, max_iter, precond=preconds)
        return [model.refitted(batch.column(j), tol=tol, max_iter=max_iter, result=res)
                for j, res in enumerate(results)]
