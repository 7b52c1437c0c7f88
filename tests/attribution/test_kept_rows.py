"""Every row's half solve kept once (``prepare``): the leverages, RIF leverages, self-loss
scores, Newton systems and theorem pairs computed from the kept rows equal those computed
with a solve per row (the unprepared path), and the dense definitions."""

import numpy as np
import pytest

import leaveout as lo
from conftest import make_data
from leaveout.metrics import SelfLoss, TestLoss


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(float(np.max(np.abs(np.asarray(b)))), 1e-300))


def _pair(penalty, icpt, sparse, seed=0):
    X, y = make_data(n=120, d=12, seed=seed, sparse=sparse)
    s = np.random.default_rng(seed).choice([0.0, 1.0, 2.0], size=120, p=[0.1, 0.6, 0.3])
    l2 = 0.4 if penalty == "fixed" else 0.05
    m = lo.GLM(l2=l2, penalty=penalty, fit_intercept=icpt, tol=1e-12).fit(X, y, sample_weight=s)
    plain, kept = lo.Attribution(m), lo.Attribution(m).prepare()
    return m, plain, kept


@pytest.mark.parametrize("penalty,icpt,sparse", [("fixed", True, False), ("fixed", False, True),
                                                 ("per_sample", True, False), ("per_sample", False, False),
                                                 ("per_sample", True, True)])
def test_kept_rows_give_the_same_estimates(penalty, icpt, sparse):
    m, plain, kept = _pair(penalty, icpt, sparse)
    curv = kept.curvature
    assert curv.half_rows(0.0, np.arange(3)) is not None            # the rows were kept
    assert plain.curvature.half_rows(0.0, np.arange(3)) is None
    H = plain.hessian
    A = m.objective_.design.dense_rows(np.arange(120))
    w = np.asarray(plain.estimators.w)
    # leverages against their definition, and both paths
    lev = w * np.einsum("ij,ji->i", A, np.linalg.solve(H, A.T))
    assert rel_err(kept.leverage, lev) < 1e-10 and rel_err(plain.leverage, lev) < 1e-10
    assert rel_err(kept.rif_leverage, plain.rif_leverage) < 1e-10
    if penalty == "per_sample":                    # each row's own shift c_i = l2 s_i
        c = m.objective_.l2 * m.objective_.s
        pen = m.objective_.pen
        want = np.array([w[i] * A[i] @ np.linalg.solve(H - c[i] * np.diag(pen), A[i]) for i in range(120)])
        assert rel_err(kept.rif_leverage, want) < 1e-10
    for method in ("if", "rif"):
        assert rel_err(kept.scores(SelfLoss(), method), plain.scores(SelfLoss(), method)) < 1e-9
    for T in (np.array([3]), np.array([1, 5, 8, 40, 77, 90]), np.arange(0, 120, 3)):     # Woodbury, and direct
        for method in ("rif", "ns"):
            assert rel_err(kept.delta(T, method), plain.delta(T, method)) < 1e-9
        G, system = kept.newton_system(T, cache=False)
        keep_rows = np.ones(120, bool)
        keep_rows[T] = False
        Hm = H - np.einsum("i,ij,ik->jk", w[T], A[T], A[T])
        if penalty == "per_sample":
            Hm -= m.objective_.l2 * m.objective_.s[T].sum() * np.diag(m.objective_.pen)
        assert rel_err(system.apply(G), np.linalg.solve(Hm, G)) < 1e-9


def test_kept_rows_give_the_same_theorem_pairs():
    from leaveout.diagnostics.theorem import _Pieces, _pairs_from_half
    m, plain, kept = _pair("per_sample", True, False, seed=3)
    f = TestLoss(*make_data(n=6, d=12, seed=4))
    rows = np.arange(120)
    a = _pairs_from_half(_Pieces(plain, f), plain.curvature.factor, rows)
    b = _pairs_from_half(_Pieces(kept, f), kept.curvature.factor, rows)
    assert b == pytest.approx(a, rel=1e-10)
    assert b == pytest.approx(_Pieces(plain, f).pair_maxima(rows, rows), rel=1e-10)


def test_rows_are_not_kept_past_the_memory_limit(monkeypatch):
    from leaveout.attribution.curvature import Curvature
    monkeypatch.setattr(Curvature, "ROWS_BYTES", 100)
    m, plain, kept = _pair("per_sample", True, False)
    assert kept.curvature.half_rows(0.0, np.arange(3)) is None
    assert rel_err(kept.rif_leverage, plain.rif_leverage) < 1e-12


