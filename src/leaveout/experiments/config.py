"""The settings of a reproduction run (saved as ``config.json`` beside its results) and
the columns of its result tables."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from .removal import DEFAULT_STRATEGIES, parse_strategy

__all__ = ["ReproduceConfig", "RunError", "RESULT_COLUMNS", "TRUST_COLUMNS", "POISON_COLUMNS", "METRIC_NAMES",
           "METHODS"]

#: the per-set trust columns (:class:`~leaveout.diagnostics.indicators.ProtocolTrust`)
TRUST_COLUMNS = ["ns_rif_gap", "set_bound", "set_applies", "global_applies", "newton_decrement", "max_change"]
RESULT_COLUMNS = ["dataset", "strategy", "k", "metric", "actual", "if", "rif", "ns",
                  "if_linear", "rif_linear", "ns_linear", "actual_linear",
                  "retrain_converged", "retrain_grad_norm"] + TRUST_COLUMNS
POISON_COLUMNS = ["dataset", "test_index", "actual", "if", "rif", "retrain_converged", "retrain_grad_norm"]
METRIC_NAMES = ("test-pred", "test-loss", "self-loss")
METHODS = ("if", "rif", "ns")


class RunError(ValueError):
    """A run cannot start or continue (bad folder, different config, failed fit)."""


@dataclass(frozen=True)
class ReproduceConfig:
    """Every setting of a reproduction run (saved as ``config.json``).

    Parameters
    ----------
    datasets : tuple of str
        Bundle names, names in ``data_dir``, or ``.npz`` paths.
    figures : tuple of int
        Which of the paper's figures to produce (1-4).
    sizes : int
        Removal-set sizes per strategy, linearly spaced from 0.1% to 5% of n.
    l2 : float or None
        Penalty strength; None uses the paper's value per dataset.
    penalty : {"per_sample", "fixed"}
    seed : int
        Seeds the test subset, every strategy and the subsamples.
    strategies : tuple of str
    data_dir : str or None
    fig2_sizes : int
        Sizes per strategy for each figure-2 variant (a reduced protocol).
    fig2_ratios : tuple of int
        n / d ratios of figure 2(a).
    fig2_l2 : tuple of float
        Penalties of figure 2(b).
    n_poison : int
        Poisoned test points of figure 3.
    """

    datasets: tuple = ("digits_rff",)
    figures: tuple = (1, 2, 3, 4)
    sizes: int = 40
    l2: float | None = None
    penalty: str = "per_sample"
    seed: int = 0
    strategies: tuple = tuple(s.value for s in DEFAULT_STRATEGIES)
    data_dir: str | None = None
    fig2_sizes: int = 6
    fig2_ratios: tuple = (1, 2, 4, 8, 16)
    fig2_l2: tuple = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    n_poison: int = 50

    def validate(self):
        if not self.datasets:
            raise RunError("give at least one dataset")
        bad = [f for f in self.figures if f not in (1, 2, 3, 4)]
        if bad:
            raise RunError(f"--figure must be 1, 2, 3 or 4, got {bad[0]}")
        if not isinstance(self.sizes, int) or self.sizes < 1:
            raise RunError(f"--sizes must be a positive integer, got {self.sizes}")
        if self.l2 is not None and (not math.isfinite(self.l2) or self.l2 < 0):
            raise RunError(f"--l2 must be a finite number >= 0, got {self.l2}")
        if self.penalty not in ("fixed", "per_sample"):
            raise RunError(f"--penalty must be fixed or per_sample, got {self.penalty!r}")
        for s in self.strategies:
            parse_strategy(s)
        return self

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))
