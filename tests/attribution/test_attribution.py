import numpy as np
import pytest

import leaveout as lo
from conftest import make_data
from leaveout.metrics import Coefficient, SelfLoss, TestLoss, TestPrediction
from reference import design, pieces, tight_fit

RTOL = 1e-9   # fast path vs brute force


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def setup(penalty="fixed", icpt=True, sparse=False, weights="uniform", seed=0, n=70, d=6, form="auto"):
    X, y = make_data(n=n, d=d, seed=seed, sparse=sparse)
    rng = np.random.default_rng(seed + 100)
    s = {"uniform": np.ones(n), "random": rng.uniform(0.5, 2.0, n).round(1),
         "integer": rng.integers(1, 3, n).astype(float)}[weights]
    l2 = 0.5 if penalty == "fixed" else 0.02
    m = lo.GLM(l2=l2, penalty=penalty, fit_intercept=icpt, tol=1e-12).fit(X, y, sample_weight=s)
    A = design(X, icpt)
    g, Hs, H, w = pieces(A, y.astype(float), s, m.theta_, l2, penalty, icpt)
    return X, y, s, m, lo.Attribution(m, form=form), (A, g, Hs, H, w)


CASES = [(pen, icpt, sparse, w, form) for pen in ("fixed", "per_sample") for icpt in (True, False)
         for sparse in (False, True) for w in ("uniform", "random") for form in ("primal", "dual")]


@pytest.mark.parametrize("penalty,icpt,sparse,weights,form", CASES)
def test_estimators_match_brute_force(penalty, icpt, sparse, weights, form):
    X, y, s, m, att, (A, g, Hs, H, w) = setup(penalty, icpt, sparse, weights, form=form)
    assert att.form == form
    np.testing.assert_allclose(att.hessian, H, rtol=1e-12, atol=1e-10)
    n = A.shape[0]
    IF = np.linalg.solve(H, g.T).T
    RIF = np.array([np.linalg.solve(H - Hs[i], g[i]) for i in range(n)])
    assert rel_err(att.influence(), IF) < RTOL
    assert rel_err(att.rescaled_influence(), RIF) < RTOL
    # leverage h_i = w_i x_i^T H^-1 x_i with w_i the curvature weight of the loss
    lev = np.array([x @ np.linalg.solve(H, x) for x in A]) * w
    assert rel_err(att.leverage, lev) < RTOL
    assert np.all((att.leverage >= 0) & (att.leverage < 1))
    rng = np.random.default_rng(1)
    for k in (1, 3, 9):
        T = np.sort(rng.choice(n, k, replace=False))
        NS = np.linalg.solve(H - Hs[T].sum(axis=0), g[T].sum(axis=0))
        assert rel_err(att.delta(T, "ns"), NS) < RTOL
        assert rel_err(att.delta(T, "if"), IF[T].sum(axis=0)) < RTOL
        assert rel_err(att.delta(T, "rif"), RIF[T].sum(axis=0)) < RTOL


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_newton_step_direct_branch_for_large_sets(penalty):
    # |T| >= p uses the direct (p x p) factorisation instead of Woodbury: same answer
    X, y, s, m, att, (A, g, Hs, H, w) = setup(penalty, True, False, "random", d=4)
    T = np.arange(0, 30)
    NS = np.linalg.solve(H - Hs[T].sum(axis=0), g[T].sum(axis=0))
    assert rel_err(att.delta(T, "ns"), NS) < RTOL


@pytest.mark.parametrize("penalty,icpt,form", [(p, i, f) for p in ("fixed", "per_sample") for i in (True, False)
                                               for f in ("primal", "dual")])
