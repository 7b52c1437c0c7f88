"""Absorbed fixed effects against the same model with explicit dummy columns (statsmodels and
leaveout's plain GLM), pyfixest where installed, and brute-force refits."""

import warnings

import numpy as np
import pandas as pd
import pytest

import leaveout as lo
from leaveout.audit.se import standard_error
from leaveout.exceptions import SingularHessianError
from leaveout.glm.absorb import FixedEffectsGLM
from leaveout.metrics import Coefficient
from leaveout.tables.formula import split_fixed_effects

sm = pytest.importorskip("statsmodels.api")
smf = pytest.importorskip("statsmodels.formula.api")


@pytest.fixture(scope="module")
def grunfeld():
    df = sm.datasets.grunfeld.load_pandas().data
    df["firm"] = df["firm"].astype(str)
    df["year"] = df["year"].astype(int)
    return df


def _se(att, j, kind, groups=None):
    return standard_error(att, np.eye(att.theta.size)[j], kind, groups)


@pytest.mark.parametrize("fe", ["firm", "firm + year", "year"])
def test_squared_fixed_effects_equal_ols_with_dummies(grunfeld, fe):
    m = lo.GLM.from_formula(f"invest ~ value + capital | {fe}", grunfeld, family="squared")
    assert isinstance(m, FixedEffectsGLM) and m.converged_
    dummies = " + ".join(f"C({f.strip()})" for f in fe.split("+"))
    ref = smf.ols(f"invest ~ value + capital + {dummies}", grunfeld)
    att = lo.Attribution(m)
    fit = ref.fit()
    np.testing.assert_allclose(m.theta_[:2], fit.params[["value", "capital"]], rtol=1e-10)
    for kind in ("nonrobust", "HC0", "HC1"):
        r = ref.fit(cov_type=kind) if kind != "nonrobust" else fit
        for j, name in enumerate(["value", "capital"]):
            assert _se(att, j, kind) == pytest.approx(r.bse[name], rel=1e-8)
    # cluster by year: year is not nested in firm clusters ... except when year is the only
    # factor; statsmodels counts every dummy, pyfixest drops a factor nested in the clusters
    # (all its levels but one); both corrections computed here by hand from statsmodels' HC1
    codes = grunfeld["year"].astype("category").cat.codes
    r = ref.fit(cov_type="cluster", cov_kwds={"groups": codes})
    n, k_sm = len(grunfeld), fit.df_model + 1
    nested = 20 - 1 if "year" in fe else 0
    factor = np.sqrt((n - k_sm) / (n - (k_sm - nested)))
    for j, name in enumerate(["value", "capital"]):
        assert _se(att, j, "HC1", grunfeld["year"].to_numpy()) == pytest.approx(r.bse[name] * factor, rel=1e-8)


def test_squared_fixed_effects_equal_pyfixest(grunfeld):
    pf = pytest.importorskip("pyfixest")
    fml = "invest ~ value + capital | firm + year"
    m = lo.GLM.from_formula(fml, grunfeld, family="squared")
    att = lo.Attribution(m)
    for vcov, kind, groups in [("iid", "nonrobust", None), ("hetero", "HC1", None),
                               ({"CRV1": "firm"}, "HC1", grunfeld["firm"].to_numpy()),
                               ({"CRV1": "year"}, "HC1", grunfeld["year"].to_numpy())]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = pf.feols(fml, data=grunfeld, vcov=vcov)
        np.testing.assert_allclose(m.theta_[:2], f.coef().to_numpy(), rtol=1e-8)
        np.testing.assert_allclose([_se(att, j, kind, groups) for j in range(2)], f.se().to_numpy(), rtol=1e-8)


def _panel(family, seed=0, n=120, weights=True):
    rng = np.random.default_rng(seed)
    g, h = rng.integers(0, 15, n), rng.integers(0, 4, n)
    X = rng.normal(size=(n, 2)) + 0.1 * g[:, None]
    eta = X @ [0.5, -0.3] + 0.2 * np.sin(g) + 0.1 * h
    y = {"squared": eta + rng.normal(size=n),
         "logistic": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float),
         "poisson": rng.poisson(np.exp(eta)).astype(float)}[family]
    s = rng.uniform(0.5, 2, n) if weights else np.ones(n)
    Z = np.hstack([X, (h[:, None] == np.arange(1, 4)).astype(float), (g[:, None] == np.arange(15)).astype(float)])
    return X, y, s, g, h, Z


