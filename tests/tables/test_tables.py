"""Tables in Python: DataFrames, formulas, names and row ids give the numbers of the array
path (hand-built dummies and interactions), and refuse what would misalign."""

import numpy as np
import pandas as pd
import pytest

import leaveout as lo
from leaveout.metrics import Coefficient, SelfLoss, TestLoss, TestPrediction

TOL = 1e-12


def _frame(n=240, seed=0, family="logistic"):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "g": rng.choice(["a", "b", "c"], n)}, index=[f"h{i:03d}" for i in range(n)])
    z = df.x1 - 0.5 * df.x2 + 0.8 * (df.g == "b") - 0.3 * (df.g == "c")
    if family == "logistic":
        df["y"] = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    else:
        df["y"] = z + rng.normal(size=n)
    return df


def _dummies(df):
    """The formula "x1 + C(g) + x1:x2" built by hand: treatment coding with baseline a."""
    return np.column_stack([df.x1, df.g == "b", df.g == "c", df.x1 * df.x2]).astype(float)


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))))


@pytest.mark.parametrize("family,penalty", [("logistic", "fixed"), ("logistic", "per_sample"), ("squared", "fixed")])
def test_formula_equals_hand_built_dummies(family, penalty):
    df = _frame(family=family)
    train, test = df.iloc[:200], df.iloc[200:]
    m = lo.GLM.from_formula("y ~ x1 + C(g) + x1:x2", train, family=family, l2=0.3, penalty=penalty)
    a = lo.GLM(family=family, l2=0.3, penalty=penalty).fit(_dummies(train), train.y.to_numpy())
    assert list(m.feature_names_in_) == ["x1", "C(g)[T.b]", "C(g)[T.c]", "x1:x2"]
    assert rel(m.theta_, a.theta_) < TOL
    att, ata = lo.Attribution(m), lo.Attribution(a)
    assert rel(att.leverage, ata.leverage) < TOL
    for f, fa in [(TestLoss(test), TestLoss(_dummies(test), test.y.to_numpy())),
                  (TestPrediction(test), TestPrediction(_dummies(test))),
                  (Coefficient("x1:x2"), Coefficient(3)), (SelfLoss(), SelfLoss())]:
        for method in ("if", "rif"):
            assert rel(att.scores(f, method), ata.scores(fa, method)) < TOL
    T_ids, T_pos = ["h003", "h017", "h150"], [3, 17, 150]
    for method in ("if", "rif", "ns", "retrain"):
        assert rel(att.delta(T_ids, method), ata.delta(T_pos, method)) < TOL
    assert att.effect(T_ids, TestLoss(test), "retrain") == pytest.approx(
        ata.effect(T_pos, TestLoss(_dummies(test), test.y.to_numpy()), "retrain"), rel=1e-12, abs=1e-15)


def test_dataframe_fit_keeps_names_and_ids():
    df = _frame()
    m = lo.GLM(l2=0.5).fit(df[["x1", "x2"]], df["y"])
    a = lo.GLM(l2=0.5).fit(df[["x1", "x2"]].to_numpy(), df["y"].to_numpy())
    assert rel(m.theta_, a.theta_) < TOL
    assert list(m.feature_names_in_) == ["x1", "x2"] and list(m.row_ids_[:2]) == ["h000", "h001"]
    assert list(m.params_.index) == ["x1", "x2", "Intercept"]
    np.testing.assert_array_equal(m.params_.to_numpy(), a.theta_)
    # other tables are read by column name, whatever their column order
    shuffled = df[["x2", "x1"]].iloc[:7]
    np.testing.assert_allclose(m.predict_proba(shuffled), a.predict_proba(df[["x1", "x2"]].to_numpy()[:7]), rtol=1e-14)
    with pytest.raises(ValueError, match=r"lacks the columns \['x1'\]"):
        m.predict(df[["x2"]])
    assert Coefficient("x2").value(m, m.theta_) == m.theta_[1]
    with pytest.raises(ValueError, match="no column of that name"):
        Coefficient("x9").gradient(m, m.theta_)


