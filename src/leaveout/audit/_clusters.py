"""Cluster labels for a cluster-robust standard error, checked once for every SE calculator."""

from __future__ import annotations

import numpy as np


def cluster_codes(groups, s, kind: str):
    """``(labels, codes, n_groups)`` for per-row cluster ``groups`` (``n_groups`` counts the
    clusters with rows of positive weight ``s``); one-line errors for what cannot work."""
    if kind == "nonrobust":
        raise ValueError("a cluster-robust standard error needs se='HC0' or 'HC1'")
    g = np.asarray(groups)
    if g.shape != (s.size,):
        raise ValueError(f"groups must have one label per training row ({s.size}), got shape {g.shape}")
    labels, codes = np.unique(g, return_inverse=True)
    n_groups = int(np.unique(codes[s > 0]).size)
    if n_groups < 2:
        raise ValueError(f"a cluster-robust standard error needs at least 2 groups; the rows left have {n_groups}")
    return labels, codes, n_groups