@pytest.mark.parametrize("family", ["squared", "logistic", "poisson"])
def test_every_estimator_equals_the_dummy_variable_model(family):
    """IF, RIF, NS, retrain and the leverages of the absorbed model equal those of the plain
    GLM with one dummy column per level (its coefficient part)."""
    X, y, s, g, h, Z = _panel(family)
    m = FixedEffectsGLM(family, tol=1e-12).fit(X, y, {"g": g, "h": h}, sample_weight=s)
    ref = lo.GLM(family, l2=0, fit_intercept=False, tol=1e-12).fit(Z, y, sample_weight=s)
    a, b = lo.Attribution(m), lo.Attribution(ref)
    np.testing.assert_allclose(m.theta_, ref.theta_[:5], atol=1e-9)
    np.testing.assert_allclose(a.leverage, b.leverage, atol=1e-10)
    T = np.array([3, 10, 11, 40, 77])
    for method in ("if", "rif", "ns", "retrain"):
        np.testing.assert_allclose(a.delta(T, method), b.delta(T, method)[:5], atol=1e-9, err_msg=method)
    phi = np.array([1.0, 0, 0, 0, 0])
    for method in ("if", "rif"):
        np.testing.assert_allclose(a.scores(Coefficient(0), method), b.scores(Coefficient(0), method),
                                   atol=1e-10)
    # a set that empties a group: the level leaves the model (brute force without its column)
    T2 = np.flatnonzero(g == 3)
    obj = ref.objective_.without(T2)
    ns = (np.linalg.pinv(obj.hessian(ref.theta_)) @ -obj.gradient(ref.theta_))[:5]
    np.testing.assert_allclose(a.delta(T2, "ns"), ns, atol=1e-9)
    keep, cols = np.setdiff1d(np.arange(len(y)), T2), [j for j in range(Z.shape[1]) if j != 5 + 3]
    r2 = lo.GLM(family, l2=0, fit_intercept=False, tol=1e-12).fit(Z[keep][:, cols], y[keep], sample_weight=s[keep])
    np.testing.assert_allclose(a.delta(T2, "retrain"), r2.theta_[:5] - ref.theta_[:5], atol=1e-9)
    assert float(phi @ a.delta(T2, "retrain")) != 0.0


def test_glm_fixed_effects_equal_statsmodels_with_dummies():
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 12, n), "c": rng.integers(0, 25, n)})
    df["y"] = rng.poisson(np.exp(0.4 * df.x + 0.2 * np.cos(df.g)))
    m = lo.GLM.from_formula("y ~ x | g", df, family="poisson")
    att = lo.Attribution(m)
    ref = smf.glm("y ~ x + C(g)", df, family=sm.families.Poisson())
    fit = ref.fit(tol=1e-13)
    assert m.theta_[0] == pytest.approx(fit.params["x"], rel=1e-8)
    assert _se(att, 0, "nonrobust") == pytest.approx(fit.bse["x"], rel=1e-7)
    assert _se(att, 0, "HC0") == pytest.approx(ref.fit(cov_type="HC0", tol=1e-13).bse["x"], rel=1e-7)
    cl = ref.fit(cov_type="cluster", cov_kwds={"groups": df.c.to_numpy(), "use_correction": False}, tol=1e-13)
    assert _se(att, 0, "HC0", df.c.to_numpy()) == pytest.approx(cl.bse["x"], rel=1e-7)


