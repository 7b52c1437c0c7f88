import numpy as np
import pytest
import scipy.sparse as sp

import leaveout as lo
from conftest import dense, make_data
from reference import design, objective, tight_fit

CASES = [(pen, icpt, sparse) for pen in ("fixed", "per_sample") for icpt in (True, False)
         for sparse in (False, True)]


def l2_for(penalty):
    return 0.5 if penalty == "fixed" else 0.01


@pytest.mark.parametrize("penalty,icpt,sparse", CASES)
def test_gradient_and_hessian_match_finite_differences(penalty, icpt, sparse):
    X, y = make_data(sparse=sparse, seed=1)
    s = np.random.default_rng(2).uniform(0.5, 2.0, X.shape[0])
    m = lo.GLM(l2=l2_for(penalty), penalty=penalty, fit_intercept=icpt).fit(X, y, sample_weight=s)
    theta = m.theta_ + np.random.default_rng(3).normal(size=m.theta_.size) * 0.3
    eps = 1e-6
    E = np.eye(theta.size)
    num_g = np.array([(m.objective(theta + eps * e) - m.objective(theta - eps * e)) / (2 * eps) for e in E])
    num_H = np.array([(m.gradient(theta + eps * e) - m.gradient(theta - eps * e)) / (2 * eps) for e in E])
    np.testing.assert_allclose(m.gradient(theta), num_g, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m.hessian(theta), num_H, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("penalty,icpt,sparse", CASES)
def test_fit_agrees_with_independent_tight_solve(penalty, icpt, sparse):
    X, y = make_data(sparse=sparse, seed=4)
    s = np.random.default_rng(5).uniform(0.5, 2.0, X.shape[0])
    m = lo.GLM(l2=l2_for(penalty), penalty=penalty, fit_intercept=icpt).fit(X, y, sample_weight=s)
    assert m.converged_ and m.grad_norm_ <= 1e-9 and m.n_iter_ >= 1
    A = design(X, icpt)
    ref = tight_fit(A, y.astype(float), s, l2_for(penalty), penalty, icpt)
    np.testing.assert_allclose(m.theta_, ref, rtol=1e-8, atol=1e-10)
    # the reported gradient norm is the real one, relative to max_j sum_i s_i |x_ij|
    _, grad, _ = objective(A, y.astype(float), s, l2_for(penalty), penalty, icpt)
    scale = np.max(np.abs(A).T @ s)
    assert m.grad_norm_ == pytest.approx(np.max(np.abs(grad(m.theta_))) / scale, rel=1e-6, abs=1e-15)


def test_per_sample_is_fixed_with_penalty_times_total_weight():
    X, y = make_data(seed=6)
    a = lo.GLM(l2=0.02, penalty="per_sample").fit(X, y)
    b = lo.GLM(l2=0.02 * X.shape[0], penalty="fixed").fit(X, y)
    np.testing.assert_allclose(a.theta_, b.theta_, rtol=1e-10, atol=1e-12)


def test_integer_weights_equal_duplicated_rows():
    X, y = make_data(n=40, seed=7)
    w = np.random.default_rng(8).integers(1, 4, size=40)
    a = lo.GLM(l2=0.3).fit(X, y, sample_weight=w)
    b = lo.GLM(l2=0.3).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(a.theta_, b.theta_, rtol=1e-10, atol=1e-12)


def test_sparse_equals_dense():
    X, y = make_data(sparse=True, seed=9)
    a = lo.GLM(l2=0.1).fit(X, y)
    b = lo.GLM(l2=0.1).fit(dense(X), y)
    np.testing.assert_allclose(a.theta_, b.theta_, rtol=1e-11, atol=1e-13)


def test_label_encodings():
    X, y = make_data(seed=10)
    ref = lo.GLM().fit(X, y)
    for labels in (y.astype(bool), np.where(y == 1, "spam", "ham"), np.where(y == 1, 7.0, -3.0)):
        m = lo.GLM().fit(X, labels)
        np.testing.assert_allclose(m.theta_, ref.theta_, rtol=1e-12)
    m = lo.GLM().fit(X, np.where(y == 1, "spam", "ham"))
    assert list(m.classes_) == ["ham", "spam"]
    assert set(m.predict(X)) <= {"ham", "spam"}
    p1 = 1 / (1 + np.exp(-(X @ m.coef_ + m.intercept_)))
    np.testing.assert_allclose(m.predict_proba(X), np.column_stack([1 - p1, p1]))        # scikit-learn's shape


def test_warm_start_converges_in_fewer_iterations():
    X, y = make_data(n=200, d=10, seed=11)
    cold = lo.GLM(l2=0.1).fit(X, y)
    warm = lo.GLM(l2=0.1).fit(X, y, init=cold.theta_ + 1e-4)
    assert warm.n_iter_ < cold.n_iter_
    np.testing.assert_allclose(warm.theta_, cold.theta_, rtol=1e-9, atol=1e-11)


def test_unconverged_fit_warns_and_says_so():
    X, y = make_data(seed=12)
    with pytest.warns(lo.ConvergenceWarning, match="max_iter"):
        m = lo.GLM(l2=0.01, max_iter=1).fit(X, y)
    assert m.converged_ is False and m.n_iter_ == 1 and m.grad_norm_ > 1e-9


class TestBadInput:
    def setup_method(self):
        self.X, self.y = make_data(seed=13)

    def test_nan_in_X(self):
        X = self.X.copy()
        X[3, 2] = np.nan
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            lo.GLM().fit(X, self.y)
        Xs = sp.csr_matrix(self.X)
        Xs.data[0] = np.inf
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            lo.GLM().fit(Xs, self.y)

    def test_nan_in_y(self):
        y = self.y.astype(float)
        y[0] = np.nan
        with pytest.raises(ValueError, match="y contains NaN"):
            lo.GLM().fit(self.X, y)

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="y has 79 entries but X has 80 rows"):
            lo.GLM().fit(self.X, self.y[:-1])

    def test_one_class(self):
        with pytest.raises(ValueError, match="only one class"):
            lo.GLM().fit(self.X, np.ones(80))

    def test_three_classes(self):
        with pytest.raises(ValueError, match="3 distinct values"):
            lo.GLM().fit(self.X, np.arange(80) % 3)

    def test_negative_l2(self):
        with pytest.raises(ValueError, match="l2 must be >= 0"):
            lo.GLM(l2=-1).fit(self.X, self.y)

    def test_bad_penalty(self):
        with pytest.raises(ValueError, match="penalty='l1'"):
            lo.GLM(penalty="l1").fit(self.X, self.y)

    def test_unpenalised_with_more_parameters_than_samples(self):
        X, y = make_data(n=10, d=12, seed=14)
        with pytest.raises(lo.SingularHessianError, match="add an L2 penalty"):
            lo.GLM(l2=0).fit(X, y)

    def test_unpenalised_separable_data(self):
        X, _ = make_data(n=50, d=3, seed=15)
        y = (X[:, 0] > 0).astype(int)
        with pytest.raises(lo.SingularHessianError, match="separable.*l2"):
            lo.GLM(l2=0).fit(X, y)

    def test_bad_sample_weight(self):
        with pytest.raises(ValueError, match="sample_weight"):
            lo.GLM().fit(self.X, self.y, sample_weight=-np.ones(80))

    def test_unpenalised_non_separable_fits(self):
        # against an independent fit: statsmodels' Logit (Newton, its own code), and the
        # gradient of the log-likelihood at our answer
        sm = pytest.importorskip("statsmodels.api")
        X, y = make_data(n=300, d=3, seed=16)
        m = lo.GLM(l2=0, tol=1e-12).fit(X, y)
        assert m.converged_
        ref = sm.Logit(y, np.column_stack([X, np.ones(300)])).fit(disp=0, tol=1e-12, maxiter=100)
        np.testing.assert_allclose(m.theta_, ref.params, rtol=1e-7, atol=1e-9)
        A = np.column_stack([X, np.ones(300)])
        p = 1 / (1 + np.exp(-A @ m.theta_))
        assert np.max(np.abs(A.T @ (p - y))) < 1e-9
