"""Command line: ``leaveout scores``, ``leaveout effect`` and friends.

The CLI only parses arguments, loads data, calls the library and writes the answer; a user
error ends in one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings

import numpy as np

EXIT_USAGE = 2


class UserError(Exception):
    """An error caused by the user's input; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_index_list(text: str, arg: str) -> np.ndarray:
    """Parse ``"1,2,3"`` or ``"@file"`` (one index per line) into an int array."""
    if text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as fh:
                items = [line.strip() for line in fh if line.strip()]
        except OSError as exc:
            raise UserError(f"{arg}: cannot read {path!r}: {exc.strerror}") from None
    else:
        items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{arg}: no indices given")
    try:
        return np.array([int(t) for t in items], dtype=np.int64)
    except ValueError:
        bad = next(t for t in items if not t.lstrip("-").isdigit())
        raise UserError(f"{arg}: {bad!r} is not an integer row index") from None


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


def _add_model_args(p):
    p.add_argument("data", metavar="DATA", help=".npz file with X_train, y_train, X_test, y_test")
    p.add_argument("--test-index", metavar="LIST",
                   help="test rows for the metrics: comma-separated 0-based indices or @file "
                        "(default: the 50 highest-loss test rows plus 50 others drawn with seed 0)")
    p.add_argument("--family", choices=["logistic", "squared", "poisson", "multinomial"], default="logistic",
                   help="loss and link (default logistic; squared and poisson take real / count labels; "
                        "multinomial: softmax over any number of classes)")
    p.add_argument("--classes", metavar="LIST",
                   help="multinomial: the classes, comma-separated, in the order of the model's columns "
                        "(default: the sorted labels of y_train); each must occur in y_train")
    p.add_argument("--label", metavar="CLASS",
                   help="multinomial: the class whose predicted probability test-pred sums "
                        "(default: the last class)")
    p.add_argument("--l2", type=float, default=1.0, metavar="L", help="L2 penalty strength (default 1.0)")
    p.add_argument("--penalty", choices=["fixed", "per_sample"], default="fixed",
                   help="fixed: sum of losses + (L/2)|theta|^2; per_sample: mean loss + (L/2)|theta|^2")
    p.add_argument("--no-intercept", action="store_true", help="fit without an intercept")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = _Parser(prog="leaveout", description="Predict and measure the effect of removing training samples.")
    parser.add_argument("--version", action="version", version=f"leaveout {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("scores", help="per-sample leverage and IF/RIF scores for one metric")
    _add_model_args(p)
    p.add_argument("--metric", required=True, choices=["test-pred", "test-loss"])
    p.add_argument("--out", required=True, metavar="FILE.csv", help="output CSV (index,leverage,if,rif)")

    p = sub.add_parser("effect", help="IF/RIF/NS predictions and the exact retrain for one removal set")
    _add_model_args(p)
    p.add_argument("--remove", required=True, metavar="LIST", help="rows to remove: indices or @file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("reproduce", help="the paper's experiments: IF/RIF/NS against certified retrains, "
                                         "with figures, summary and report")
    p.add_argument("datasets", nargs="*", metavar="DATASET",
                   help="bundle name, name in --data-dir, or .npz path (default: digits_rff, bundled)")
    p.add_argument("--out", default="leaveout-results", metavar="DIR", help="output folder (default ./leaveout-results)")
    p.add_argument("--figure", type=int, action="append", metavar="N",
                   help="figure to produce, 1-4; repeatable (default: all)")
    p.add_argument("--sizes", type=int, default=40, metavar="N", help="removal-set sizes per strategy (default 40)")
    p.add_argument("--l2", type=float, default=None, metavar="L",
                   help="penalty strength (default: the paper's per dataset: 1e-5; fashion_dogfish 2.2e-2; spam_bow 1e-3)")
    p.add_argument("--penalty", choices=["fixed", "per_sample"], default="per_sample",
                   help="penalty convention (default per_sample, as in the paper)")
    p.add_argument("--strategy", action="append", metavar="NAME",
                   help="removal strategy; repeatable (default: the paper's seven)")
    p.add_argument("--jobs", type=int, default=_cores(), metavar="J",
                   help=f"worker threads for the retrains (default: the number of cores, {_cores()} here)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--dask", choices=["local"], metavar="local",
                       help="run the retrains on a local dask cluster of --jobs worker processes")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the retrains on the dask.distributed scheduler at ADDRESS (tcp://host:8786)")
    p.add_argument("--data-dir", metavar="DIR", default=os.environ.get("LEAVEOUT_DATA_DIR"),
                   help="folder of .npz datasets to find DATASET names in (default $LEAVEOUT_DATA_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("datasets", help="list the available datasets")
    p.add_argument("--data-dir", metavar="DIR", default=os.environ.get("LEAVEOUT_DATA_DIR"),
                   help="also list the .npz files in this folder (default $LEAVEOUT_DATA_DIR)")
    return parser


def _fit(args):
    from . import GLM, Attribution
    from .datasets import load_npz
    from .metrics import select_test_subset
    data = load_npz(args.data)
    if not np.isfinite(args.l2) or args.l2 < 0:
        raise UserError(f"--l2 must be a finite number >= 0, got {args.l2}")
    model = GLM(family=args.family, l2=args.l2, penalty=args.penalty, fit_intercept=not args.no_intercept)
    if args.family == "multinomial":
        classes = None if args.classes is None else _parse_labels(args.classes, data.y_train, "--classes")
        model.fit(data.X_train, data.y_train, classes=classes)
        args.label = (model.classes_[-1] if args.label is None
                      else _parse_labels(args.label, data.y_train, "--label")[0])
        if args.label not in model.classes_:
            raise UserError(f"--label: {show(args.label)} is not one of the classes {model.classes_.tolist()}")
    else:
        for opt in ("classes", "label"):
            if getattr(args, opt) is not None:
                raise UserError(f"--{opt} is for --family multinomial")
        model.fit(data.X_train, data.y_train)
    if args.test_index is not None:
        idx = parse_index_list(args.test_index, "--test-index")
        n_test = data.X_test.shape[0]
        if idx.min() < 0 or idx.max() >= n_test:
            raise UserError(f"--test-index: indices must lie in 0..{n_test - 1}")
    else:
        idx = select_test_subset(model, data.X_test, data.y_test)
    return data, model, Attribution(model), idx


def show(x):
    from ._validation import show as _show
    return _show(x)


def _parse_labels(text: str, y, arg: str) -> np.ndarray:
    """Comma-separated labels in the dtype of ``y`` (numbers stay numbers)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{arg}: no labels given")
    kind = np.asarray(y).dtype.kind
    try:
        if kind in "iub":
            return np.array([int(t) for t in items])
        if kind == "f":
            return np.array([float(t) for t in items])
    except ValueError:
        raise UserError(f"{arg}: the labels in the data file are numbers; got {text!r}") from None
    return np.array(items)


def _metrics(data, idx, label=None):
    from .metrics import SelfLoss, TestLoss, TestPrediction
    Xt, yt = data.X_test[idx], data.y_test[idx]
    return {"test-pred": TestPrediction(Xt, label=label), "test-loss": TestLoss(Xt, yt), "self-loss": SelfLoss()}


def _write_atomic(path, write):
    """Write through a temporary file in the same folder, then rename: never half-written."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"--out: {path!r} is a directory; give a file name")
    if not os.path.isdir(folder):
        raise UserError(f"--out: folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".leaveout-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cmd_scores(args):
    data, model, att, idx = _fit(args)
    metric = _metrics(data, idx, args.label)[args.metric]
    lev = att.leverage
    s_if = att.scores(metric, "if")
    s_rif = att.scores(metric, "rif")

    def write(fh):
        fh.write("index,leverage,if,rif\n")
        for i, (h, a, b) in enumerate(zip(lev.tolist(), s_if.tolist(), s_rif.tolist())):
            fh.write(f"{i},{h!r},{a!r},{b!r}\n")

    _write_atomic(args.out, write)
    what = f"P(y = {show(args.label)}) " if args.family == "multinomial" and args.metric == "test-pred" else ""
    lev_kind = "mean trace of the leverage blocks" if args.family == "multinomial" else "mean leverage"
    print(f"wrote {lev.size} rows to {args.out} (metric {args.metric} {what}over {idx.size} test rows; "
          f"{lev_kind} {lev.mean():.3f})")


def cmd_effect(args):
    from ._validation import check_indices
    data, model, att, idx = _fit(args)
    T = check_indices(parse_index_list(args.remove, "--remove"), data.n, "--remove")
    result = att.compare(T, _metrics(data, idx, args.label))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    r = result["retrain"]
    print(f"removed {result['n_removed']} of {data.n} training rows; retrain converged in "
          f"{r['n_iter']} iterations (relative gradient {r['grad_norm']:.1e})")
    head = f"{'metric':<10} {'effect':<8} {'actual':>13} {'IF':>13} {'RIF':>13} {'NS':>13}"
    print(head)
    print("-" * len(head))
    for kind in ("removal", "linear"):
        for name, row in result[kind].items():
            actual = f"{row['actual']:13.6g}" if "actual" in row else f"{'':13}"
            print(f"{name:<10} {kind:<8} {actual} {row['if']:13.6g} {row['rif']:13.6g} {row['ns']:13.6g}")


def cmd_reproduce(args):
    from .experiment import ReproduceConfig, Runner
    from .removal import DEFAULT_STRATEGIES
    kw = {}
    if args.datasets:
        kw["datasets"] = tuple(args.datasets)
    if args.figure:
        kw["figures"] = tuple(sorted(set(args.figure)))
    if args.strategy:
        kw["strategies"] = tuple(dict.fromkeys(args.strategy))
    else:
        kw["strategies"] = tuple(s.value for s in DEFAULT_STRATEGIES)
    data_dir = os.path.abspath(args.data_dir) if args.data_dir else None
    cfg = ReproduceConfig(sizes=args.sizes, l2=args.l2, penalty=args.penalty, seed=args.seed,
                          data_dir=data_dir, **kw)
    runner = Runner(cfg, args.out, jobs=args.jobs, progress=not args.quiet,
                    log=lambda msg: print(msg, flush=True), scheduler=args.scheduler or args.dask)
    out = runner.run()
    print(f"results in {out}/: report.md, summary.csv, results.csv, figures")
    summary = os.path.join(out, "report.md")
    with open(summary, encoding="utf-8") as fh:
        text = fh.read()
    table = text.split("## Removal effect", 1)[1].split("\n## ", 1)[0]
    print("Removal effect" + table.rstrip())


def cmd_datasets(args):
    from .datasets import list_datasets
    rows = list_datasets(args.data_dir)
    print(f"{'name':<18} {'n':>7} {'d':>6} {'n_test':>7}  source")
    for r in rows:
        n = "?" if r["n"] is None else r["n"]
        d = "?" if r["d"] is None else r["d"]
        nt = "?" if r["n_test"] is None else r["n_test"]
        print(f"{r['name']:<18} {n:>7} {d:>6} {nt:>7}  {r['source']} ({r['where']})")


COMMANDS = {"scores": cmd_scores, "effect": cmd_effect, "reproduce": cmd_reproduce, "datasets": cmd_datasets}


def main(argv=None) -> int:
    from .exceptions import ConvergenceError, ConvergenceWarning
    parser = build_parser()
    args = parser.parse_args(argv)

    def one_line_warning(message, category, *rest, **kw):
        print(f"leaveout: warning: {message}", file=sys.stderr)

    warnings.showwarning = one_line_warning
    warnings.simplefilter("always", ConvergenceWarning)
    try:
        COMMANDS[args.command](args)
    except (UserError, ValueError, ConvergenceError, OSError, MemoryError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"leaveout: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("leaveout: interrupted; finished work is saved (rerun the same command to resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
