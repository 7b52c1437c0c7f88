"""Every field of the exact methods' answers (bound, witness, label, optimality, status)
against brute force over all subsets: what a certificate reports is what it proved."""

import importlib
import itertools

import numpy as np
import pytest

from leaveout.audit import exact
from leaveout.audit.bounds import triangle_bounds
from leaveout.audit.ols import OLSProblem


def _slope(x, y, s, keep, intercept=True):
    X = np.column_stack([x[keep], np.ones(len(keep))]) if intercept else x[keep][:, None]
    w = np.sqrt(s[keep])
    if len(keep) <= X.shape[1] or np.linalg.matrix_rank(X * w[:, None]) < X.shape[1]:
        return None
    return np.linalg.lstsq(X * w[:, None], y[keep] * w, rcond=None)[0][0]


def _minimum(x, y, s, intercept=True, kmax=None):
    n = x.size
    b0 = _slope(x, y, s, np.arange(n), intercept)
    for k in range(1, (kmax or n - 1) + 1):
        for T in itertools.combinations(range(n), k):
            b = _slope(x, y, s, np.setdiff1d(np.arange(n), T), intercept)
            if b is not None and np.sign(b) != np.sign(b0):
                return k
    return None


def _flips(x, y, s, T, intercept=True):
    n = x.size
    return np.sign(_slope(x, y, s, np.setdiff1d(np.arange(n), T), intercept)) != np.sign(
        _slope(x, y, s, np.arange(n), intercept))


@pytest.mark.parametrize("seed", range(4))
def test_binary_regressor_answer_in_full(seed):
    rng = np.random.default_rng(seed)
    x = np.repeat([0.0, 1.0], [6, 5])
    y = 0.5 * x + rng.normal(size=x.size)
    y = y if y[x == 1].mean() > y[x == 0].mean() else -y        # a positive slope to flip
    s = np.ones(x.size)
    r = exact.binary_regressor(x, y, s)
    assert (r.lower, r.optimal, r.method, r.status) == (_minimum(x, y, s), True, "exact (binary regressor)", "")
    assert len(r.witness) == r.lower and _flips(x, y, s, r.witness)


def test_binary_regressor_when_no_flip_keeps_both_groups_and_when_it_does_not_apply():
    x = np.repeat([0.0, 1.0], [4, 3])
    y = np.r_[np.arange(4.0), 10 + np.arange(3.0)]           # every high y above every low one
    r = exact.binary_regressor(x, y, np.ones(7))
    assert (r.lower, r.witness, r.optimal, r.status) == (6, None, False, "no flip keeps both groups")
    assert r.method == "exact (binary regressor)"
    assert _minimum(x, y, np.ones(7)) is None                   # brute force: no subset flips it
    assert exact.binary_regressor(x, y, np.r_[np.ones(6), 2.0]) is None        # uneven weights
    assert exact.binary_regressor(np.arange(7.0), y, np.ones(7)) is None        # not two-valued


@pytest.mark.parametrize("seed", range(3))
def test_no_intercept_answer_in_full(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=9)
    y = 0.3 * x + rng.normal(size=9)
    y = y if x @ y > 0 else -y
    s = rng.uniform(0.5, 2, 9)
    r = exact.no_intercept(x, y, s)
    truth = _minimum(x, y, s, intercept=False)
    if truth is None:
        assert (r.lower, r.witness, r.optimal) == (9, None, False)
    else:
        assert (r.lower, r.optimal, r.method) == (truth, True, "exact (no intercept)")
        assert len(r.witness) == truth and _flips(x, y, s, r.witness, intercept=False)
    x, y = np.abs(x) + 0.1, np.abs(y) + 0.1                    # every term positive: nothing flips
    r = exact.no_intercept(x, y, s)
    assert (r.lower, r.witness, r.optimal, r.method) == (9, None, False, "exact (no intercept)")


@pytest.mark.parametrize("seed", range(3))
def test_pairs_mip_answer_in_full(seed):
    rng = np.random.default_rng(seed + 10)
    n = 10
    x = rng.normal(size=n)
    y = 0.6 * x + rng.normal(size=n)
    y = y if np.polyfit(x, y, 1)[0] > 0 else -y
    s = rng.uniform(0.5, 2, n)
    truth = _minimum(x, y, s)
    r = exact.pairs_mip(x, y, s, K=n - 3)
    assert (r.lower, r.optimal, r.method, r.status) == (truth, True, "exact (pairs MIP, HiGHS)", "optimal")
    assert len(r.witness) == truth and _flips(x, y, s, r.witness)
    if truth > 1:                                              # below the minimum: proven infeasible
        r = exact.pairs_mip(x, y, s, K=truth - 1)
        assert (r.lower, r.witness, r.optimal, r.status) == (truth, None, False, "infeasible")
    assert exact.pairs_mip(x, y, s, K=n - 3, max_pairs=5) is None


