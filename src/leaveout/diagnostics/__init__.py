"""Can an estimate be trusted here? Theorem 3.1's constants and bound (:mod:`.theorem`),
per-set indicators (:mod:`.indicators`), calibration against certified retrains
(:mod:`.calibration`), the :class:`TrustReport` (:mod:`.report`), and the field's yardsticks:
the linear datamodeling score and the leave-one-out correlation (:mod:`.lds`).

Nothing here imports the attribution layer: functions take an :class:`~leaveout.Attribution`
and call its methods, so ``Attribution.diagnose`` can use them without an import cycle."""

from .lds import LDSResult, lds, loo_correlation
from .indicators import CHANGE_LIMIT, DECREMENT_LIMIT, SetDiagnostics, set_diagnostics
from .report import TrustReport, diagnose
from .theorem import TheoremConstants, set_constants, theorem_constants

__all__ = ["diagnose", "TrustReport", "theorem_constants", "set_constants", "set_diagnostics",
           "TheoremConstants", "SetDiagnostics", "DECREMENT_LIMIT", "CHANGE_LIMIT", "lds", "loo_correlation",
           "LDSResult"]