def test_frame_results_are_keyed_by_row_id():
    df = _frame()
    m = lo.GLM.from_formula("y ~ x1 + C(g)", df, l2=0.5)
    att = lo.Attribution(m)
    f = Coefficient("x1")
    s = att.scores(f, as_frame=True)
    assert list(s.columns) == ["rif"] and s.index.name == "id" and list(s.index[:2]) == ["h000", "h001"]
    np.testing.assert_array_equal(s["rif"].to_numpy(), att.scores(f))
    rows = att.rescaled_influence(as_frame=True)
    assert list(rows.columns) == ["x1", "C(g)[T.b]", "C(g)[T.c]", "Intercept"]
    np.testing.assert_array_equal(rows.to_numpy(), att.rescaled_influence())
    np.testing.assert_array_equal(att.positions_of(["h010", "h002"]), [10, 2])


def test_categorical_levels_and_columns_are_checked_on_other_tables():
    df = _frame()
    m = lo.GLM.from_formula("y ~ x1 + C(g)", df.iloc[:200], l2=0.5)
    with pytest.raises(ValueError, match="'z'"):
        TestPrediction(df.iloc[200:].assign(g="z")).value(m, m.theta_)
    with pytest.raises(ValueError, match="x1"):
        m.predict(df.iloc[200:].drop(columns="x1"))
    # a level of the training table that the test table lacks is fine
    only_a = df.iloc[200:][df.iloc[200:].g == "a"]
    want = 1 / (1 + np.exp(-(m.params_["x1"] * only_a.x1 + m.params_["Intercept"])))    # level a: no dummy
    np.testing.assert_allclose(m.predict_proba(only_a)[:, 1], want, rtol=1e-12)
    only_b = df.iloc[200:][df.iloc[200:].g == "b"]
    want = 1 / (1 + np.exp(-(m.params_["x1"] * only_b.x1 + m.params_["C(g)[T.b]"] + m.params_["Intercept"])))
    np.testing.assert_allclose(m.predict_proba(only_b)[:, 1], want, rtol=1e-12)


def test_intercept_comes_from_the_formula():
    df = _frame(family="squared")
    m = lo.GLM.from_formula("y ~ x1 + x2 - 1", df, family="squared", l2=0.0)
    assert not m.fit_intercept and list(m.params_.index) == ["x1", "x2"]
    ref = np.linalg.lstsq(df[["x1", "x2"]].to_numpy(), df.y.to_numpy(), rcond=None)[0]
    assert rel(m.theta_, ref) < 1e-10
    m1 = lo.GLM.from_formula("y ~ x1", df, family="squared", l2=0.0)
    A = np.column_stack([df.x1, np.ones(len(df))])
    assert m1.fit_intercept and rel(m1.theta_, np.linalg.lstsq(A, df.y.to_numpy(), rcond=None)[0]) < 1e-10


def test_missing_values_are_an_error_or_dropped_with_ids_aligned():
    df = _frame()
    bad = df.copy()
    bad.loc["h005", "x1"] = np.nan
    bad.loc["h009", "g"] = None
    bad.loc["h011", "y"] = np.nan
    with pytest.raises(ValueError, match=r"3 rows have missing values \(first ids: 'h005', 'h009', 'h011'\)"):
        lo.GLM.from_formula("y ~ x1 + C(g)", bad)
    m = lo.GLM.from_formula("y ~ x1 + C(g)", bad, missing="drop", l2=0.5)
    clean = df.drop(index=["h005", "h009", "h011"])
    ref = lo.GLM.from_formula("y ~ x1 + C(g)", clean, l2=0.5)
    assert m.n_dropped_ == 3 and list(m.row_ids_) == list(clean.index)
    assert rel(m.theta_, ref.theta_) < TOL
    with pytest.raises(ValueError, match=r"2 rows have missing values in x1, y \(first ids: 'h005', 'h011'\)"):
        lo.GLM().fit(bad[["x1", "x2"]], bad["y"])
    md = lo.GLM(l2=0.5).fit(bad[["x1", "x2"]], bad["y"], missing="drop")
    assert md.n_dropped_ == 2 and "h005" not in set(md.row_ids_) and "h011" not in set(md.row_ids_)
    with pytest.raises(ValueError, match="needs X as a DataFrame"):
        lo.GLM().fit(df[["x1"]].to_numpy(), df.y, missing="drop")


