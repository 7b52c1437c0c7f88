import json
import subprocess
import sys

import numpy as np
import pytest

import leaveout as lo
from conftest import make_data
from leaveout.cli import main
from leaveout.metrics import SelfLoss, TestLoss, TestPrediction


@pytest.fixture
def data_file(tmp_path):
    X, y = make_data(n=200, d=8, seed=0)
    Xt, yt = make_data(n=150, d=8, seed=1)
    path = tmp_path / "toy.npz"
    np.savez(path, X_train=X.astype(np.float32), y_train=y.astype(np.uint8),
             X_test=Xt.astype(np.float32), y_test=yt.astype(np.uint8))
    return path, X.astype(np.float32).astype(float), y, Xt.astype(np.float32).astype(float), yt


def test_scores_csv_matches_api(data_file, tmp_path, capsys):
    path, X, y, Xt, yt = data_file
    out = tmp_path / "scores.csv"
    assert main(["scores", str(path), "--metric", "test-loss", "--test-index", "0,5,7", "--l2", "0.5",
                 "--out", str(out)]) == 0
    rows = np.genfromtxt(out, delimiter=",", names=True)
    assert rows.dtype.names == ("index", "leverage", "if", "rif")
    m = lo.GLM(l2=0.5).fit(X, y)
    att = lo.Attribution(m)
    f = TestLoss(Xt[[0, 5, 7]], yt[[0, 5, 7]])
    np.testing.assert_array_equal(rows["index"], np.arange(200))
    np.testing.assert_allclose(rows["leverage"], att.leverage, rtol=1e-10)
    np.testing.assert_allclose(rows["if"], att.scores(f, "if"), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(rows["rif"], att.scores(f, "rif"), rtol=1e-9, atol=1e-14)


def test_effect_json_matches_api(data_file, tmp_path, capsys):
    path, X, y, Xt, yt = data_file
    remove = tmp_path / "remove.txt"
    remove.write_text("3\n10\n11\n")
    assert main(["effect", str(path), "--remove", f"@{remove}", "--penalty", "per_sample", "--l2", "0.01",
                 "--no-intercept", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    m = lo.GLM(l2=0.01, penalty="per_sample", fit_intercept=False).fit(X, y)
    att = lo.Attribution(m)
    from leaveout.metrics import select_test_subset
    idx = select_test_subset(m, Xt, yt)
    T = [3, 10, 11]
    assert res["n_removed"] == 3 and res["retrain"]["converged"] is True and res["retrain"]["grad_norm"] <= 1e-9
    for name, f in (("test-pred", TestPrediction(Xt[idx])), ("test-loss", TestLoss(Xt[idx], yt[idx])),
                    ("self-loss", SelfLoss())):
        assert res["removal"][name]["actual"] == pytest.approx(att.effect(T, f, "retrain"), rel=1e-7)
        for method in ("if", "rif", "ns"):
            assert res["removal"][name][method] == pytest.approx(att.effect(T, f, method), rel=1e-9)
            assert res["linear"][name][method] == pytest.approx(att.effect(T, f, method, "linear"), rel=1e-9)


def test_effect_table(data_file, capsys):
    """The printed table: the self-loss row's actual and IF removal effects against a tight
    refit and a dense IF step computed here (the .npz default l2 = 1, fixed penalty)."""
    path, X, y, _, _ = data_file
    assert main(["effect", str(path), "--remove", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "removed 2 of 200" in out
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "effect", "actual", "IF", "RIF", "NS"]
    row = next(line.split() for line in out.splitlines() if line.startswith("self-loss") and " removal " in line)
    actual, if_ = float(row[2]), float(row[3])
    A = np.column_stack([X, np.ones(len(X))])
    P = np.diag([1.0] * X.shape[1] + [0.0])

    def objective(theta):
        z = A @ theta
        return np.sum(np.logaddexp(0, z) - y * z) + 0.5 * theta @ P @ theta

    theta = lo.GLM(l2=1.0, tol=1e-12).fit(X, y).theta_
    keep = np.setdiff1d(np.arange(200), [1, 2])
    refit = lo.GLM(l2=1.0, tol=1e-12).fit(X[keep], y[keep]).theta_
    assert actual == pytest.approx(objective(refit) - objective(theta), rel=1e-5)
    p = 1 / (1 + np.exp(-A @ theta))
    H = (A * (p * (1 - p))[:, None]).T @ A + P
    step = np.linalg.solve(H, A[[1, 2]].T @ (p[[1, 2]] - y[[1, 2]]))
    assert if_ == pytest.approx(objective(theta + step) - objective(theta), rel=1e-5)


@pytest.mark.parametrize("args,msg", [
    (["effect", "{data}", "--remove", "1,1"], "duplicate index 1"),
    (["effect", "{data}", "--remove", "500"], "out of range"),
    (["effect", "{data}", "--remove", "x"], "'x' is not an integer"),
    (["effect", "{data}", "--remove", "@/nonexistent/list"], "cannot read"),
    (["effect", "{data}", "--remove", ",".join(map(str, range(200)))], "removes every sample"),
    (["effect", "{data}", "--remove", "1", "--l2", "-1"], "--l2"),
    (["effect", "{data}", "--remove", "1", "--test-index", "9999"], "--test-index"),
    (["effect", "{missing}", "--remove", "1"], "does not exist"),
    (["effect", "{garbage}", "--remove", "1"], "cannot read data file"),
    (["effect", "{nan}", "--remove", "1"], "NaN or infinity"),
    (["effect", "{oneclass}", "--remove", "1"], "only one class"),
    (["effect", "{wide}", "--remove", "1", "--l2", "0"], "add an L2 penalty"),
    (["scores", "{data}", "--metric", "test-loss", "--out", "/nonexistent/dir/x.csv"], "does not exist"),
    (["scores", "{data}", "--metric", "bogus", "--out", "x.csv"], "invalid choice"),
])
def test_bad_input_gives_one_line_and_no_traceback(data_file, tmp_path, args, msg):
    path, X, y, Xt, yt = data_file
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    Xn = X.copy()
    Xn[0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", X_train=Xn, y_train=y, X_test=Xt, y_test=yt)
    np.savez(tmp_path / "oneclass.npz", X_train=X, y_train=np.ones_like(y), X_test=Xt, y_test=yt)
    Xw, yw = make_data(n=10, d=20, seed=3)
    np.savez(tmp_path / "wide.npz", X_train=Xw, y_train=yw, X_test=Xw, y_test=yw)
    files = {"data": path, "missing": tmp_path / "missing.npz", "garbage": garbage,
             "nan": tmp_path / "nan.npz", "oneclass": tmp_path / "oneclass.npz", "wide": tmp_path / "wide.npz"}
    argv = [a.format(**files) for a in args]
    proc = subprocess.run([sys.executable, "-m", "leaveout", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert msg in err[0] and "Traceback" not in proc.stderr


def test_failed_scores_leaves_no_partial_file(data_file, tmp_path, monkeypatch):
    path = data_file[0]
    out = tmp_path / "scores.csv"
    out.write_text("precious")
    import leaveout.attribution as A

    def boom(self, metric, method="rif"):
        raise ValueError("simulated failure")
    monkeypatch.setattr(A.Attribution, "scores", boom)
    assert main(["scores", str(path), "--metric", "test-pred", "--out", str(out)]) == 1
    assert out.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".leaveout")] == []


def test_effect_for_the_squared_family_with_float_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = X @ rng.normal(size=6) + rng.normal(size=120)
    path = tmp_path / "reg.npz"
    np.savez(path, X_train=X[:90], y_train=y[:90], X_test=X[90:], y_test=y[90:])
    assert main(["effect", str(path), "--family", "squared", "--remove", "1,2,3", "--l2", "0.5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    m = lo.GLM(family="squared", l2=0.5).fit(X[:90], y[:90])
    att = lo.Attribution(m)
    # for squared loss the Newton step is exact: NS equals the retrain
    for name in ("test-pred", "test-loss", "self-loss"):
        assert res["removal"][name]["ns"] == pytest.approx(res["removal"][name]["actual"], rel=1e-8, abs=1e-12)
    assert res["removal"]["self-loss"]["rif"] == pytest.approx(att.effect([1, 2, 3], SelfLoss(), "rif"), rel=1e-9)


@pytest.fixture
def multiclass_file(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 4))
    y = np.array(["ant", "bee", "cow"])[np.argmax(X @ rng.normal(size=(4, 3)) + rng.gumbel(size=(150, 3)), axis=1)]
    path = tmp_path / "three.npz"
    np.savez(path, X_train=X[:100], y_train=y[:100], X_test=X[100:], y_test=y[100:])
    return path, X[:100], y[:100], X[100:], y[100:]


def test_multinomial_scores_and_effect_match_api(multiclass_file, tmp_path, capsys):
    path, X, y, Xt, yt = multiclass_file
    out = tmp_path / "s.csv"
    assert main(["scores", str(path), "--family", "multinomial", "--classes", "cow,bee,ant", "--label", "bee",
                 "--metric", "test-pred", "--test-index", "0,3,4", "--l2", "0.5", "--out", str(out)]) == 0
    assert "P(y = 'bee')" in capsys.readouterr().out
    rows = np.genfromtxt(out, delimiter=",", names=True)
    model = lo.GLM("multinomial", l2=0.5).fit(X, y, classes=["cow", "bee", "ant"])
    att = lo.Attribution(model)
    metric = TestPrediction(Xt[[0, 3, 4]], label="bee")
    np.testing.assert_allclose(rows["rif"], att.scores(metric, "rif"), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(rows["leverage"], att.leverage, rtol=1e-9)
    assert main(["effect", str(path), "--family", "multinomial", "--remove", "1,2", "--test-index", "0,3,4",
                 "--l2", "0.5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    default = TestPrediction(Xt[[0, 3, 4]], label="cow")        # the last class by default
    model = lo.GLM("multinomial", l2=0.5).fit(X, y)
    att = lo.Attribution(model)
    assert res["removal"]["test-pred"]["rif"] == pytest.approx(att.effect([1, 2], default, "rif"), rel=1e-9)


@pytest.mark.parametrize("args,msg", [
    (["--classes", "ant,bee"], "y has label 'cow', which is not in classes"),
    (["--classes", "ant,bee,cow,dog"], "class 'dog' does not occur in y"),
    (["--label", "dog"], "--label: 'dog' is not one of the classes"),
])
def test_multinomial_bad_classes_give_one_line(multiclass_file, capsys, args, msg):
    path = multiclass_file[0]
    assert main(["effect", str(path), "--family", "multinomial", "--remove", "1"] + args) == 1
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_classes_option_needs_multinomial(data_file, capsys):
    assert main(["effect", str(data_file[0]), "--remove", "1", "--classes", "0,1"]) == 1
    assert "--classes is for --family multinomial" in capsys.readouterr().err


def test_unwritable_out_names_the_folder(data_file):
    import os
    if not os.path.isdir("/proc"):
        pytest.skip("needs a folder nobody can create files in (/proc on Linux)")
    path = data_file[0]
    proc = subprocess.run([sys.executable, "-m", "leaveout", "scores", str(path), "--metric", "test-loss",
                           "--out", "/proc/s.csv"], capture_output=True, text=True)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1
    assert "cannot write in folder '/proc'" in err[0] and ".leaveout-" not in err[0]
