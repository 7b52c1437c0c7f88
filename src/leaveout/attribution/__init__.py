"""Leave-T-out attribution for a fitted GLM: IF, RIF, NS and certified retrains.

Rooms, one idea each:

* :mod:`.factors` and :mod:`.curvature`: the Hessian at the fit factored once (Cholesky, its
  eigendecomposition for penalty shifts, or the n x n kernel), Woodbury systems for removal
  sets, and their caches;
* :mod:`.estimators`: per-sample pieces and the IF / RIF / NS formulas (the paper's
  section 1.1), :mod:`.multinomial` their rank C-1 blocks, :mod:`.sketch` sketched leverages;
* :mod:`.refit`: certified retrains, alone or in lockstep batches;
* :mod:`.core`: the :class:`Attribution` façade.
"""

from .core import Attribution, MultinomialAttribution
from .sketch import SketchedLeverage

__all__ = ["Attribution", "MultinomialAttribution", "SketchedLeverage"]