@pytest.mark.parametrize("seed", range(3))
def test_bigm_mip_answer_in_full(seed):
    rng = np.random.default_rng(seed + 20)
    n, K = 16, 3
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), np.ones(n)])
    y = X @ [0.3, 0.2, 0.0] + rng.normal(size=n)
    P = OLSProblem(X, y, np.array([1.0, 0.0, 0.0]))

    def beta0(keep):
        return np.linalg.lstsq(X[keep], y[keep], rcond=None)[0][0]

    b0 = beta0(np.arange(n))
    truth = None
    for k in range(1, K + 1):
        if any(np.linalg.matrix_rank(X[np.setdiff1d(np.arange(n), T)]) == 3
               and np.sign(beta0(np.setdiff1d(np.arange(n), T))) != np.sign(b0)
               for T in itertools.combinations(range(n), k)):
            truth = k
            break
    gamma = triangle_bounds(P, K).gamma(K)
    assert np.isfinite(gamma)
    r = exact.bigm_mip(P, K, gamma)
    assert r.method == "exact (MIP, HiGHS, d=3)"
    if truth is None:
        assert (r.lower, r.witness, r.optimal, r.status) == (K + 1, None, False, "infeasible")
    else:
        assert (r.lower, r.optimal, r.status) == (truth, True, "optimal")
        assert np.sign(beta0(np.setdiff1d(np.arange(n), r.witness))) != np.sign(b0)
    assert exact.bigm_mip(P, K, np.inf) is None


def _certify(x, y, method, upper=None, intercept=True, weights=None):
    import leaveout as lo
    from leaveout.audit.certify import certify
    from leaveout.audit.targets import Snapshot, Target
    from leaveout.metrics import Coefficient
    m = lo.GLM("squared", l2=0, fit_intercept=intercept).fit(x[:, None], y, sample_weight=weights)
    target = Target("sign", Snapshot(float(m.theta_[0])))
    return certify(lo.Attribution(m), Coefficient(0), target, upper=upper, method=method)


def test_certify_routes_and_reports_each_method_in_full():
    """What certify() returns for a simple regression under each method: the closed form
    (auto), the triangle bounds alone (bound), the pairs MIP (exact): label, bound,
    optimality, witness and note, each bound below or at the brute-force minimum."""
    rng = np.random.default_rng(3)
    # a two-valued regressor: auto gives the closed form, with its witness
    x = np.repeat([0.0, 1.0], [7, 6])
    y = 0.8 * x + rng.normal(size=13)
    y = y if y[x == 1].mean() > y[x == 0].mean() else -y
    truth = _minimum(x, y, np.ones(13))
    c = _certify(x, y, "auto")
    assert (c.lower, c.method, c.optimal, c.note) == (truth, "exact (binary regressor)", True, None)
    assert _flips(x, y, np.ones(13), c.witness)
    b = _certify(x, y, "bound")
    assert b.method == "rubinstein-hopkins (triangle bounds)" and b.witness is None and not b.optimal
    assert 1 <= b.lower <= truth and b.details["k"] == min(b.lower, b.details["k"]) and "lambda" in b.details
    # separated groups: the closed form says so in its note
    ys = np.r_[np.arange(7.0), 20 + np.arange(6.0)]
    c = _certify(x, ys, "auto")
    assert (c.lower, c.optimal, c.witness, c.note) == (12, False, None, "no flip keeps both groups")
    # a continuous regressor: exact runs the pairs MIP; auto stops at the bound when it passes K
    xc = rng.normal(size=12)
    yc = 0.5 * xc + rng.normal(size=12)
    yc = yc if np.polyfit(xc, yc, 1)[0] > 0 else -yc
    truth = _minimum(xc, yc, np.ones(12))
    c = _certify(xc, yc, "exact")
    assert (c.lower, c.method, c.optimal) == (truth, "exact (pairs MIP, HiGHS)", True)
    assert _flips(xc, yc, np.ones(12), c.witness) and c.details["k"] >= 1
    # given the found count as the upper end (K = truth - 1), auto proves nothing smaller exists:
    # the bound passes K, or the MIP finds no set of at most K rows
    a = _certify(xc, yc, "auto", upper=truth)
    assert a.lower == truth and a.method in ("rubinstein-hopkins (triangle bounds)", "exact (pairs MIP, HiGHS)")
    # without an intercept the closed form answers, weights included
    w = rng.uniform(0.5, 2, 12)
    truth = _minimum(xc, yc, w, intercept=False)
    c = _certify(xc, yc, "auto", intercept=False, weights=w)
    assert c.method == "exact (no intercept)"
    assert c.lower == (truth if truth is not None else 12)


