"""Strategies that choose removal sets T (paper, appendix C.2).

Every strategy takes the set size ``k`` and an explicit ``numpy.random.Generator`` and
returns ``k`` distinct sorted row indices. The "top" strategies rank samples by the IF
linear effect on a metric, keep the true top ``2k`` and return a random half of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import scipy.sparse as sp

__all__ = ["Strategy", "RemovalContext", "removal_set", "removal_sizes", "DEFAULT_STRATEGIES"]


class Strategy(str, Enum):
    RANDOM = "random"
    CLUSTER_FEATURE = "cluster-feature"
    CLUSTER_L2 = "cluster-l2"
    TOP_TEST_LOSS_POS = "top-test-loss-pos"
    TOP_TEST_LOSS_NEG = "top-test-loss-neg"
    TOP_TEST_PRED_POS = "top-test-pred-pos"
    TOP_TEST_PRED_NEG = "top-test-pred-neg"
    HIGH_SELF_LOSS = "high-self-loss"

    def __str__(self):
        return self.value


#: The seven strategies of the paper's protocol (``high-self-loss`` is an optional extra).
DEFAULT_STRATEGIES = tuple(s for s in Strategy if s is not Strategy.HIGH_SELF_LOSS)


@dataclass
class RemovalContext:
    """What the strategies look at.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_columns)
        Training features; extra trailing columns (an intercept column of ones) may follow
        the ``n_features`` real ones: they do not change L2 distances between rows.
    scores : dict of str to ndarray of shape (n_samples,)
        IF linear effects of removing each sample, keyed by metric name
        (``"test-loss"``, ``"test-pred"``, ``"self-loss"``), for the top strategies.
    n_features : int, optional
        Number of real feature columns (default: all columns).
    """

    X: object
    scores: dict = field(default_factory=dict)
    n_features: int | None = None

    def __post_init__(self):
        if self.n_features is None:
            self.n_features = self.X.shape[1]
        self._sq = None

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def sq_norms(self) -> np.ndarray:
        """Squared row norms, computed once."""
        if self._sq is None:
            X = self.X
            self._sq = (np.asarray(X.multiply(X).sum(axis=1)).ravel() if sp.issparse(X)
                        else np.einsum("ij,ij->i", X, X))
        return self._sq


def removal_sizes(n: int, count: int = 40, low: float = 0.001, high: float = 0.05) -> np.ndarray:
    """``count`` set sizes linearly spaced from ``low * n`` to ``high * n``, rounded, at least 1,
    without repeats (so small ``n`` can give fewer than ``count``)."""
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"sizes must be a positive integer, got {count!r}")
    k = np.maximum(1, np.rint(np.linspace(low * n, high * n, count))).astype(np.int64)
    k = np.unique(k)
    if 2 * k.max() > n:
        raise ValueError(f"the largest removal size {k.max()} needs at least {2 * k.max()} training rows, have {n}")
    return k


def _k_nearest(dist: np.ndarray, k: int, rng) -> np.ndarray:
    """Indices of the k smallest distances, ties broken at random."""
    tie = rng.random(dist.size)
    order = np.lexsort((tie, dist))
    return np.sort(order[:k])


def _column(X, j):
    col = X[:, j]
    return np.asarray(col.toarray()).ravel() if sp.issparse(col) else np.asarray(col, dtype=np.float64)


def _cluster_feature(ctx, k, rng):
    i = int(rng.integers(ctx.n))
    j = int(rng.integers(ctx.n_features))
    col = _column(ctx.X, j)
    return _k_nearest(np.abs(col - col[i]), k, rng)


def _cluster_l2(ctx, k, rng):
    i = int(rng.integers(ctx.n))
    X = ctx.X
    sq = ctx.sq_norms()
    xi = X[i].toarray().ravel() if sp.issparse(X) else X[i]
    cross = np.asarray(X @ xi).ravel()
    dist = np.maximum(sq - 2 * cross + sq[i], 0.0)
    dist[i] = -1.0  # the centre itself comes first
    return _k_nearest(dist, k, rng)


def _top(metric, sign):
    def strategy(ctx, k, rng):
        if metric not in ctx.scores:
            raise ValueError(f"strategy needs the IF scores for {metric!r}")
        s = sign * np.asarray(ctx.scores[metric])
        m = min(2 * k, ctx.n)
        top = np.argsort(-s, kind="stable")[:m]   # the true top 2k
        return np.sort(rng.choice(top, size=k, replace=False))
    return strategy


def _random(ctx, k, rng):
    return np.sort(rng.choice(ctx.n, size=k, replace=False))


_REGISTRY = {
    Strategy.RANDOM: _random,
    Strategy.CLUSTER_FEATURE: _cluster_feature,
    Strategy.CLUSTER_L2: _cluster_l2,
    Strategy.TOP_TEST_LOSS_POS: _top("test-loss", +1),
    Strategy.TOP_TEST_LOSS_NEG: _top("test-loss", -1),
    Strategy.TOP_TEST_PRED_POS: _top("test-pred", +1),
    Strategy.TOP_TEST_PRED_NEG: _top("test-pred", -1),
    Strategy.HIGH_SELF_LOSS: _top("self-loss", +1),
}


def parse_strategy(name) -> Strategy:
    try:
        return Strategy(str(name))
    except ValueError:
        raise ValueError(f"unknown strategy {str(name)!r}; choose from {[s.value for s in Strategy]}") from None


def removal_set(strategy, k: int, rng: np.random.Generator, ctx: RemovalContext) -> np.ndarray:
    """``k`` distinct sorted row indices chosen by ``strategy``."""
    strategy = parse_strategy(strategy)
    if not 1 <= k < ctx.n:
        raise ValueError(f"removal size k={k} must be between 1 and {ctx.n - 1}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator")
    return _REGISTRY[strategy](ctx, int(k), rng).astype(np.int64)
