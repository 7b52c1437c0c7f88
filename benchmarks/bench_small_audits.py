"""How far from minimal is the audit on tiny problems? Found k against brute force.

50 random least-squares problems (n = 10..22 rows, one or two regressors plus an intercept,
half of them with uneven weights), half with the sign target and half with significance
(classical SE), audited with ``max_fraction=1`` (every row may go). The true minimum comes
from enumerating every subset (the removal identity on the whitened rows, written here
independently of the package). Reported: the distribution of ``found - true`` for the
adaptive search alone (``EXCHANGE_MAX = EXHAUSTIVE_MAX = 0``) and with the exchange pass and
exhaustive search that small problems now get, with the time per audit.

    python benchmarks/bench_small_audits.py
"""

from __future__ import annotations

import collections
import itertools
import time

import numpy as np

import leaveout as lo
import importlib
from leaveout.metrics import Coefficient

search = importlib.import_module("leaveout.audit.search")

Z = 1.959963984540054


def truth(X, y, w, target, kmax):
    """Fewest rows whose removal flips the sign of beta_0 (or makes it non-significant)."""
    Xs, ys = X * np.sqrt(w)[:, None], y * np.sqrt(w)
    n, d = Xs.shape
    G = np.linalg.inv(Xs.T @ Xs)
    beta = G @ Xs.T @ ys
    R = ys - Xs @ beta
    H = Xs @ G @ Xs.T
    zc = Xs @ G[:, 0]
    q, rss, v = beta[0], float(R @ R), G[0, 0]
    for k in range(1, min(kmax, n - d - 1) + 1):
        T = np.array(list(itertools.combinations(range(n), k)))
        M = np.eye(k) - H[T[:, :, None], T[:, None, :]]
        ok = np.abs(np.linalg.det(M)) > 1e-9
        T, M = T[ok], M[ok]
        sol = np.linalg.solve(M, np.stack([R[T], zc[T]], axis=-1))
        delta = np.einsum("mk,mk->m", zc[T], sol[..., 0])
        qT = q - delta
        if target == "sign":
            if np.any(np.sign(qT) != np.sign(q)):
                return k
            continue
        rssT = rss - np.einsum("mk,mk->m", R[T], sol[..., 0])
        vT = v + np.einsum("mk,mk->m", zc[T], sol[..., 1])
        t = qT / np.sqrt(np.maximum(rssT, 0) / (n - k - d) * vT)
        if np.any(np.abs(t) <= Z):
            return k
    return None


def problems(count=50, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        n = int(rng.integers(10, 23))
        d = int(rng.integers(1, 3))
        Zx = rng.standard_normal((n, d))
        y = Zx[:, 0] * rng.uniform(0.4, 1.2) + rng.standard_normal(n)
        w = np.ones(n) if len(out) % 2 else rng.uniform(0.2, 3.0, n)
        target = "sign" if len(out) % 4 < 2 else "significance"
        X = np.column_stack([Zx, np.ones(n)])
        Xs, ys = X * np.sqrt(w)[:, None], y * np.sqrt(w)
        beta = np.linalg.lstsq(Xs, ys, rcond=None)[0]
        if target == "significance":
            r = ys - Xs @ beta
            se = np.sqrt(r @ r / (n - d - 1) * np.linalg.inv(Xs.T @ Xs)[0, 0])
            if abs(beta[0]) / se <= Z:
                continue
        out.append((Zx, X, y, w, target))
    return out


def main():
    cases = problems()
    results = {"adaptive alone": [], "with exchange + exhaustive": []}
    seconds = {k: [] for k in results}
    minimal = 0
    for Zx, X, y, w, target in cases:
        m = lo.GLM(family="squared", l2=0).fit(Zx, y, sample_weight=w)
        found = {}
        for label, limits in (("adaptive alone", (0, 0)), ("with exchange + exhaustive", (800, 10000))):
            search.EXCHANGE_MAX, search.EXHAUSTIVE_MAX = limits
            t0 = time.perf_counter()
            res = lo.audit(m, Coefficient(0), target, max_fraction=1.0)
            seconds[label].append(time.perf_counter() - t0)
            found[label] = res.k if res.reached else None
            if label.startswith("with") and res.lower_method and res.lower_method.startswith("exhaustive"):
                minimal += 1
        kmax = max(k for k in found.values() if k is not None) if any(found.values()) else len(y) - X.shape[1] - 1
        true = truth(X, y, w, target, kmax)
        for label, k in found.items():
            results[label].append("none exists" if (k is None and true is None) else
                                  "missed" if k is None else k - true)
    print(f"{len(cases)} problems (n = 10..22; {sum(c[4] == 'sign' for c in cases)} sign, "
          f"{sum(c[4] == 'significance' for c in cases)} significance)")
    for label, gaps in results.items():
        c = collections.Counter(g if isinstance(g, str) or g < 3 else 3 for g in gaps)
        sec = np.array(seconds[label])
        print(f"{label:<28} found - true: 0: {c[0]}, 1: {c[1]}, 2: {c[2]}, >=3: {c[3]}, missed: {c['missed']}, "
              f"no set exists: {c['none exists']}; worst {max(g for g in gaps if not isinstance(g, str))}; "
              f"median {np.median(sec):.2f} s, max {sec.max():.2f} s")
    print(f"proved minimal by the exhaustive search: {minimal} of {len(cases)}")


if __name__ == "__main__":
    main()
