"""Penalised generalised linear models: pointwise losses, the objective written once, the
Newton solver, and the :class:`GLM` estimator. The fit and every refit minimise the same
:class:`~leaveout.glm.objective.Objective` with the same :func:`~leaveout.glm.solver.newton_solve`;
:class:`FixedEffectsGLM` absorbs fixed effects (:mod:`.absorb`); :class:`IV2SLS` is two-stage
least squares (:mod:`.iv`)."""

from .absorb import FixedEffectsGLM
from .iv import IV2SLS
from .model import GLM
from .objective import Objective, SoftmaxObjective
from .solver import NewtonResult, newton_solve

__all__ = ["GLM", "FixedEffectsGLM", "IV2SLS", "Objective", "SoftmaxObjective", "NewtonResult", "newton_solve"]
