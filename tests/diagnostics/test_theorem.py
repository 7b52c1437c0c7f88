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


def test_set_diagnostics_gap_and_indicators():
    X, y = make_data(n=60, d=5, seed=4)
    m = lo.GLM(l2=0.5).fit(X, y)
    att = lo.Attribution(m)
    Xt, _ = make_data(n=8, d=5, seed=5)
    f = TestPrediction(Xt)
    T = np.array([2, 3, 10, 40])
    d = set_diagnostics(att, f, T)
    phi = f.gradient(m, m.theta_)
    ns, rif = att.delta(T, "ns"), att.delta(T, "rif")
    assert d.gap == pytest.approx(abs(phi @ (ns - rif)), rel=1e-12)
    G = sum(np.asarray(att.estimators.r)[i] * np.append(X[i], 1.0) for i in T)
    assert d.newton_decrement == pytest.approx(np.sqrt(G @ ns), rel=1e-10)
    assert d.max_train_change == pytest.approx(np.max(np.abs(design(X, True) @ ns)), rel=1e-12)
    assert d.max_metric_change == pytest.approx(np.max(np.abs(design(Xt, True) @ ns)), rel=1e-12)
    if d.applies:
        assert d.held


def test_report_and_check_cli(tmp_path, capsys):
    X, y = make_data(n=200, d=6, seed=6)
    Xt, yt = make_data(n=60, d=6, seed=7)
    path = tmp_path / "d.npz"
    np.savez(path, X_train=X, y_train=y, X_test=Xt, y_test=yt)
    assert main(["check", str(path), "--l2", "0.5", "--sets", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("C_ell", "C_R", "delta", "epsilon", "eta", "k_threshold", "exact", "calibration", "verdict"):
        assert key in out
    for metric in ("test-pred", "test-loss", "self-loss"):
        for method in ("if", "rif", "ns"):
            assert set(out["calibration"][metric][method]) >= {"slope", "spearman", "median_rel_err", "reliable"}
        assert out["verdict"][metric].startswith(metric)
    att = lo.Attribution(lo.GLM(l2=0.5).fit(X, y))
    rep = att.diagnose({"self-loss": SelfLoss()}, n_sets=6)
    assert "Theorem 3.1 constants" in repr(rep) and rep.calibration["self-loss"]["ns"]["n_sets"] == 6


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