def test_significance_certificate_reported_in_full():
    """The classical-SE significance certificate: its label, no optimality claim, the bound
    below the brute-force minimum, and the refusals' notes word for word."""
    import leaveout as lo
    from leaveout.audit.certify import certify
    from leaveout.audit.targets import Snapshot, Target
    from leaveout.audit.se import standard_error
    from leaveout.metrics import Coefficient
    rng = np.random.default_rng(2)
    n = 14
    x = rng.normal(size=n)
    y = 0.9 * x + rng.normal(size=n)
    m = lo.GLM("squared", l2=0).fit(x[:, None], y)
    att = lo.Attribution(m)
    se = standard_error(att, np.array([1.0, 0.0]))
    target = Target("significance", Snapshot(float(m.theta_[0]), se))
    assert target.significant
    c = certify(att, Coefficient(0), target, se="nonrobust", max_rows=6)
    assert c.method == "rubinstein-hopkins (triangle bounds, classical SE)" and c.optimal is False
    assert c.witness is None and set(c.details) == {"k", "bound", "lambda"}
    X = np.column_stack([x, np.ones(n)])

    def t_stat(keep):
        b, res = np.linalg.lstsq(X[keep], y[keep], rcond=None)[:2]
        e = y[keep] - X[keep] @ b
        V = float(e @ e) / (len(keep) - 2) * np.linalg.inv(X[keep].T @ X[keep])
        return b[0] / np.sqrt(V[0, 0])

    truth = next((k for k in range(1, 7) for T in itertools.combinations(range(n), k)
                  if abs(t_stat(np.setdiff1d(np.arange(n), T))) <= target.z), None)
    assert 1 <= c.lower <= (truth if truth is not None else 7)
    hc = certify(att, Coefficient(0), target, se="HC1", max_rows=6)
    assert (hc.lower, hc.method) == (None, None)
    assert hc.note == ("no certificate for this target: significance with se='HC1' (certified for the classical "
                       "standard error only)")
    weak = Target("significance", Snapshot(float(m.theta_[0]), abs(float(m.theta_[0]))))     # t = 1
    gain = certify(att, Coefficient(0), weak, se="nonrobust", max_rows=6)
    assert (gain.lower, gain.note) == (None, "no certificate for this target: a non-significant estimate "
                                             "gaining significance")


