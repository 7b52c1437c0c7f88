import csv
import json
import os

import numpy as np
import pytest

from conftest import make_data
from leaveout.cli import main
from leaveout.experiment import RESULT_COLUMNS, ReproduceConfig, ResultStore, Runner, RunError, summarize


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    X, y = make_data(n=300, d=60, seed=0)
    Xt, yt = make_data(n=120, d=60, seed=1)
    path = tmp_path_factory.mktemp("data") / "toy.npz"
    np.savez(path, X_train=X.astype(np.float16), y_train=y.astype(np.uint8),
             X_test=Xt.astype(np.float16), y_test=yt.astype(np.uint8))
    return str(path)


def small_config(data_file, **kw):
    base = dict(datasets=(data_file,), sizes=4, l2=1e-3, fig2_sizes=2, fig2_l2=(1e-2, 1.0), n_poison=8)
    base.update(kw)
    return ReproduceConfig(**base)


def read_rows(out):
    with open(os.path.join(out, "results.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def full_run(data_file, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "res")
    code = main(["reproduce", data_file, "--out", out, "--sizes", "5", "--l2", "1e-3", "--quiet"])
    assert code == 0
    return out


def test_end_to_end_writes_every_artefact(full_run):
    out = full_run
    for name in ("config.json", "results.csv", "removal_sets.jsonl", "summary.csv", "report.md", "poisoning.csv",
                 "figure1.png", "figure1.pdf", "figure2.png", "figure2.pdf", "figure3.png", "figure3.pdf",
                 "figure4.png", "figure4.pdf"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    rows = read_rows(out)
    assert list(rows[0]) == RESULT_COLUMNS
    main_rows = [r for r in rows if r["dataset"] == "toy"]
    assert len(main_rows) == 7 * 5 * 3                     # strategies x sizes x metrics
    assert all(r["retrain_converged"] == "true" for r in rows)
    assert max(float(r["retrain_grad_norm"]) for r in rows) <= 1e-9
    # the per-set trust columns are filled for every set: the exact NS-RIF gap on the metric,
    # the Newton decrement, the largest linear-predictor change (all >= 0)
    for key in ("ns_rif_gap", "newton_decrement", "max_change"):
        vals = np.array([float(r[key]) for r in main_rows])
        assert np.all(np.isfinite(vals) & (vals >= 0)), key
    gap = np.array([float(r["ns_rif_gap"]) for r in main_rows if r["metric"] == "test-pred"])
    diff = np.array([abs(float(r["ns_linear"]) - float(r["rif_linear"])) for r in main_rows if r["metric"] == "test-pred"])
    np.testing.assert_allclose(gap, diff, rtol=1e-6, atol=1e-12)     # |<grad f, NS - RIF>|
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["config"]["sizes"] == 5 and cfg["config"]["penalty"] == "per_sample"
    assert len(cfg["test_index"]["toy"]) == 100 and "numpy" in cfg["versions"]
    sets = [json.loads(line) for line in open(os.path.join(out, "removal_sets.jsonl"))]
    toy = [s for s in sets if s["dataset"] == "toy"]
    assert len(toy) == 35 and all(len(s["indices"]) == s["k"] for s in toy)
    report = open(os.path.join(out, "report.md")).read()
    assert "figure1.png" in report and "| toy | self-loss |" in report
    # the indicators' table gives no correlation for the self-loss gap (zero gradient at the fit)
    assert [ln.split("|")[-2].strip() for ln in report.splitlines() if ln.startswith("| self-loss |")] == ["n/a"]


def test_rif_beats_if_on_the_end_to_end_run(full_run):
    summary = list(csv.DictReader(open(os.path.join(full_run, "summary.csv"))))
    for metric in ("test-pred", "test-loss", "self-loss"):
        err = {r["method"]: float(r["median_rel_error"]) for r in summary
               if r["dataset"] == "toy" and r["metric"] == metric}
        assert err["rif"] < err["if"], (metric, err)


def test_stored_actual_effects_are_real_retrains(full_run, data_file):
    import leaveout as lo
    from leaveout.datasets import load_npz
    from leaveout.metrics import SelfLoss
    out = full_run
    ds = load_npz(data_file)
    sets = [json.loads(line) for line in open(os.path.join(out, "removal_sets.jsonl"))]
    s = next(s for s in sets if s["dataset"] == "toy" and s["strategy"] == "cluster-l2")
    m = lo.GLM(l2=1e-3, penalty="per_sample").fit(ds.X_train, ds.y_train)
    keep = np.setdiff1d(np.arange(ds.n), s["indices"])
    refit = lo.GLM(l2=1e-3, penalty="per_sample").fit(ds.X_train[keep], ds.y_train[keep])
    expected = SelfLoss().value(m, refit.theta_) - SelfLoss().value(m, m.theta_)
    row = next(r for r in read_rows(out) if r["dataset"] == "toy" and r["strategy"] == "cluster-l2"
               and int(r["k"]) == s["k"] and r["metric"] == "self-loss")
    assert float(row["actual"]) == pytest.approx(expected, rel=1e-6)


def test_resume_after_interruption_has_no_duplicates(data_file, tmp_path, monkeypatch):
    out = str(tmp_path / "res")
    cfg = small_config(data_file, figures=(1,))
    calls = {"n": 0}
    real = ResultStore.append

    def flaky(self, rows):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(self, rows)
    monkeypatch.setattr(ResultStore, "append", flaky)
    with pytest.raises(KeyboardInterrupt):
        Runner(cfg, out, progress=False, log=lambda m: None).run()
    assert len(read_rows(out)) == 5 * 3
    # a crash in the middle of a write leaves a torn line: it is repaired on resume
    with open(os.path.join(out, "results.csv"), "a") as fh:
        fh.write("toy,random,3,test-pred,0.1,0.")
    monkeypatch.setattr(ResultStore, "append", real)
    Runner(cfg, out, progress=False, log=lambda m: None).run()
    rows = read_rows(out)
    keys = [(r["dataset"], r["strategy"], r["k"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)) == 7 * 4 * 3
    # a third run finds everything done and changes nothing
    before = open(os.path.join(out, "results.csv")).read()
    Runner(cfg, out, progress=False, log=lambda m: None).run()
    assert open(os.path.join(out, "results.csv")).read() == before


def test_parallel_jobs_match_serial(data_file, tmp_path):
    cfg = small_config(data_file, figures=(1,), sizes=2)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    Runner(cfg, a, jobs=1, progress=False, log=lambda m: None).run()
    Runner(cfg, b, jobs=2, progress=False, log=lambda m: None).run()
    key = lambda r: (r["strategy"], int(r["k"]), r["metric"])  # noqa: E731
    ra, rb = sorted(read_rows(a), key=key), sorted(read_rows(b), key=key)
    assert len(ra) == len(rb) == 7 * 2 * 3
    for x, y in zip(ra, rb):
        assert key(x) == key(y)
        for col in ("actual", "if", "rif", "ns"):
            assert float(x[col]) == pytest.approx(float(y[col]), rel=1e-8, abs=1e-12)


def test_different_config_is_refused(data_file, tmp_path):
    out = str(tmp_path / "res")
    Runner(small_config(data_file, figures=(1,), sizes=1), out, progress=False, log=lambda m: None).run()
    before = open(os.path.join(out, "results.csv")).read()
    with pytest.raises(RunError, match="different config.*sizes"):
        Runner(small_config(data_file, figures=(1,), sizes=2), out, progress=False, log=lambda m: None).run()
    assert open(os.path.join(out, "results.csv")).read() == before


def test_a_mistyped_dataset_writes_nothing_and_blocks_nothing(data_file, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["reproduce", "digits", "--out", str(out), "--quiet"]) == 1
    assert "digits" in capsys.readouterr().err
    assert not out.exists()                       # nothing written before the inputs are valid
    assert main(["reproduce", str(tmp_path / "absent.npz"), "--out", str(out), "--quiet"]) == 1
    assert not out.exists()


def test_a_folder_with_a_config_but_no_finished_set_accepts_other_settings(data_file, tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    stale = small_config(data_file, figures=(1,), sizes=3).to_json()
    (out / "config.json").write_text(json.dumps({"config": stale, "l2": {}, "test_index": {}, "n": {}, "d": {}}))
    (out / "removal_sets.jsonl").write_text('{"dataset": "x", "strategy": "random", "k": 1, "indices": [0]}\n')
    said = []
    Runner(small_config(data_file, figures=(1,), sizes=1), str(out), progress=False, log=said.append).run()
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["sizes"] == 1 and any("finished no set" in m for m in said)
    assert '"dataset": "x"' not in (out / "removal_sets.jsonl").read_text()
    assert len(read_rows(str(out))) == 7 * 1 * 3


def test_summary_statistics_against_hand_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=30)
    rows = []
    for i, x in enumerate(a):
        rows.append({"dataset": "d", "strategy": "random", "k": i, "metric": "self-loss", "actual": x,
                     "if": 0.5 * x, "rif": x + 0.1, "ns": x, "if_linear": 0.5 * x, "rif_linear": x,
                     "ns_linear": x, "actual_linear": x, "retrain_converged": True, "retrain_grad_norm": 0.0})
    rows.append(dict(rows[0], k=99, actual=1e9, retrain_converged=False))   # excluded
    s = {r["method"]: r for r in summarize(rows)}
    assert s["if"]["n_sets"] == 30
    assert s["if"]["slope"] == pytest.approx(0.5) and s["if"]["median_rel_error"] == pytest.approx(0.5)
    assert s["ns"]["pearson"] == pytest.approx(1.0) and s["ns"]["spearman"] == pytest.approx(1.0)
    assert s["rif"]["slope"] == pytest.approx(1 + 0.1 * a.sum() / (a @ a))
    assert s["rif"]["median_rel_error"] == pytest.approx(np.median(0.1 / np.abs(a)))


@pytest.mark.parametrize("args,msg", [
    (["reproduce", "no_such_dataset", "--out", "{tmp}/o"], "unknown dataset 'no_such_dataset'"),
    (["reproduce", "{data}", "--strategy", "nearest", "--out", "{tmp}/o"], "unknown strategy 'nearest'"),
    (["reproduce", "{data}", "--out", "{file}"], "is a file"),
    (["reproduce", "{data}", "--sizes", "0", "--out", "{tmp}/o"], "--sizes"),
    (["reproduce", "{data}", "--figure", "7", "--out", "{tmp}/o"], "--figure"),
    (["reproduce", "{tmp}/garbage.npz", "--out", "{tmp}/o"], "cannot read data file"),
    (["reproduce", "{data}", "--out", "/proc/no/such/place"], "not writable"),
])
def test_bad_input_one_line(data_file, tmp_path, args, msg):
    import subprocess
    import sys
    (tmp_path / "garbage.npz").write_bytes(b"junk")
    (tmp_path / "afile").write_text("x")
    argv = [a.format(tmp=tmp_path, data=data_file, file=tmp_path / "afile") for a in args]
    proc = subprocess.run([sys.executable, "-m", "leaveout", *argv], capture_output=True, text=True)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_dask_local_cluster_matches_threads(data_file, tmp_path):
    pytest.importorskip("dask.distributed")
    cfg = small_config(data_file, figures=(1,), sizes=2)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    Runner(cfg, a, jobs=1, progress=False, log=lambda m: None).run()
    logs = []
    Runner(cfg, b, jobs=2, progress=False, log=logs.append, scheduler="local").run()
    assert any(m.startswith("dask: 2 workers at tcp://127.0.0.1") for m in logs)
    key = lambda r: (r["strategy"], int(r["k"]), r["metric"])  # noqa: E731
    ra, rb = sorted(read_rows(a), key=key), sorted(read_rows(b), key=key)
    assert len(ra) == len(rb) == 7 * 2 * 3
    for x, y in zip(ra, rb):
        assert key(x) == key(y)
        for col in ("actual", "if", "rif", "ns", "retrain_grad_norm"):
            assert float(x[col]) == pytest.approx(float(y[col]), rel=1e-9, abs=1e-12)


def test_unreachable_scheduler_is_one_line(data_file, tmp_path, capsys, monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr(Runner, "connect_timeout", 2)
    code = main(["reproduce", data_file, "--out", str(tmp_path / "r"), "--sizes", "1", "--figure", "1",
                 "--quiet", "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 1 and "--scheduler 'tcp://127.0.0.1:9': cannot connect" in err and "Traceback" not in err


def test_poisoning_truth_against_independent_fits(data_file, full_run):
    # the truth of Figure 3: removing the poisoned point takes the fit from the poisoned one to
    # the clean one, so "actual" is x_j^T (theta_clean - theta_poisoned), with both fits solved
    # here independently (scipy's trust-region solver on the explicit objective)
    from leaveout.datasets import load_npz
    from reference import design, tight_fit
    ds = load_npz(data_file)
    with open(os.path.join(full_run, "poisoning.csv"), newline="") as fh:
        row = next(csv.DictReader(fh))
    j = int(row["test_index"])
    X = np.asarray(ds.X_train, dtype=float)
    y = np.asarray(ds.y_train, dtype=float)
    xj = np.asarray(ds.X_test[j], dtype=float)
    flipped = 1.0 - float(ds.y_test[j])
    cfg = json.load(open(os.path.join(full_run, "config.json")))["config"]
    l2, penalty = cfg["l2"], cfg["penalty"]
    A = design(X, True)
    clean = tight_fit(A, y, np.ones(len(y)), l2, penalty, True)
    Ap = np.vstack([A, np.append(xj, 1.0)])
    poisoned = tight_fit(Ap, np.append(y, flipped), np.ones(len(y) + 1), l2, penalty, True)
    want = np.append(xj, 1.0) @ (clean - poisoned)
    assert float(row["actual"]) == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_status_lines_without_a_terminal_and_quiet(data_file, tmp_path):
    import subprocess
    import sys
    base = [sys.executable, "-m", "leaveout", "reproduce", data_file, "--figure", "1", "--sizes", "4",
            "--l2", "1e-3", "--strategy", "random", "--strategy", "cluster-l2"]
    loud = subprocess.run(base + ["--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert loud.returncode == 0
    progress = [line for line in loud.stdout.splitlines() if "sets done" in line]
    assert progress[-1].endswith("8 of 8 sets done") and len(progress) >= 2
    quiet = subprocess.run(base + ["--out", str(tmp_path / "b"), "--quiet"], capture_output=True, text=True)
    assert quiet.returncode == 0 and "sets done" not in quiet.stdout and quiet.stderr == ""


def _reproduce_cmd(data_file, out):
    import sys
    return [sys.executable, "-m", "leaveout", "reproduce", data_file, "--figure", "1", "--sizes", "6",
            "--l2", "1e-3", "--out", str(out), "--quiet"]


def _rows_by_key(out):
    return {(r["dataset"], r["strategy"], r["k"], r["metric"]): r for r in read_rows(str(out))}


def test_sigkill_at_random_points_resumes_to_the_same_results(data_file, tmp_path):
    import signal
    import subprocess
    import time
    ref = tmp_path / "ref"
    assert subprocess.run(_reproduce_cmd(data_file, ref), capture_output=True).returncode == 0
    out = tmp_path / "killed"
    results = out / "results.csv"
    for wait_rows in (4, 40):                          # two kills, at different points of the run
        proc = subprocess.Popen(_reproduce_cmd(data_file, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 60:
            if results.exists() and results.read_text().count("\n") >= wait_rows:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert subprocess.run(_reproduce_cmd(data_file, out), capture_output=True).returncode == 0
    a, b = _rows_by_key(ref), _rows_by_key(out)
    assert a.keys() == b.keys()
    for key in a:
        for col in ("actual", "if", "rif", "ns"):
            assert float(a[key][col]) == pytest.approx(float(b[key][col]), rel=1e-8, abs=1e-12)


def test_a_second_run_on_the_same_folder_is_refused(data_file, tmp_path):
    import subprocess
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "busy"
    out.mkdir()
    with open(out / ".lock", "w") as fh:              # another run holds the folder
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write("12345")
        fh.flush()
        second = subprocess.run(_reproduce_cmd(data_file, out), capture_output=True, text=True)
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert "in use by another leaveout reproduce (pid 12345)" in second.stderr
        assert not (out / "results.csv").exists() and not (out / "config.json").exists()
    # released (as the kernel does when the holder dies, even by SIGKILL): the run goes through
    assert subprocess.run(_reproduce_cmd(data_file, out), capture_output=True).returncode == 0
    assert len(read_rows(str(out))) == 7 * 6 * 3


def test_a_set_that_removes_a_class_is_flagged_not_measured():
    """The runner's batch evaluation: a set emptying class 1 has no Newton step and no retrain;
    its rows say so (retrain_converged False, NS and actual NaN) while IF/RIF stay defined, and
    the other sets of the same batch are measured against their refits."""
    import leaveout as lo
    from leaveout.experiments.evaluate import evaluate_batch
    from leaveout.metrics import Coefficient
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.zeros(40, dtype=int)
    ones = np.array([3, 11, 25])
    y[ones] = 1
    att = lo.Attribution(lo.GLM(l2=1.0).fit(X, y))
    metrics = {"coef0": Coefficient(0)}
    rows = evaluate_batch([(("d", "s", 3), ones), (("d", "s", 2), np.array([0, 1]))], att, metrics)
    bad, good = rows[0][0], rows[1][0]
    assert bad["retrain_converged"] is False
    assert np.isnan(bad["ns"]) and np.isnan(bad["actual"]) and np.isfinite(bad["rif"])
    keep = np.setdiff1d(np.arange(40), [0, 1])
    ref = lo.GLM(l2=1.0, tol=1e-12).fit(X[keep], y[keep])
    assert good["retrain_converged"] is True
    assert good["actual"] == pytest.approx(ref.coef_[0] - att.model.coef_[0], rel=1e-6, abs=1e-9)


def _ds(name, n, d, seed):
    from leaveout.datasets import Dataset
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return Dataset(name, X, (X[:, 0] > 0).astype(int), X[:10], (X[:10, 0] > 0).astype(int))


@pytest.mark.parametrize("wide_present", [True, False])
def test_figure2_problems_are_built_as_documented(tmp_path, wide_present):
    """n = d * {1, 2, 4, 8, 16} rows subsampled from the first dataset (where there are enough,
    and at least 20), each a subset of its rows; the lambda sweep 1e-4 .. 1 on the first d > n
    dataset, else on a subsample of the first to n = d / 2; the first dataset's paper lambda
    for the n/d problems."""
    cfg = ReproduceConfig(datasets=("a",))
    assert cfg.fig2_ratios == (1, 2, 4, 8, 16) and cfg.fig2_l2 == (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    assert cfg.fig2_sizes == 6
    base = _ds("spam_bow", 300, 40, 0)
    data = [base, _ds("wide", 30, 50, 1)] if wide_present else [base]
    runner = Runner(cfg, str(tmp_path / "out"))
    probs = runner._figure2_problems(data)
    ratio = [p for p in probs if "[l2=" not in p.name]
    assert [p.X.shape[0] for p in ratio] == [40, 80, 160]        # 320 and 640 exceed n = 300
    rows = {tuple(r) for r in base.X_train}
    for p in ratio:
        assert {tuple(r) for r in p.X} <= rows and len({tuple(r) for r in p.X}) == p.X.shape[0]
        assert p.l2 == 1e-3 and p.sizes == 6                     # spam_bow's paper lambda
    sweep = [p for p in probs if "[l2=" in p.name]
    assert [p.l2 for p in sweep] == list(cfg.fig2_l2)
    for p in sweep:
        assert p.X.shape[1] > p.X.shape[0]
        assert p.X.shape == ((30, 50) if wide_present else (20, 40))


def test_paper_lambdas_match_the_readme():
    import pathlib
    import re
    from leaveout.datasets import default_l2
    text = pathlib.Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    m = re.search(r"λ = ([0-9.e-]+) \(([0-9.e-]+) for `fashion_dogfish`, ([0-9.e-]+) for `spam_bow`\)", text)
    assert m, "the README no longer states the per-dataset lambdas"
    assert default_l2("cifar_catdog") == float(m.group(1))
    assert default_l2("fashion_dogfish") == float(m.group(2))
    assert default_l2("spam_bow") == float(m.group(3))


def test_a_retrain_that_does_not_converge_is_flagged_and_left_out_of_the_summary():
    """Retrains limited to 1 Newton step on a large removal do not converge: the batch marks
    them, and the summary counts only certified retrains."""
    import leaveout as lo
    from leaveout.experiments.evaluate import evaluate_batch
    from leaveout.metrics import Coefficient
    X, y = make_data(n=80, d=4, seed=3)
    att = lo.Attribution(lo.GLM(l2=1e-3).fit(X, y))
    att.model.max_iter = 1
    T = np.arange(0, 30)
    rows = evaluate_batch([(("d", "random", 30), T)], att, {"coef0": Coefficient(0)})
    row = rows[0][0]
    assert row["retrain_converged"] is False and row["retrain_grad_norm"] > att.model.tol
    att.model.max_iter = 100
    rows = evaluate_batch([(("d", "random", 30), T)], att, {"coef0": Coefficient(0)})
    assert rows[0][0]["retrain_converged"] is True


def test_summary_statistics_against_a_direct_computation():
    """Each method against its own reference: removal estimates against the retrain's removal
    effect, *_linear ones against its linear effect; rows with a NaN, or whose retrain did
    not converge, are left out; too few sets give NaN correlations."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        a, al = rng.normal(), rng.normal()
        r = {"dataset": "d", "strategy": "s", "k": i, "metric": "m", "retrain_converged": True,
             "actual": a, "actual_linear": al}
        for meth in ("if", "rif", "ns"):
            r[meth] = a * rng.uniform(0.5, 1.5)
            r[f"{meth}_linear"] = al * rng.uniform(0.5, 1.5)
        rows.append(r)
    rows[3]["rif"] = float("nan")
    rows.append(dict(rows[0], k=99, actual=50.0, rif=-50.0, retrain_converged=False))
    got = {r["method"]: r for r in summarize(rows)}
    for meth in ("if", "rif", "ns", "if_linear", "rif_linear", "ns_linear"):
        ref = "actual_linear" if meth.endswith("_linear") else "actual"
        a = np.array([r[ref] for r in rows[:12]])
        p = np.array([r[meth] for r in rows[:12]])
        keep = np.isfinite(p)
        a, p = a[keep], p[keep]
        assert got[meth]["n_sets"] == a.size
        assert got[meth]["slope"] == pytest.approx(a @ p / (a @ a), rel=1e-12)
        assert got[meth]["pearson"] == pytest.approx(np.corrcoef(a, p)[0, 1], rel=1e-10)
        ra, rp = np.argsort(np.argsort(a)), np.argsort(np.argsort(p))
        assert got[meth]["spearman"] == pytest.approx(np.corrcoef(ra, rp)[0, 1], rel=1e-10)
        assert got[meth]["median_rel_error"] == pytest.approx(np.median(np.abs(p - a) / np.abs(a)), rel=1e-12)
    few = summarize(rows[:2])
    assert all(np.isnan(r["pearson"]) and np.isnan(r["spearman"]) for r in few)
    zero = summarize([dict(r, actual=0.0) for r in rows[:5]])
    assert np.isnan({r["method"]: r for r in zero}["if"]["slope"])


def test_summary_table_lays_out_the_summary():
    from leaveout.experiments.summary import summary_table
    rng = np.random.default_rng(1)
    rows = []
    for ds in ("b", "a"):
        for metric in ("self-loss", "test-pred"):
            for i in range(6):
                a = rng.normal()
                r = {"dataset": ds, "strategy": "s", "k": i, "metric": metric, "retrain_converged": True,
                     "actual": a, "actual_linear": a}
                for meth in ("if", "rif", "ns"):
                    r[meth] = r[f"{meth}_linear"] = a * rng.uniform(0.5, 1.5)
                rows.append(r)
    summary = summarize(rows)
    lines = summary_table(summary).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert len(cells[0]) == 3 + 9 and cells[1] == ["---"] * 12
    assert cells[0][:4] == ["dataset", "metric", "sets", "IF slope"]
    assert [c[:2] for c in cells[2:]] == [["a", "test-pred"], ["a", "self-loss"], ["b", "test-pred"], ["b", "self-loss"]]
    index = {(r["dataset"], r["metric"], r["method"]): r for r in summary}
    for c in cells[2:]:
        assert c[2] == "6"
        for j, meth in enumerate(("if", "rif", "ns")):
            r = index[(c[0], c[1], meth)]
            assert c[3 + 3 * j:6 + 3 * j] == [f"{r['slope']:.3f}", f"{r['spearman']:.3f}", f"{r['median_rel_error']:.3f}"]
    only_b = summary_table(summary, datasets=["b"]).splitlines()[2:]
    assert [line.split("|")[1].strip() for line in only_b] == ["b", "b"]


def test_batches_keep_order_and_their_limits():
    """Lockstep batches bound memory: at most BATCH_SETS sets and BATCH_ROWS removed rows each
    (a set bigger than that alone), consecutive, every set exactly once."""
    from leaveout.experiments.evaluate import BATCH_ROWS, BATCH_SETS, batches
    rng = np.random.default_rng(0)
    sizes = list(rng.integers(1, BATCH_ROWS // 3, size=5 * BATCH_SETS)) + [BATCH_ROWS + 5, 2, 3]
    todo = [((i,), np.arange(k)) for i, k in enumerate(sizes)]
    out = batches(todo)
    assert [t for b in out for t in b] == todo
    for b in out:
        rows = sum(len(t[1]) for t in b)
        assert len(b) <= BATCH_SETS and (rows <= BATCH_ROWS or len(b) == 1)
    for b, nxt in zip(out, out[1:]):          # a batch closes only when the next set would break a limit
        rows = sum(len(t[1]) for t in b)
        assert len(b) == BATCH_SETS or rows + len(nxt[0][1]) > BATCH_ROWS
    assert batches([]) == []
    # the limits are reached exactly, not one early or one late
    ones = [((i,), np.arange(1)) for i in range(3 * BATCH_SETS + 1)]
    assert [len(b) for b in batches(ones)] == [BATCH_SETS] * 3 + [1]
    half = BATCH_ROWS // 2
    exact = [((0,), np.arange(half)), ((1,), np.arange(BATCH_ROWS - half)), ((2,), np.arange(BATCH_ROWS)),
             ((3,), np.arange(half)), ((4,), np.arange(BATCH_ROWS - half)), ((5,), np.arange(1))]
    assert [[t[0][0] for t in b] for b in batches(exact)] == [[0, 1], [2], [3, 4], [5]]


def test_a_batch_gives_each_set_the_rows_it_gets_alone():
    """Sets evaluated together share passes over X; each must still get its own numbers."""
    import leaveout as lo
    from leaveout.experiments.evaluate import evaluate_batch
    from leaveout.metrics import Coefficient, SelfLoss, TestLoss
    X, y = make_data(n=90, d=4, seed=4)
    att = lo.Attribution(lo.GLM(l2=0.5).fit(X, y))
    metrics = {"coef0": Coefficient(0), "test-loss": TestLoss(X[:10], y[:10]), "self-loss": SelfLoss()}
    rng = np.random.default_rng(0)
    tasks = [(("d", "random", k), np.sort(rng.choice(90, k, replace=False))) for k in (3, 7, 12)]
    together = evaluate_batch(tasks, att, metrics)
    for task, rows in zip(tasks, together):
        alone = evaluate_batch([task], att, metrics)[0]
        for a, b in zip(rows, alone):
            for key in ("if", "rif", "ns", "actual", "if_linear", "rif_linear", "ns_linear", "actual_linear"):
                assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), (task[0], a["metric"], key)
