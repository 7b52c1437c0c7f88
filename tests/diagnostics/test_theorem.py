"""Theorem 3.1's constants against a dense brute-force twin (matrix square roots and
operator norms of every pair), the per-set gap against the estimators, and the report."""

import json

import numpy as np
import pytest
import scipy.linalg as sla

import leaveout as lo
from conftest import make_data
from leaveout.cli import main
from leaveout.diagnostics import set_constants, set_diagnostics, theorem_constants
from leaveout.metrics import SelfLoss, TestLoss, TestPrediction
from reference import design, pieces


def _psd_sqrt(M):
    ev, vec = np.linalg.eigh(M)
    return (vec * np.sqrt(np.clip(ev, 0, None))) @ vec.T


def _brute(A, y, s, theta, l2, penalty, phi, rows=None):
    """Every constant from its definition with dense p x p matrices (data parts of H_i)."""
    g, Hs, H, w = pieces(A, y, s, theta, l2, penalty, True)
    n = A.shape[0]
    data_H = [w[i] * np.outer(A[i], A[i]) for i in range(n)]
    Hih = sla.fractional_matrix_power(H, -0.5).real
    Hinv = np.linalg.inv(H)
    roots = [_psd_sqrt(Hi) for Hi in data_H]
    idx = range(n) if rows is None else rows
    C_ell = max(np.linalg.norm(Hih @ g[i]) for i in idx)
    C_R = max(1 / (1 - np.linalg.norm(Hih @ data_H[i] @ Hih, 2)) for i in idx)
    delta = max(np.linalg.norm(roots[i] @ Hinv @ roots[j], 2) for i in idx for j in idx if i != j)
    eps = max(np.linalg.norm(roots[i] @ Hinv @ g[j]) for i in idx for j in idx if i != j)
    eta = max(np.linalg.norm(roots[i] @ Hinv @ phi) for i in idx)
    return C_ell, C_R, delta, eps, eta


@pytest.mark.parametrize("penalty,l2", [("fixed", 1.0), ("per_sample", 0.05)])
def test_constants_equal_their_definitions(penalty, l2):
    X, y = make_data(n=30, d=4, seed=2)
    s = np.ones(30)
    m = lo.GLM(l2=l2, penalty=penalty).fit(X, y)
    att = lo.Attribution(m)
    Xt, yt = make_data(n=10, d=4, seed=3)
    f = TestLoss(Xt, yt)
    phi = f.gradient(m, m.theta_)
    A = design(X, True)
    want = _brute(A, y.astype(float), s, m.theta_, l2, penalty, phi)
    c = theorem_constants(att, f)
    np.testing.assert_allclose([c.C_ell, c.C_R, c.delta, c.epsilon, c.eta], want, rtol=1e-6)
    assert c.exact and c.k_threshold == pytest.approx(1 / (2 * want[2] * want[1]), rel=1e-6)
    T = np.array([1, 4, 9, 17])
    ct = set_constants(att, f, T)
    np.testing.assert_allclose([ct.C_ell, ct.C_R, ct.delta, ct.epsilon, ct.eta],
                               _brute(A, y.astype(float), s, m.theta_, l2, penalty, phi, rows=list(T)), rtol=1e-6)
    # sampled pairs: an estimate below the exact maxima
    est = theorem_constants(att, f, exact_limit=10, sample=12)
    assert not est.exact and est.delta <= c.delta + 1e-15 and est.epsilon <= c.epsilon + 1e-15


def _dense_ns_rif(X, y, theta, l2, T):
    """NS and RIF changes of theta for removing T, from dense pieces (logistic, fixed penalty,
    unpenalised intercept): H_{-T}^{-1} sum_T g_i and sum_T H_{-i}^{-1} g_i."""
    A = design(X, True)
    p = 1 / (1 + np.exp(-A @ theta))
    w = p * (1 - p)
    g = A * (p - y)[:, None]
    P = np.eye(A.shape[1])
    P[-1, -1] = 0
    H = (A * w[:, None]).T @ A + l2 * P
    HT = H - sum(w[i] * np.outer(A[i], A[i]) for i in T)
    ns = np.linalg.solve(HT, g[T].sum(axis=0))
    rif = sum(np.linalg.solve(H - w[i] * np.outer(A[i], A[i]), g[i]) for i in T)
    return ns, rif, g[T].sum(axis=0)