def test_row_ids_and_positions_are_told_apart():
    df = _frame().reset_index(drop=True)
    df.index = df.index + 1000                      # integer ids that are not positions
    att = lo.Attribution(lo.GLM.from_formula("y ~ x1", df, l2=0.5))
    np.testing.assert_array_equal(att.delta([1003, 1010], "if"), att.delta([3, 10], "if"))
    np.testing.assert_array_equal(att.delta(pd.Index([1003]), "if"), att.delta([3], "if"))
    df.index = np.arange(5, 5 + len(df))            # ids 5.., positions 0..: 10 and 11 are both
    att = lo.Attribution(lo.GLM.from_formula("y ~ x1", df, l2=0.5))
    with pytest.raises(ValueError, match="ambiguous"):
        att.delta([10, 11], "if")
    np.testing.assert_array_equal(att.delta(pd.Index([10, 11]), "if"), att.delta(np.array([5, 6]), "if"))
    np.testing.assert_array_equal(att.delta([2, 3], "if"), att.delta(pd.Index([7, 8]), "if"))   # 2, 3: positions only
    np.testing.assert_array_equal(att.positions_of([10, 11]), [5, 6])
    with pytest.raises(ValueError, match="not in the training rows"):
        lo.Attribution(lo.GLM.from_formula("y ~ x1", _frame(), l2=0.5)).delta(["nope"], "if")


def test_series_labels_must_share_the_index():
    df = _frame()
    with pytest.raises(ValueError, match="index differs"):
        lo.GLM().fit(df[["x1"]], df["y"].reset_index(drop=True))
    with pytest.raises(ValueError, match="non-numeric columns"):
        lo.GLM().fit(df[["x1", "g"]], df["y"])


def test_statsmodels_formula_models_keep_their_names():
    smf = pytest.importorskip("statsmodels.formula.api")
    df = _frame(family="squared")
    res = smf.ols("y ~ x1 + C(g)", df).fit()
    att = lo.from_statsmodels(res)
    assert list(att.model.feature_names_in_) == list(res.model.exog_names)
    f = Coefficient("x1")
    # the exact retrain against statsmodels refitted on the table without those rows
    drop = ["h004", "h100", "h101"]
    refit = smf.ols("y ~ x1 + C(g)", df.drop(index=drop)).fit()
    assert att.effect(drop, f, "retrain") == pytest.approx(refit.params["x1"] - res.params["x1"], rel=1e-8)
    logit = smf.logit("y ~ x1 + C(g)", _frame()).fit(disp=0)
    assert lo.Attribution(att.model).effect(["h001"], Coefficient("Intercept"), "ns") == pytest.approx(
        att.effect([1], Coefficient(0), "ns"), rel=1e-12)
    assert list(lo.from_statsmodels(logit).model.feature_names_in_)[-1] == "x1"


def test_every_reading_of_a_removal_set():
    """Each branch of tables.ids.resolve_rows against the positions it must give, written out
    by hand for a model of 6 rows."""
    from leaveout.tables.ids import resolve_rows
    str_ids = np.array(["a", "b", "c", "d", "e", "f"], dtype=object)
    int_ids = np.array([1000, 1001, 1002, 1003, 1004, 1005])
    mixed = np.array([0, 1, 2, 30, 40, 50])                 # ids 0, 1, 2 are also positions
    pos = lambda T, ids: np.asarray(resolve_rows(T, ids, 6)).tolist()    # noqa: E731
    assert pos(["c", "a"], str_ids) == [2, 0]                # labels: ids
    assert pos([4, 1], str_ids) == [4, 1]                    # integers, non-integer ids: positions
    assert pos([1003, 1005], int_ids) == [3, 5]              # integers that are ids only
    assert pos([2, 3], int_ids) == [2, 3]                    # integers that are positions only
    assert pos(np.array([1, 2]), mixed) == [1, 2]            # a numpy integer array: positions
    assert pos(pd.Index([30, 50]), mixed) == [3, 5]          # an Index: ids
    assert pos(pd.Series(["f"]), str_ids) == [5]             # a Series: ids
    assert pos([30, 40], mixed) == [3, 4]                    # ids, not positions
    assert pos([True, False, True, False, False, False], str_ids) == [True, False, True, False, False, False]
    assert pos([1.0, 2.0], int_ids) == [1.0, 2.0]            # floats: positions, checked later
    assert pos([4, 5], np.arange(6)) == [4, 5]               # ids equal to positions
    assert resolve_rows([4, 5], None, 6) == [4, 5]           # no ids
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_rows([1, 2], mixed, 6)
    with pytest.raises(ValueError, match="not in the training rows: 'z'"):
        resolve_rows(["a", "z"], str_ids, 6)
    with pytest.raises(ValueError, match="not a DataFrame"):
        resolve_rows(pd.DataFrame({"a": [1]}), str_ids, 6)
