"""Two-stage least squares: the fit and every SE against a plain numpy 2SLS and linearmodels
(when installed), the removal estimates against brute-force refits and finite differences,
and audits verified by refits on the kept rows."""

import itertools

import numpy as np
import pandas as pd
import pytest

import leaveout as lo
from leaveout.audit.se import se_calculator, standard_error
from leaveout.glm.iv import IV2SLS
from leaveout.metrics import Coefficient

FORMULA = "y ~ w | e ~ z1 + z2"


def _frame(n=150, seed=0):
    rng = np.random.default_rng(seed)
    z1, z2, w, u = rng.normal(size=(4, n))
    v = rng.normal(size=n)
    e = 0.8 * z1 + 0.5 * z2 + 0.3 * w + v
    y = 0.4 * e - 0.2 * w + 0.7 * v + rng.normal(size=n) * (1 + 0.5 * np.abs(z1))
    return pd.DataFrame({"y": y, "w": w, "e": e, "z1": z1, "z2": z2, "s": rng.uniform(0.5, 2, n),
                         "g": rng.integers(0, 20, n)})


def _two_sls(df, weights=True):
    """2SLS by its textbook formula, for the order [w, e, Intercept]."""
    X = np.column_stack([df.w, df.e, np.ones(len(df))])
    Z = np.column_stack([df.w, df.z1, df.z2, np.ones(len(df))])
    s = df.s.to_numpy() if weights else np.ones(len(df))
    Xhat = Z @ np.linalg.lstsq(Z * np.sqrt(s)[:, None], X * np.sqrt(s)[:, None], rcond=None)[0]
    return np.linalg.solve(Xhat.T @ (s[:, None] * Xhat), Xhat.T @ (s * df.y.to_numpy()))


@pytest.fixture(scope="module")
def fitted():
    df = _frame()
    m = lo.GLM.from_formula(FORMULA, df, family="squared", sample_weight="s")
    return df, m, lo.Attribution(m)


def test_fit_equals_the_textbook_formula(fitted):
    df, m, att = fitted
    assert isinstance(m, IV2SLS) and list(m.params_.index) == ["w", "e", "Intercept"]
    np.testing.assert_allclose(m.theta_, _two_sls(df), rtol=1e-10)


def test_standard_errors_equal_linearmodels(fitted):
    lm = pytest.importorskip("linearmodels.iv")
    df, m, att = fitted
    f = "y ~ 1 + w + [e ~ z1 + z2]"
    order = ["w", "e", "Intercept"]
    for cov, kind, groups, kw in [("unadjusted", "nonrobust", None, {}), ("robust", "HC1", None, {}),
                                  ("clustered", "HC1", df.g.to_numpy(), {"clusters": df.g})]:
        r = lm.IV2SLS.from_formula(f, df, weights=df.s).fit(cov_type=cov, debiased=True, **kw)
        np.testing.assert_allclose(m.theta_, r.params[order], rtol=1e-10)
        np.testing.assert_allclose([standard_error(att, np.eye(3)[j], kind, groups) for j in range(3)],
                                   r.std_errors[order], rtol=1e-9)
    r = lm.IV2SLS.from_formula(f, df, weights=df.s).fit(cov_type="robust", debiased=False)
    np.testing.assert_allclose([standard_error(att, np.eye(3)[j], "HC0") for j in range(3)], r.std_errors[order],
                               rtol=1e-9)


def test_classical_se_by_hand(fitted):
    df, m, att = fitted
    X = np.column_stack([df.w, df.e, np.ones(len(df))])
    Z = np.column_stack([df.w, df.z1, df.z2, np.ones(len(df))])
    s = df.s.to_numpy()
    Xhat = Z @ np.linalg.solve(Z.T @ (s[:, None] * Z), Z.T @ (s[:, None] * X))
    e = df.y.to_numpy() - X @ m.theta_
    V = float(s @ e ** 2) / (len(df) - 3) * np.linalg.inv(Xhat.T @ (s[:, None] * Xhat))
    np.testing.assert_allclose([standard_error(att, np.eye(3)[j]) for j in range(3)], np.sqrt(np.diag(V)), rtol=1e-10)


