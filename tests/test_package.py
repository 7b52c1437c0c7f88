import subprocess
import sys


def test_core_import_is_light():
    code = ("import sys, leaveout; heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('matplotlib', 'sklearn', 'tqdm', 'dask', 'pandas') or m in ('scipy.stats', 'scipy.optimize')]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api():
    import leaveout as lo
    assert set(lo.__all__) >= {"GLM", "Attribution", "metrics", "ConvergenceWarning"}
    for name in ("TestLoss", "TestPrediction", "SelfLoss", "Coefficient"):
        assert hasattr(lo.metrics, name)


def test_quickstart_example_runs():
    import pathlib
    script = pathlib.Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert "converged=True" in out and "(retrain)" in out


def test_tables_example_runs():
    import pathlib
    script = pathlib.Path(__file__).resolve().parents[1] / "examples" / "tables.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert "p256" in out and "exact refit" in out


def test_label_errors_example_runs():
    import pathlib
    script = pathlib.Path(__file__).resolve().parents[1] / "examples" / "label_errors.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert "self-influence (IF)" in out and "test accuracy" in out

