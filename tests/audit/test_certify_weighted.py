"""Weighted certificates against brute force over every subset (issue #22, planted bug 1: a
pairs MIP that dropped the weights overclaimed its lower bound on 6 of 10 weighted problems).

Each problem is tiny (n <= 12, one regressor plus intercept or two regressors), so every
subset is enumerated: the true minimum number of rows whose removal flips the sign, or loses
significance (classical SE), is computed by weighted least squares on the kept rows,
independently of the package. Every certificate method must stay at or below it, and the
exact ones must equal it."""

import itertools

import numpy as np
import pytest

import leaveout as lo
from leaveout.audit.bounds import triangle_bounds
from leaveout.audit.certify import certify
from leaveout.audit.exact import bigm_mip, pairs_mip, simple_regression
from leaveout.audit.ols import OLSProblem
from leaveout.audit.targets import Snapshot, Target
from leaveout.metrics import Coefficient

Z975 = 1.959963984540054


def _wls(X, y, w, keep):
    """``(beta_0, classical t of beta_0)`` on the kept rows; None when the fit is not unique."""
    Xk, yk, wk = X[keep], y[keep], w[keep]
    A = (Xk * wk[:, None]).T @ Xk
    if keep.size <= X.shape[1] or np.linalg.cond(A) > 1e10:
        return None
    beta = np.linalg.solve(A, (Xk * wk[:, None]).T @ yk)
    rss = float(wk @ (yk - Xk @ beta) ** 2)
    dof = keep.size - X.shape[1]
    return beta[0], beta[0] / np.sqrt(rss / dof * np.linalg.inv(A)[0, 0])


def _truth(X, y, w, target, kmax):
    """Fewest rows whose removal reaches the target (None above kmax), by enumeration."""
    n = len(y)
    b0, t0 = _wls(X, y, w, np.arange(n))
    for k in range(1, kmax + 1):
        for T in itertools.combinations(range(n), k):
            r = _wls(X, y, w, np.setdiff1d(np.arange(n), T))
            if r is None:
                continue
            if target == "sign" and np.sign(r[0]) != np.sign(b0):
                return k
            if target == "significance" and abs(r[1]) <= Z975:
                return k
    return None


def _problems(count, seed, d):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        n = int(rng.integers(8, 13))
        Z = rng.standard_normal((n, d - 1))
        y = Z[:, 0] * rng.uniform(0.2, 1.0) + rng.standard_normal(n)
        w = np.ones(n) if len(out) % 3 == 0 else rng.uniform(0.1, 5.0, n) ** 2     # uniform and very uneven
        X = np.column_stack([Z, np.ones(n)])
        out.append((Z, X, y, w))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_weighted_sign_certificates_against_brute_force(seed):
    checked = 0
    for Z, X, y, w in _problems(10, 300 + seed, d=2):
        truth = _truth(X, y, w, "sign", 4)
        model = lo.GLM(family="squared", l2=0).fit(Z, y, sample_weight=w)
        P = OLSProblem.from_attribution(model, Coefficient(0))
        x, yy, s, _ = simple_regression(P)
        K = 4
        exact = pairs_mip(x, yy, s, K, time_limit=20)
        if truth is None:                     # no flip with <= 4 rows: the MIP proves it
            assert exact.lower == K + 1
        else:
            assert exact.lower == truth and exact.optimal
            assert len(exact.witness) == truth
        tb = triangle_bounds(P, 4)
        assert tb.sign_certificate(P.margin) <= (truth or K + 1)
        gamma = tb.gamma(K)
        if np.isfinite(gamma):                # the big-M MIP, valid up to the design's singularity
            big = bigm_mip(P, K, gamma, time_limit=20)
            assert big is None or big.lower <= (truth or K + 1)
        for method in ("auto", "bound", "exact"):
            cert = certify(model, Coefficient(0), Target("sign", Snapshot(float(model.coef_[0]))),
                           max_rows=K, method=method, time_limit=20)
            assert cert.lower <= (truth or K + 1), (method, cert.lower, truth)
        checked += 1
    assert checked == 10


@pytest.mark.parametrize("seed", range(2))
def test_weighted_significance_certificates_against_brute_force(seed):
    checked = 0
    for Z, X, y, w in _problems(12, 400 + seed, d=3):
        b0, t0 = _wls(X, y, w, np.arange(len(y)))
        if abs(t0) <= Z975:
            continue
        truth = _truth(X, y, w, "significance", 3)
        model = lo.GLM(family="squared", l2=0).fit(Z, y, sample_weight=w)
        se = abs(b0 / t0)
        cert = certify(model, Coefficient(0), Target("significance", Snapshot(float(model.coef_[0]), se)),
                       max_rows=3)
        assert cert.lower <= (truth or 4), (cert.lower, truth)
        P = OLSProblem.from_attribution(model, Coefficient(0))
        tb = triangle_bounds(P, 3)
        for k in (1, 2):                     # exact for one and two rows, weights included
            want = min(np.sign(t0) * r[1] for T in itertools.combinations(range(len(y)), k)
                       if (r := _wls(X, y, w, np.setdiff1d(np.arange(len(y)), T))) is not None)
            assert tb.exact_t[k] == pytest.approx(want, rel=1e-8)
        checked += 1
    assert checked >= 4