def test_set_diagnostics_gap_and_indicators():
    """The per-set gap |<phi, NS - RIF>|, the Newton decrement and the largest changes of the
    linear predictors, against NS and RIF built here from dense pieces."""
    X, y = make_data(n=60, d=5, seed=4)
    m = lo.GLM(l2=0.5).fit(X, y)
    att = lo.Attribution(m)
    Xt, _ = make_data(n=8, d=5, seed=5)
    f = TestPrediction(Xt)
    T = np.array([2, 3, 10, 40])
    d = set_diagnostics(att, f, T)
    ns, rif, G = _dense_ns_rif(X, y.astype(float), m.theta_, 0.5, T)
    At = design(Xt, True)
    p_t = 1 / (1 + np.exp(-At @ m.theta_))
    phi = (At * (p_t * (1 - p_t))[:, None]).sum(axis=0)          # d/dtheta of the summed P(y = 1)
    assert d.gap == pytest.approx(abs(phi @ (ns - rif)), rel=1e-8)
    assert d.gap > 1e-6                                           # NS and RIF differ for a 4-row set
    assert d.newton_decrement == pytest.approx(np.sqrt(G @ ns), rel=1e-8)
    assert d.max_train_change == pytest.approx(np.max(np.abs(design(X, True) @ ns)), rel=1e-8)
    assert d.max_metric_change == pytest.approx(np.max(np.abs(At @ ns)), rel=1e-8)
    # the bound holds where the theorem applies: |<phi, NS - RIF>| stays below it
    if d.applies:
        assert d.held and d.gap <= d.bound


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_set_diagnostics_of_all_metrics_at_once_equal_one_at_a_time(penalty):
    """The trust report's shared per-set pass against set_diagnostics, metric by metric."""
    from leaveout.diagnostics.indicators import set_diagnostics_many
    from leaveout.diagnostics.theorem import _Pieces
    X, y = make_data(n=80, d=5, seed=8)
    att = lo.Attribution(lo.GLM(l2=0.5, penalty=penalty).fit(X, y))
    Xt, yt = make_data(n=6, d=5, seed=9)
    metrics = {"pred": TestPrediction(Xt), "loss": TestLoss(Xt, yt), "self": SelfLoss()}
    pieces = {k: _Pieces(att, f) for k, f in metrics.items()}
    base = {k: theorem_constants(att, f) for k, f in metrics.items()}
    for T in (np.array([4]), np.array([1, 7, 30, 31, 60])):
        G, system = att.newton_system(T, cache=False)
        many = set_diagnostics_many(att, metrics, T, G, system.apply(G), att.delta(T, "rif"), pieces, base)
        for k, f in metrics.items():
            one = set_diagnostics(att, f, T, base[k], pieces[k]).to_dict()
            for field, value in many[k].to_dict().items():
                assert value == pytest.approx(one[field], rel=1e-10, abs=1e-14), (k, field)


