"""leaveout: predict and measure how a model changes when training samples are removed.

Influence functions (IF), rescaled influence functions (RIF), the group Newton step (NS)
and exact, certified retraining for penalised generalised linear models.

Layers (data flows downwards; see the README's "Benchmarks and development"):
:mod:`leaveout.glm` (losses, objective, solver, estimator) over :mod:`leaveout.design`
(where X lives); :mod:`leaveout.metrics`; :mod:`leaveout.attribution` (curvature,
estimators, refits); :mod:`leaveout.adapters` and :mod:`leaveout.weights`; :mod:`leaveout.experiments` (the paper's
protocol, the only layer that writes files); :mod:`leaveout.datasets`; :mod:`leaveout.cli`.
"""

from . import metrics
from ._version import __version__
from .adapters import from_linearmodels, from_pyfixest, from_sklearn, from_statsmodels
from .attribution import Attribution
from .audit import AuditResult, audit, summarize
from .exceptions import (ConvergenceError, ConvergenceWarning, LeverageError, SingularHessianError,
                         UnreliableEstimateWarning)
from .glm import GLM, IV2SLS, FixedEffectsGLM
from .weights import from_weights

__all__ = [
    "GLM",
    "FixedEffectsGLM",
    "IV2SLS",
    "Attribution",
    "audit",
    "AuditResult",
    "summarize",
    "metrics",
    "from_sklearn",
    "from_weights",
    "from_statsmodels",
    "from_pyfixest",
    "from_linearmodels",
    "ConvergenceWarning",
    "ConvergenceError",
    "SingularHessianError",
    "LeverageError",
    "UnreliableEstimateWarning",
    "__version__",
]
