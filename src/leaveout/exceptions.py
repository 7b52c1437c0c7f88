"""Warnings and errors raised by leaveout."""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "ConvergenceError", "SingularHessianError", "LeverageError",
           "UnreliableEstimateWarning"]


class ConvergenceWarning(UserWarning):
    """A fit stopped before its gradient reached the requested tolerance."""


class ConvergenceError(RuntimeError):
    """An exact retrain did not converge, so it cannot serve as ground truth."""


class SingularHessianError(ValueError):
    """The Hessian of the objective (or of a leave-T-out objective) is singular."""


class LeverageError(ValueError):
    """A sample has leverage ``h_i >= 1``: removing it alone leaves a singular Hessian."""


class UnreliableEstimateWarning(UserWarning):
    """A one-step estimate (RIF, NS) for a removal set whose Newton step leaves the region
    where the objective's quadratic model can be trusted (see :mod:`leaveout.diagnostics`).
    Filter it like any warning: ``warnings.simplefilter("ignore", UnreliableEstimateWarning)``."""
