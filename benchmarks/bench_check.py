"""`leaveout check` against the protocol it stands in for: wall time and verdicts.

For each dataset and penalty: the whole `leaveout check DATA --l2 L --penalty per_sample`
command (load, fit, Theorem 3.1's constants over all pairs, the 30-set calibration with
certified retrains, per-set diagnostics) and the whole `leaveout reproduce DATA --figure 1`
(280 sets, certified retrains) at the same penalty, in this process, one after the other
(the package and scipy.stats, which both use, are imported before either is timed).
Each command runs ``--repeat`` times (default 3), alternately, and the best time of each is
compared (this machine's timings vary by about 20 % between runs). Prints both times, their
ratio (issue #23's goal: check <= 1/5 of the protocol) and, per metric and method, the calibration's verdict next to the same rule applied to the protocol's
280 sets (median relative error <= 0.3, slope in [0.75, 1.33], Spearman >= 0.8). Also the time
of each part of both commands, and what check would take if its 30 sets cost what the
protocol's own sets cost per set, on top of the load, fit and constants both commands share.

    python benchmarks/bench_check.py [--data-dir ../shared/datasets] [--datasets cifar_autotruck] [--l2 1e-3 1e-2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import csv
import io
import json
import os
import tempfile
import time

import scipy.stats  # noqa: F401  both commands use it; loaded here so neither command's time includes the import
from leaveout.cli import main as cli
from leaveout.diagnostics.calibration import MAX_REL_ERR, MIN_SLOPE, MIN_SPEARMAN


PARTS = {}
RUNNING = ["check"]          # which command the timed parts belong to


def _timed(owner, name, part):
    """Add the wall time of ``owner.name`` to ``PARTS[part]`` (the breakdown printed below)."""
    f = getattr(owner, name)

    @functools.wraps(f)
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            label = part.format(cmd=RUNNING[0])
            PARTS[label] = PARTS.get(label, 0.0) + time.perf_counter() - t0
    setattr(owner, name, wrapper)


def _instrument():
    import leaveout.cli.data as data
    import leaveout.diagnostics.indicators as indicators
    import leaveout.diagnostics.report as report
    from leaveout.experiments.runner import Runner
    _timed(data, "_load_npz", "check: load and fit")
    _timed(report, "theorem_constants", "check: the constants over all pairs")
    _timed(report, "calibrate", "check: the 30 calibration sets")
    _timed(report, "set_diagnostics_many", "check: the sets' diagnostics")
    _timed(Runner, "_load", "protocol: load")
    _timed(Runner, "_fit", "protocol: fit")
    _timed(indicators.ProtocolTrust, "__init__", "protocol: the constants over all pairs")
    _timed(Runner, "_evaluate_all", "protocol: the 280 sets")
    from leaveout.attribution import Attribution
    _timed(Attribution, "prepare", "{cmd}: every row's half solve (prepare)")


def reliable(row):
    return (float(row["median_rel_error"]) <= MAX_REL_ERR and MIN_SLOPE <= float(row["slope"]) <= 1 / MIN_SLOPE
            and float(row["spearman"]) >= MIN_SPEARMAN)


def run(path, name, l2, out, repeat=1):
    """Both commands ``repeat`` times, alternately; the best time of each (the parts are from
    the run that gave it), so that neither is timed cold while the other runs warm."""
    common = ["--l2", str(l2), "--penalty", "per_sample"]
    best = {}
    for i in range(repeat):
        folder = os.path.join(out, f"{name}-{l2:g}-{i}")         # a fresh one: reproduce resumes a folder
        for cmd in ("check", "protocol"):
            RUNNING[0] = cmd
            PARTS.clear()
            buf = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(buf):
                if cmd == "check":
                    assert cli(["check", path, *common, "--json"]) == 0
                else:
                    assert cli(["reproduce", path, "--figure", "1", "--out", folder, "--quiet", *common]) == 0
            sec = time.perf_counter() - t0
            if cmd not in best or sec < best[cmd][0]:
                best[cmd] = (sec, dict(PARTS), buf.getvalue())
    (t_check, parts_check, out_check), (t_full, parts_full, _) = best["check"], best["protocol"]
    RUNNING[0] = "check"
    report = json.loads(out_check)
    with open(os.path.join(folder, "summary.csv"), newline="") as fh:
        full = {(r["metric"], r["method"]): r for r in csv.DictReader(fh)}
    print(f"== {name}, l2 = {l2:g} per_sample: check {t_check:.2f} s, protocol {t_full:.2f} s, "
          f"ratio {t_check / t_full:.3f} (goal <= 0.20)" + (f"; best of {repeat} runs each" if repeat > 1 else ""))
    for part, sec in {**parts_check, **parts_full}.items():
        print(f"  {part:<40} {sec:5.1f} s")
    shared = (parts_check["check: load and fit"] + parts_check["check: the constants over all pairs"]
              + parts_check.get("check: every row's half solve (prepare)", 0.0))
    per_set = parts_full["protocol: the 280 sets"] / 280
    print(f"  30 sets at the protocol's own cost per set ({per_set:.3f} s) plus check's load, fit, prepare and constants: "
          f"{shared + 30 * per_set:.1f} s, ratio {(shared + 30 * per_set) / t_full:.2f}")
    firm = agree = borderline = 0
    for metric, stats in report["calibration"].items():
        for method, s in stats.items():
            f = full[(metric, method)]
            if s["borderline"]:
                borderline += 1
                word = "borderline"
            else:
                firm += 1
                agree += s["reliable"] == reliable(f)
                word = "agrees" if s["reliable"] == reliable(f) else "DISAGREES"
            print(f"  {metric:<10} {method:<4} check {s['median_rel_err']:.3f} / {s['slope']:.2f}  "
                  f"protocol {float(f['median_rel_error']):.3f} / {float(f['slope']):.2f}  {word}")
    print(f"  firm verdicts agreeing with the protocol: {agree} of {firm}; borderline {borderline}")
    return t_check, t_full, agree, firm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data-dir", default=os.path.join(here, "..", "..", "shared", "datasets"))
    ap.add_argument("--datasets", nargs="*", default=["cifar_autotruck"])
    ap.add_argument("--l2", nargs="*", type=float, default=[1e-3, 1e-2])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each command; the best time of each is reported")
    args = ap.parse_args()
    _instrument()
    with tempfile.TemporaryDirectory() as out:
        for name in args.datasets:
            path = os.path.join(args.data_dir, f"{name}.npz")
            if not os.path.isfile(path):
                raise SystemExit(f"{path} not found (give --data-dir)")
            for l2 in args.l2:
                run(path, name, l2, out, args.repeat)


if __name__ == "__main__":
    main()