def test_removal_estimates_against_refits(fitted):
    """NS (downdate) and retrain equal the textbook 2SLS on the kept rows; RIF is the exact
    one-row change; IF is minus the derivative in the row weight (finite differences)."""
    df, m, att = fitted
    T = np.array([3, 10, 50, 51, 120])
    truth = _two_sls(df.drop(index=T)) - m.theta_
    for method in ("ns", "retrain"):
        np.testing.assert_allclose(att.delta(T, method), truth, atol=1e-12)
    R = att.rescaled_influence()
    for i in (0, 7, 99):
        np.testing.assert_allclose(R[i], _two_sls(df.drop(index=[i])) - m.theta_, atol=1e-12)
    np.testing.assert_allclose(att.delta(T, "rif"), R[T].sum(axis=0), atol=1e-14)
    IF = att.influence()
    eps = 1e-6
    for i in (0, 7):
        bumped = df.copy()
        bumped.loc[i, "s"] *= 1 + eps
        deriv = (_two_sls(bumped) - m.theta_) / (eps * df.s[i])
        np.testing.assert_allclose(-IF[i] / df.s[i], deriv, rtol=1e-4, atol=1e-9)
    # the scores are the rows of IF and RIF along the coefficient
    np.testing.assert_allclose(att.scores(Coefficient("e"), "rif"), R[:, 1], atol=1e-14)


@pytest.mark.parametrize("kind,clustered", [("nonrobust", False), ("HC0", False), ("HC1", True)])
def test_se_weight_derivative_against_finite_differences(fitted, kind, clustered):
    df, m, att = fitted
    groups = df.g.to_numpy() if clustered else None
    phi = np.array([0.0, 1.0, 0.0])
    calc = se_calculator(att, kind, groups)
    grad = calc.gradient(phi)
    eps = 1e-6
    for i in (0, 7, 42):
        s2 = df.s.to_numpy().copy()
        s2[i] *= 1 + eps
        m2 = IV2SLS().fit(df[["w"]], df[["e"]], df[["z1", "z2"]], df.y, s2)
        se2 = se_calculator(lo.Attribution(m2), kind, groups).se(phi)
        assert (se2 - calc.se(phi)) / eps == pytest.approx(grad[i], rel=1e-4, abs=1e-10)


def test_audit_answers_are_verified_by_the_textbook_refit(fitted):
    df, m, att = fitted
    for target in ("sign", "significance"):
        for method in ("one-shot", "adaptive"):
            res = lo.audit(m, Coefficient("e"), target, se="HC1", method=method)
            if not res.reached:
                continue
            refit = _two_sls(df.drop(index=res.rows))
            assert res.refit["value"] == pytest.approx(refit[1], rel=1e-9)
            if target == "sign":
                assert np.sign(refit[1]) != np.sign(m.theta_[1])


def test_small_iv_audit_is_minimal_by_brute_force():
    """On 24 rows every subset up to the found size is refitted: none smaller flips the sign."""
    df = _frame(n=24, seed=4)
    m = lo.GLM.from_formula(FORMULA, df, family="squared")
    res = lo.audit(m, Coefficient("e"), "sign", max_fraction=0.5)
    assert res.reached
    b0 = _two_sls(df, weights=False)[1]
    for k in range(1, res.k):
        for T in itertools.combinations(range(len(df)), k):
            try:
                b = _two_sls(df.drop(index=list(T)), weights=False)[1]
            except np.linalg.LinAlgError:
                continue
            assert np.sign(b) == np.sign(b0), T
    assert np.sign(_two_sls(df.drop(index=res.rows), weights=False)[1]) != np.sign(b0)


def test_iv_errors_name_what_to_change(fitted):
    df = fitted[0]
    with pytest.raises(ValueError, match="at least as many instruments"):
        IV2SLS().fit(df[["w"]], df[["e", "z2"]], df[["z1"]], df.y)
    with pytest.raises(ValueError, match="family='squared'"):
        lo.GLM.from_formula(FORMULA, df, family="logistic")
    with pytest.raises(lo.SingularHessianError, match="collinear"):
        lo.GLM.from_formula("y ~ w | e ~ z1 + w", df, family="squared")
    att = lo.Attribution(lo.GLM.from_formula(FORMULA, df, family="squared"))
    with pytest.raises(ValueError, match="on its coefficients"):
        att.scores(lo.metrics.SelfLoss())
    with pytest.raises(ValueError, match="certificates are for ordinary least squares"):
        lo.audit(att.model, Coefficient("e"), certify=True)