def test_a_singleton_moves_nothing_and_its_rif_is_zero():
    X, y, s, g, h, _ = _panel("squared", weights=False)
    g = g.copy()
    g[7] = 99                                           # row 7 alone in its group
    m = FixedEffectsGLM("squared").fit(X, y, {"g": g})
    att = lo.Attribution(m)
    assert m.n_singletons_ == 1
    assert att.leverage[7] == pytest.approx(1.0)
    assert att.scores(Coefficient(0), "rif")[7] == 0.0
    np.testing.assert_allclose(att.delta([7], "retrain"), 0.0, atol=1e-12)
    # the rest: RIF on squared loss is the exact leave-one-out change
    for i in (0, 5, 50):
        assert att.scores(Coefficient(0), "rif")[i] == pytest.approx(att.delta([i], "retrain")[0], abs=1e-10)


def test_fixed_effect_errors_name_what_to_change(grunfeld):
    with pytest.raises(ValueError, match="instrumental variables are 'y ~ w \\| e ~ z'"):
        split_fixed_effects("invest ~ value | capital ~ firm")       # IV goes to IV2SLS, not here
    with pytest.raises(ValueError, match="'plant' is not a column"):
        lo.GLM.from_formula("invest ~ value | plant", grunfeld, family="squared")
    with pytest.raises(ValueError, match="after '\\|'"):
        lo.GLM.from_formula("invest ~ value | ", grunfeld, family="squared")
    df = grunfeld.assign(size=grunfeld.groupby("firm")["capital"].transform("mean"))
    with pytest.raises(SingularHessianError, match="'size' does not vary within the levels of the fixed effect 'firm'"):
        lo.GLM.from_formula("invest ~ value + size | firm", df, family="squared")
    with pytest.raises(ValueError, match="unpenalised"):
        lo.GLM.from_formula("invest ~ value | firm", grunfeld, family="squared", l2=1.0)
    na = grunfeld.copy()
    na.loc[3, "firm"] = None
    with pytest.raises(ValueError, match="1 rows have missing values in firm"):
        lo.GLM.from_formula("invest ~ value | firm", na, family="squared")
    m = lo.GLM.from_formula("invest ~ value | firm", na, family="squared", missing="drop")
    assert m.n_dropped_ == 1 and 3 not in set(m.row_ids_)


def test_interacted_fixed_effects_are_one_factor(grunfeld):
    df = grunfeld.assign(half=(grunfeld.year > 1944).astype(int))
    m = lo.GLM.from_formula("invest ~ value + capital | firm^half", df, family="squared")
    ref = smf.ols("invest ~ value + capital + C(firm):C(half)", df).fit()
    np.testing.assert_allclose(m.theta_[:2], ref.params[["value", "capital"]], rtol=1e-9)
    assert m.fixed_effects_.absorbed == "firm^half"


def test_audit_of_a_fixed_effects_coefficient_is_verified_with_dummies(grunfeld):
    """The audit's rows, dropped from the table and refitted by statsmodels with dummies,
    change the conclusion."""
    m = lo.GLM.from_formula("invest ~ value + capital | firm + year", grunfeld, family="squared")
    res = lo.audit(m, Coefficient("capital"), "significance", se="HC1", cluster=grunfeld["firm"].to_numpy())
    assert res.reached
    kept = grunfeld.drop(index=res.rows)
    formula = "invest ~ value + capital + C(firm) + C(year)"

    def t_stat(frame):
        fit = smf.ols(formula, frame).fit(cov_type="cluster",
                                          cov_kwds={"groups": frame["firm"].astype("category").cat.codes})
        n, k = len(frame), fit.df_model + 1
        nested = frame["firm"].nunique() - 1               # pyfixest's count: firm is nested in firm clusters
        se = fit.bse["capital"] * np.sqrt((n - k) / (n - (k - nested)))
        return fit.params["capital"], se

    value, se = t_stat(grunfeld)
    assert res.original["value"] == pytest.approx(value, rel=1e-10)
    assert res.original["se"] == pytest.approx(se, rel=1e-8)
    assert abs(value / se) > 1.959963984540054
    value, se = t_stat(kept)
    assert res.refit["value"] == pytest.approx(value, rel=1e-8)
    assert abs(value / se) < 1.959963984540054


