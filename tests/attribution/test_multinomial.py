"""Multinomial family: loss, fit, IF/RIF/NS/retrain against brute force, identities, errors."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp

import leaveout as lo
from leaveout.exceptions import SingularHessianError
from leaveout.losses import SoftmaxLoss
from leaveout.metrics import Coefficient, SelfLoss, TestLoss, TestPrediction
from reference import design, helmert, softmax_objective, softmax_pieces, softmax_tight_fit


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300)


def make(n=50, d=4, C=3, seed=0, sparse=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if sparse:
        X = X * (rng.random((n, d)) < 0.6)
    W = rng.normal(size=(d, C))
    y = np.argmax(X @ W + rng.gumbel(size=(n, C)), axis=1)
    return (sp.csr_matrix(X) if sparse else X), y


def test_basis_is_orthonormal_and_sums_to_zero():
    for C in (2, 3, 7):
        Q = SoftmaxLoss(C).Q
        np.testing.assert_allclose(Q.T @ Q, np.eye(C - 1), atol=1e-14)
        np.testing.assert_allclose(Q.sum(axis=0), 0, atol=1e-14)
        np.testing.assert_allclose(Q, helmert(C), atol=1e-15)


def test_loss_matches_logsumexp_and_finite_differences():
    loss = SoftmaxLoss(4)
    rng = np.random.default_rng(0)
    u = rng.normal(size=(30, 3)) * 4
    y = rng.integers(0, 4, 30)
    z = u @ loss.Q.T
    np.testing.assert_allclose(loss.value(y, u), logsumexp(z, axis=1) - z[np.arange(30), y], rtol=1e-12, atol=1e-14)
    eps = 1e-6
    E = np.eye(3)
    fd_g = np.stack([(loss.value(y, u + eps * E[a]) - loss.value(y, u - eps * E[a])) / (2 * eps) for a in range(3)], 1)
    np.testing.assert_allclose(loss.derivative(y, u), fd_g, atol=1e-7)
    fd_h = np.stack([(loss.derivative(y, u + eps * E[a]) - loss.derivative(y, u - eps * E[a])) / (2 * eps)
                     for a in range(3)], 2)
    np.testing.assert_allclose(loss.curvature(y, u), fd_h, atol=1e-7)
    # a very confident correct row keeps its tiny loss (no cancellation to 0)
    u1 = (np.array([[60.0, 0, 0, 0]]) - 15.0) @ loss.Q     # logits (45, -15, -15, -15)
    z1 = u1 @ loss.Q.T
    want = np.log1p(np.exp(z1[0, 1:] - z1[0, 0]).sum())
    assert want > 0
    np.testing.assert_allclose(loss.value(np.array([0]), u1), want, rtol=1e-12)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_gradient_and_hessian_match_finite_differences(penalty):
    X, y = make(seed=1)
    m = lo.GLM("multinomial", l2=0.3, penalty=penalty).fit(X, y)
    rng = np.random.default_rng(2)
    theta = m.theta_ + 0.3 * rng.normal(size=m.theta_.size)
    A = design(X, True)
    f = softmax_objective(A, y, np.ones(len(y)), 0.3, penalty, True, 3)
    eps = 1e-6
    E = np.eye(theta.size)
    fd = np.array([(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in E])
    np.testing.assert_allclose(m.gradient(theta), fd, atol=1e-6)
    assert abs(m.objective(theta) - f(theta)) < 1e-10 * abs(f(theta))
    fdh = np.stack([(m.gradient(theta + eps * e) - m.gradient(theta - eps * e)) / (2 * eps) for e in E])
    np.testing.assert_allclose(m.hessian(theta), fdh, atol=1e-6)


CASES = [(pen, icpt, sparse) for pen in ("fixed", "per_sample") for icpt in (True, False) for sparse in (False, True)]


@pytest.mark.parametrize("penalty,fit_intercept,sparse", CASES)
def test_estimators_match_brute_force(penalty, fit_intercept, sparse):
    X, y = make(n=40, d=3, C=4, seed=3, sparse=sparse)
    s = np.random.default_rng(4).choice([0.5, 1.0, 2.0], size=40)
    l2 = 0.05 if penalty == "per_sample" else 0.7
    m = lo.GLM("multinomial", l2=l2, penalty=penalty, fit_intercept=fit_intercept).fit(X, y, sample_weight=s)
    assert m.converged_
    att = lo.Attribution(m)
    assert isinstance(att, lo.Attribution)
    A = design(X, fit_intercept)
    theta_ref = softmax_tight_fit(A, y, s, l2, penalty, fit_intercept, 4, np.zeros(m.theta_.size))
    assert rel_err(m.theta_, theta_ref) < 1e-8
    g, Hs, H = softmax_pieces(A, y, s, m.theta_, l2, penalty, fit_intercept, 4)
    assert rel_err(att.hessian, H) < 1e-12
    IF = np.linalg.solve(H, g.T).T
    RIF = np.stack([np.linalg.solve(H - Hs[i], g[i]) for i in range(len(y))])
    assert rel_err(att.influence(), IF) < 1e-9
    assert rel_err(att.rescaled_influence(), RIF) < 1e-9
    # leverage: trace of H^{-1} times the data part of H_i
    data_part = Hs.copy()
    if penalty == "per_sample":
        pen = np.tile(np.r_[np.ones(A.shape[1] - 1), 0.0] if fit_intercept else np.ones(A.shape[1]), 3)
        data_part -= (s * l2)[:, None, None] * np.diag(pen)[None]
    lev = np.array([np.trace(np.linalg.solve(H, Hi)) for Hi in data_part])
    assert rel_err(att.leverage, lev) < 1e-9
    blocks = att.leverage_blocks
    assert np.all(np.linalg.eigvalsh(blocks) > -1e-12) and np.all(np.linalg.eigvalsh(blocks) < 1)
    for T in (np.array([2, 7, 11]), np.arange(0, 40, 3)):
        NS = np.linalg.solve(H - Hs[T].sum(0), g[T].sum(0))
        assert rel_err(att.delta(T, "if"), IF[T].sum(0)) < 1e-9
        assert rel_err(att.delta(T, "rif"), RIF[T].sum(0)) < 1e-9
        assert rel_err(att.delta(T, "ns"), NS) < 1e-9
    Xt, yt = make(n=12, d=3, C=4, seed=5)
    for metric in (TestPrediction(Xt, label=1), TestLoss(Xt, yt)):
        phi = metric.gradient(m, m.theta_)
        assert rel_err(att.scores(metric, "if"), IF @ phi) < 1e-9
        assert rel_err(att.scores(metric, "rif"), RIF @ phi) < 1e-9
    quad = 0.5 * np.einsum("ij,jk,ik->i", RIF, H, RIF)
    assert rel_err(att.scores(SelfLoss(), "rif"), quad) < 1e-9


def test_small_subset_leverage_path_equals_full():
    X, y = make(n=90, d=4, C=3, seed=6)
    m = lo.GLM("multinomial", l2=0.02, penalty="per_sample").fit(X, y)
    T = np.array([3, 50, 77])
    att_small = lo.Attribution(m)
    small = att_small.delta(T, "rif")                  # blocks solved for T only
    assert att_small.estimators.blocks == {}
    full = lo.Attribution(m)
    assert full.rif_leverage.shape == (90,)            # all-sample blocks first
    assert len(full.estimators.blocks) == 1
    assert rel_err(small, full.delta(T, "rif")) < 1e-12


def test_metric_gradients_match_finite_differences():
    X, y = make(seed=7)
    m = lo.GLM("multinomial", l2=0.5).fit(X, y)
    Xt, yt = make(n=9, seed=8)
    eps = 1e-6
    E = np.eye(m.theta_.size)
    for metric in (TestPrediction(Xt, label=2), TestLoss(Xt, yt), Coefficient(1, label=0), Coefficient("intercept", label=2)):
        fd = np.array([(metric.value(m, m.theta_ + eps * e) - metric.value(m, m.theta_ - eps * e)) / (2 * eps) for e in E])
        np.testing.assert_allclose(metric.gradient(m, m.theta_), fd, atol=1e-7)
    P = m.predict_proba(Xt)
    np.testing.assert_allclose(TestPrediction(Xt, label=2).value(m, m.theta_), P[:, 2].sum(), rtol=1e-12)
    np.testing.assert_allclose(TestLoss(Xt, yt).value(m, m.theta_), -np.log(P[np.arange(9), yt]).sum(), rtol=1e-10)
    assert Coefficient(1, label=0).value(m, m.theta_) == pytest.approx(m.coef_[0, 1], rel=1e-12)
    assert Coefficient("intercept", label=2).value(m, m.theta_) == pytest.approx(m.intercept_[2], rel=1e-12)


def test_coefficients_sum_to_zero_and_predictions():
    X, y = make(seed=9)
    m = lo.GLM("multinomial", l2=0.5).fit(X, y + 10)
    np.testing.assert_array_equal(m.classes_, [10, 11, 12])
    np.testing.assert_allclose(m.coef_.sum(axis=0), 0, atol=1e-12)
    assert abs(m.intercept_.sum()) < 1e-12
    Z = X @ m.coef_.T + m.intercept_
    np.testing.assert_allclose(m.decision_function(X), Z, rtol=1e-12, atol=1e-12)
    P = np.exp(Z - logsumexp(Z, axis=1, keepdims=True))
    np.testing.assert_allclose(m.predict_proba(X), P, rtol=1e-12)
    np.testing.assert_array_equal(m.predict(X), m.classes_[P.argmax(axis=1)])


def test_two_classes_equal_logistic_with_half_the_penalty():
    """Sum-to-zero with C = 2: z_1 - z_0 = -sqrt(2) b^T x and |W|^2 = |b|^2, so the model is
    logistic regression with beta = -sqrt(2) b and penalty l2 / 2."""
    rng = np.random.default_rng(10)
    X = rng.normal(size=(70, 4))
    y = (rng.random(70) < 1 / (1 + np.exp(-X @ rng.normal(size=4)))).astype(int)
    for penalty in ("fixed", "per_sample"):
        l2 = 0.4 if penalty == "fixed" else 0.01
        mm = lo.GLM("multinomial", l2=l2, penalty=penalty).fit(X, y)
        ml = lo.GLM("logistic", l2=l2 / 2, penalty=penalty).fit(X, y)
        k = -np.sqrt(2.0)
        assert rel_err(k * mm.theta_, ml.theta_) < 1e-8
        am, al = lo.Attribution(mm), lo.Attribution(ml)
        assert rel_err(am.leverage, al.leverage) < 1e-8
        T = np.array([0, 4, 9, 30])
        for meth in ("if", "rif", "ns"):
            assert rel_err(k * am.delta(T, meth), al.delta(T, meth)) < 1e-7
        Xt = rng.normal(size=(5, 4))
        np.testing.assert_allclose(am.scores(TestPrediction(Xt, label=1)), al.scores(TestPrediction(Xt)), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("penalty", ["fixed", "per_sample"])
def test_retrain_is_certified_and_matches_an_independent_fit(penalty):
    X, y = make(n=60, d=3, C=3, seed=11)
    l2 = 0.2 if penalty == "fixed" else 0.005
    m = lo.GLM("multinomial", l2=l2, penalty=penalty).fit(X, y)
    att = lo.Attribution(m)
    T = np.array([1, 2, 3, 10, 40])
    refit = att.retrain(T)
    assert refit.converged_ and refit.grad_norm_ <= 1e-9
    keep = np.setdiff1d(np.arange(60), T)
    A = design(X, True)[keep]
    ref = softmax_tight_fit(A, y[keep], np.ones(keep.size), l2, penalty, True, 3, m.theta_)
    assert rel_err(refit.theta_, ref) < 1e-8
    direct = lo.GLM("multinomial", l2=l2, penalty=penalty).fit(X[keep], y[keep])
    assert rel_err(refit.theta_, direct.theta_) < 1e-8
    many = att.retrain_many([T, np.array([5, 6])])
    assert rel_err(many[0].theta_, refit.theta_) < 1e-12
    out = att.compare(T, {"pred": TestPrediction(X[:5], label=0)})
    assert out["removal"]["pred"]["actual"] == pytest.approx(
        TestPrediction(X[:5], label=0).value(m, refit.theta_) - TestPrediction(X[:5], label=0).value(m, m.theta_), rel=1e-10)


def test_sparse_equals_dense():
    X, y = make(n=60, d=5, C=4, seed=12, sparse=True)
    a = lo.GLM("multinomial", l2=0.3).fit(X, y)
    b = lo.GLM("multinomial", l2=0.3).fit(X.toarray(), y)
    assert rel_err(a.theta_, b.theta_) < 1e-10
    aa, ab = lo.Attribution(a), lo.Attribution(b)
    assert rel_err(aa.rescaled_influence(), ab.rescaled_influence()) < 1e-9
    assert rel_err(aa.delta([1, 2, 3], "ns"), ab.delta([1, 2, 3], "ns")) < 1e-9


def test_classes_order_and_bad_input():
    X, y = make(seed=13)
    labels = np.array(["cat", "dog", "eel"])[y]
    m = lo.GLM("multinomial", l2=1.0).fit(X, labels, classes=["eel", "cat", "dog"])
    np.testing.assert_array_equal(m.classes_, ["eel", "cat", "dog"])
    ref = lo.GLM("multinomial", l2=1.0).fit(X, labels)
    np.testing.assert_allclose(m.predict_proba(X)[:, [1, 2, 0]], ref.predict_proba(X), rtol=1e-8)
    with pytest.raises(ValueError, match="class 'fox' does not occur in y"):
        lo.GLM("multinomial").fit(X, labels, classes=["cat", "dog", "eel", "fox"])
    with pytest.raises(ValueError, match="label 'eel', which is not in classes"):
        lo.GLM("multinomial").fit(X, labels, classes=["cat", "dog"])
    with pytest.raises(ValueError, match="only one class"):
        lo.GLM("multinomial").fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="offset is not supported"):
        lo.GLM("multinomial").fit(X, y, offset=np.zeros(len(y)))
    with pytest.raises(ValueError, match="classes is for the multinomial family"):
        lo.GLM("logistic").fit(X, y > 0, classes=[False, True])
    with pytest.raises(ValueError, match="family='multinomial'"):
        lo.GLM("logistic").fit(X, y)
    att = lo.Attribution(m)
    with pytest.raises(ValueError, match="needs label="):
        att.scores(TestPrediction(X[:3]))
    with pytest.raises(ValueError, match="'cow' is not one of the training classes"):
        att.scores(TestPrediction(X[:3], label="cow"))
    with pytest.raises(ValueError, match="labels outside the training classes"):
        att.scores(TestLoss(X[:3], ["cat", "dog", "cow"]))
    with pytest.raises(ValueError, match="removes every sample of class 'cat'"):
        att.retrain(np.flatnonzero(labels == "cat"))
    with pytest.raises(ValueError, match="form='dual' is not available"):
        lo.Attribution(m, form="dual")
    with pytest.raises(ValueError, match="label=...\\) is for the multinomial"):
        lo.Attribution(lo.GLM().fit(X, y > 0)).scores(TestPrediction(X[:3], label=1))


def test_separable_unpenalised_data_is_refused():
    X = np.array([[-2.0], [-1.5], [0.0], [0.2], [2.0], [2.5]])
    y = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(SingularHessianError, match="separable"):
        lo.GLM("multinomial", l2=0.0).fit(X, y)


def test_from_sklearn_multinomial_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    X, y = make(n=120, d=4, C=4, seed=14)
    labels = np.array(["a", "b", "c", "d"])[y]
    for kw in ({"C": 0.5}, {"C": 2.0, "fit_intercept": False}):
        est = sklearn.LogisticRegression(tol=1e-10, max_iter=10000, **kw).fit(X, labels)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            att = lo.from_sklearn(est, X, labels)
        assert att.model.family == "multinomial" and att.model.l2 == pytest.approx(1 / kw["C"])
        np.testing.assert_array_equal(att.model.classes_, est.classes_)
        np.testing.assert_allclose(att.model.predict_proba(X), est.predict_proba(X), atol=1e-6)
        np.testing.assert_allclose(att.model.coef_, est.coef_ - est.coef_.mean(axis=0), atol=1e-5)
    from sklearn.multiclass import OneVsRestClassifier
    ovr = OneVsRestClassifier(sklearn.LogisticRegression()).fit(X, labels)
    with pytest.raises(ValueError, match="OneVsRestClassifier is not supported; supported: LogisticRegression"):
        lo.from_sklearn(ovr, X, labels)
    est = sklearn.LogisticRegression(C=0.5).fit(X, labels)
    with pytest.raises(ValueError, match="class 'd' does not occur in y"):
        lo.from_sklearn(est, X[labels != "d"], labels[labels != "d"])


def test_newton_step_refuses_a_set_that_empties_a_class():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 3))
    y = rng.choice(["a", "b", "c"], 60)
    att = lo.Attribution(lo.GLM(family="multinomial", l2=1.0).fit(X, y))
    T = np.flatnonzero(y == "b")
    for method in ("ns", "retrain"):
        with pytest.raises(ValueError, match="T removes every sample of class 'b'"):
            att.delta(T, method)


def test_rif_leverage_takes_the_penalty_share_out_under_per_sample():
    # brute force: trace of (data part of H_i) (H - c_i M)^{-1}, with c_i M the row's penalty share
    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 3))
    labels = rng.integers(0, 3, 40)
    s = rng.uniform(0.5, 2.0, 40)
    l2 = 0.3
    m = lo.GLM(family="multinomial", l2=l2, penalty="per_sample").fit(X, labels, sample_weight=s)
    att = lo.Attribution(m)
    A = design(X, True)
    g, Hs, H = softmax_pieces(A, labels, s, m.theta_, l2, "per_sample", True, 3)
    Mt = np.diag(np.tile(np.r_[np.ones(3), 0.0], 2))
    want = np.array([np.trace((Hs[i] - s[i] * l2 * Mt) @ np.linalg.inv(H - s[i] * l2 * Mt)) for i in range(40)])
    np.testing.assert_allclose(att.rif_leverage, want, rtol=1e-8)
    plain = np.array([np.trace((Hs[i] - s[i] * l2 * Mt) @ np.linalg.inv(H)) for i in range(40)])
    np.testing.assert_allclose(att.leverage, plain, rtol=1e-8)
    assert np.max(np.abs(att.rif_leverage - att.leverage)) > 1e-6        # the share matters here
