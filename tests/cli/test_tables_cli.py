"""Tables on the command line: CSV / Parquet with --formula or --target, row ids, test rows;
the numbers of the Python API, one-line errors, nothing written on failure."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import leaveout as lo
from conftest import DATASETS
from leaveout.cli import main
from leaveout.metrics import Coefficient, TestLoss

FORMULA = "y ~ x1 + C(g) + x1:x2"


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(1)
    n = 160
    df = pd.DataFrame({"hh": [f"hh{i}" for i in range(n)], "x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "g": rng.choice(["a", "b", "c"], n)})
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-(df.x1 - df.x2 + (df.g == "b"))))).astype(int)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    return path, df


def test_fit_json_equals_the_python_formula_fit(table, capsys):
    path, df = table
    assert main(["fit", str(path), "--formula", FORMULA, "--l2", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = lo.GLM.from_formula(FORMULA, df, l2=0.5).params_
    assert out["n"] == len(df) and out["converged"]
    assert out["coef"] == pytest.approx(ref.to_dict(), rel=1e-12)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scores_by_id_equal_the_api(table, tmp_path, suffix, capsys):
    path, df = table
    out = tmp_path / f"s{suffix}"
    assert main(["scores", str(path), "--formula", FORMULA, "--id", "hh", "--metric", "coef:x1",
                 "--l2", "0.5", "--out", str(out)]) == 0
    got = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    att = lo.Attribution(lo.GLM.from_formula(FORMULA, df.set_index("hh"), l2=0.5))
    assert list(got.columns) == ["hh", "leverage", "if", "rif"]
    assert list(got.hh) == list(df.hh)
    np.testing.assert_allclose(got.rif, att.scores(Coefficient("x1"), "rif"), rtol=1e-12)
    np.testing.assert_allclose(got.leverage, att.leverage, rtol=1e-12)


def test_effect_removes_rows_by_id_and_names_them(table, capsys):
    path, df = table
    split = ["--test-fraction", "0.25", "--seed", "4"]
    assert main(["fit", str(path), "--formula", FORMULA, "--id", "hh", *split, "--json"]) == 0
    test_ids = json.loads(capsys.readouterr().out)["test_ids"]
    assert len(test_ids) == 40
    frame = df.set_index("hh")
    train, test = frame.drop(index=test_ids), frame.loc[test_ids]
    drop = [str(i) for i in train.index[[7, 3]]]
    assert main(["effect", str(path), "--formula", FORMULA, "--id", "hh", "--remove", ",".join(drop),
                 *split, "--coef", "x1", "--l2", "0.5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["removed"] == sorted(drop, key=list(train.index).index) and res["test_fraction"] == 0.25
    assert res["seed"] == 4 and res["test_ids"] == test_ids
    att = lo.Attribution(lo.GLM.from_formula(FORMULA, train, l2=0.5))
    f = TestLoss(test)
    assert res["removal"]["test-loss"]["actual"] == pytest.approx(att.effect(drop, f, "retrain"), rel=1e-9)
    assert res["removal"]["coef:x1"]["rif"] == pytest.approx(att.effect(drop, Coefficient("x1"), "rif"), rel=1e-12)
    # a test row is not a training row
    assert main(["effect", str(path), "--formula", FORMULA, "--id", "hh", "--remove", test_ids[0], *split]) == 1


def test_target_test_file_and_row_numbers(table, tmp_path, capsys):
    path, df = table
    num = df[["x1", "x2", "y"]]
    num.iloc[:120].to_csv(tmp_path / "train.csv", index=False)
    num.iloc[120:].to_csv(tmp_path / "test.csv", index=False)
    assert main(["effect", str(tmp_path / "train.csv"), "--target", "y", "--test", str(tmp_path / "test.csv"),
                 "--remove", "5,9", "--l2", "0.5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    m = lo.GLM(l2=0.5).fit(num.iloc[:120][["x1", "x2"]].to_numpy(), num.iloc[:120].y.to_numpy())
    att = lo.Attribution(m)
    f = TestLoss(num.iloc[120:][["x1", "x2"]].to_numpy(), num.iloc[120:].y.to_numpy())
    assert res["removed"] == [5, 9]
    assert res["removal"]["test-loss"]["ns"] == pytest.approx(att.effect([5, 9], f, "ns"), rel=1e-12)
    # --test-rows by DATA row number: those rows leave the training set, the rest keep their numbers
    assert main(["effect", str(tmp_path / "train.csv"), "--target", "y", "--test-rows", "0,1,2",
                 "--remove", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["test_positions"] == [0, 1, 2] and res["removed"] == [5]
    m2 = lo.GLM(l2=0).fit(num.iloc[3:120][["x1", "x2"]].to_numpy(), num.iloc[3:120].y.to_numpy())
    assert res["removal"]["self-loss"]["if"] == pytest.approx(
        lo.Attribution(m2).effect([2], lo.metrics.SelfLoss(), "if"), rel=1e-12)


def test_drop_missing_is_reported(table, tmp_path, capsys):
    path, df = table
    bad = df.copy()
    bad.loc[[4, 8], "x1"] = np.nan
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["fit", str(tmp_path / "bad.csv"), "--formula", FORMULA, "--id", "hh", "--drop-missing", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dropped_missing"] == 2 and out["n"] == len(df) - 2
    # the fit is statsmodels' on the cleaned table (the table default is unpenalised)
    smf = pytest.importorskip("statsmodels.formula.api")
    ref = smf.logit(FORMULA, bad.dropna()).fit(disp=0, tol=1e-12)
    for name, value in ref.params.items():
        assert out["params"][name] == pytest.approx(value, rel=1e-6, abs=1e-9)
        assert out["bse"][name] == pytest.approx(ref.bse[name], rel=1e-5)


@pytest.mark.parametrize("args,msg", [
    (["fit", "{csv}", "--target", "y"], "not numeric"),
    (["fit", "{csv}"], "needs exactly one of --formula"),
    (["fit", "{csv}", "--formula", "y ~ x1", "--target", "y"], "needs exactly one of --formula"),
    (["fit", "{npz}", "--formula", "y ~ x1"], "--formula is for tables"),
    (["fit", "{csv}", "--formula", "y ~ x1", "--test-index", "1"], "--test-index is for .npz"),
    (["fit", "{bad}", "--formula", FORMULA, "--id", "hh"], "1 rows have missing values (first ids: 'hh4')"),
    (["fit", "{csv}", "--formula", "y ~ nope"], "nope"),
    (["fit", "{csv}", "--formula", "y ~ x1", "--id", "nope"], "--id: DATA has no column 'nope'"),
    (["fit", "{dup}", "--formula", "y ~ x1", "--id", "hh"], "repeats the id 'hh0'"),
    (["fit", "{csv}", "--formula", "y ~ x1", "--test-fraction", "1.5"], "--test-fraction must lie"),
    (["fit", "{csv}", "--formula", "y ~ x1", "--test-fraction", "0.2", "--test-rows", "1"], "give one of"),
    (["effect", "{csv}", "--formula", "y ~ x1", "--id", "hh", "--remove", "hh1,zz"], "not in the training rows: 'zz'"),
    (["effect", "{csv}", "--formula", FORMULA, "--test", "{unseen}", "--remove", "1"], "'q'"),
    (["scores", "{csv}", "--formula", "y ~ x1", "--metric", "test-loss", "--out", "s.csv"], "needs test rows"),
    (["scores", "{csv}", "--formula", "y ~ x1", "--metric", "coef:x9", "--out", "s.csv"], "no column of that name"),
    (["scores", "{csv}", "--formula", "y ~ x1", "--metric", "coef:x1", "--out", "s.txt"], ".csv or .parquet"),
    (["fit", "{missing}", "--formula", "y ~ x1"], "no such file"),
    (["fit", "{garbage}", "--formula", "y ~ x1"], "cannot read"),
])
def test_table_errors_are_one_line_and_write_nothing(table, tmp_path, args, msg):
    path, df = table
    bad = df.copy()
    bad.loc[4, "x1"] = np.nan
    bad.to_csv(tmp_path / "bad.csv", index=False)
    df.assign(hh="hh0").to_csv(tmp_path / "dup.csv", index=False)
    df.iloc[:10].assign(g="q").to_csv(tmp_path / "unseen.csv", index=False)
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet")
    np.savez(tmp_path / "d.npz", X_train=np.eye(3), y_train=[0, 1, 0], X_test=np.eye(3), y_test=[0, 1, 0])
    files = {"csv": path, "bad": tmp_path / "bad.csv", "dup": tmp_path / "dup.csv", "npz": tmp_path / "d.npz",
             "unseen": tmp_path / "unseen.csv", "missing": tmp_path / "none.csv", "garbage": tmp_path / "garbage.parquet"}
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(**files) for a in args]
    proc = subprocess.run([sys.executable, "-m", "leaveout", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert msg in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# published base estimates of ../shared/datasets/amip/CASES.md (unpenalised OLS)
AMIP = [
    ("mc_profit_mexico.csv", "profit ~ treatment", "treatment", -4.549, 16560),
    ("mc_profit_mongolia.csv", "profit ~ treatment", "treatment", -0.341, 961),
    ("mc_profit_bosnia.csv", "profit ~ treatment", "treatment", 37.534, 1195),
    ("mc_profit_india.csv", "profit ~ treatment", "treatment", 16.722, 6863),
    ("mc_profit_morocco.csv", "profit ~ treatment", "treatment", 17.544, 5498),
    ("mc_profit_philippines.csv", "profit ~ treatment", "treatment", 66.564, 1113),
    ("mc_profit_ethiopia.csv", "profit ~ treatment", "treatment", 7.289, 3113),
    ("cash_treatnp_t8.csv", "Cind ~ . - village", "treatment", -5.444, 4624),
    ("cash_treatnp_t9.csv", "Cind ~ . - village", "treatment", 22.852, 3838),
    ("cash_treatp_t10.csv", "Cind ~ . - village", "treatment", 33.861, 10518),
    ("ames_poolarea_n340.csv", "SalePrice ~ PoolArea", "PoolArea", 207.78106849811658, 340),
    ("genomics_vip_gad1.csv", "gad1 ~ vip", "vip", 0.535506124899345, 65539),
    ("rugged_nunn_puga.csv", "log_rgdppc_2000 ~ rugged*cont_africa + diamonds*cont_africa + soil*cont_africa "
     "+ tropical*cont_africa + dist_coast*cont_africa", "rugged:cont_africa", 0.321, 170),
]


@pytest.mark.parametrize("name,formula,coef,published,n", AMIP, ids=[a[0] for a in AMIP])
def test_amip_tables_reproduce_their_published_base_estimates(name, formula, coef, published, n, capsys):
    path = DATASETS / "amip" / name
    if not path.is_file():
        pytest.skip(f"{path} not available (needs ../shared/datasets)")
    assert main(["fit", str(path), "--formula", formula, "--family", "squared", "--l2", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    digits = len(repr(published).split(".")[1])
    assert out["n"] == n and out["converged"]
    assert round(out["coef"][coef], digits) == pytest.approx(published, abs=10.0 ** -digits / 2 + 1e-12)