def test_retrain_matches_independent_tight_solve(penalty, icpt, form):
    X, y, s, m, att, (A, g, Hs, H, w) = setup(penalty, icpt, False, "random", seed=3, form=form)
    T = np.array([2, 11, 12, 40, 41])
    refit = att.retrain(T)
    assert refit.converged_ and refit.grad_norm_ <= 1e-12
    keep = np.setdiff1d(np.arange(A.shape[0]), T)
    ref = tight_fit(A[keep], y[keep].astype(float), s[keep], m.l2, penalty, icpt)
    np.testing.assert_allclose(refit.theta_, ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(att.delta(T, "retrain"), ref - m.theta_, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_more_parameters_than_samples_uses_the_dual_form(penalty):
    # d > n: "auto" factors the n x n kernel; it must agree with the p x p form and brute force
    X, y, s, m, att, (A, g, Hs, H, w) = setup(penalty, True, False, "random", seed=11, n=30, d=45)
    assert att.form == "dual"
    primal = lo.Attribution(m, form="primal")
    RIF = np.array([np.linalg.solve(H - Hs[i], g[i]) for i in range(30)])
    assert rel_err(att.rescaled_influence(), RIF) < RTOL
    assert rel_err(att.leverage, primal.leverage) < RTOL
    T = np.array([0, 4, 9, 13, 22])
    NS = np.linalg.solve(H - Hs[T].sum(axis=0), g[T].sum(axis=0))
    assert rel_err(att.delta(T, "ns"), NS) < RTOL
    np.testing.assert_allclose(att.hessian, H, rtol=1e-12, atol=1e-10)


def test_additivity_of_if_and_rif():
    X, y, s, m, att, _ = setup("per_sample", True, False, "random", seed=4)
    IF, RIF = att.influence(), att.rescaled_influence()
    T1, T2 = np.array([0, 5, 9]), np.array([20, 33])
    T = np.concatenate([T1, T2])
    for method, rows in (("if", IF), ("rif", RIF)):
        np.testing.assert_allclose(att.delta(T, method), att.delta(T1, method) + att.delta(T2, method),
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(att.delta(T, method), rows[T].sum(axis=0), rtol=1e-10, atol=1e-14)
    # NS is not additive
    assert rel_err(att.delta(T, "ns"), att.delta(T1, "ns") + att.delta(T2, "ns")) > 1e-6


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_rif_equals_ns_for_one_sample(penalty):
    X, y, s, m, att, _ = setup(penalty, True, False, "random", seed=5)
    RIF = att.rescaled_influence()
    for i in (0, 17, 50):
        assert rel_err(att.delta([i], "ns"), RIF[i]) < 1e-10
        assert rel_err(att.delta([i], "rif"), RIF[i]) < 1e-12


def test_rif_is_if_rescaled_by_leverage_under_fixed_penalty():
    # Sherman-Morrison, checked on dense pieces computed outside the package: under "fixed"
    # H_i = w_i x_i x_i^T, so (H - H_i)^-1 g_i = H^-1 g_i / (1 - w_i x_i^T H^-1 x_i)
    X, y, s, m, att, (A, g, Hs, H, w) = setup("fixed", True, False, "random", seed=6)
    lev = w * np.einsum("ij,ji->i", A, np.linalg.solve(H, A.T))
    IF = np.linalg.solve(H, g.T).T
    RIF = np.array([np.linalg.solve(H - Hs[i], g[i]) for i in range(A.shape[0])])
    np.testing.assert_allclose(RIF, IF / (1 - lev)[:, None], rtol=1e-9)      # the identity itself
    np.testing.assert_allclose(att.rif_leverage, lev, rtol=1e-10)
    np.testing.assert_allclose(att.rescaled_influence(), RIF, rtol=1e-9)


def test_sign_convention_effect_is_refit_minus_original():
    X, y, s, m, att, _ = setup("fixed", True, False, "uniform", seed=7, n=60)
    # the most influential sample on coefficient 0: removing it moves coef 0 a lot
    i = int(np.argmax(np.abs(att.influence()[:, 0])))
    refit = att.retrain([i])
    actual = refit.coef_[0] - m.coef_[0]
    assert att.effect([i], Coefficient(0), "retrain") == pytest.approx(actual, rel=1e-12)
    for method in ("if", "rif", "ns"):
        est = att.effect([i], Coefficient(0), method)
        assert np.sign(est) == np.sign(actual)
    # RIF and NS are closer to the truth than IF for this high-influence sample
    assert abs(att.effect([i], Coefficient(0), "rif") - actual) < abs(att.effect([i], Coefficient(0), "if") - actual)
    # removing a sample raises the training objective (theta_hat minimises it)
    assert att.effect([i], SelfLoss(), "retrain") > 0


@pytest.mark.parametrize("penalty,sparse,form", [("fixed", False, "primal"), ("per_sample", True, "primal"),
                                                 ("per_sample", False, "dual"), ("fixed", True, "dual")])
def test_scores_match_explicit_rows(penalty, sparse, form):
    X, y, s, m, att, (A, g, Hs, H, w) = setup(penalty, True, sparse, "random", seed=8, form=form)
    Xt, yt = make_data(n=15, d=X.shape[1], seed=99)
    IF, RIF = att.influence(), att.rescaled_influence()
    for metric in (TestLoss(Xt, yt), TestPrediction(Xt), Coefficient(2)):
        phi = metric.gradient(m, m.theta_)
        assert rel_err(att.scores(metric, "if"), IF @ phi) < RTOL
        assert rel_err(att.scores(metric, "rif"), RIF @ phi) < RTOL
    quad = lambda D: 0.5 * np.einsum("ij,jk,ik->i", D, H, D)  # noqa: E731
    assert rel_err(att.scores(SelfLoss(), "if"), quad(IF)) < RTOL
    assert rel_err(att.scores(SelfLoss(), "rif"), quad(RIF)) < RTOL


def test_effect_kinds():
    X, y, s, m, att, (A, g, Hs, H, w) = setup("per_sample", True, False, "uniform", seed=9)
    Xt, yt = make_data(n=15, d=X.shape[1], seed=98)
    f = TestLoss(Xt, yt)
    T = [1, 2, 3]
    d = att.delta(T, "rif")
    assert att.effect(T, f, "rif", "removal") == pytest.approx(f.value(m, m.theta_ + d) - f.value(m, m.theta_), rel=1e-9)
    assert att.effect(T, f, "rif", "linear") == pytest.approx(f.gradient(m, m.theta_) @ d, rel=1e-12)
    assert att.effect(T, SelfLoss(), "rif", "linear") == pytest.approx(0.5 * d @ H @ d, rel=1e-9)
    out = att.compare(T, {"loss": f, "self": SelfLoss()})
    assert out["retrain"]["converged"] and out["n_removed"] == 3
    assert out["removal"]["loss"]["actual"] == pytest.approx(att.effect(T, f, "retrain"), rel=1e-9)
    assert out["linear"]["self"]["ns"] == pytest.approx(att.effect(T, SelfLoss(), "ns", "linear"), rel=1e-12)


def test_rif_is_closer_to_retrain_than_if_in_high_dimension():
    # d comparable to n: the regime where IF underestimates (paper, Figure 1)
    X, y = make_data(n=120, d=60, seed=10)
    m = lo.GLM(l2=1e-3, penalty="per_sample").fit(X, y)
    att = lo.Attribution(m)
    f = SelfLoss()
    rng = np.random.default_rng(0)
    err = {"if": [], "rif": []}
    for _ in range(5):
        T = rng.choice(120, 6, replace=False)
        actual = att.effect(T, f, "retrain")
        for k in err:
            err[k].append(abs(att.effect(T, f, k) - actual) / abs(actual))
    assert np.median(err["rif"]) < 0.5 * np.median(err["if"])


class TestBadInput:
    def setup_method(self):
        self.X, self.y, self.s, self.m, self.att, _ = setup(n=30, d=3)

    @pytest.mark.parametrize("T,msg", [([], "empty"), ([1, 1], "duplicate index 1"), ([30], "out of range"),
                                       ([-1], "out of range"), (list(range(30)), "removes every sample"),
                                       ([0.5], "integer")])
    def test_removal_sets(self, T, msg):
        for method in ("if", "rif", "ns", "retrain"):
            with pytest.raises(ValueError, match=msg):
                self.att.delta(T, method)

    def test_unknown_method(self):
        with pytest.raises(ValueError, match="method='exact'"):
            self.att.delta([1], "exact")
        with pytest.raises(ValueError, match="kind='quadratic'"):
            self.att.effect([1], SelfLoss(), "if", kind="quadratic")

    def test_removing_a_whole_class(self):
        T = np.flatnonzero(self.y == 1)
        with pytest.raises(ValueError, match="one class"):
            self.att.retrain(T)
        # the Newton step refuses the same set with the same message (it returned a number)
        with pytest.raises(ValueError, match="T removes every sample of one class; the refit is undefined"):
            self.att.delta(T, "ns")
        with pytest.raises(ValueError, match="one class"):
            self.att.effect(T, SelfLoss(), "ns")

    def test_leverage_one_is_reported_with_its_index(self):
        # give sample 4 the curvature weight that makes h_4 = w_4 x_4^T H^-1 x_4 exactly 1
        # (H_{-4} singular); RIF is infinite there and must be refused, not returned as inf/NaN
        att = self.att
        x = att.design.dense_rows([4])[0]
        att.estimators.w[4] = 1.0 / (x @ np.linalg.solve(att.hessian, x))   # in place: the factor sees it
        att.estimators.__dict__.pop("_leverage", None)
        assert att.leverage[4] == pytest.approx(1.0, rel=1e-12)
        with pytest.raises(lo.LeverageError, match="sample 4 has leverage h >= 1"):
            att.rescaled_influence()
        with pytest.raises(lo.LeverageError, match="sample 4"):
            att.delta([3, 4], "rif")
        att.delta([3, 5], "rif")  # other samples are fine

    def test_unfitted_model(self):
        with pytest.raises(ValueError, match="not fitted"):
            lo.Attribution(lo.GLM())


@pytest.mark.parametrize("penalty,form", [("fixed", "primal"), ("per_sample", "primal"), ("per_sample", "dual")])
def test_retrain_many_equals_one_by_one(penalty, form):
    # the lockstep batch solver (fast path) against independent serial retrains (slow twin)
    X, y, s, m, att, _ = setup(penalty, True, False, "random", seed=12, n=90, d=8, form=form)
    rng = np.random.default_rng(3)
    Ts = [np.sort(rng.choice(90, k, replace=False)) for k in (1, 3, 3, 7, 12)]
    many = att.retrain_many(Ts)
    for T, refit in zip(Ts, many):
        one = att.retrain(T)
        assert refit.converged_ and refit.grad_norm_ <= m.tol
        np.testing.assert_allclose(refit.theta_, one.theta_, rtol=1e-8, atol=1e-10)
        np.testing.assert_array_equal(refit.objective_.s == 0, np.isin(np.arange(90), T) | (s == 0))


def test_leverage_sketch_obeys_its_bound_and_is_unbiased():
    from reference import design, pieces
    rng = np.random.default_rng(21)
    X = rng.normal(size=(300, 400)) / 20
    y = (rng.random(300) < 0.5).astype(int)
    model = lo.GLM(l2=0.5).fit(X, y)
    att = lo.Attribution(model, form="primal")
    A = design(X, True)
    _, _, H, w = pieces(A, y.astype(float), np.ones(300), model.theta_, 0.5, "fixed", True)
    h = w * np.einsum("ij,ji->i", A, np.linalg.solve(H, A.T))
    sk = att.leverage_sketch(eps=0.6, delta=0.01, seed=3)
    assert 0 < sk.n_projections < 400
    ratio = sk.values / h
    assert sk.lower <= ratio.min() and ratio.max() <= sk.upper
    assert sk.upper - 1 <= 0.6 + 1e-12 and 1 - sk.lower <= 0.6
    mean = np.mean([att.leverage_sketch(eps=0.6, seed=k).values for k in range(40)], axis=0)
    assert abs(np.mean(mean / h) - 1) < 0.01          # unbiased
    exact = att.leverage_sketch(eps=0.05)              # more projections than p: exact
    assert exact.n_projections == 0 and np.max(np.abs(exact.values - h)) < 1e-10
    with pytest.raises(ValueError, match="eps must be a number in \\(0, 1\\)"):
        att.leverage_sketch(eps=1.5)


def test_retrain_many_skips_invalid_sets_when_asked():
    X, y = make_data(n=60, d=4, seed=21)
    att = lo.Attribution(lo.GLM(l2=1.0).fit(X, y))
    bad = np.flatnonzero(y == 1)                       # empties a class
    good = np.array([0, 5, 9])
    with pytest.raises(ValueError, match="one class"):
        att.retrain_many([good, bad])
    got = att.retrain_many([good, bad], skip_invalid=True)
    assert got[1] is None
    np.testing.assert_allclose(got[0].theta_, att.retrain(good).theta_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("penalty,l2", [("fixed", 1.0), ("per_sample", 0.05)])
def test_retrain_certificate_is_recomputed_on_the_kept_rows(penalty, l2):
    # the reported relative gradient must be max|grad L_T| / max_j sum_{i kept} s_i |x_ij|, on the
    # kept rows only: a denominator that still counts the removed rows would understate it
    X, y = make_data(n=70, d=5, seed=31)
    s = np.random.default_rng(2).uniform(0.5, 2.0, 70)
    att = lo.Attribution(lo.GLM(l2=l2, penalty=penalty).fit(X, y, sample_weight=s))
    T = np.array([1, 2, 3, 10, 40])
    keep = np.setdiff1d(np.arange(70), T)
    refit = att.retrain(T, tol=1e-6)
    A = np.column_stack([X[keep], np.ones(keep.size)])
    w = s[keep]
    lam = l2 * (w.sum() if penalty == "per_sample" else 1.0)
    P = np.ones(A.shape[1])
    P[-1] = 0.0
    z = A @ refit.theta_
    grad = A.T @ (w * (1 / (1 + np.exp(-z)) - y[keep])) + lam * P * refit.theta_
    scale = np.max(np.abs(A).T @ w)
    assert refit.grad_norm_ == pytest.approx(np.max(np.abs(grad)) / scale, rel=1e-6, abs=1e-15)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_rif_of_a_few_rows_before_any_cache_matches_brute_force(penalty):
    # a fresh Attribution computes a_i for a few rows directly (no all-sample pass); more
    # than 64 rows go through the all-sample leverages; both against dense solves
    X, y, s, m, _, (A, g, Hs, H, w) = setup(penalty, True, False, "random", seed=12, n=150, d=5)
    for T in (np.array([4, 60, 149]), np.arange(0, 140, 2)):
        att = lo.Attribution(m)
        want = sum(np.linalg.solve(H - Hs[i], g[i]) for i in T)
        assert rel_err(att.delta(T, "rif"), want) < 1e-9
        assert "_rif_lev" not in att.estimators.__dict__ or T.size > 64


def test_rif_scores_nan_only_where_a_row_alone_makes_h_singular():
    # one row holds a column on its own (leverage 1, no penalty on it with l2=0 and squared loss)
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.normal(size=(30, 2)), np.zeros(30)])
    X[5, 2] = 1.0
    y = X[:, 0] + rng.normal(size=30)
    att = lo.Attribution(lo.GLM(family="squared", l2=0.0).fit(X, y))
    phi = np.array([1.0, 0, 0, 0])
    scores = np.asarray(att.estimators.rif_scores(phi, on_singular="nan"))
    assert np.isnan(scores[5]) and np.all(np.isfinite(np.delete(scores, 5)))
    A = np.column_stack([X, np.ones(30)])
    for i in (0, 17):
        keep = np.setdiff1d(np.arange(30), [i])
        theta_i = np.linalg.lstsq(A[keep], y[keep], rcond=None)[0]
        assert scores[i] == pytest.approx(theta_i[0] - att.theta[0], rel=1e-8)   # exact for OLS
    with pytest.raises(lo.LeverageError, match="sample 5"):
        att.estimators.rif_scores(phi)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_self_loss_effects_against_the_dense_objective(penalty):
    from reference import objective
    X, y, s, m, att, (A, g, Hs, H, w) = setup(penalty, True, False, "random", seed=13)
    l2 = 0.5 if penalty == "fixed" else 0.02
    f, _grad, _hess = objective(A, y.astype(float), s, l2, penalty, True)
    rng = np.random.default_rng(0)
    deltas = [rng.normal(scale=0.3, size=A.shape[1]) for _ in range(3)]
    for d, (removal, linear) in zip(deltas, att.estimators.self_loss_effects(deltas)):
        assert removal == pytest.approx(f(m.theta_ + d) - f(m.theta_), rel=1e-9)
        assert linear == pytest.approx(0.5 * d @ H @ d, rel=1e-9)


def test_hess_quad_in_pieces_matches_the_dense_hessian(monkeypatch):
    from leaveout.attribution import estimators
    X, y, s, m, att, (A, g, Hs, H, w) = setup("per_sample", True, False, "random", seed=14)
    D = np.random.default_rng(1).normal(size=(A.shape[1] + 2, A.shape[1]))     # more rows than columns
    want = np.einsum("ij,jk,ik->i", D, H, D)
    np.testing.assert_allclose(att.estimators.hess_quad(D), want, rtol=1e-10)
    monkeypatch.setattr(estimators, "_QUAD_CELLS", 2 * A.shape[0])       # two rows of D at a time
    np.testing.assert_allclose(att.estimators.hess_quad(D), want, rtol=1e-10)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_hess_quad_through_the_factor_matches_the_dense_hessian(penalty, monkeypatch):
    """Many rows take ||L^T d||^2 from the Cholesky factor; the pass through X is its twin."""
    from leaveout.attribution import estimators
    X, y, s, m, att, (A, g, Hs, H, w) = setup(penalty, True, False, "random", seed=15)
    D = np.random.default_rng(2).normal(size=(50, A.shape[1]))
    want = np.einsum("ij,jk,ik->i", D, H, D)
    assert isinstance(att.curvature.factor, estimators.PrimalFactor)
    fast = att.estimators.hess_quad(D)
    np.testing.assert_allclose(fast, want, rtol=1e-10)
    monkeypatch.setattr(estimators, "PrimalFactor", type("NoFactor", (), {}))    # force the pass through X
    np.testing.assert_allclose(att.estimators.hess_quad(D), fast, rtol=1e-10)


@pytest.mark.parametrize("label", [0, 1])
def test_newton_step_and_retrain_refuse_a_set_emptying_either_class(label):
    X, y, s, m, att, _ = setup("fixed", True, False, "uniform", seed=15, n=40)
    T = np.flatnonzero(y == label)
    for call in (lambda: att.delta(T, "ns"), lambda: att.retrain(T)):
        with pytest.raises(ValueError, match="every sample of one class"):
            call()
    att.delta(T[:-1], "ns")                        # one row of the class left: defined


def test_a_metric_object_reused_on_another_model_follows_that_model():
    X, y = make_data(n=60, d=3, seed=2)
    f = TestLoss(X[:10], y[:10])
    a = lo.GLM(l2=1.0).fit(X, y)
    b = lo.GLM(l2=1.0, fit_intercept=False).fit(X, y)
    assert f.value(a, a.theta_) == pytest.approx(TestLoss(X[:10], y[:10]).value(a, a.theta_))
    assert f.value(b, b.theta_) == pytest.approx(TestLoss(X[:10], y[:10]).value(b, b.theta_), rel=1e-12)


def test_coefficient_bounds_and_the_intercept_aliases():
    X, y = make_data(n=60, d=3, seed=2)
    m = lo.GLM(l2=1.0).fit(X, y)
    assert Coefficient("Intercept").value(m, m.theta_) == m.intercept_
    assert Coefficient("intercept").value(m, m.theta_) == m.intercept_
    assert Coefficient(2).value(m, m.theta_) == m.coef_[2]
    with pytest.raises(ValueError, match="0..2"):
        Coefficient(3).value(m, m.theta_)


@pytest.mark.parametrize("family", ["logistic", "squared", "poisson"])
@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_self_loss_scores_without_rows_equal_the_rows_quadratic_form(family, penalty):
    """The closed forms of quad_scores (no (n, p) rows) against d_i^T H d_i of the explicit
    IF and RIF rows, with zero-weight rows and several penalty shares."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(90, 4))
    z = X @ np.array([0.8, -0.5, 0.3, 0.0])
    y = {"logistic": (rng.random(90) < 1 / (1 + np.exp(-z))).astype(float),
         "squared": z + rng.normal(size=90), "poisson": rng.poisson(np.exp(0.3 * z)).astype(float)}[family]
    s = rng.choice([0.0, 1.0, 2.5], size=90, p=[0.2, 0.5, 0.3])
    m = lo.GLM(family, l2=0.3 if penalty == "fixed" else 0.05, penalty=penalty, tol=1e-12).fit(X, y, sample_weight=s)
    att = lo.Attribution(m)
    H = att.hessian
    for method, rows in (("if", att.influence()), ("rif", att.rescaled_influence())):
        want = 0.5 * np.einsum("ij,jk,ik->i", rows, H, rows)
        assert rel_err(att.scores(SelfLoss(), method), want) < 1e-9
        assert np.all(att.scores(SelfLoss(), method)[s == 0] == 0)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_effects_of_equals_effect_of_pair_by_pair(penalty):
    """The batched effects (one metric gradient per call, one pass over X for the training
    objective) against :meth:`effect_of` for every change and metric, and the linear effect
    of a test loss against a finite difference of its value."""
    X, y, s, m, att, _ = setup(penalty)
    Xt, yt = make_data(n=8, d=6, seed=9)
    metrics = {"loss": TestLoss(Xt, yt), "pred": TestPrediction(Xt[:3]), "coef": Coefficient(2), "self": SelfLoss()}
    T = np.array([1, 4, 9, 30])
    deltas = {"if": att.delta(T, "if"), "rif": att.delta(T, "rif"), "ns": att.delta(T, "ns")}
    out = att.effects_of(deltas, metrics)
    for name, f in metrics.items():
        for k, d in deltas.items():
            removal, linear = out[name][k]
            assert removal == pytest.approx(att.effect_of(d, f, "removal"), rel=1e-12, abs=1e-15)
            assert linear == pytest.approx(att.effect_of(d, f, "linear"), rel=1e-12, abs=1e-15)
    d, h = deltas["rif"], 1e-6
    fd = (metrics["loss"].value(m, m.theta_ + h * d) - metrics["loss"].value(m, m.theta_ - h * d)) / (2 * h)
    assert out["loss"]["rif"][1] == pytest.approx(fd, rel=1e-6)
    assert len({round(out["loss"][k][1], 12) for k in deltas}) == 3          # three different changes
