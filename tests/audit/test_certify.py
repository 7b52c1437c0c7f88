"""Certified lower bounds for OLS audits, against brute force over every small subset.

The brute force refits (through the removal identity, itself checked against lstsq refits)
every set of 1..4 rows of n = 40 problems; a certificate must never exceed the true minimum,
and the audit's verified count must never be below it."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

import leaveout as lo
from conftest import DATASETS
from leaveout.audit.bounds import triangle_bounds
from leaveout.audit.certify import certify
from leaveout.audit.exact import bigm_mip, binary_regressor, pairs_mip
from leaveout.audit.ols import OLSProblem
from leaveout.audit.se import standard_error
from leaveout.audit.targets import Snapshot, Target
from leaveout.cli import main
from leaveout.metrics import Coefficient, Contrast


def _lstsq_q(X, y, w, c, keep):
    r = np.sqrt(w[keep])
    beta = np.linalg.lstsq(X[keep] * r[:, None], y[keep] * r, rcond=None)[0]
    return float(c @ beta), beta


def _design(rng, n, d, binary=False):
    Z = rng.standard_normal((n, d - 1))
    if binary:
        Z[:, 0] = rng.random(n) < 0.5
    else:
        heavy = rng.random(n) < 0.1
        Z[heavy] *= rng.uniform(2, 5)
    return Z


def _brute_sign(P, kmax=4):
    """The true minimum number of rows that flip the sign (None above kmax), by enumeration."""
    for k in range(1, kmax + 1):
        T = np.array(list(itertools.combinations(range(P.n), k)))
        M = np.eye(k) - np.einsum("mkd,mld->mkl", P.Xt[T], P.Xt[T])
        ok = np.abs(np.linalg.det(M)) > 1e-10
        delta = np.einsum("mk,mk->m", P.z[T][ok], np.linalg.solve(M[ok], P.R[T][ok][..., None])[..., 0])
        if np.any(delta >= P.margin):
            return k
    return None


def _brute_t(P, kmax):
    """Min over |T| = k of the classical t statistic after removal, k = 1..kmax."""
    out = []
    for k in range(1, kmax + 1):
        out.append(min(P.t_after(T) for T in itertools.combinations(range(P.n), k)))
    return out


def test_removal_identity_equals_refits():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.standard_normal((30, 3)), np.ones(30)])
    y = X @ [0.5, -1, 0.2, 1] + rng.standard_normal(30)
    w = rng.uniform(0.5, 2, 30)
    c = np.array([1.0, 0.5, 0, 0])
    P = OLSProblem(X, y, c, weights=w)
    q0 = _lstsq_q(X, y, w, c, np.arange(30))[0]
    assert P.q == pytest.approx(abs(q0), rel=1e-12)
    for T in ([3], [0, 7], [1, 2, 5, 11, 29]):
        keep = np.setdiff1d(np.arange(30), T)
        q, beta = _lstsq_q(X, y, w, c, keep)
        delta, rss, v = P.removal(T)
        assert P.sign * (q0 - q) == pytest.approx(delta, abs=1e-10)
        res = (y[keep] - X[keep] @ beta) * np.sqrt(w[keep])
        assert rss == pytest.approx(res @ res, rel=1e-10)
        Xk = X[keep] * np.sqrt(w[keep])[:, None]
        assert v == pytest.approx(c @ np.linalg.solve(Xk.T @ Xk, c), rel=1e-10)
    i = 4
    assert P.removal([i])[0] == pytest.approx(P.z[i] * P.R[i] / (1 - P.h[i]), rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_triangle_bounds_dominate_every_small_set(seed):
    rng = np.random.default_rng(seed)
    n, d = 26, 2 + seed % 3
    X = np.column_stack([_design(rng, n, d), np.ones(n)])
    y = X[:, 0] * 0.4 + rng.standard_normal(n)
    P = OLSProblem(X, y, np.eye(d)[0])
    tb = triangle_bounds(P, 4, block=5)         # several row blocks
    for k in (1, 2, 3):
        sets = list(itertools.combinations(range(n), k))
        deltas = [P.removal(T)[0] for T in sets]
        lam = max(np.linalg.eigvalsh(P.hat_block(list(T), list(T))).max() for T in sets)
        assert tb.lam[k - 1] >= lam - 1e-12
        assert tb.NR[k - 1] >= max(np.linalg.norm(P.R[list(T)] @ P.Xt[list(T)]) for T in sets) - 1e-12
        if k <= 2:                               # exact for one and two rows
            assert tb.exact_delta[k] == pytest.approx(max(deltas), rel=1e-9)
            assert tb.exact_t[k] == pytest.approx(min(P.t_after(T) for T in sets), rel=1e-9)
        else:
            assert tb.U[k - 1] >= max(deltas) - 1e-12
            assert tb.t_lower(P, k) <= min(P.t_after(T) for T in sets) + 1e-12


def _cases(count, seed):
    """Random n = 40 problems whose true minimum is 1..4 (d = 2..4; a quarter of d = 2 binary,
    some weighted, some with a nonzero threshold)."""
    rng = np.random.default_rng(seed)
    while count:
        n, d = 40, int(rng.integers(2, 5))
        binary = d == 2 and rng.random() < 0.25
        Z = _design(rng, n, d, binary)
        y = Z @ rng.uniform(-0.5, 0.5, d - 1) + rng.standard_normal(n) * rng.uniform(0.5, 2)
        w = rng.uniform(0.5, 2, n) if (not binary and rng.random() < 0.2) else None
        value = float(rng.normal(0, 0.05)) if rng.random() < 0.2 else 0.0
        model = lo.GLM(family="squared", l2=0).fit(Z, y, sample_weight=w)
        if model.coef_[0] == value:
            continue
        P = OLSProblem.from_attribution(model, Coefficient(0), value)
        truth = _brute_sign(P)
        if truth is None:
            continue
        count -= 1
        yield model, value, truth, d, binary


@pytest.mark.parametrize("seed", range(4))
def test_certificate_brackets_the_true_minimum(seed):
    """lower <= true minimum <= upper on 4 x 50 cases; exact with one regressor."""
    seen = {2: 0, 3: 0, 4: 0}
    for model, value, truth, d, binary in _cases(50, 100 + seed):
        res = lo.audit(model, Coefficient(0), "sign", value=value, certify=True, max_fraction=0.5)
        assert res.reached, res
        assert res.lower <= truth <= res.k, (res.lower, truth, res.k, res.lower_method)
        if d == 2:
            assert res.lower == res.k == truth and res.certified_exact
        seen[d] += 1
    assert min(seen.values()) >= 5


def test_binary_closed_form_equals_the_pairs_mip_and_brute_force():
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(30):
        n = 40
        x = (rng.random(n) < 0.4).astype(float)
        y = 0.35 * x + rng.standard_normal(n)
        P = OLSProblem(np.column_stack([x, np.ones(n)]), y, np.array([1.0, 0.0]))
        truth = _brute_sign(P, 3)
        closed = binary_regressor(x, P.raw_y, np.ones(n))
        mip = pairs_mip(x, P.raw_y, np.ones(n), K=closed.lower)
        assert closed.lower == mip.lower
        assert P.flips(closed.witness) and len(closed.witness) == closed.lower
        if truth is not None:
            assert closed.lower == truth
            hits += 1
    assert hits >= 5
    # larger n: two independent exact methods agree
    x = (rng.random(150) < 0.5).astype(float)
    y = 0.3 * x + rng.standard_normal(150)
    P = OLSProblem(np.column_stack([x, np.ones(150)]), y, np.array([1.0, 0.0]))
    closed = binary_regressor(x, P.raw_y, np.ones(150))
    mip = pairs_mip(x, P.raw_y, np.ones(150), K=closed.lower)
    assert closed.lower >= 3
    assert mip.lower == closed.lower and P.flips(mip.witness)


def test_no_intercept_closed_form_against_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(10):
        x = rng.standard_normal(30)
        y = 0.3 * x + rng.standard_normal(30)
        model = lo.GLM(family="squared", l2=0, fit_intercept=False).fit(x[:, None], y)
        truth = _brute_sign(OLSProblem.from_attribution(model, Coefficient(0)))
        res = lo.audit(model, Coefficient(0), certify=True, max_fraction=0.5)
        assert res.lower_method == "exact (no intercept)"
        if truth is not None:
            assert res.lower == truth == res.k


def test_mip_answer_does_not_depend_on_a_larger_big_m():
    for model, value, truth, d, binary in _cases(8, 7):
        if d == 2:
            continue
        P = OLSProblem.from_attribution(model, Coefficient(0), value)
        tb = triangle_bounds(P, 4)
        K = int(np.sum(np.cumprod(tb.lam < 1)))
        if K < 1:
            continue
        a = bigm_mip(P, min(K, 4), tb.gamma(min(K, 4)))
        b = bigm_mip(P, min(K, 4), 10 * tb.gamma(min(K, 4)))
        assert a.lower == b.lower
        assert a.lower <= truth


def test_significance_certificate_below_the_brute_force_count():
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(40):
        n = 22
        X = np.column_stack([rng.standard_normal((n, 2)), np.ones(n)])
        y = X @ [rng.uniform(0.3, 0.8), 0.2, 0] + rng.standard_normal(n)
        model = lo.GLM(family="squared", l2=0).fit(X[:, :2], y)
        P = OLSProblem.from_attribution(model, Coefficient(0))
        if abs(P.q) / np.sqrt(P.rss / (n - 3) * P.a2) <= 1.96:
            continue
        ts = _brute_t(P, 3)
        truth = next((k + 1 for k, t in enumerate(ts) if abs(t) <= 1.96), None)
        se = np.sqrt(P.rss / (n - 3) * P.a2)
        cert = certify(model, Coefficient(0), Target("significance", Snapshot(P.q, se)), max_rows=3)
        assert truth is None or cert.lower <= truth
        assert cert.lower >= min(3, truth or 3)          # exact for one and two rows
        checked += 1
    assert checked >= 8


def test_invariances():
    rng = np.random.default_rng(2)
    Z = _design(rng, 40, 3)
    y = Z @ [0.3, -0.2] + rng.standard_normal(40)

    def lower(Z, y):
        m = lo.GLM(family="squared", l2=0).fit(Z, y)
        return lo.audit(m, Coefficient(0), certify=True, max_fraction=0.5).lower

    base = lower(Z, y)
    assert lower(Z, 7.5 * y) == base
    assert lower(Z, -y) == base
    assert lower(Z * [3.0, 0.1], y) == base
    Zr = Z.copy()
    Zr[:, 1] = 2 * Z[:, 1] + Z[:, 0]        # the regressor of interest stays, the control recombines
    assert lower(Zr, y) == lower(np.column_stack([Z[:, 0], Zr[:, 1]]), y)


def test_contrast_and_opposite_and_refusals():
    rng = np.random.default_rng(4)
    Z = _design(rng, 40, 3)
    y = Z @ [0.5, 0.1] + rng.standard_normal(40)
    m = lo.GLM(family="squared", l2=0).fit(pd.DataFrame(Z, columns=["a", "b"]), y)
    res = lo.audit(m, Contrast({"a": 1, "b": -1}), certify=True, max_fraction=0.5, time_limit=3)
    P = OLSProblem.from_attribution(m, Contrast({"a": 1, "b": -1}))
    # the bound is proven: brute force finds no flip with fewer rows, and none up to 4 at all
    assert res.lower >= 3 and _brute_sign(P, res.lower - 1) is None and _brute_sign(P, 4) is None
    assert res.reached and res.lower <= res.k
    kept = np.setdiff1d(np.arange(40), res.positions)           # the witness flips the contrast
    beta = np.linalg.lstsq(np.column_stack([Z[kept], np.ones(kept.size)]), y[kept], rcond=None)[0]
    assert np.sign(beta[0] - beta[1]) != np.sign(m.coef_[0] - m.coef_[1])
    opp = lo.audit(m, Coefficient("a"), "opposite", certify=True, max_fraction=0.5, time_limit=3)
    assert "sign bound" in opp.lower_method and opp.lower <= opp.k
    hc = lo.audit(m, Coefficient("a"), "significance", se="HC1", certify=True, max_fraction=0.5)
    assert hc.lower is None and "no certificate for this target" in hc.certificate_note
    with pytest.raises(ValueError, match="family='squared'"):
        lo.audit(lo.GLM(l2=1.0).fit(Z, (y > 0).astype(int)), Coefficient(0), certify=True)
    with pytest.raises(ValueError, match="l2=0"):
        lo.audit(lo.GLM(family="squared", l2=1.0).fit(Z, y), Coefficient(0), certify=True)
    with pytest.raises(ValueError, match="certify_method"):
        lo.audit(m, Coefficient("a"), certify=True, certify_method="magic")


def test_time_limit_is_honoured_and_the_bound_stays_valid():
    # a contrast on a small d = 3 problem whose big-M MIP does not finish in 2 s
    rng = np.random.default_rng(4)
    Z = _design(rng, 40, 3)
    y = Z @ [0.5, 0.1] + rng.standard_normal(40)
    m = lo.GLM(family="squared", l2=0).fit(pd.DataFrame(Z, columns=["a", "b"]), y)
    q = Contrast({"a": 1, "b": -1})
    res = lo.audit(m, q, certify=True, certify_method="exact", time_limit=2.0, max_fraction=0.5)
    assert res.certificate_note == ("time limit hit: the mixed-integer program stopped before proving its optimum; "
                                    "the lower bound is its proven dual bound (a longer --time-limit may raise it)")
    assert res.lower_method.startswith("dual bound at the time limit (MIP") and not res.certified_exact
    assert res.certificate_seconds < 2.0 + 2.5
    P = OLSProblem.from_attribution(m, q)
    assert res.lower >= 2 and _brute_sign(P, res.lower - 1) is None     # a valid bound: no smaller flip
    assert res.lower < res.k


def test_leverage_one_rows_are_left_out_exactly():
    """A category with one row has leverage 1: no flip contains it, and without it the bounds
    are those of the problem where that row and its column are gone."""
    rng = np.random.default_rng(6)
    n = 60
    Z = np.column_stack([rng.standard_normal(n), np.zeros(n)])
    Z[7, 1] = 1.0
    y = 0.4 * Z[:, 0] + rng.standard_normal(n)
    P = OLSProblem(np.column_stack([Z, np.ones(n)]), y, np.array([1.0, 0, 0]))
    assert P.h[7] == pytest.approx(1.0) and 7 not in P.pool
    keep = np.setdiff1d(np.arange(n), [7])
    Q = OLSProblem(np.column_stack([Z[keep, 0], np.ones(n - 1)]), y[keep], np.array([1.0, 0]))
    a, b = triangle_bounds(P, 6), triangle_bounds(Q, 6)
    assert np.allclose(a.U, b.U) and a.exact_delta[2] == pytest.approx(b.exact_delta[2])


def test_attribution_audit_method_and_cli(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(50)
    y = 0.35 * x + rng.standard_normal(50)
    path = tmp_path / "d.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(50)], "x": x, "y": y}).to_csv(path, index=False)
    att = lo.Attribution(lo.GLM.from_formula("y ~ x", pd.read_csv(path), family="squared", l2=0))
    res = att.audit(Coefficient("x"), certify=True, max_fraction=0.5)
    assert res.certified_exact and res.lower == res.k
    import matplotlib
    matplotlib.use("Agg")
    labels = [t.get_text() for t in res.plot().axes[0].get_legend().get_texts()]
    assert (f"certified: fewer than {res.lower} rows cannot" in labels) == (res.lower > 1)
    assert main(["audit", str(path), "--formula", "y ~ x", "--family", "squared", "--l2", "0", "--id", "id",
                 "--coef", "x", "--certify", "--max-fraction", "0.5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["lower"] == res.lower and data["certified_exact"] is True
    assert data["lower_method"].startswith("exact")
    # a table is fitted unpenalised unless --l2 says otherwise: the same certificate without --l2
    assert main(["audit", str(path), "--formula", "y ~ x", "--family", "squared", "--id", "id",
                 "--coef", "x", "--certify", "--max-fraction", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lower"] == res.lower
    assert main(["audit", str(path), "--formula", "y ~ x", "--family", "squared", "--l2", "1", "--id", "id",
                 "--coef", "x", "--certify"]) == 1
    err = capsys.readouterr().err
    assert "--l2 0" in err and "Traceback" not in err


def test_ames_exact_three_rows():
    path = DATASETS / "amip" / "ames_poolarea_n340.csv"
    if not path.is_file():
        pytest.skip(f"{path} not available (needs ../shared/datasets)")
    m = lo.GLM.from_formula("SalePrice ~ PoolArea", pd.read_csv(path), family="squared", l2=0)
    res = lo.audit(m, Coefficient("PoolArea"), certify=True, certify_method="exact", max_fraction=0.5)
    assert res.lower == res.k == 3 and res.certified_exact
    assert sorted(res.positions) == [334, 337, 339]


def test_two_row_category_fold_is_exact():
    """A dummy on two rows folds into one row: same estimate, same classical t, the same
    true minimum (brute force on both problems), and the bound no longer stops at 2."""
    rng = np.random.default_rng(8)
    checked = 0
    for _ in range(12):
        n = 30
        Z = np.column_stack([rng.standard_normal((n, 2)), np.zeros(n)])
        Z[[4, 9], 2] = [1.0, 2.5]
        w = rng.uniform(0.5, 2, n)
        y = Z @ [0.35, 0.2, 1.0] + rng.standard_normal(n)
        m = lo.GLM(family="squared", l2=0).fit(Z, y, sample_weight=w)
        folded = OLSProblem.from_attribution(m, Coefficient(0))
        assert folded.cells == [(4, 9)] and folded.n == n - 1 and folded.d == 3
        full = OLSProblem(np.column_stack([Z, np.ones(n)]), y, np.eye(4)[0], weights=w)
        assert folded.q == pytest.approx(full.q, rel=1e-10)
        assert folded.t_after([]) == pytest.approx(full.t_after([]), rel=1e-10)
        i = int(np.flatnonzero(folded.positions == 4)[-1])        # the folded row stands for 4 (or 9)
        assert folded.removal([i])[0] == pytest.approx(full.removal([4])[0], rel=1e-9)
        assert folded.removal([i])[0] == pytest.approx(full.removal([9])[0], rel=1e-9)
        assert full.removal([4, 9]) is None                       # both: singular, never a flip
        truth = _brute_sign(full, 3)
        assert truth == _brute_sign(folded, 3)
        tb = triangle_bounds(folded, 4)
        assert tb.lam[1] < 1
        res = lo.audit(m, Coefficient(0), certify=True, max_fraction=0.5, time_limit=2)
        if truth is not None:
            assert res.lower <= truth <= res.k
            checked += 1
    assert checked >= 3


def _freq_t(X, y, w, keep):
    """Classical t of the first coefficient under frequency weights (sigma^2 = RSS_w / (sum w - d)),
    by weighted lstsq on the kept rows."""
    r = np.sqrt(w[keep])
    beta = np.linalg.lstsq(X[keep] * r[:, None], y[keep] * r, rcond=None)[0]
    rss = float(w[keep] @ (y[keep] - X[keep] @ beta) ** 2)
    cov = np.linalg.inv((X[keep] * w[keep, None]).T @ X[keep])
    return beta[0] / np.sqrt(rss / (w[keep].sum() - X.shape[1]) * cov[0, 0])


def test_frequency_weight_significance_certificate_below_brute_force():
    """Frequency weights: the degrees of freedom are sum w - d, less the weight removed; the
    certificate stays below the brute-force count and the audit's classical SE is the
    frequency one (statsmodels GLM freq_weights)."""
    rng = np.random.default_rng(21)
    checked = 0
    for _ in range(30):
        n = 14
        X = np.column_stack([rng.standard_normal(n), np.ones(n)])
        y = X @ [rng.uniform(0.4, 0.9), 0.1] + rng.standard_normal(n)
        w = rng.uniform(0.3, 1.2, n) if checked % 2 else rng.integers(1, 5, n).astype(float)
        t0 = _freq_t(X, y, w, np.arange(n))
        if abs(t0) <= 1.96:
            continue
        truth, min_t = None, []
        for k in (1, 2, 3):
            ts = [np.sign(t0) * _freq_t(X, y, w, np.setdiff1d(np.arange(n), T))
                  for T in itertools.combinations(range(n), k)]
            min_t.append(min(ts))
            if truth is None and min_t[-1] <= 1.96:
                truth = k
        model = lo.GLM(family="squared", l2=0, weight_kind="frequency").fit(X[:, :1], y, sample_weight=w)
        se = standard_error(lo.Attribution(model), [1.0, 0.0])
        assert t0 == pytest.approx(model.coef_[0] / se, rel=1e-9)
        cert = certify(model, Coefficient(0), Target("significance", Snapshot(float(model.coef_[0]), se)),
                       max_rows=3)
        assert truth is None or cert.lower <= truth
        P = OLSProblem.from_attribution(model, Coefficient(0))
        tb = triangle_bounds(P, 3)
        for k in (1, 2, 3):          # a bound where it matters: a positive t (a negative one certifies nothing)
            assert tb.t_lower(P, k) <= max(min_t[k - 1], 0.0) + 1e-9
        checked += 1
    assert checked >= 8


def test_triangle_bounds_equal_their_dense_formula():
    """The blocked pass against a dense twin of every piece: A_k (the k largest z_i R_i), B_k
    (the refined triangle sums of 1/2 (z_i R_l + R_i z_l) H_il), N^z_k, N^R_k, lambda_k (the
    smallest of the Frobenius, Gershgorin and hypercontractive bounds) and
    U_k = A_k + B_k + lambda_k / (1 - lambda_k) N^z_k N^R_k."""
    from leaveout.audit.bounds import _ALPHA
    rng = np.random.default_rng(12)
    n, d = 30, 3
    X = np.column_stack([_design(rng, n, d), np.ones(n)])
    y = X[:, 0] * 1.5 + rng.standard_normal(n)
    P = OLSProblem(X, y, np.eye(d)[0])
    K = 5
    tb = triangle_bounds(P, K, block=7)            # several row blocks
    H, z, R, h = P.Xt @ P.Xt.T, P.z, P.R, P.h
    checked_t = 0

    def top_sums(G, k):
        """sum of the k largest of (G_ii + the k - 1 largest off-diagonal entries of row i)"""
        off = G - np.diag(np.diag(G))
        np.fill_diagonal(off, -np.inf)
        rows = np.diag(G) + np.array([np.sort(r)[::-1][:k - 1].sum() for r in off])
        return np.sort(rows)[::-1][:k].sum()

    chc = (1.0 / (_ALPHA + (1 - _ALPHA) * d) - 1.0 / _ALPHA) / d
    Gs = {"zR": 0.5 * (np.outer(z, R) + np.outer(R, z)) * H, "zz": np.outer(z, z) * H, "RR": np.outer(R, R) * H,
          "HH": H * H, "hc": H * H / _ALPHA + chc * np.outer(h, h)}
    for k in range(1, K + 1):
        A = np.sort(z * R)[::-1][:k].sum()
        B = top_sums(Gs["zR"], k)
        Nz, NR = np.sqrt(top_sums(Gs["zz"], k)), np.sqrt(top_sums(Gs["RR"], k))
        absH = np.abs(H)
        off = absH - np.diag(np.diag(absH))
        gersh = max(absH[i, i] + np.sort(off[i])[::-1][:k - 1].sum() for i in range(n))
        lam = min(np.sqrt(top_sums(Gs["HH"], k)), np.sqrt(top_sums(Gs["hc"], k)), gersh)
        assert tb.lam[k - 1] == pytest.approx(lam, rel=1e-10)
        assert tb.Nz[k - 1] == pytest.approx(Nz, rel=1e-10) and tb.NR[k - 1] == pytest.approx(NR, rel=1e-10)
        want = A + B + lam / (1 - lam) * Nz * NR if lam < 1 else np.inf
        assert tb.U[k - 1] == pytest.approx(want, rel=1e-10)
        if k > 2 and lam < 1 and want < P.margin:
            # t after removing k rows >= (margin - U) sqrt((n - k - d)(1 - lambda) / (RSS |a|^2)):
            # RSS(T) <= RSS and c^T (X_-T^T X_-T)^{-1} c <= |a|^2 / (1 - lambda)
            t_low = (P.margin - want) * np.sqrt((n - k - d) * (1 - lam) / (P.rss * P.a2))
            assert tb.t_lower(P, k) == pytest.approx(t_low, rel=1e-10)
            checked_t += 1
    assert checked_t >= 2


def test_significance_certificate_reports_its_pieces_and_a_time_out():
    """What a significance certificate says: the method, the size k where the bound stops and
    U_k, lambda_k there (the triangle bounds' own values); and the answer when the time limit
    passes before the bounds finish (lower = 1, said so), for sign and significance."""
    rng = np.random.default_rng(5)
    n = 60
    Z = _design(rng, n, 3)
    y = Z @ [0.9, 0.2] + rng.standard_normal(n)
    m = lo.GLM(family="squared", l2=0).fit(Z, y)
    se = standard_error(lo.Attribution(m), [1.0, 0.0, 0.0])
    tgt = Target("significance", Snapshot(float(m.coef_[0]), se))
    assert tgt.significant
    cert = certify(m, Coefficient(0), tgt, max_rows=6)
    assert cert.method == "rubinstein-hopkins (triangle bounds, classical SE)" and not cert.optimal
    P = OLSProblem.from_attribution(m, Coefficient(0))
    tb = triangle_bounds(P, 6)
    k = min(cert.lower, len(tb.k))
    assert cert.details == {"k": k, "bound": pytest.approx(float(tb.U[k - 1]), rel=1e-12),
                            "lambda": pytest.approx(float(tb.lam[k - 1]), rel=1e-12)}
    assert all(tb.t_lower(P, j) > tgt.z for j in range(1, cert.lower))       # certified below lower
    assert not tb.t_lower(P, cert.lower) > tgt.z
    hc = certify(m, Coefficient(0), tgt, se="HC1")
    assert hc.lower is None and hc.note == ("no certificate for this target: significance with se='HC1' "
                                            "(certified for the classical standard error only)")
    weak = Target("significance", Snapshot(float(m.coef_[0]), 10 * se))
    assert not weak.significant
    none = certify(m, Coefficient(0), weak)
    assert none.lower is None and none.method is None and "non-significant estimate gaining" in none.note
    for target in (tgt, Target("sign", Snapshot(float(m.coef_[0])))):
        late = certify(m, Coefficient(0), target, max_rows=6, method="bound", time_limit=1e-12)
        assert late.lower == 1 and late.method == "trivial"
        assert late.note == "time limit reached before the triangle bounds finished"


def test_t_lower_and_the_certificate_at_their_edges():
    """The t lower bound is -inf exactly where it certifies nothing (lambda_k >= 1, U_k at or
    above the margin, no degrees of freedom left), finite just inside; a bound that certifies
    every size it computed answers k_max + 1."""
    from types import SimpleNamespace
    rng = np.random.default_rng(13)
    n, d = 60, 3
    X = np.column_stack([_design(rng, n, d), np.ones(n)])
    y = X[:, 0] * 1.5 + rng.standard_normal(n)
    P = OLSProblem(X, y, np.eye(d)[0])
    tb = triangle_bounds(P, 4)
    k = 3
    U, lam = tb.U[k - 1], tb.lam[k - 1]
    assert lam < 1 and np.isfinite(U)

    def fake(margin, dof):
        return SimpleNamespace(margin=margin, rss=P.rss, a2=P.a2, dof=lambda _k: dof)

    assert tb.t_lower(fake(U, 10), k) == -np.inf                       # U_k = margin
    inside = tb.t_lower(fake(U * (1 + 1e-6) + 1e-12, 10), k)
    assert np.isfinite(inside) and inside > 0
    assert tb.t_lower(fake(2 * U + 1, 0), k) == -np.inf                # no degrees of freedom
    one = tb.t_lower(fake(2 * U + 1, 1), k)
    assert one == pytest.approx((U + 1) * np.sqrt((1 - lam) / (P.rss * P.a2)), rel=1e-12)
    # a strong effect certified at every size computed: the answer is k_max + 1
    assert all(tb.t_lower(P, j) > 1.96 for j in tb.k)
    assert tb.significance_certificate(P, 1.96) == int(tb.k[-1]) + 1 == 5
    assert tb.sign_certificate(P.margin) == 5


def test_flips_is_the_refit_crossing_the_threshold():
    """OLSProblem.flips(T): the refit without T moves the quantity to the threshold or past it,
    from lstsq refits here, for every set of up to two rows."""
    rng = np.random.default_rng(70)
    n = 10
    X = np.column_stack([rng.standard_normal(n), np.ones(n)])
    y = 0.3 * X[:, 0] + rng.standard_normal(n)
    b0 = np.linalg.lstsq(X, y, rcond=None)[0][0]
    P = OLSProblem(X, y, np.array([1.0, 0.0]))
    seen = set()
    for k in (1, 2):
        for T in itertools.combinations(range(n), k):
            keep = np.setdiff1d(np.arange(n), T)
            b = np.linalg.lstsq(X[keep], y[keep], rcond=None)[0][0]
            assert P.flips(list(T)) == bool(np.sign(b) != np.sign(b0)), T
            seen.add(P.flips(list(T)))
    assert seen == {True, False}