def test_certificate_of_a_fixed_effects_model_is_that_of_the_dummy_design(grunfeld):
    """The certificate works on the least squares with a dummy per level: the same bound as for
    the plain OLS fitted with C() dummies."""
    fe = lo.GLM.from_formula("invest ~ value + capital | firm", grunfeld, family="squared")
    dummies = lo.GLM.from_formula("invest ~ value + capital + C(firm)", grunfeld, family="squared", l2=0)
    a = lo.audit(fe, Coefficient("capital"), "sign", certify=True, certify_method="bound")
    b = lo.audit(dummies, Coefficient("capital"), "sign", certify=True, certify_method="bound")
    assert a.lower == b.lower and a.lower is not None and a.lower >= 1


def test_certificate_with_fixed_effects_below_the_brute_force_minimum():
    """Every subset of a tiny panel refitted by least squares with dummies: the certified
    lower bound never exceeds the true minimum, and the audit's set reaches the target."""
    import itertools
    rng = np.random.default_rng(5)
    n = 13
    g = np.repeat([0, 1, 2, 3], [4, 3, 3, 3])
    x = rng.normal(size=n) + 0.3 * g
    y = 0.25 * x + 0.5 * g + rng.normal(size=n)
    m = FixedEffectsGLM("squared").fit(x[:, None], y, {"g": g})
    D = (g[:, None] == np.arange(4)).astype(float)
    Z = np.column_stack([x, D])

    def beta(keep):
        Zk = Z[keep][:, np.concatenate([[True], D[keep].sum(0) > 0])]
        if np.linalg.matrix_rank(Zk) < Zk.shape[1] or len(keep) <= Zk.shape[1]:
            return None
        return np.linalg.lstsq(Zk, y[keep], rcond=None)[0][0]

    b0 = beta(np.arange(n))
    assert m.theta_[0] == pytest.approx(b0, rel=1e-10)
    minimum = None
    for k in range(1, 6):
        for T in itertools.combinations(range(n), k):
            b = beta(np.setdiff1d(np.arange(n), T))
            if b is not None and np.sign(b) != np.sign(b0):
                minimum = k
                break
        if minimum:
            break
    res = lo.audit(m, Coefficient(0), "sign", certify=True, max_fraction=0.5)
    assert minimum is not None and res.lower is not None
    assert res.lower <= minimum
    if res.reached:
        assert res.k >= minimum
        assert np.sign(beta(np.setdiff1d(np.arange(n), res.positions))) != np.sign(b0)


def test_fixed_effects_on_the_command_line(grunfeld, tmp_path, capsys):
    import json

    from leaveout.cli import main
    path = tmp_path / "grunfeld.csv"
    grunfeld.to_csv(path, index=False)
    formula = "invest ~ value + capital | firm + year"
    assert main(["fit", str(path), "--formula", formula, "--family", "squared", "--se", "HC1",
                 "--cluster", "firm", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in out["model"]["fixed_effects"]] == ["firm", "year"]
    assert set(out["params"]) == {"value", "capital"}
    ref = smf.ols("invest ~ value + capital + C(firm) + C(year)", grunfeld).fit()
    assert out["params"]["capital"] == pytest.approx(ref.params["capital"], rel=1e-10)
    assert main(["effect", str(path), "--formula", formula, "--family", "squared", "--remove", "1,2,3"]) == 1
    assert "give --coef NAME" in capsys.readouterr().err
    assert main(["check", str(path), "--formula", formula, "--family", "squared"]) != 0
    assert "fixed effects" in capsys.readouterr().err
    assert main(["fit", str(path), "--formula", "invest ~ value | firm | capital", "--family", "squared"]) != 0
    err = capsys.readouterr().err
    assert "more than one '|'" in err and "Traceback" not in err


def test_an_audit_says_which_groups_its_rows_empty():
    from leaveout.audit.result import _emptied
    X, y, s, g, h, _ = _panel("squared", weights=False)
    m = FixedEffectsGLM("squared").fit(X, y, {"g": g})
    whole = np.flatnonzero(g == g[0])
    assert _emptied(m, list(whole) + [int(np.flatnonzero(g != g[0])[0])]) == (
        "the removed rows empty 1 group of 'g'; their levels leave the refit")
    assert _emptied(m, list(whole[:-1])) is None
    assert _emptied(lo.GLM("squared", l2=0).fit(X, y), list(whole)) is None