def test_iv_on_the_command_line(fitted, tmp_path, capsys):
    import json

    from leaveout.cli import main
    df = fitted[0]
    path = tmp_path / "iv.csv"
    df.to_csv(path, index=False)
    assert main(["audit", str(path), "--formula", FORMULA, "--family", "squared", "--coef", "e",
                 "--target", "sign", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["family"] == "2sls"
    refit = _two_sls(df.drop(index=out["rows"]), weights=False)
    assert out["refit"]["value"] == pytest.approx(refit[1], rel=1e-9)
    assert main(["fit", str(path), "--formula", FORMULA, "--family", "squared"]) == 0
    assert "e instrumented by z1, z2" in capsys.readouterr().out


def _fe_frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"g": rng.integers(0, 20, n), "h": rng.integers(0, 3, n), "w": rng.normal(size=n),
                       "z1": rng.normal(size=n), "z2": rng.normal(size=n), "s": rng.uniform(0.5, 2, n),
                       "c": rng.integers(0, 25, n)})
    a = np.sin(df.g)
    df["e"] = 0.8 * df.z1 + 0.4 * df.z2 + a + rng.normal(size=n)
    df["y"] = 0.5 * df.e - 0.3 * df.w + a + 0.2 * df.h + rng.normal(size=n)
    return df


def _two_sls_dummies(df):
    """Textbook 2SLS with a dummy per level of g and h (first of h dropped) in both stages:
    the coefficient of e."""
    D = (df.g.to_numpy()[:, None] == np.unique(df.g)[None, :]).astype(float)
    H = (df.h.to_numpy()[:, None] == np.unique(df.h)[None, 1:]).astype(float)
    X = np.column_stack([df.w, df.e, H, D])
    Z = np.column_stack([df.w, df.z1, df.z2, H, D])
    s = df.s.to_numpy()
    Xhat = Z @ np.linalg.lstsq(Z * np.sqrt(s)[:, None], X * np.sqrt(s)[:, None], rcond=None)[0]
    return np.linalg.lstsq(Xhat * np.sqrt(s)[:, None], df.y.to_numpy() * np.sqrt(s), rcond=None)[0][1]


def test_iv_with_fixed_effects_against_dummies_and_refits():
    """'y ~ w | g + h | e ~ z1 + z2': the coefficient equals 2SLS with dummies; RIF is the
    exact one-row change (the group's means move), NS and retrain the exact refit."""
    df = _fe_frame()
    f = "y ~ w | g + h | e ~ z1 + z2"
    m = lo.GLM.from_formula(f, df, family="squared", sample_weight="s")
    att = lo.Attribution(m)
    j = list(m.params_.index).index("e")
    assert m.theta_[j] == pytest.approx(_two_sls_dummies(df), rel=1e-10)
    R = att.rescaled_influence()
    for i in (0, 5, 17):
        assert R[i, j] == pytest.approx(_two_sls_dummies(df.drop(index=[i])) - m.theta_[j], abs=1e-12)
    T = [1, 2, 3, 40, 41]
    truth = _two_sls_dummies(df.drop(index=T)) - m.theta_[j]
    for method in ("ns", "retrain"):
        assert att.delta(T, method)[j] == pytest.approx(truth, abs=1e-12)
    single = df.copy()
    single.loc[7, "g"] = 99                                  # row 7 alone in its group
    a2 = lo.Attribution(lo.GLM.from_formula(f, single, family="squared", sample_weight="s"))
    assert a2.model.n_singletons_ == 1 and a2.rescaled_influence()[7, j] == 0.0
    assert a2.delta([7], "retrain")[j] == pytest.approx(0.0, abs=1e-12)


def test_iv_with_fixed_effects_equals_pyfixest():
    pf = pytest.importorskip("pyfixest")
    import warnings
    df = _fe_frame(n=300, seed=1)
    f = "y ~ w | g + h | e ~ z1 + z2"
    m = lo.GLM.from_formula(f, df, family="squared", sample_weight="s")
    att = lo.Attribution(m)
    names = list(m.params_.index)
    for vcov, kind, groups in [("iid", "nonrobust", None), ("hetero", "HC1", None),
                               ({"CRV1": "c"}, "HC1", df.c.to_numpy()), ({"CRV1": "g"}, "HC1", df.g.to_numpy())]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = pf.feols(f, data=df, vcov=vcov, weights="s", fixef_tol=1e-13)
        idx = [names.index(k) for k in r.coef().index]
        np.testing.assert_allclose(m.theta_[idx], r.coef().to_numpy(), rtol=1e-10)
        np.testing.assert_allclose([standard_error(att, np.eye(len(names))[k], kind, groups) for k in idx],
                                   r.se().to_numpy(), rtol=1e-9)
