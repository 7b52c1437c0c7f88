"""from_pyfixest and from_linearmodels: the fit is reproduced, its SE type carried over, and
where the conventions differ a warning says so (skipped without the optional packages)."""

import warnings

import numpy as np
import pytest

import leaveout as lo
from leaveout.metrics import Coefficient

sm = pytest.importorskip("statsmodels.api")


@pytest.fixture(scope="module")
def grunfeld():
    df = sm.datasets.grunfeld.load_pandas().data
    df["firm"] = df["firm"].astype(str)
    df["w"] = np.random.default_rng(0).uniform(0.5, 2, len(df))
    return df


def _pf(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def test_from_pyfixest_fixed_effects_keeps_coefficients_and_clustered_se(grunfeld):
    pf = pytest.importorskip("pyfixest")
    fit = _pf(pf.feols, "invest ~ value + capital | firm + year", data=grunfeld, vcov={"CRV1": "firm"}, weights="w")
    att = lo.from_pyfixest(fit)
    summary = lo.summarize(att)                                   # the fit's own SE by default
    np.testing.assert_allclose(summary.table["coef"], fit.coef().to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(summary.table["std err"], fit.se().to_numpy(), rtol=1e-8)
    res = lo.audit(att, Coefficient("capital"), "significance")
    assert res.se_kind.startswith("HC1") and res.original["se"] == pytest.approx(fit.se()["capital"], rel=1e-8)
    if res.reached:
        kept = grunfeld.drop(index=res.rows)
        refit = _pf(pf.feols, "invest ~ value + capital | firm + year", data=kept, vcov={"CRV1": "firm"}, weights="w")
        assert res.refit["value"] == pytest.approx(refit.coef()["capital"], rel=1e-6)
        assert res.refit["se"] == pytest.approx(refit.se()["capital"], rel=1e-6)


def test_from_pyfixest_iv_poisson_and_refusals(grunfeld):
    pf = pytest.importorskip("pyfixest")
    rng = np.random.default_rng(1)
    df = grunfeld.assign(z=rng.normal(size=len(grunfeld)))
    df["e"] = df.z + 0.01 * df.value + rng.normal(size=len(df))
    fit = _pf(pf.feols, "invest ~ capital | e ~ z", data=df, vcov="hetero")
    att = lo.from_pyfixest(fit)
    assert att.model.family == "2sls"
    got = lo.summarize(att).table
    for name in fit.coef().index:
        assert got.loc[name, "coef"] == pytest.approx(fit.coef()[name], rel=1e-8)
        assert got.loc[name, "std err"] == pytest.approx(fit.se()[name], rel=1e-8)
    cnt = df.assign(k=rng.poisson(np.exp(0.3 * (df.capital - df.capital.mean()) / df.capital.std()), len(df)))
    fit = _pf(pf.fepois, "k ~ capital | firm", data=cnt, iwls_tol=1e-12, fixef_tol=1e-12)
    with pytest.warns(UserWarning, match="carries \\(n - 1\\)/\\(n - k\\)"):
        att = lo.from_pyfixest(fit)
    assert att.model.theta_[0] == pytest.approx(fit.coef()["capital"], rel=1e-7)
    with pytest.raises(ValueError, match="expected a pyfixest fit"):
        lo.from_pyfixest(object())


def test_from_linearmodels_iv_and_panel():
    lm = pytest.importorskip("linearmodels")
    from linearmodels.datasets import mroz, wage_panel
    d = mroz.load().dropna(subset=["lwage"])
    res = lm.iv.IV2SLS.from_formula("lwage ~ 1 + exper + expersq + [educ ~ fatheduc + motheduc]", d).fit(
        cov_type="robust", debiased=True)
    att = lo.from_linearmodels(res)
    got = lo.summarize(att).table
    for name in res.params.index:
        assert got.loc[name, "coef"] == pytest.approx(res.params[name], rel=1e-10)
        assert got.loc[name, "std err"] == pytest.approx(res.std_errors[name], rel=1e-9)
    res0 = lm.iv.IV2SLS.from_formula("lwage ~ 1 + exper + expersq + [educ ~ fatheduc + motheduc]", d).fit(
        cov_type="unadjusted")
    with pytest.warns(UserWarning, match="divides by n"):
        lo.from_linearmodels(res0)
    wp = wage_panel.load().set_index(["nr", "year"])
    for cov in ("unadjusted", "robust"):
        p = lm.panel.PanelOLS.from_formula("lwage ~ expersq + married + union + EntityEffects + TimeEffects",
                                           wp).fit(cov_type=cov, debiased=True)
        att = lo.from_linearmodels(p)
        got = lo.summarize(att).table
        np.testing.assert_allclose(got["coef"], p.params, rtol=1e-8)
        np.testing.assert_allclose(got["std err"], p.std_errors, rtol=1e-6)
    p = lm.panel.PanelOLS.from_formula("lwage ~ expersq + married + union + EntityEffects + TimeEffects",
                                       wp).fit(cov_type="clustered", cluster_entity=True, debiased=True)
    with pytest.warns(UserWarning, match=r"nested in the clusters not counted\): the SEs differ by") as rec:
        att = lo.from_linearmodels(p, cluster=np.asarray(wp.index.get_level_values(0)))
    gap = float(str(rec[0].message).split("differ by ")[1].split("%")[0]) / 100
    ours = lo.summarize(att).table["std err"].to_numpy()
    assert np.max(np.abs(ours / p.std_errors.to_numpy() - 1)) == pytest.approx(gap, abs=1e-4)
    # and ours is pyfixest's CRV1
    pf = pytest.importorskip("pyfixest")
    fit = _pf(pf.feols, "lwage ~ expersq + married + union | nr + year", data=wp.reset_index(), vcov={"CRV1": "nr"})
    np.testing.assert_allclose(ours, fit.se().to_numpy(), rtol=1e-6)
