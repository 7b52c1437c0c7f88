"""The paper's experiments end to end, and the only layer that writes files.

config (:mod:`.config`, saved beside the results) -> removal strategies (:mod:`.removal`) ->
runner (:mod:`.runner`, batches of :mod:`.evaluate`) -> result store (:mod:`.store`) ->
summary (:mod:`.summary`) -> report (:mod:`.report`) and figures (:mod:`.plots`, drawn from
a results table).
"""

from .config import METRIC_NAMES, POISON_COLUMNS, RESULT_COLUMNS, ReproduceConfig, RunError
from .runner import Runner
from .store import ResultStore
from .summary import summarize

__all__ = ["ReproduceConfig", "Runner", "ResultStore", "RunError", "summarize", "RESULT_COLUMNS",
           "POISON_COLUMNS", "METRIC_NAMES"]
