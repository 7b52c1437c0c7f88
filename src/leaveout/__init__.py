"""leaveout: predict and measure how a model changes when training samples are removed.

Influence functions (IF), rescaled influence functions (RIF), the group Newton step (NS)
and exact, certified retraining for penalised generalised linear models.
"""

from . import metrics
from .adapters import from_sklearn, from_statsmodels
from .attribution import Attribution
from .exceptions import ConvergenceError, ConvergenceWarning, LeverageError, SingularHessianError
from .model import GLM

__version__ = "0.1.0"

__all__ = [
    "GLM",
    "Attribution",
    "metrics",
    "from_sklearn",
    "from_statsmodels",
    "ConvergenceWarning",
    "ConvergenceError",
    "SingularHessianError",
    "LeverageError",
    "__version__",
]
