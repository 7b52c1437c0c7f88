"""Rows dropped for missing values take their weights, offsets and cluster labels along
(issue #22, planted bug 5: weights / offsets misaligned after ``missing="drop"``): a weighted
Poisson rate model with an offset on a table with gaps equals statsmodels on the cleaned
table, coefficients and (cluster) standard errors."""

import warnings

import numpy as np
import pandas as pd
import pytest

import leaveout as lo
from leaveout.audit.se import SECalculator

sm = pytest.importorskip("statsmodels.api")
smf = pytest.importorskip("statsmodels.formula.api")


def test_drop_missing_keeps_weights_offsets_and_clusters_aligned():
    rng = np.random.default_rng(9)
    n = 200
    df = pd.DataFrame({"x": rng.standard_normal(n), "g": rng.choice(list("abcd"), n),
                       "expo": rng.uniform(0.5, 4.0, n), "w": rng.uniform(0.2, 3.0, n),
                       "firm": rng.integers(0, 15, n)})
    df["y"] = rng.poisson(df.expo * np.exp(0.4 * df.x + (df.g == "b") * 0.5))
    df.index = [f"r{i}" for i in range(n)]
    gaps = rng.choice(n, 25, replace=False)
    df.loc[df.index[gaps[:10]], "x"] = np.nan
    df.loc[df.index[gaps[10:18]], "g"] = None
    df.loc[df.index[gaps[18:]], "y"] = np.nan
    df["log_expo"] = np.log(df.expo)
    f = "y ~ x + C(g)"
    m = lo.GLM.from_formula(f, df, family="poisson", l2=0, sample_weight="w", offset="log_expo", missing="drop")
    clean = df.dropna(subset=["x", "g", "y"])
    assert m.n_dropped_ == 25 and list(m.row_ids_) == list(clean.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.glm(f, clean, family=sm.families.Poisson(), var_weights=clean.w, offset=clean.log_expo)
        plain = ref.fit(method="newton", tol=1e-13)
        clus = ref.fit(method="newton", tol=1e-13, cov_type="cluster",
                       cov_kwds={"groups": clean.firm, "use_correction": False})
    names = list(plain.params.index)
    np.testing.assert_allclose(m.params_[names], plain.params, rtol=1e-8)
    att = lo.Attribution(m)
    order = [list(m.params_.index).index(k) for k in names]
    E = np.eye(len(names))[order]
    np.testing.assert_allclose([SECalculator(att).se(e) for e in E], plain.bse, rtol=1e-8)
    groups = clean.firm.to_numpy()
    np.testing.assert_allclose([SECalculator(att, "HC0", groups).se(e) for e in E], clus.bse, rtol=1e-8)
    # the same with arrays of one value per row of the original table
    m2 = lo.GLM.from_formula(f, df, family="poisson", l2=0, sample_weight=df.w.to_numpy(),
                             offset=df.log_expo.to_numpy(), missing="drop")
    np.testing.assert_allclose(m2.theta_, m.theta_, rtol=1e-12)


def test_fit_on_a_numeric_frame_drops_weights_and_offsets_with_their_rows():
    """GLM.fit on a DataFrame (no formula) with per-row weights and offsets, as arrays and as
    Series carrying the frame's index: equal to statsmodels on the cleaned rows."""
    rng = np.random.default_rng(10)
    n = 150
    X = pd.DataFrame({"x": rng.standard_normal(n), "z": rng.standard_normal(n)}, index=[f"r{i}" for i in range(n)])
    expo, w = rng.uniform(0.5, 4.0, n), rng.uniform(0.2, 3.0, n)
    y = pd.Series(rng.poisson(expo * np.exp(0.3 * X.x - 0.2 * X.z)).astype(float), index=X.index)
    X.iloc[rng.choice(n, 12, replace=False), 0] = np.nan
    y.iloc[rng.choice(n, 6, replace=False)] = np.nan
    ok = X.notna().all(axis=1) & y.notna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sm.GLM(y[ok], sm.add_constant(X[ok], prepend=False), family=sm.families.Poisson(),
                     var_weights=w[ok.to_numpy()], offset=np.log(expo[ok.to_numpy()])).fit(method="newton", tol=1e-13)
    for sw, off in ((w, np.log(expo)), (pd.Series(w, index=X.index), pd.Series(np.log(expo), index=X.index))):
        m = lo.GLM("poisson", l2=0).fit(X, y, sample_weight=sw, offset=off, missing="drop")
        assert m.n_dropped_ == int((~ok).sum()) and list(m.row_ids_) == list(X.index[ok])
        np.testing.assert_allclose(m.theta_, ref.params.to_numpy(), rtol=1e-7, atol=1e-9)