def test_certify_on_quantities_the_closed_forms_must_not_take():
    """Certificates for a threshold other than 0 on a scaled slope (the closed form shifts
    y by value / c), for a contrast that includes the intercept, for the intercept alone,
    and with two regressors: never above the brute-force minimum, equal to it where a closed
    form answers."""
    import leaveout as lo
    from leaveout.audit.certify import certify
    from leaveout.audit.targets import Snapshot, Target
    from leaveout.metrics import Coefficient, Contrast
    rng = np.random.default_rng(6)
    n = 11
    x = rng.normal(size=n)
    x2 = rng.normal(size=n)
    y = 0.8 * x + 0.5 + rng.normal(size=n) * 0.8

    def brute(X, c, value, y):
        q0 = np.linalg.lstsq(X, y, rcond=None)[0] @ c - value
        for k in range(1, n - X.shape[1] + 1):                 # every subset that leaves a fit
            for T in itertools.combinations(range(n), k):
                keep = np.setdiff1d(np.arange(n), T)
                if np.linalg.matrix_rank(X[keep]) < X.shape[1]:
                    continue
                if np.sign(np.linalg.lstsq(X[keep], y[keep], rcond=None)[0] @ c - value) != np.sign(q0):
                    return k
        return None

    xb = (x > 0).astype(float)
    b_no = 2 * float(x @ y / (x @ x))                    # 2 * slope through the origin
    cases = [
        (np.column_stack([x]), False, Contrast({0: 2.0}), 0.7, True),               # no intercept, c = 2
        (np.column_stack([x]), False, Contrast({0: 2.0}), 0.6 * b_no, True),        # ... a flip exists
        (np.column_stack([x, x2]), False, Coefficient(0), 0.0, False),              # two, no intercept
        (np.column_stack([x, x2]), True, Coefficient("intercept"), 0.0, False),
        (np.column_stack([x]), True, Contrast({0: 2.0}), 0.9, False),               # pairs MIP / bound
        (np.column_stack([x]), True, Contrast({0: 1.0, "intercept": 1.0}), 0.0, False),
        (np.column_stack([x]), True, Coefficient("intercept"), 0.0, False),
        (np.column_stack([x, x2]), True, Coefficient(0), 0.0, False),
    ]
    yb = 0.8 * xb + rng.normal(size=n) * 0.5              # a two-valued regressor, c = 2, value != 0
    b_bin = 2 * np.polyfit(xb, yb, 1)[0]
    for X, intercept, q, value, closed in cases + [(xb[:, None], True, Contrast({0: 2.0}), 0.7 * b_bin, "binary")]:
        yy = yb if closed == "binary" else y
        m = lo.GLM("squared", l2=0, fit_intercept=intercept).fit(X, yy)
        att = lo.Attribution(m)
        c = np.asarray(q.gradient(m, m.theta_))
        Xf = np.column_stack([X, np.ones(n)]) if intercept else X
        truth = brute(Xf, c, value, yy)
        target = Target("sign", Snapshot(float(c @ m.theta_)), value=value)
        cert = certify(att, q, target, method="auto", max_rows=5, value=value)
        assert cert.lower is not None and cert.lower <= (truth if truth is not None else n), (q.name, value)
        if closed == "binary":
            assert cert.method == "exact (binary regressor)" and truth is not None and cert.lower == truth
        elif closed:
            assert cert.method == "exact (no intercept)" and cert.lower == (truth if truth is not None else n)


def test_bigm_mip_finds_a_single_row():
    """One outlier carries the slope: the big-M MIP's default lower end lets it prove 1."""
    rng = np.random.default_rng(30)
    n = 16
    x = rng.normal(size=n)
    y = -0.1 * x + rng.normal(size=n) * 0.3
    x[0], y[0] = 4.0, 6.0                                   # the outlier makes the slope positive
    X = np.column_stack([x, rng.normal(size=n), np.ones(n)])
    P = OLSProblem(X, y, np.array([1.0, 0.0, 0.0]))
    assert np.linalg.lstsq(X[1:], y[1:], rcond=None)[0][0] < 0 < np.linalg.lstsq(X, y, rcond=None)[0][0]
    r = exact.bigm_mip(P, 1, triangle_bounds(P, 1).gamma(1))
    assert (r.lower, r.witness, r.optimal, r.status) == (1, [0], True, "optimal")


def test_opposite_target_is_certified_by_the_sign_bound_and_says_so():
    """A significant estimate of the other sign needs a flip first: the certificate is the
    sign bound, labelled as such, with no optimality or witness claimed."""
    import leaveout as lo
    from leaveout.audit.certify import certify
    from leaveout.audit.se import standard_error
    from leaveout.audit.targets import Snapshot, Target
    from leaveout.metrics import Coefficient
    rng = np.random.default_rng(9)
    x = np.repeat([0.0, 1.0], [8, 7])
    y = 0.9 * x + rng.normal(size=15) * 0.6
    m = lo.GLM("squared", l2=0).fit(x[:, None], y)
    att = lo.Attribution(m)
    snap = Snapshot(float(m.theta_[0]), standard_error(att, np.array([1.0, 0.0])))
    sign = certify(att, Coefficient(0), Target("sign", snap), max_rows=7)
    opp = certify(att, Coefficient(0), Target("opposite", snap), max_rows=7)
    assert opp.lower == sign.lower and sign.optimal and sign.witness
    assert opp.method == sign.method + " (sign bound: a significant opposite sign needs a flip)"
    assert opp.optimal is False and opp.witness is None


def _problem(seed, two=False):
    rng = np.random.default_rng(seed)
    n = 12
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    y = y if np.polyfit(x, y, 1)[0] > 0 else -y
    X = np.column_stack([x, rng.normal(size=n)]) if two else x[:, None]
    return X, y


