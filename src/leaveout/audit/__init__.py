"""Robustness audits: the fewest rows whose removal changes a conclusion, found adaptively and
verified by certified refits (:mod:`.search`, :mod:`.targets`), with standard errors and
their exact derivatives in the row weights (:mod:`.se`) and the :class:`AuditResult`."""

from .result import AuditResult
from .se import SE_KINDS, SECalculator, standard_error
from .search import METHODS, audit
from .targets import TARGETS

__all__ = ["audit", "AuditResult", "standard_error", "SECalculator", "SE_KINDS", "METHODS", "TARGETS"]
