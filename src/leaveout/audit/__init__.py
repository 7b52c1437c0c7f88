"""Robustness audits: the fewest rows whose removal changes a conclusion, found adaptively and
verified by certified refits (:mod:`.search`, :mod:`.targets`), with standard errors and
their exact derivatives in the row weights (:mod:`.se`) and the :class:`AuditResult`; for
ordinary least squares, certified lower bounds (:mod:`.certify`: no smaller set changes the
conclusion) from closed forms and mixed-integer programs (:mod:`.exact`) and Rubinstein and
Hopkins' triangle bounds (:mod:`.bounds`), on the rows of :mod:`.ols`."""

import functools

from . import search as _search
from .certify import CERTIFY_METHODS, Certificate, certify
from .result import AuditResult
from .se import SE_KINDS, SECalculator, standard_error
from .summary import FitSummary, summarize
from .search import METHODS
from .targets import TARGETS


@functools.wraps(_search.audit)
def audit(att, quantity, target: str = "sign", **options) -> AuditResult:
    from ..attribution import Attribution
    from ..glm import GLM
    if isinstance(att, GLM):
        att = Attribution(att)
    elif getattr(att, "family", None) == "2sls":
        from ..attribution.iv import IVAttribution
        att = IVAttribution(att)
    return _search.audit(att, quantity, target, **options)

__all__ = ["audit", "AuditResult", "summarize", "FitSummary", "certify", "Certificate", "standard_error", "SECalculator", "SE_KINDS", "METHODS",
           "TARGETS", "CERTIFY_METHODS"]