def _cert(X, y, method, upper=None):
    import leaveout as lo
    from leaveout.audit.certify import certify
    from leaveout.audit.targets import Snapshot, Target
    from leaveout.metrics import Coefficient
    m = lo.GLM("squared", l2=0).fit(X, y)
    return certify(lo.Attribution(m), Coefficient(0), Target("sign", Snapshot(float(m.theta_[0]))),
                   upper=upper, method=method)


def _brute_min(X, y, kmax):
    """The fewest rows whose removal flips the first coefficient's sign (None up to kmax)."""
    A = np.column_stack([X, np.ones(len(y))])
    b0 = np.linalg.lstsq(A, y, rcond=None)[0][0]
    for k in range(1, kmax + 1):
        for T in itertools.combinations(range(len(y)), k):
            keep = np.setdiff1d(np.arange(len(y)), T)
            if np.linalg.matrix_rank(A[keep]) == A.shape[1] and np.sign(np.linalg.lstsq(A[keep], y[keep], rcond=None)[0][0]) != np.sign(b0):
                return k
    return None


TRIANGLE = "rubinstein-hopkins (triangle bounds)"


def test_pairs_route_against_the_upper_end():
    """One continuous regressor (triangle bound 3, true minimum 5): where the found count's
    upper end K sits against the bound decides whether the pairs MIP runs."""
    X, y = _problem(6)
    assert _brute_min(X[:, 0:1], y, 5) == 5 and _cert(X, y, "bound").lower == 3
    c = _cert(X, y, "auto")                                  # K = n - d - 1: the MIP proves the minimum
    assert (c.lower, c.method, c.optimal, c.note) == (5, "exact (pairs MIP, HiGHS)", True, None)
    assert _flips(X[:, 0], y, np.ones(12), c.witness)
    c = _cert(X, y, "auto", upper=4)                         # K = 3 = the bound: the MIP shows none of 3 rows
    assert (c.lower, c.method, c.optimal, c.witness) == (4, "exact (pairs MIP, HiGHS)", False, None)
    c = _cert(X, y, "auto", upper=3)                         # K = 2 < the bound: the bound answers
    assert (c.lower, c.method, c.optimal, c.witness) == (3, TRIANGLE, False, None)
    c = _cert(X, y, "exact", upper=3)                        # exact: the MIP proves it on its own
    assert (c.lower, c.method, c.optimal, c.witness) == (3, "exact (pairs MIP, HiGHS)", False, None)


def test_pairs_mip_too_large_or_stopped_is_reported(monkeypatch):
    C = importlib.import_module("leaveout.audit.certify")
    X, y = _problem(6)
    real = C.pairs_mip
    monkeypatch.setattr(C, "pairs_mip", lambda *a, **k: real(*a, max_pairs=1, **k))
    c = _cert(X, y, "auto")
    assert (c.lower, c.method, c.note) == (3, TRIANGLE, "the pairs MIP is too large for this n")
    stopped = exact.ExactResult(4, None, "exact (pairs MIP, HiGHS)", False, "time limit")
    monkeypatch.setattr(C, "pairs_mip", lambda *a, **k: stopped)
    c = _cert(X, y, "auto")
    assert (c.lower, c.method, c.optimal, c.witness) == (4, "dual bound at the time limit (pairs MIP, HiGHS)", False, None)
    assert c.note.startswith("time limit hit: the mixed-integer program stopped before proving its optimum")


def test_bigm_route_its_size_limits_and_its_reach(monkeypatch):
    """Two regressors: the big-M MIP runs for small problems only (d <= 6, n <= 2,000), reports
    its optimum and witness with the bound's details, and says where its constants stop."""
    C = importlib.import_module("leaveout.audit.certify")
    X, y = _problem(5, two=True)
    truth = _brute_min(X, y, 4)
    bound = _cert(X, y, "bound")
    c = _cert(X, y, "auto")
    assert (c.lower, c.method, c.optimal, c.note) == (truth, "exact (MIP, HiGHS, d=3)", True, None)
    assert c.details == bound.details and bound.lower <= truth
    A = np.column_stack([X, np.ones(12)])
    keep = np.setdiff1d(np.arange(12), c.witness)
    assert len(c.witness) == truth and np.linalg.lstsq(A[keep], y[keep], rcond=None)[0][0] < 0
    for name, edge in (("_MIP_MAX_D", 3), ("_MIP_MAX_N", 12)):
        monkeypatch.setattr(C, name, edge)                   # at the limit: still small
        assert _cert(X, y, "auto").method == "exact (MIP, HiGHS, d=3)"
        monkeypatch.setattr(C, name, edge - 1)               # beyond it: the bound alone
        assert _cert(X, y, "auto").method == TRIANGLE
        assert _cert(X, y, "exact").method == "exact (MIP, HiGHS, d=3)"    # exact runs it anyway
        monkeypatch.undo()
    # bound 3, the design singular beyond 3 rows: the MIP proves no flip of 3 rows, and says why it stops
    X, y = _problem(9, two=True)
    assert _brute_min(X, y, 4) is None and _cert(X, y, "bound").lower == 3
    c = _cert(X, y, "auto")
    assert (c.lower, c.method, c.optimal, c.witness) == (4, "exact (MIP, HiGHS, d=3)", False, None)
    assert c.note == "the MIP's constants hold up to 3 rows (the singularity of the design)"
    c = _cert(X, y, "auto", upper=4)                         # K = 3 = the bound: the MIP still runs, no note
    assert (c.lower, c.method, c.note) == (4, "exact (MIP, HiGHS, d=3)", None)


