import warnings

import numpy as np
import pytest

import leaveout as lo

sklm = pytest.importorskip("sklearn.linear_model")


def data(kind="binary", n=120, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    z = X @ rng.normal(size=d) / np.sqrt(d)
    if kind == "binary":
        return X, (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    if kind == "counts":
        return X, rng.poisson(np.exp(z)).astype(float)
    return X, z + rng.normal(size=n)


def same_attribution(att, native):
    np.testing.assert_allclose(att.theta, native.theta, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(att.rescaled_influence(), native.rescaled_influence(), rtol=1e-7, atol=1e-10)


def test_logistic_regression_maps_C_to_a_fixed_penalty():
    X, y = data()
    est = sklm.LogisticRegression(C=2.0, tol=1e-10, max_iter=1000).fit(X, y)
    att = lo.from_sklearn(est, X, y, tol=1e-12)
    native = lo.Attribution(lo.GLM(l2=0.5, penalty="fixed", tol=1e-12).fit(X, y))
    same_attribution(att, native)


def test_unpenalised_logistic_regression_and_sample_weights():
    X, y = data(seed=1)
    w = np.random.default_rng(2).integers(1, 4, y.size).astype(float)
    est = sklm.LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(X, y, sample_weight=w)
    att = lo.from_sklearn(est, X, y, sample_weight=w, tol=1e-12)
    same_attribution(att, lo.Attribution(lo.GLM(l2=0.0, tol=1e-12).fit(X, y, sample_weight=w)))


def test_linear_ridge_and_poisson():
    X, y = data("real", seed=3)
    same_attribution(lo.from_sklearn(sklm.LinearRegression().fit(X, y), X, y, tol=1e-12),
                     lo.Attribution(lo.GLM("squared", l2=0.0, tol=1e-12).fit(X, y)))
    same_attribution(lo.from_sklearn(sklm.Ridge(alpha=3.0).fit(X, y), X, y, tol=1e-12),
                     lo.Attribution(lo.GLM("squared", l2=3.0, tol=1e-12).fit(X, y)))
    Xc, yc = data("counts", seed=4)
    w = np.random.default_rng(5).uniform(0.5, 2, yc.size)
    est = sklm.PoissonRegressor(alpha=0.1, tol=1e-12, max_iter=1000).fit(Xc, yc, sample_weight=w)
    same_attribution(lo.from_sklearn(est, Xc, yc, sample_weight=w, tol=1e-12),
                     lo.Attribution(lo.GLM("poisson", l2=0.1, penalty="per_sample", tol=1e-12).fit(Xc, yc, sample_weight=w)))


def test_unconverged_estimator_warns():
    X, y = data(seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = sklm.LogisticRegression(C=10.0, max_iter=1).fit(X, y)
    with pytest.warns(UserWarning, match="moved the coefficients"):
        lo.from_sklearn(est, X, y)


@pytest.mark.parametrize("make,msg", [
    (lambda: sklm.LogisticRegression(class_weight="balanced"), "class_weight"),
    (lambda: sklm.LogisticRegression(solver="liblinear"), "liblinear"),
    (lambda: sklm.Lasso(alpha=0.1), "Lasso is not supported"),
])
def test_unsupported_estimators_are_refused_with_the_list(make, msg):
    X, y = data(seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make().fit(X, y)
    with pytest.raises(ValueError, match=msg) as info:
        lo.from_sklearn(est, X, y)
    assert "PoissonRegressor" in str(info.value)


def test_multiclass_l1_is_refused():
    X, _ = data(seed=8)
    y = np.arange(X.shape[0]) % 3
    est = sklm.LogisticRegression(l1_ratio=1.0, solver="saga", max_iter=50).fit(X, y)
    with pytest.raises(ValueError, match="not supported"):
        lo.from_sklearn(est, X, y)


def test_statsmodels_logistic_d_params_equal_minus_rif():
    sm = pytest.importorskip("statsmodels.api")
    X, y = data(seed=9, n=150)
    Xc = sm.add_constant(X)
    res = sm.GLM(y, Xc, family=sm.families.Binomial()).fit(tol=1e-12)
    att = lo.from_statsmodels(res, tol=1e-12)
    # statsmodels' one-step d_params = params - params_(-i); ours is params_(-i) - params
    np.testing.assert_allclose(att.rescaled_influence(), -res.get_influence().d_params, rtol=1e-8, atol=1e-12)
    res2 = sm.Logit(y, Xc).fit(disp=0, tol=1e-12)
    np.testing.assert_allclose(lo.from_statsmodels(res2, tol=1e-12).theta, res.params, rtol=1e-8)


def test_statsmodels_ols_dfbeta_is_the_exact_leave_one_out():
    sm = pytest.importorskip("statsmodels.api")
    X, y = data("real", seed=10, n=60)
    res = sm.OLS(y, sm.add_constant(X)).fit()
    att = lo.from_statsmodels(res, tol=1e-12)
    np.testing.assert_allclose(att.rescaled_influence(), -res.get_influence().dfbeta, rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="WLS is not supported"):
        lo.from_statsmodels(sm.WLS(y, sm.add_constant(X), weights=np.linspace(1, 2, y.size)).fit())


def test_statsmodels_poisson_with_exposure_and_offset():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(11)
    X = sm.add_constant(rng.normal(size=(90, 3)))
    e = rng.uniform(0.5, 4.0, 90)
    y = rng.poisson(e * np.exp(0.2 + X @ np.array([0.1, 0.3, -0.2, 0.1])))
    res = sm.GLM(y, X, family=sm.families.Poisson(), exposure=e, offset=np.full(90, 0.2)).fit(tol=1e-12)
    att = lo.from_statsmodels(res, tol=1e-12)
    np.testing.assert_allclose(att.theta, res.params, rtol=1e-8)
    np.testing.assert_allclose(att.rescaled_influence(), -res.get_influence().d_params, rtol=1e-8, atol=1e-12)


def test_penalised_statsmodels_results_are_mapped_or_refused():
    sm = pytest.importorskip("statsmodels.api")
    from scipy.optimize import minimize
    rng = np.random.default_rng(0)
    n = 200
    X = sm.add_constant(rng.normal(size=(n, 2)))
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ [0.3, -2.0, 1.0]))).astype(float)
    counts = rng.poisson(np.exp(X @ [0.2, 0.3, -0.1])).astype(float)
    for fam, yy in [(sm.families.Binomial(), y), (sm.families.Poisson(), counts)]:
        model = sm.GLM(yy, X, family=fam)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit_regularized(alpha=0.1, L1_wt=0)
        att = lo.from_statsmodels(res, alpha=0.1)
        # statsmodels' own objective, -loglike/n + (alpha/2)|params|^2, solved tightly by scipy
        tight = minimize(lambda x: -(model.loglike(x) / n - 0.05 * x @ x), res.params,
                         jac=lambda x: -(model.score(x) / n - 0.1 * x), method="BFGS", options={"gtol": 1e-12}).x
        np.testing.assert_allclose(att.model.theta_, tight, atol=1e-6)
        np.testing.assert_allclose(att.model.theta_, res.params, atol=1e-4)   # statsmodels' own tolerance
        assert att.model.penalty == "per_sample" and att.model.l2 == 0.1
    ols = sm.OLS(y, X).fit_regularized(alpha=0.1, L1_wt=0)
    np.testing.assert_allclose(lo.from_statsmodels(ols, alpha=0.1).model.theta_, ols.params, atol=1e-10)
    with pytest.raises(ValueError, match="L1-penalised results"):
        lo.from_statsmodels(sm.Logit(y, X).fit_regularized(alpha=20, disp=0))
    ridge = sm.GLM(y, X, family=sm.families.Binomial()).fit_regularized(alpha=0.1, L1_wt=0)
    with pytest.raises(ValueError, match="pass its alpha"):
        lo.from_statsmodels(ridge)
    with pytest.raises(ValueError, match="differ from the estimator's"):
        lo.from_statsmodels(ridge, alpha=0.3)
    with pytest.raises(ValueError, match="profiles out the scale"):
        lo.from_statsmodels(sm.GLM(y, X, family=sm.families.Gaussian()).fit_regularized(alpha=0.1, L1_wt=0), alpha=0.1)
    with pytest.raises(ValueError, match="unpenalised"):
        lo.from_statsmodels(sm.GLM(y, X, family=sm.families.Binomial()).fit(), alpha=0.1)


def test_adapters_name_a_data_mismatch_rather_than_non_convergence():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (rng.random(200) < 1 / (1 + np.exp(-X @ [-2.0, 1.0]))).astype(int)
    est = LogisticRegression(C=2.0).fit(X, y)
    cases = {"labels": (X, 1 - y, None), "rows": (X + 0.3, y, None),
             "weights": (X, y, rng.uniform(0.1, 5, 200))}
    for what, (Xc, yc, sw) in cases.items():
        with pytest.warns(UserWarning, match="do not look like the data this estimator was fitted on"):
            lo.from_sklearn(est, Xc, yc, sample_weight=sw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        short = LogisticRegression(C=2.0, max_iter=3).fit(X, y)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        lo.from_sklearn(short, X, y)
    texts = [str(w.message) for w in got]
    assert any("not fully converged" in t for t in texts) and not any("do not look like" in t for t in texts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo.from_sklearn(est, X, y)          # the right data: no warning at all


def test_predict_proba_has_scikit_learns_shape():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(5)
    X = rng.normal(size=(100, 3))
    y = np.where(rng.random(100) < 1 / (1 + np.exp(-X @ [1.0, -1.0, 0.5])), "yes", "no")
    est = LogisticRegression(C=2.0, tol=1e-10, max_iter=1000).fit(X, y)
    mine = lo.from_sklearn(est, X, y).model
    assert mine.predict_proba(X).shape == (100, 2)
    np.testing.assert_allclose(mine.predict_proba(X), est.predict_proba(X), atol=1e-6)
    assert list(mine.classes_) == list(est.classes_)


def _softmax_fit(X, y, C, l2, steps=None):
    """Weights in torch.nn.Linear's layout (C, d) and (C,) from scipy's L-BFGS on the full
    (over-parametrised) softmax objective sum_i loss_i + l2 / 2 |W|^2 (bias unpenalised);
    ``steps``: stop early after that many iterations."""
    from scipy.optimize import minimize
    n, d = X.shape
    Y = np.eye(C)[y]

    def f(v):
        W, b = v[:C * d].reshape(C, d), v[C * d:]
        Z = X @ W.T + b
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        loss = -np.sum(Y * np.log(P)) + 0.5 * l2 * np.sum(W ** 2)
        G = P - Y
        return loss, np.concatenate([(G.T @ X + l2 * W).ravel(), G.sum(axis=0)])

    opts = {"maxiter": steps or 10000, "gtol": 1e-12, "ftol": 0.0}
    v = minimize(f, np.zeros(C * d + C), jac=True, method="L-BFGS-B", options=opts).x
    return v[:C * d].reshape(C, d), v[C * d:]


def test_from_weights_maps_torch_layout_softmax_weights_to_the_same_optimum():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 4))
    y = np.argmax(X @ rng.normal(size=(4, 3)) + rng.gumbel(size=(150, 3)), axis=1)
    W, b = _softmax_fit(X, y, 3, l2=0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # an optimum already: nothing to say
        att = lo.from_weights(X, y, W, b, family="multinomial", l2=0.8, tol=1e-12)
    native = lo.GLM("multinomial", l2=0.8, tol=1e-12).fit(X, y)
    np.testing.assert_allclose(att.theta, native.theta_, rtol=1e-6, atol=1e-8)
    Z = X @ W.T + b
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(att.model.predict_proba(X), P / P.sum(axis=1, keepdims=True), atol=1e-7)
    # early-stopped weights: refined to the same optimum, with a warning that says how far
    W5, b5 = _softmax_fit(X, y, 3, l2=0.8, steps=3)
    with pytest.warns(UserWarning, match="not an optimum of this objective"):
        early = lo.from_weights(X, y, W5, b5, family="multinomial", l2=0.8, tol=1e-12)
    np.testing.assert_allclose(early.theta, native.theta_, rtol=1e-8, atol=1e-10)


def test_from_weights_binary_layout_penalties_and_refusals():
    X, y = data(seed=4)
    native = lo.GLM(l2=0.05, penalty="per_sample", tol=1e-12).fit(X, y)
    coef, icpt = native.coef_.reshape(1, -1), np.array([native.intercept_])       # nn.Linear(d, 1)
    att = lo.from_weights(X, y, coef, icpt, l2=0.05, penalty="per_sample", tol=1e-12)
    np.testing.assert_allclose(att.rescaled_influence(), lo.Attribution(native).rescaled_influence(), rtol=1e-8)
    sep = (X[:, 0] > 0).astype(int)                      # separable: no unpenalised optimum
    with pytest.raises(ValueError, match="separable"):
        lo.from_weights(X, sep, np.ones(X.shape[1]), 0.0, l2=0.0)
    with pytest.raises(ValueError, match="coef has 4 features, X has 5 columns"):
        lo.from_weights(X, y, np.ones(4), 0.0, l2=1.0)
    with pytest.raises(ValueError, match="classes= is for family='multinomial'"):
        lo.from_weights(X, y, np.ones(5), 0.0, l2=1.0, classes=[0, 1])
    with pytest.raises(ValueError, match="one entry per class"):
        lo.from_weights(X, y % 3, np.ones((3, 5)), np.zeros(2), family="multinomial", l2=1.0)
    with pytest.raises(ValueError, match="l2 must be one finite number"):
        lo.from_weights(X, y, np.ones(5), 0.0, l2=-1.0)
    with pytest.raises(ValueError, match="family='probit' is not supported"):
        lo.from_weights(X, y, np.ones(5), 0.0, l2=1.0, family="probit")