def test_report_and_check_cli(tmp_path, capsys):
    """`leaveout check --json`: the constants equal their dense definitions, the calibration's
    NS statistics describe refits done here, and every method and metric is reported."""
    X, y = make_data(n=200, d=6, seed=6)
    Xt, yt = make_data(n=60, d=6, seed=7)
    path = tmp_path / "d.npz"
    np.savez(path, X_train=X, y_train=y, X_test=Xt, y_test=yt)
    assert main(["check", str(path), "--l2", "0.5", "--metric", "self-loss", "--sets", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    m = lo.GLM(l2=0.5).fit(X, y)
    A = design(X, True)
    want = _brute(A, y.astype(float), np.ones(200), m.theta_, 0.5, "fixed", np.zeros(A.shape[1]))
    np.testing.assert_allclose([out["C_ell"], out["C_R"], out["delta"], out["epsilon"]], want[:4], rtol=1e-6)
    assert out["exact"] is True and out["k_threshold"] == pytest.approx(1 / (2 * want[2] * want[1]), rel=1e-6)
    assert out["model"] == {"family": "logistic", "l2": 0.5, "penalty": "fixed", "weights": None, "n": 200,
                            "n_rows": 200}
    cal = out["calibration"]["self-loss"]
    assert set(cal) == {"if", "rif", "ns"} and cal["ns"]["n_sets"] == 12
    assert out["verdict"]["self-loss"].startswith("self-loss")
    # the same calibration in Python, its NS slope recomputed from refits done here
    att = lo.Attribution(m)
    stats, _, rows = __import__("leaveout.diagnostics.calibration", fromlist=["calibrate"]).calibrate(
        att, {"self-loss": SelfLoss()}, n_sets=12)
    P = np.eye(A.shape[1])
    P[-1, -1] = 0

    def objective(theta):           # the full training objective in sum form (the self-loss)
        z = A @ theta
        return np.sum(np.logaddexp(0, z) - y * z) + 0.25 * theta @ P @ theta

    a, p_ns = [], []
    for r in rows:
        keep = np.setdiff1d(np.arange(200), r["T"])
        refit = lo.GLM(l2=0.5, tol=1e-12).fit(X[keep], y[keep])
        a.append(objective(refit.theta_) - objective(m.theta_))
        p_ns.append(r["ns"])
    np.testing.assert_allclose([r["actual"] for r in rows], a, rtol=1e-6)
    a, p_ns = np.array(a), np.array(p_ns)
    assert cal["ns"]["slope"] == pytest.approx(a @ p_ns / (a @ a), rel=1e-6)
    assert stats["self-loss"]["ns"]["slope"] == pytest.approx(cal["ns"]["slope"], rel=1e-12)


def test_effect_warns_outside_the_quadratic_model():
    import warnings
    from leaveout.diagnostics.indicators import step_indicators
    X, y = make_data(n=80, d=5, seed=8, scale=3.0)
    m = lo.GLM(l2=0.01).fit(X, y)
    att = lo.Attribution(m)
    f = SelfLoss()
    big = np.arange(0, 80, 2)                          # half the rows: a step far from the fit
    dec, change, outside = step_indicators(att, f, big)
    assert outside and (dec > 0.5 or change > 1.0)
    with pytest.warns(lo.UnreliableEstimateWarning, match="outside its quadratic model"):
        att.effect(big, f, "rif")
    small = np.array([3])
    if not step_indicators(att, f, small)[2]:
        with warnings.catch_warnings():
            warnings.simplefilter("error", lo.UnreliableEstimateWarning)
            att.effect(small, f, "ns")
    sq = lo.Attribution(lo.GLM(family="squared", l2=0.01).fit(X, X[:, 0] + 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", lo.UnreliableEstimateWarning)
        sq.effect(big, f, "ns")                        # a quadratic objective: NS is exact


def test_constants_in_the_dual_form_equal_the_primal_ones():
    X, y = make_data(n=25, d=40, seed=9)
    m = lo.GLM(l2=2.0).fit(X, y)
    f = SelfLoss()
    Xt, yt = make_data(n=5, d=40, seed=10)
    f = TestLoss(Xt, yt)
    dual, primal = lo.Attribution(m, form="dual"), lo.Attribution(m, form="primal")
    assert dual.form == "dual"
    a, b = theorem_constants(dual, f), theorem_constants(primal, f)
    np.testing.assert_allclose([a.C_ell, a.C_R, a.delta, a.epsilon, a.eta],
                               [b.C_ell, b.C_R, b.delta, b.epsilon, b.eta], rtol=1e-8)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_set_pairs_skips_only_sets_the_theorem_cannot_cover(penalty):
    """A large set's pairs are skipped only when the pairs of its probed rows already put its
    size threshold below its size; otherwise they equal the dense pair maxima."""
    from leaveout.diagnostics.theorem import _Pieces, set_pairs
    X, y = make_data(n=300, d=4, seed=11)
    att = lo.Attribution(lo.GLM(l2=1.0, penalty=penalty).fit(X, y))
    f = SelfLoss()
    pc = _Pieces(att, f)
    rng = np.random.default_rng(3)
    skipped = kept = 0
    for k in (2, 9, 20, 60, 150, 299):
        for _ in range(4):
            T = np.sort(rng.choice(300, k, replace=False))
            exact = set_constants(att, f, T, pc)
            found = set_pairs(pc, att.curvature.factor, T, exact.C_R, probe=8)
            if found is None:
                skipped += 1
                assert k > exact.k_threshold
            else:
                kept += 1
                assert found == pytest.approx((exact.delta, exact.epsilon), rel=1e-9)
    assert skipped and kept


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_pairs_from_the_half_factor_equal_the_direct_pairs(penalty, monkeypatch):
    """The folded-weight pair maxima (float64, float32 once large, and the fallback for a row
    with no curvature but a gradient) against pair_maxima's direct products."""
    from leaveout.diagnostics import theorem as th
    X, y = make_data(n=150, d=5, seed=12)
    att = lo.Attribution(lo.GLM(l2=0.3, penalty=penalty).fit(X, y))
    pc = th._Pieces(att, TestLoss(*make_data(n=5, d=5, seed=13)))
    factor = att.curvature.factor
    for rows in (np.arange(150), np.sort(np.random.default_rng(0).choice(150, 40, replace=False))):
        want = pc.pair_maxima(rows, rows)
        assert th._pairs_from_half(pc, factor, rows) == pytest.approx(want, rel=1e-12)
        monkeypatch.setattr(th, "_Z_BYTES", 0)                    # float32 products
        assert th._pairs_from_half(pc, factor, rows) == pytest.approx(want, rel=1e-5)
        monkeypatch.undo()
    pc.sw = pc.sw.copy()
    pc.sw[7] = 0.0                                               # w = 0 with r != 0: no r / sqrt(w)
    rows = np.arange(150)
    assert th._pairs_from_half(pc, factor, rows) == pytest.approx(pc.pair_maxima(rows, rows), rel=1e-12)



@pytest.mark.parametrize("has_b", [False, True])
@pytest.mark.parametrize("block", [1, 16])
def test_pruned_pair_maxima_equal_brute_force(has_b, block, monkeypatch):
    """The pruned pass (pairs skipped by their Cauchy-Schwarz bounds) against every pair,
    written out: rows with heavy-tailed norms, nearly orthogonal, and a planted collinear pair
    of middling norm (so the maxima are not among the largest rows), rho and a heavy-tailed."""
    from leaveout.diagnostics import theorem as th
    monkeypatch.setattr(th, "_PRUNE_BLOCK", block)
    monkeypatch.setattr(th, "_PRUNE_SEED", 1)
    rng = np.random.default_rng(5)
    visited, real = [], th._block_maxima
    monkeypatch.setattr(th, "_block_maxima", lambda Yi, Yj, *a: visited.append(Yi.shape[0] * Yj.shape[0]) or real(Yi, Yj, *a))
    for trial in range(12):
        m, p = 300, 200
        Y = rng.normal(size=(m, p)) * np.exp(rng.normal(0, 0.5, size=(m, 1))) / np.sqrt(p)
        i, j = rng.choice(m, 2, replace=False)
        mid = np.argsort(np.linalg.norm(Y, axis=1))[m - 40 + 2 * trial]
        Y[i] = Y[mid] * rng.uniform(0.9, 1.1)
        Y[j] = -Y[mid] * rng.uniform(0.9, 1.1)
        rho = rng.standard_t(2, size=m)
        rho[i if Y[i] @ Y[i] > Y[j] @ Y[j] else j] *= 5 * (trial % 3)      # on the larger row only
        k = np.argsort(-np.einsum("ij,ij->i", Y, Y))[1 + trial % 4]  # a row of large norm, so
        rho[k] *= 100                                                 # epsilon's rows j come after it
        a = rng.standard_t(2, size=m) * (0.1 if trial % 2 else 5.0) if has_b else np.zeros(m)
        s_ = rng.uniform(0, 1, size=m) if has_b else np.zeros(m)
        D = Y @ Y.T
        np.fill_diagonal(D, 0)
        E1, E2 = D * rho[None, :] + a[:, None] * s_[None, :], D * rho[:, None] + s_[:, None] * a[None, :]
        np.fill_diagonal(E1, 0)
        np.fill_diagonal(E2, 0)
        want = (np.abs(D).max(), max(np.abs(E1).max(), np.abs(E2).max()))
        visited.clear()
        assert th._pruned(Y, rho, a, s_, has_b) == pytest.approx(want, rel=1e-12)
        assert sum(visited) < 0.9 * m * m / 2                       # pairs were skipped


@pytest.mark.parametrize("has_b", [False, True])
def test_pruned_pairs_equal_every_pair(has_b, monkeypatch):
    """Skipping pairs by their Cauchy-Schwarz bounds leaves the maxima unchanged: the pruned
    pass against every pair of the same rows, on rows with heavy-tailed norms (a few rows of
    large leverage, as in image embeddings), with and without a penalty share in the gradient."""
    from leaveout.diagnostics import theorem as th
    rng = np.random.default_rng(21)
    X, y = make_data(n=600, d=6, seed=21)
    X = X * np.exp(rng.normal(0, 1.0, size=(600, 1)))            # spread the row norms
    att = lo.Attribution(lo.GLM(l2=0.5, penalty="per_sample" if has_b else "fixed").fit(X, y))
    pc = th._Pieces(att, TestLoss(*make_data(n=5, d=6, seed=22)))
    assert pc.has_b == has_b
    factor = att.curvature.factor
    rows = np.arange(600)
    want = th._pairs_from_half(pc, factor, rows)                  # below _PRUNE_MIN: every pair
    assert want == pytest.approx(pc.pair_maxima(rows, rows), rel=1e-12)
    visited = []
    real = th._block_maxima
    monkeypatch.setattr(th, "_block_maxima", lambda Yi, Yj, *a: visited.append(Yi.shape[0] * Yj.shape[0]) or real(Yi, Yj, *a))
    monkeypatch.setattr(th, "_PRUNE_MIN", 100)
    monkeypatch.setattr(th, "_PRUNE_BLOCK", 16)
    monkeypatch.setattr(th, "_PRUNE_SEED", 1)
    assert th._pairs_from_half(pc, factor, rows) == pytest.approx(want, rel=1e-12)
    assert sum(visited) < 0.5 * 600 * 600 / 2                     # and most pairs were skipped