@pytest.mark.parametrize("m", [0, 1, 4, 5, 6, 9])
def test_top_cumsum_against_sorting(m):
    """Each row's diagonal entry, then plus the running sums of its largest off-diagonal
    entries (at most n - 1 of them), against a plain sort."""
    from leaveout.audit.bounds import _top_cumsum
    rng = np.random.default_rng(m)
    block = rng.normal(size=(3, 6))
    block[0, 1] = block[0, 4] = 2.5                     # ties
    diag_cols = np.array([2, 0, 5])
    got = _top_cumsum(block, diag_cols, m)
    mm = min(m, 5)
    assert got.shape == (3, mm + 1)
    for r in range(3):
        others = np.sort(np.delete(block[r], diag_cols[r]))[::-1][:mm]
        want = block[r, diag_cols[r]] + np.r_[0.0, np.cumsum(others)]
        np.testing.assert_allclose(got[r], want, rtol=1e-14, atol=1e-14)


def test_triangle_bounds_cover_the_sizes_asked_for():
    """k runs from 1 to min(k_max, n - d - 1): every size asked for, and no size whose refit
    would have no residual degrees of freedom."""
    rng = np.random.default_rng(12)
    n = 14
    X = np.column_stack([rng.normal(size=(n, 2)), np.ones(n)])
    P = OLSProblem(X, X @ [0.4, -0.2, 1.0] + rng.normal(size=n), np.array([1.0, 0.0, 0.0]))
    for k_max, want in ((1, 1), (2, 2), (5, 5), (n - 4, n - 4), (n - 3, n - 4), (100, n - 4)):
        tb = triangle_bounds(P, k_max)
        assert list(tb.k) == list(range(1, want + 1)) and len(tb.U) == len(tb.lam) == want, k_max
        assert set(tb.exact_delta) == ({1, 2} if want >= 2 else {1})


def test_bigm_mip_removes_a_row_at_most_once():
    """Here giving row 0 (or 5) weight -1, a row removed twice, would flip the sign, while no
    real removal of fewer than 3 rows does: the MIP must prove 3, not find 2."""
    rng = np.random.default_rng(2)
    n = 10
    x, z = rng.normal(size=n), rng.normal(size=n)
    y = 0.6 * x + rng.normal(size=n) * 0.5
    A = np.column_stack([x, z, np.ones(n)])
    w = np.ones(n)
    w[0] = -1.0
    assert np.linalg.solve((A * w[:, None]).T @ A, (A * w[:, None]).T @ y)[0] < 0 < np.linalg.lstsq(A, y, rcond=None)[0][0]
    assert _brute_min(A[:, :2], y, 2) is None
    P = OLSProblem(A, y, np.array([1.0, 0.0, 0.0]))
    r = exact.bigm_mip(P, 2, triangle_bounds(P, 2).gamma(2))
    assert (r.lower, r.witness, r.optimal, r.status) == (3, None, False, "infeasible")


def test_pairs_mip_removes_a_row_at_most_once():
    """As for the big-M MIP: weight -1 on row 9 would flip the slope; no removal of up to 4
    rows does, so the pairs MIP proves 5."""
    rng = np.random.default_rng(11)
    n = 10
    x = rng.normal(size=n)
    y = 0.6 * x + rng.normal(size=n) * 0.5
    A = np.column_stack([x, np.ones(n)])
    w = np.ones(n)
    w[9] = -1.0
    assert np.sign(np.linalg.solve((A * w[:, None]).T @ A, (A * w[:, None]).T @ y)[0]) != np.sign(np.polyfit(x, y, 1)[0])
    assert _brute_min(x[:, None], y, 4) is None
    r = exact.pairs_mip(x, y, np.ones(n), 4)
    assert (r.lower, r.witness, r.optimal, r.status) == (5, None, False, "infeasible")


