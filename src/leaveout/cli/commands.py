"""What each ``leaveout`` command does: load, call the library, write the answer."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .parser import UserError, parse_index_list

__all__ = ["COMMANDS"]


def _fit(args):
    from ..attribution import Attribution
    from ..datasets import load_npz
    from ..glm import GLM
    from ..metrics import select_test_subset
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
    from .._validation import show as _show
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
    from ..metrics import SelfLoss, TestLoss, TestPrediction
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
    from .._validation import check_indices
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
    from ..experiments import ReproduceConfig, Runner
    from ..experiments.removal import DEFAULT_STRATEGIES
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
    from ..datasets import list_datasets
    rows = list_datasets(args.data_dir)
    print(f"{'name':<18} {'n':>7} {'d':>6} {'n_test':>7}  source")
    for r in rows:
        n = "?" if r["n"] is None else r["n"]
        d = "?" if r["d"] is None else r["d"]
        nt = "?" if r["n_test"] is None else r["n_test"]
        print(f"{r['name']:<18} {n:>7} {d:>6} {nt:>7}  {r['source']} ({r['where']})")


COMMANDS = {"scores": cmd_scores, "effect": cmd_effect, "reproduce": cmd_reproduce, "datasets": cmd_datasets}