def test_prepare_leaves_multinomial_and_absorbed_models_as_they_were():
    """Kept rows are for one response over the design's columns: a multinomial model keeps
    none, and an absorbed fixed-effects model keeps its partialled rows; both estimate as
    without prepare."""
    from leaveout import FixedEffectsGLM
    rng = np.random.default_rng(6)
    X = rng.normal(size=(150, 4))
    y = np.argmax(X @ rng.normal(size=(4, 3)) + rng.gumbel(size=(150, 3)), axis=1)
    m = lo.GLM("multinomial", l2=0.5, tol=1e-12).fit(X, y)
    plain, kept = lo.Attribution(m), lo.Attribution(m).prepare()
    assert kept.curvature.half_rows(0.0, np.arange(3)) is None
    T = np.array([1, 4, 9, 30])
    for method in ("rif", "ns"):
        assert rel_err(kept.delta(T, method), plain.delta(T, method)) < 1e-10
    g = rng.integers(0, 12, 150)
    yy = X[:, 0] + np.sin(g) + rng.normal(size=150)
    fe = FixedEffectsGLM("squared", tol=1e-12).fit(X[:, 1:], yy, {"g": g})
    plain, kept = lo.Attribution(fe), lo.Attribution(fe).prepare()
    assert rel_err(kept.leverage, plain.leverage) < 1e-10
    for method in ("rif", "ns"):
        assert rel_err(kept.delta(T, method), plain.delta(T, method)) < 1e-10
    from leaveout.metrics import Coefficient
    assert rel_err(kept.scores(Coefficient(0), "rif"), plain.scores(Coefficient(0), "rif")) < 1e-10


@pytest.mark.parametrize("icpt", [True, False])
def test_prepared_shift_solves_equal_the_refined_ones(icpt):
    """After prepare, a row's shifted system ``H - c_i M`` is solved in the eigenbasis (two
    products) instead of by refinement on H's factor: the RIF scores of a test loss, a few
    rows' RIF leverages, the shifted solves and RIF deltas against the unprepared path and
    dense solves."""
    m, plain, kept = _pair("per_sample", icpt, False, seed=3)
    f = TestLoss(*make_data(n=4, d=12, seed=4))
    assert rel_err(kept.scores(f, "rif"), plain.scores(f, "rif")) < 1e-9
    fresh = lo.Attribution(m).prepare()
    idx = np.array([2, 7, 50])
    H = plain.hessian
    A = m.objective_.design.dense_rows(idx)
    w, c, pen = np.asarray(plain.estimators.w)[idx], m.objective_.l2 * m.objective_.s[idx], m.objective_.pen
    want = np.array([w[j] * A[j] @ np.linalg.solve(H - c[j] * np.diag(pen), A[j]) for j in range(3)])
    assert rel_err(fresh.estimators.rif_leverage_of(idx), want) < 1e-10
    Fc, _t = fresh.curvature.shift(float(c[0]))
    assert type(Fc).__name__ == "_EigenShift"                      # the prepared path was taken
    assert rel_err(Fc.leverage(idx[:1]), want[:1]) < 1e-10           # its own leverages (c = c_0)
    Hc = H - c[0] * np.diag(pen)
    assert rel_err(Fc.solve(A.T), np.linalg.solve(Hc, A.T)) < 1e-10
    T = np.array([1, 5, 8, 40, 77, 90])
    assert rel_err(kept.delta(T, "rif"), plain.delta(T, "rif")) < 1e-10


@pytest.mark.parametrize("icpt", [True, False])
def test_eigenbasis_quadratic_forms_equal_the_half_solved_rows(icpt):
    """``quads`` (two products of the kept rows) against the half-solved rows it avoids forming:
    ``|R_c^-1 x|^2``, ``|P B_c^-1 x|^2`` and ``(P B_c^-1 x)^T t``, for a slice and for indices,
    at a shift c > 0, and against ``x^T (H - c M)^{-1} x`` from a dense solve."""
    m, plain, kept = _pair("per_sample", icpt, False, seed=3)
    eig = kept.curvature._eig
    c = 0.7 * m.objective_.l2 * 2.0
    F = eig.factor(c)
    t = np.random.default_rng(4).normal(size=eig.Q.shape[0])
    Qt = eig.Q.T @ t
    A = m.objective_.design.dense_rows(np.arange(120))
    pen = m.objective_.pen
    dense = np.einsum("ij,ji->i", A, np.linalg.solve(plain.hessian - c * np.diag(pen), A.T))
    for idx in (slice(10, 70), np.array([0, 5, 6, 50, 119])):
        V = F.half_rows(np.arange(120)[idx])
        Pu = F.penalised_part(V)
        xu, puu, put = F.quads(idx, Qt)
        assert rel_err(xu, np.einsum("ij,ij->i", V, V)) < 1e-12
        assert rel_err(xu, dense[idx]) < 1e-10
        assert rel_err(puu, np.einsum("ij,ij->i", Pu, Pu)) < 1e-10
        assert rel_err(put, Pu @ Qt) < 1e-10
        assert rel_err(F.quads(idx), xu) < 1e-14
