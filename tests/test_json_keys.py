"""The keys of the JSON a user parses (`summarize(...).to_dict()`, the trust report's
`to_dict()`), with values from independent numbers: the data's size and statsmodels' fit."""

import numpy as np
import pytest

import leaveout as lo
from leaveout.audit import summarize
from leaveout.metrics import Coefficient, TestPrediction

sm = pytest.importorskip("statsmodels.api")


def test_summary_json_keys_and_values():
    rng = np.random.default_rng(80)
    X = rng.standard_normal((60, 2))
    y = X @ [0.5, -0.3] + rng.standard_normal(60)
    model = lo.GLM("squared", l2=0).fit(X, y)
    d = summarize(model).to_dict()
    assert set(d) == {"family", "l2", "penalty", "weights", "se", "n", "n_rows", "df_resid", "loglike", "statistic",
                      "alpha", "params", "bse", "tvalues", "pvalues", "conf_int", "notes"}
    ref = sm.OLS(y, np.column_stack([X, np.ones(60)])).fit()
    np.testing.assert_allclose(list(d["params"].values()), ref.params, rtol=1e-9)
    np.testing.assert_allclose(list(d["bse"].values()), ref.bse, rtol=1e-9)
    np.testing.assert_allclose(list(d["tvalues"].values()), ref.tvalues, rtol=1e-9)
    assert d["n"] == 60 and d["df_resid"] == pytest.approx(57)


def test_trust_report_json_keys():
    rng = np.random.default_rng(81)
    X = rng.standard_normal((80, 3))
    y = (rng.random(80) < 1 / (1 + np.exp(-X @ [1.0, -0.5, 0.2]))).astype(int)
    att = lo.Attribution(lo.GLM(l2=1.0).fit(X, y))
    d = att.diagnose({"coef": Coefficient(0), "pred": TestPrediction(X[:4])}, n_sets=6).to_dict()
    assert set(d) == {"C_ell", "C_R", "delta", "epsilon", "eta", "k_threshold", "exact", "n", "calibration", "verdict",
                      "theorem", "indicator_spearman"}
    assert d["n"] == 80 and d["exact"] is True and set(d["verdict"]) == {"coef", "pred"}
