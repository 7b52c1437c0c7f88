"""What an audit tries to change: the sign of a quantity, its significance, both, or a
test row's predicted class; and the per-row scores that rank rows for it.

A *target* looks at a fit through a :class:`Snapshot` (the quantity's value and standard
error there) and says whether the conclusion has changed from the original one, and which
signed number ("the signal") must be moved across zero to change it:

* ``sign``: the value ``f - value``;
* ``significance``: a significant estimate loses significance when the confidence-interval
  end nearer zero, ``f -/+ z se``, crosses zero; a non-significant one gains it when the end
  with the smaller absolute value crosses zero (zaminfluence's rule);
* ``opposite``: the far end of the interval crosses zero (significant with the other sign);
* ``flip``: a test row's linear predictor (logit) crosses zero (binary classifiers).

The score of row i is the predicted change of the signal when row i alone is removed:
``delta f_i - z delta se_i`` with ``delta f_i`` from IF (``one-shot``) or RIF, and
``delta se_i = -d se / d w_i`` (exact derivative, :mod:`leaveout.audit.se`); the t-statistic
ranking scores ``delta t_i = delta f_i / se - f delta se_i / se^2`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TARGETS", "Snapshot", "Target"]

TARGETS = ("sign", "significance", "opposite", "flip")


@dataclass
class Snapshot:
    """A quantity at one fit: its value and standard error (NaN when not needed)."""

    value: float
    se: float = float("nan")


class Target:
    """One of :data:`TARGETS` at level ``alpha`` (two-sided normal critical value)."""

    def __init__(self, name: str, original: Snapshot, alpha: float = 0.05, value: float = 0.0):
        if name not in TARGETS:
            raise ValueError(f"target={name!r} is not supported; choose one of {list(TARGETS)}")
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
        self.name, self.alpha, self.value = name, float(alpha), float(value)
        from scipy.stats import norm
        self.z = float(norm.ppf(1 - alpha / 2))
        self.original = original
        self.needs_se = name in ("significance", "opposite")
        f = original.value - (self.value if name == "sign" else 0.0)
        if f == 0:
            raise ValueError(f"the estimate is exactly {self.value:g} already: target {name!r} has no direction")
        self.direction = float(np.sign(f))
        self.significant = self._significant(original)
        if name == "opposite" and not np.isfinite(original.se):
            raise ValueError("target 'opposite' needs a standard error")

    def _significant(self, snap):
        return bool(np.isfinite(snap.se) and abs(snap.value) > self.z * snap.se)

    def end(self, snap) -> tuple[float, float]:
        """``(signal, multiplier of se in it)``: the number to move across zero at ``snap``."""
        f, se, z = snap.value, snap.se, self.z
        if self.name in ("sign", "flip"):
            return f - self.value, 0.0
        if self.name == "opposite":
            return f + self.direction * z * se, self.direction * z
        if self.significant:                           # the end nearer zero loses significance
            return f - self.direction * z * se, -self.direction * z
        lo, hi = f - z * se, f + z * se                # the smaller end in absolute value
        return (lo, -z) if abs(lo) <= abs(hi) else (hi, z)

    def reached(self, snap) -> bool:
        """Whether the conclusion at ``snap`` differs from the original one, as asked."""
        if self.name in ("sign", "flip"):
            return np.sign(snap.value - self.value) != self.direction
        if self.name == "significance":
            return self._significant(snap) != self.significant
        return np.sign(snap.value) == -self.direction and self._significant(snap)

    def scores(self, snap, df, dse, ranking: str = "interval"):
        """Predicted change of the signal (``interval``) or of the t statistic (``t``) when
        each row alone is removed, from the per-row changes ``df`` and ``dse``."""
        signal, mult = self.end(snap)
        if ranking == "t" and self.needs_se:
            return df / snap.se - snap.value * dse / snap.se ** 2
        return df + mult * dse if mult else df

    def t_signal(self, snap) -> float:
        """The t statistic's distance to its threshold (the signal of the ``t`` ranking)."""
        t = snap.value / snap.se
        if self.name == "opposite":
            return t + self.direction * self.z
        if self.significant:
            return t - self.direction * self.z
        return t - self.z if abs(t - self.z) <= abs(t + self.z) else t + self.z
