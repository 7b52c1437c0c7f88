"""What a new user hit (issue #22), each a one-line error (or warning) that names what to
change, no traceback, no numpy repr, and no output file left behind."""

import numpy as np
import pandas as pd
import pytest

import leaveout as lo
from leaveout.cli import main


@pytest.fixture
def frame():
    rng = np.random.default_rng(2)
    n = 40
    return pd.DataFrame({"x": rng.normal(size=n), "x2": rng.normal(size=n), "y": rng.normal(size=n)})


def _err(capsys):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "np." not in err
    return err


def test_one_class_names_the_label_plainly(frame, tmp_path, capsys):
    p = tmp_path / "one.csv"
    frame.assign(y=1).to_csv(p, index=False)
    assert main(["fit", str(p), "--formula", "y ~ x"]) == 1
    assert "y has only one class (1)" in _err(capsys)
    npz = tmp_path / "one.npz"
    X = frame[["x"]].to_numpy()
    np.savez(npz, X_train=X, y_train=np.ones(len(X)), X_test=X[:3], y_test=np.ones(3))
    assert main(["fit", str(npz)]) == 1
    assert "only one class (1.0)" in _err(capsys)


def test_an_empty_column_under_drop_missing_is_named(frame, tmp_path, capsys):
    p = tmp_path / "nan.csv"
    frame.assign(z=np.nan).to_csv(p, index=False)
    assert main(["fit", str(p), "--formula", "y ~ x + z", "--family", "squared", "--drop-missing"]) == 1
    assert "the column 'z' is empty" in _err(capsys)


def test_a_header_only_table_says_it_has_no_rows(frame, tmp_path, capsys):
    p = tmp_path / "head.csv"
    frame.iloc[:0].to_csv(p, index=False)
    assert main(["fit", str(p), "--formula", "y ~ x", "--family", "squared"]) == 1
    assert "the table has no rows" in _err(capsys)


def test_out_below_a_file_is_named_before_any_work(frame, tmp_path, capsys):
    p = tmp_path / "d.csv"
    frame.to_csv(p, index=False)
    (tmp_path / "afile").write_text("x")
    assert main(["audit", str(p), "--formula", "y ~ x", "--family", "squared", "--coef", "x",
                 "--out", str(tmp_path / "afile" / "sub")]) == 1
    assert "afile' is a file, not a folder" in _err(capsys)
    assert main(["scores", str(p), "--formula", "y ~ x", "--family", "squared", "--metric", "coef:x",
                 "--out", str(tmp_path / "afile" / "s.csv")]) == 1
    assert "afile' is a file, not a folder" in _err(capsys)


def test_dependent_columns_are_named_at_l2_zero(frame, tmp_path, capsys):
    p = tmp_path / "c.csv"
    frame.assign(c=1.0, x3=2 * frame.x - frame.x2).to_csv(p, index=False)
    assert main(["fit", str(p), "--formula", "y ~ x + c", "--family", "squared"]) == 1
    assert "column 'c' is constant (the intercept already is)" in _err(capsys)
    assert main(["fit", str(p), "--formula", "y ~ x + x2 + x3", "--family", "squared"]) == 1
    assert "columns 'x', 'x2', 'x3' are collinear" in _err(capsys)
    assert main(["fit", str(p), "--formula", "y ~ x + x2 + x3 + c", "--family", "squared"]) == 1
    err = _err(capsys)
    assert "column 'c' is constant" in err and "columns 'x', 'x2', 'x3' are collinear" in err and "--l2" in err
    # the same design is fine with a penalty, and the Python API says the same
    assert main(["fit", str(p), "--formula", "y ~ x + c", "--family", "squared", "--l2", "1"]) == 0
    capsys.readouterr()
    with pytest.raises(lo.SingularHessianError, match="column 'c' is constant"):
        lo.GLM.from_formula("y ~ x + c", pd.read_csv(p), family="squared", l2=0)


def test_numbers_read_as_text_warn(frame, tmp_path, capsys):
    p = tmp_path / "typo.csv"
    t = frame.assign(x=[f"{v:.4f}" for v in frame.x])
    t.loc[3, "x"] = "1.2.3"
    t.to_csv(p, index=False)
    main(["fit", str(p), "--formula", "y ~ x", "--family", "squared", "--l2", "1"])
    err = capsys.readouterr().err
    assert "warning: column 'x' is read as text" in err and "'1.2.3'" in err
    main(["fit", str(p), "--formula", "y ~ x2", "--family", "squared"])     # not used: no warning
    assert "read as text" not in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(frame, tmp_path, capsys, monkeypatch):
    """`leaveout fit ... | head -1`: the reader goes away; no error message, exit status 1."""
    import sys

    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    p = tmp_path / "d.csv"
    frame.to_csv(p, index=False)
    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["fit", str(p), "--formula", "y ~ x", "--family", "squared"]) == 1
    monkeypatch.undo()
    assert capsys.readouterr().err == ""