@pytest.mark.parametrize("seed", range(3))
def test_bigm_mip_never_removes_a_leverage_one_row(seed):
    """Row 0 alone carries a dummy column (leverage 1): removing it leaves the design singular,
    so no flip may use it; the MIP's answer is the brute-force minimum over the other rows."""
    rng = np.random.default_rng(40 + seed)
    n = 11
    x = rng.normal(size=n)
    dummy = np.zeros(n)
    dummy[0] = 1.0
    y = 0.4 * x + rng.normal(size=n) * 0.6
    y[0] = -30.0 * np.sign(np.polyfit(x, y, 1)[0]) * x[0]     # far off the line: only the dummy absorbs it
    A = np.column_stack([x, dummy, np.ones(n)])
    P = OLSProblem(A, y, np.array([1.0, 0.0, 0.0]))
    assert 0 not in P.pool
    tb = triangle_bounds(P, 3)
    K = max(1, min(3, int(np.sum(np.cumprod(tb.lam < 1)))))
    r = exact.bigm_mip(P, K, tb.gamma(K))
    truth = _brute_min(A[:, :2], y, K)
    assert r.lower == (truth if truth is not None else K + 1)
    assert r.witness is None or 0 not in r.witness


@pytest.mark.parametrize("noise", [1e-3, 1e3])
def test_bigm_mip_on_residuals_far_from_unit_scale(noise):
    """The MIP works on residuals scaled to unit size; its bounds must scale with them. Tiny
    and huge residuals: the answer is still the brute-force minimum, with a flipping witness."""
    rng = np.random.default_rng(31)
    n = 12
    x, z = rng.normal(size=n), rng.normal(size=n)
    y = (-0.2 * x + rng.normal(size=n)) * noise
    x[0], y[0] = 5.0, 8.0 * noise                       # one row carries a positive slope
    A = np.column_stack([x, z, np.ones(n)])
    assert np.linalg.lstsq(A, y, rcond=None)[0][0] > 0
    truth = _brute_min(A[:, :2], y, 3)
    P = OLSProblem(A, y, np.array([1.0, 0.0, 0.0]))
    tb = triangle_bounds(P, 3)
    K = max(1, min(3, int(np.sum(np.cumprod(tb.lam < 1)))))
    r = exact.bigm_mip(P, K, tb.gamma(K))
    assert truth is not None and truth <= K
    assert (r.lower, r.optimal) == (truth, True)
    keep = np.setdiff1d(np.arange(n), r.witness)
    assert len(r.witness) == truth and np.linalg.lstsq(A[keep], y[keep], rcond=None)[0][0] < 0


@pytest.mark.parametrize("n", [4, 5])
def test_sizes_stop_where_the_refit_keeps_a_residual(n):
    """Rows 1 and 2 alone have a negative slope, every three rows a positive one: a flip needs
    n - 2 removals, which leave no residual degree of freedom. Every method examines sizes
    up to n - d - 1 only and proves n - d, with no witness."""
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])[:n]
    y = np.array([0.0, 1.2, 1.1, 3.0, 4.0])[:n]
    assert _brute_min(x[:, None], y, n - 3) is None and _brute_min(x[:, None], y, n - 2) == n - 2
    for method, label in (("auto", TRIANGLE), ("bound", TRIANGLE), ("exact", "exact (pairs MIP, HiGHS)")):
        c = _cert(x[:, None], y, method)
        assert (c.lower, c.method, c.optimal, c.witness) == (n - 2, label, False, None), method
        assert c.details["k"] == n - 3


