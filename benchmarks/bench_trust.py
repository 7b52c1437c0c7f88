"""The trust report against the full Figure-1 protocol: cost, verdicts, theorem, indicators.

For each dataset: `leaveout reproduce --figure 1` (the full protocol, 280 sets with certified
retrains) and `Attribution.diagnose` (Theorem 3.1's constants and the default 30-set
calibration). Prints the cost of the exact constants against `Attribution(model)` and of the
calibration (issue targets: within 10x; within 30 s on cifar_catdog), the calibration's
verdicts next to the same reliability rule applied to the full protocol's summary, and the
report's trust section (where the theorem applies, whether it held, and the Spearman
correlation of each per-set indicator with NS's error).

    python benchmarks/bench_trust.py [--data-dir ../shared/datasets] [--datasets digits_rff ...]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time

import leaveout as lo
from leaveout.cli import main as cli
from leaveout.datasets import default_l2, resolve
from leaveout.diagnostics import theorem_constants
from leaveout.diagnostics.calibration import MAX_REL_ERR, MIN_SLOPE, MIN_SPEARMAN
from leaveout.metrics import SelfLoss, TestLoss, TestPrediction, select_test_subset


def reliable(row):
    return (float(row["median_rel_error"]) <= MAX_REL_ERR and MIN_SLOPE <= float(row["slope"]) <= 1 / MIN_SLOPE
            and float(row["spearman"]) >= MIN_SPEARMAN)


def run(name, data_dir, out):
    ds = resolve(name, data_dir)
    l2 = default_l2(ds.name)
    model = lo.GLM(l2=l2, penalty="per_sample").fit(ds.X_train, ds.y_train)
    t0 = time.perf_counter()
    att = lo.Attribution(model)
    t_att = time.perf_counter() - t0
    idx = select_test_subset(model, ds.X_test, ds.y_test)
    metrics = {"test-pred": TestPrediction(ds.X_test[idx]), "test-loss": TestLoss(ds.X_test[idx], ds.y_test[idx]),
               "self-loss": SelfLoss()}
    t0 = time.perf_counter()
    c = theorem_constants(att, metrics["test-loss"])
    t_c = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = att.diagnose(metrics)
    t_d = time.perf_counter() - t0
    print(f"== {ds.name}: n={ds.X_train.shape[0]} d={ds.X_train.shape[1]} l2={l2:g} per_sample")
    print(f"Attribution(model) {t_att:.2f} s; exact constants {t_c:.2f} s ({t_c / t_att:.1f}x); "
          f"diagnose (constants + 30-set calibration) {t_d:.1f} s; k_threshold {c.k_threshold:.3g}")
    folder = os.path.join(out, ds.name)
    args = ["reproduce", name, "--figure", "1", "--out", folder, "--quiet"]
    if data_dir:
        args += ["--data-dir", data_dir]
    t0 = time.perf_counter()
    assert cli(args) == 0
    print(f"full protocol {time.perf_counter() - t0:.0f} s")
    with open(os.path.join(folder, "summary.csv"), newline="") as fh:
        full = {(r["metric"], r["method"]): r for r in csv.DictReader(fh) if r["dataset"] == ds.name}
    print(f"{'metric':<10} {'method':<4} {'calibration (30 sets)':<40} {'full protocol (280 sets)':<30} agree")
    for metric, stats in report.calibration.items():
        for method, s in stats.items():
            f = full[(metric, method)]
            word = "borderline" if s["borderline"] else ("yes" if s["reliable"] else "no")
            mine = f"{s['median_rel_err']:.3f} / {s['slope']:.2f} / {word}"
            theirs = f"{float(f['median_rel_error']):.3f} / {float(f['slope']):.2f} / {'yes' if reliable(f) else 'no'}"
            agree = "borderline" if s["borderline"] else ("yes" if s["reliable"] == reliable(f) else "NO")
            print(f"{metric:<10} {method:<4} {mine:<40} {theirs:<30} {agree}")
    for v in report.verdicts.values():
        print("  " + v)
    with open(os.path.join(folder, "report.md"), encoding="utf-8") as fh:
        text = fh.read()
    print(text.split("## Can the one-step estimates be trusted here?", 1)[1].split("\n## ", 1)[0].strip())
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data-dir", default=os.path.join(here, "..", "..", "shared", "datasets"))
    ap.add_argument("--datasets", nargs="*", default=["digits_rff", "fashion_dogfish", "cifar_catdog"])
    args = ap.parse_args()
    data_dir = args.data_dir if os.path.isdir(args.data_dir) else None
    with tempfile.TemporaryDirectory() as out:
        for name in args.datasets:
            run(name, data_dir, out)


if __name__ == "__main__":
    main()
