"""Weights and statsmodels' numbers on the command line: `leaveout fit --weights` against
statsmodels WLS / GLM(var_weights) / GLM(freq_weights) for every SE type, the unpenalised
table default, the model header of every command, and one-line errors for bad weights."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from leaveout.cli import main

sm = pytest.importorskip("statsmodels.api")
smf = pytest.importorskip("statsmodels.formula.api")

FORMULA = "y ~ x1 + x2 + C(g)"


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(5)
    n = 150
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "g": rng.choice(["a", "b", "c"], n),
                       "w": rng.uniform(0.3, 3.0, n), "f": rng.integers(1, 4, n), "cl": rng.integers(0, 12, n)})
    eta = 0.5 * df.x1 - 0.7 * df.x2 + (df.g == "b")
    df["ys"] = eta + rng.normal(size=n) * (1 + df.x1.abs())
    df["yl"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    df["yp"] = rng.poisson(np.exp(0.3 * eta))
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    return path, df


def _fit_json(capsys, path, family, resp, *extra):
    assert main(["fit", str(path), "--formula", FORMULA.replace("y", resp, 1), "--family", family,
                 "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _sm(family, df, resp, cov_type, kind, weights, groups=None, correction=True):
    f = FORMULA.replace("y", resp, 1)
    kw = {"groups": df[groups], "use_correction": correction} if groups else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "squared" and kind == "analytic":
            return smf.wls(f, df, weights=df[weights]).fit(cov_type=cov_type, cov_kwds=kw)
        fam = {"squared": sm.families.Gaussian(), "logistic": sm.families.Binomial(),
               "poisson": sm.families.Poisson()}[family]
        wkw = {"var_weights": df[weights]} if kind == "analytic" else {"freq_weights": df[weights]}
        # Newton, so that statsmodels' covariance is the Hessian's at its final estimate (IRLS
        # reports the weights of its last step, ~1e-8 away)
        return smf.glm(f, df, family=fam, **wkw).fit(cov_type=cov_type, cov_kwds=kw, tol=1e-13, method="newton")


def _compare(out, ref, scale=1.0):
    names = list(ref.params.index)
    for key, want in (("params", ref.params), ("bse", ref.bse * scale)):
        got = np.array([out[key][n] for n in names])
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-8)


@pytest.mark.parametrize("family,resp", [("squared", "ys"), ("logistic", "yl"), ("poisson", "yp")])
@pytest.mark.parametrize("se,cluster", [("nonrobust", None), ("HC0", None), ("HC1", None), ("HC0", "cl"), ("HC1", "cl")])
def test_fit_with_analytic_weights_equals_statsmodels(data, capsys, family, resp, se, cluster):
    path, df = data
    extra = ["--weights", "w", "--se", se] + (["--cluster", cluster] if cluster else [])
    out = _fit_json(capsys, path, family, resp, *extra)
    glm_hc1 = family != "squared" and se == "HC1" and cluster is None
    ref = _sm(family, df, resp, "cluster" if cluster else ("HC0" if glm_hc1 else se), "analytic", "w", cluster,
              correction=se == "HC1")
    n, p = len(df), len(ref.params)
    _compare(out, ref, np.sqrt(n / (n - p)) if glm_hc1 else 1.0)   # statsmodels' GLM HC1 has no factor
    assert out["loglike"] == pytest.approx(ref.llf, rel=1e-9)
    assert out["model"]["weights"] == {"column": "w", "meaning": "analytic"}
    assert (out["family"], out["l2"], out["n"]) == (family, 0.0, n)
    if not glm_hc1:                 # statistics, p-values and intervals as statsmodels reports them
        names = list(ref.params.index)
        np.testing.assert_allclose([out["pvalues"][k] for k in names], ref.pvalues, rtol=1e-6)
        np.testing.assert_allclose([out["conf_int"][k] for k in names], np.asarray(ref.conf_int()), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("family,resp", [("squared", "ys"), ("logistic", "yl"), ("poisson", "yp")])
@pytest.mark.parametrize("se,cluster", [("nonrobust", None), ("HC0", None), ("HC0", "cl")])
def test_fit_with_frequency_weights_equals_statsmodels_freq_weights(data, capsys, family, resp, se, cluster):
    path, df = data
    extra = ["--weights", "f", "--weight-kind", "frequency", "--se", se] + (["--cluster", cluster] if cluster else [])
    out = _fit_json(capsys, path, family, resp, *extra)
    ref = _sm(family, df, resp, "cluster" if cluster else se, "frequency", "f", cluster, correction=False)
    _compare(out, ref)
    assert out["loglike"] == pytest.approx(ref.llf, rel=1e-9)
    assert out["n"] == int(df.f.sum()) and out["n_rows"] == len(df)


def test_table_default_is_unpenalised_and_the_text_table(data, capsys):
    path, df = data
    assert main(["fit", str(path), "--formula", FORMULA.replace("y", "yl", 1)]) == 0
    text = capsys.readouterr().out
    ref = smf.logit(FORMULA.replace("y", "yl", 1), df).fit(disp=0)
    assert "model: logistic, l2 = 0 (fixed penalty), weights none, se nonrobust, n = 150" in text
    line = next(row for row in text.splitlines() if row.startswith("x1 "))
    coef, se, z, p = (float(v) for v in line.split()[1:5])
    assert coef == pytest.approx(ref.params["x1"], rel=1e-5)
    assert se == pytest.approx(ref.bse["x1"], rel=1e-5)
    assert p == pytest.approx(ref.pvalues["x1"], rel=1e-4)
    assert "P>|z|" in text


def test_drop_missing_drops_rows_with_their_weights(data, capsys, tmp_path):
    path, df = data
    bad = df.copy()
    bad.loc[[3, 7], "x1"] = np.nan
    bad.loc[[10], "w"] = np.nan
    p = tmp_path / "bad.csv"
    bad.to_csv(p, index=False)
    assert main(["fit", str(p), "--formula", FORMULA.replace("y", "ys", 1), "--family", "squared",
                 "--weights", "w", "--se", "HC1", "--cluster", "cl", "--drop-missing", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    clean = bad.dropna()
    ref = smf.wls(FORMULA.replace("y", "ys", 1), clean, weights=clean.w).fit(
        cov_type="cluster", cov_kwds={"groups": clean.cl})
    _compare(out, ref)
    assert out["dropped_missing"] == 3 and out["n"] == len(clean)


@pytest.mark.parametrize("change,message", [
    (lambda d: d.assign(w=-d.w), "--weights: column 'w' has negative weights"),
    (lambda d: d.assign(w=0.0), "--weights: column 'w' is zero in every training row"),
    (lambda d: d.assign(w=np.where(d.index == 4, np.nan, d.w)), "--weights: column 'w' has 1 missing values"),
    (lambda d: d.assign(w="heavy"), "--weights: column 'w' is not numeric"),
    (lambda d: d.drop(columns="w"), "--weights: DATA has no column 'w'"),
])
def test_bad_weights_give_one_line_errors(data, capsys, tmp_path, change, message):
    path, df = data
    p = tmp_path / "w.csv"
    change(df.copy()).to_csv(p, index=False)
    assert main(["fit", str(p), "--formula", FORMULA.replace("y", "ys", 1), "--family", "squared", "--weights", "w"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"leaveout: error: {message}") and "\n" not in err


def test_weight_options_are_for_tables(data, capsys, tmp_path):
    path, df = data
    assert main(["fit", str(path), "--formula", FORMULA.replace("y", "ys", 1), "--family", "squared",
                 "--weight-kind", "frequency"]) == 1
    assert "--weight-kind says what the --weights COLUMN means" in capsys.readouterr().err
    npz = tmp_path / "a.npz"
    X = np.random.default_rng(0).normal(size=(30, 2))
    np.savez(npz, X_train=X, y_train=(X[:, 0] > 0).astype(int), X_test=X[:5], y_test=np.ones(5))
    assert main(["fit", str(npz), "--weights", "w"]) == 1
    assert "--weights is for tables" in capsys.readouterr().err


def test_continuous_response_points_to_the_squared_family(data, capsys):
    path, _ = data
    assert main(["audit", str(path), "--formula", FORMULA.replace("y", "ys", 1), "--coef", "x1"]) == 1
    err = capsys.readouterr().err
    assert "--family squared" in err and "multinomial" not in err


def test_headers_name_the_model_in_audit_check_and_suspects(data, capsys):
    path, df = data
    f = FORMULA.replace("y", "ys", 1)
    assert main(["audit", str(path), "--formula", f, "--family", "squared", "--weights", "w", "--coef", "x1",
                 "--target", "significance", "--se", "HC0", "--cluster", "cl", "--json", "--max-fraction", "0.3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == {"family": "squared", "l2": 0.0, "penalty": "fixed", "n": 150, "n_rows": 150,
                            "weights": {"column": "w", "meaning": "analytic"}, "se": "HC0, clustered by cl"}
    # the audit's SE is statsmodels' WLS cluster SE without the small-sample factor
    ref = smf.wls(f, df, weights=df.w).fit(cov_type="cluster", cov_kwds={"groups": df.cl, "use_correction": False})
    assert out["original"]["se"] == pytest.approx(ref.bse["x1"], rel=1e-8)
    assert main(["check", str(path), "--formula", FORMULA.replace("y", "yl", 1), "--weights", "f",
                 "--weight-kind", "frequency", "--sets", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["weights"] == {"column": "f", "meaning": "frequency"} and out["model"]["n"] == int(df.f.sum())
    assert main(["suspects", str(path), "--formula", FORMULA.replace("y", "yl", 1), "--top", "3"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == "model: logistic, l2 = 0 (fixed penalty), weights none, n = 150"
    assert "the 3 most suspicious of 150 rows (loo, IF" in text[1]