@pytest.mark.parametrize("seed", range(3))
def test_exact_one_and_two_rows_skip_the_singular_pair(seed):
    """A category held by two rows: removing both leaves the design singular (no refit), so
    the exact maxima for one and two rows run over every other set only."""
    rng = np.random.default_rng(50 + seed)
    n = 12
    x, z = rng.normal(size=n), rng.normal(size=n)
    pair = np.zeros(n)
    pair[[0, 1]] = 1.0
    y = 0.3 * x + 2.0 * pair + rng.normal(size=n)
    X = np.column_stack([x, z, pair, np.ones(n)])
    P = OLSProblem(X, y, np.array([1.0, 0.0, 0.0, 0.0]), weights=rng.uniform(0.5, 2.0, n))
    assert P.removal([0, 1]) is None
    tb = triangle_bounds(P, 2)
    for k in (1, 2):
        sets = [T for T in itertools.combinations(range(n), k) if P.removal(list(T)) is not None]
        assert tb.exact_delta[k] == pytest.approx(max(P.removal(list(T))[0] for T in sets), rel=1e-9)
        assert tb.exact_t[k] == pytest.approx(min(P.t_after(list(T)) for T in sets), rel=1e-9)


def _tb(U, lam, exact_delta, exact_t=None):
    from leaveout.audit.bounds import TriangleBounds
    k = np.arange(1, len(U) + 1)
    return TriangleBounds(k, np.asarray(U, float), np.asarray(lam, float), np.zeros(len(U)), np.ones(len(U)),
                          exact_delta, exact_t or {})


def test_triangle_certificates_at_their_edges():
    """The certificate logic on given bounds: a bound equal to the margin, or lambda equal to
    1, certifies nothing at that size (the definitions use strict inequalities)."""
    m = 2.0
    assert _tb([0.1, 0.1, 0.1], [0.2, 0.3, 0.4], {1: m}).sign_certificate(m) == 1            # exact, = margin
    assert _tb([0.1, 0.1, 0.1], [0.2, 0.3, 0.4], {1: 1.0, 2: 1.5}).sign_certificate(m) == 4  # nothing reaches m
    assert _tb([0.1, 0.1, m], [0.2, 0.3, 0.4], {1: 1.0, 2: 1.5}).sign_certificate(m) == 3    # U_3 = margin
    assert _tb([0.1, 0.1, 0.1], [0.2, 0.3, 1.0], {1: 1.0, 2: 1.5}).sign_certificate(m) == 3  # lambda_3 = 1
    assert _tb([0.1, 0.1, 0.1], [0.2, 0.3, 1.5], {1: 1.0, 2: 1.5}).sign_certificate(m) == 3
    # size 3 reads its own U and lambda, not those of size 2 (which the exact values replace)
    assert _tb([0.1, 5.0, 0.1], [0.2, 1.2, 0.4], {1: 1.0, 2: 1.5}).sign_certificate(m) == 4
    assert _tb([0.1, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.9], {1: 0.0}).gamma(4) == pytest.approx(1 / 0.1)
    assert _tb([0.1, 0.1, 0.1], [0.2, 0.3, 1.0], {1: 0.0}).gamma(3) == np.inf
    assert _tb([0.1, 0.1, 0.1], [0.2, 0.3, 1.5], {1: 0.0}).gamma(3) == np.inf
    assert _tb([0.1, 0.1, 0.1], [0.2, 0.3, 1.5], {1: 0.0}).gamma(2) == pytest.approx(1 / 0.7)


def test_t_lower_and_significance_certificate_at_their_edges():
    rng = np.random.default_rng(60)
    n = 15
    X = np.column_stack([rng.normal(size=n), np.ones(n)])
    P = OLSProblem(X, 2.0 * X[:, 0] + rng.normal(size=n), np.array([1.0, 0.0]))
    small = 0.1 * P.margin
    ok = _tb([0.0, 0.0, small], [0.1, 0.2, 0.5], {1: 0.0, 2: 0.0}, {1: 5.0, 2: 4.0})
    want = (P.margin - small) * np.sqrt(P.dof(3) * 0.5 / (P.rss * P.a2))
    assert ok.t_lower(P, 3) == pytest.approx(want, rel=1e-12) and ok.t_lower(P, 1) == 5.0
    for lam in (1.0, 1.5):                              # at or past the singularity: no bound
        assert _tb([0.0, 0.0, small], [0.1, 0.2, lam], {1: 0.0, 2: 0.0}, {1: 5.0, 2: 4.0}).t_lower(P, 3) == -np.inf
    assert _tb([0.0, 0.0, P.margin], [0.1, 0.2, 0.5], {1: 0.0, 2: 0.0}, {1: 5.0, 2: 4.0}).t_lower(P, 3) == -np.inf
    assert ok.significance_certificate(P, 4.0) == 2     # t after two rows equals z: not certified
    assert ok.significance_certificate(P, 3.9) == (3 if want <= 3.9 else 4)
