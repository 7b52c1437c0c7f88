"""What each ``leaveout`` command does: load, call the library, write the answer."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .data import load_problem
from .parser import UserError

__all__ = ["COMMANDS"]


def show(x):
    from .._validation import show as _show
    return _show(x)


def _metric(prob, name, label):
    """One metric by its command-line name."""
    from ..metrics import Coefficient, SelfLoss, TestLoss, TestPrediction
    if name == "self-loss":
        return SelfLoss()
    if name.startswith("coef:"):
        j = name[5:]
        metric = Coefficient(int(j) if j.lstrip("-").isdigit() else j,
                             label=label if prob.model.family == "multinomial" else None)
        try:
            metric.gradient(prob.model, prob.model.theta_)
        except ValueError as exc:
            raise UserError(f"--metric/--coef: {exc}") from None
        return metric
    if prob.X_test is None:
        raise UserError(f"{name} needs test rows: give --test FILE, --test-rows LIST or --test-fraction F")
    if name == "test-pred":
        return TestPrediction(prob.X_test, label=label)
    return TestLoss(prob.X_test, prob.y_test)


def _metrics(prob, label=None, coefs=()):
    names = (["test-pred", "test-loss"] if prob.X_test is not None else []) + ["self-loss"]
    if hasattr(prob.model, "fixed_effects_") or prob.model.family == "2sls":     # coefficients only
        if not coefs:
            kind = "two-stage least squares" if prob.model.family == "2sls" else "a fixed-effects model"
            raise UserError(f"the effects of {kind} are on its coefficients: give --coef NAME")
        names = []
    names += [f"coef:{c}" for c in coefs or ()]
    return {n: _metric(prob, n, label) for n in names}


def _write_atomic(path, write, binary=False):
    """Write through a temporary file in the same folder, then rename: never half-written."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"--out: {path!r} is a directory; give a file name")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"--out: {folder!r} is a file, not a folder")
    if not os.path.isdir(folder):
        raise UserError(f"--out: folder {folder!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".leaveout-", dir=folder)
    except OSError as exc:                 # name the folder, not the temporary file
        raise UserError(f"--out: cannot write in folder {folder!r} ({exc.strerror})") from None
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cmd_fit(args):
    from ..audit import summarize
    prob = load_problem(args)
    m = prob.model
    groups = _clusters(prob, args.cluster)
    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha must lie strictly between 0 and 1, got {args.alpha:g}")
    out = {"model": prob.describe(args.se, args.cluster), "converged": bool(m.converged_), "n_iter": int(m.n_iter_),
           "grad_norm": float(m.grad_norm_)}
    summary, why = None, None
    if m.family == "multinomial":
        why = "no standard errors for the multinomial family (coefficients only)"
    elif m.penalty == "per_sample" and m.l2 > 0:
        why = "no standard errors under --penalty per_sample with l2 > 0 (every row carries a share of the penalty)"
    else:
        try:
            summary = summarize(prob.att, se=args.se, cluster=groups, alpha=args.alpha)
        except ValueError as exc:          # e.g. fewer observations than parameters
            why = f"no standard errors: {exc}"
    params = m.params_
    if summary is not None:
        out.update(summary.to_dict())
        out["coef"] = out["params"]
    else:
        out.update({"family": m.family, "l2": float(m.l2), "n": out["model"]["n"],
                    "coef": ({str(k): float(v) for k, v in params.items()} if params.ndim == 1 else
                             {str(i): {str(c): float(params.loc[i, c]) for c in params.columns} for i in params.index}),
                    "notes": [why]})
    out.update({k: v for k, v in prob.notes.items() if k != "test_index"})
    if args.json:
        print(json.dumps(out, indent=2, default=_plain))
        return
    dropped = f"; {out['dropped_missing']} rows dropped for missing values" if "dropped_missing" in out else ""
    print(prob.header(args.se if summary is not None else None, args.cluster if summary is not None else None))
    print(f"converged in {m.n_iter_} iterations, relative gradient {m.grad_norm_:.1e}{dropped}"
          + ("" if summary is None else f"; log-likelihood {summary.loglike:.6g}"))
    if summary is None:
        print(params.to_string())
        print(f"note: {why}")
        return
    print(summary.table.to_string(float_format=lambda v: f"{v:.6g}"))
    for note in summary.notes:
        print(f"note: {note}")


def cmd_scores(args):
    from ..tables.files import write_table
    prob = load_problem(args)
    metric = _metric(prob, args.metric, args.label)
    att = prob.att
    lev = np.asarray(att.leverage)
    s_if, s_rif = np.asarray(att.scores(metric, "if")), np.asarray(att.scores(metric, "rif"))
    suffix = os.path.splitext(args.out)[1].lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(f"--out: give a .csv or .parquet file name, got {args.out!r}")
    if prob.ids is None and suffix == ".csv":
        def write(fh):       # the .npz format, unchanged: index,leverage,if,rif
            fh.write("index,leverage,if,rif\n")
            for i, (h, a, b) in enumerate(zip(lev.tolist(), s_if.tolist(), s_rif.tolist())):
                fh.write(f"{i},{h!r},{a!r},{b!r}\n")
    else:
        import pandas as pd
        key = prob.id_name or "index"
        ids = np.arange(lev.size) if prob.ids is None else np.asarray(prob.ids)
        table = pd.DataFrame({key: ids, "leverage": lev, "if": s_if, "rif": s_rif})

        def write(fh):
            write_table(table, fh, suffix if suffix == ".csv" else ".parquet")

    _write_atomic(args.out, write, binary=suffix != ".csv")
    what = f"P(y = {show(args.label)}) " if args.family == "multinomial" and args.metric == "test-pred" else ""
    over = "" if prob.X_test is None or args.metric.startswith("coef:") else f" over {prob.X_test.shape[0]} test rows"
    lev_kind = "mean trace of the leverage blocks" if args.family == "multinomial" else "mean leverage"
    extra = "".join(f"; {k.replace('_', ' ')} {v}" for k, v in prob.notes.items() if k in ("test_fraction", "seed", "dropped_missing"))
    print(f"wrote {lev.size} rows to {args.out} (metric {args.metric}{' ' + what.strip() if what else ''}{over}; "
          f"{lev_kind} {lev.mean():.3f}{extra})")


def cmd_effect(args):
    from .._validation import check_indices
    prob = load_problem(args)
    T = check_indices(prob.positions(args.remove, "--remove"), prob.n, "--remove")
    result = prob.att.compare(T, _metrics(prob, args.label, args.coef))
    if prob.ids is not None:
        result["removed"] = prob.label_of(T)
        result.update({k: v for k, v in prob.notes.items() if k != "test_index"})
    if args.json:
        print(json.dumps(result, indent=2, default=_plain))
        return
    r = result["retrain"]
    named = "" if prob.ids is None else f" ({prob.id_name} {', '.join(map(str, result['removed'][:10]))}" + (
        ", ...)" if len(result["removed"]) > 10 else ")")
    print(f"removed {result['n_removed']} of {prob.n} training rows{named}; retrain converged in "
          f"{r['n_iter']} iterations (relative gradient {r['grad_norm']:.1e})")
    if prob.X_test is not None and prob.ids is not None:
        how = (f"--test-fraction {prob.notes['test_fraction']}, seed {prob.notes['seed']}"
               if "test_fraction" in prob.notes else "--test" if "test" in prob.notes else "--test-rows")
        print(f"test rows: {prob.X_test.shape[0]} ({how})")
    head = f"{'metric':<14} {'effect':<8} {'actual':>13} {'IF':>13} {'RIF':>13} {'NS':>13}"
    print(head)
    print("-" * len(head))
    for kind in ("removal", "linear"):
        for name, row in result[kind].items():
            actual = f"{row['actual']:13.6g}" if "actual" in row else f"{'':13}"
            print(f"{name:<14} {kind:<8} {actual} {row['if']:13.6g} {row['rif']:13.6g} {row['ns']:13.6g}")


def cmd_suspects(args):
    from ..metrics import TestLoss
    from ..suspects import suspects, verify
    from ..tables.files import write_table
    if args.validation is not None:
        if args.test is not None or args.test_rows is not None or args.test_fraction is not None:
            raise UserError("give the validation rows once: --validation, or --test / --test-rows / --test-fraction")
        args.test = args.validation
    for opt in ("top", "verify"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            raise UserError(f"--{opt} must be a positive number of rows, got {value}")
    suffix = None
    if args.out is not None:
        suffix = os.path.splitext(args.out)[1].lower()
        if suffix not in (".csv", ".parquet", ".pq"):
            raise UserError(f"--out: give a .csv or .parquet file name, got {args.out!r}")
    prob = load_problem(args)
    validation = None if prob.X_test is None else TestLoss(prob.X_test, prob.y_test)
    if args.kind in ("validation", "relabel") and validation is None:
        raise UserError(f"--kind {args.kind} needs validation rows: --validation FILE, --test-fraction F, ...")
    if args.verify is not None and validation is None:
        raise UserError("--verify needs validation rows: --validation FILE, --test-fraction F, ...")
    table = suspects(prob.att, kind=args.kind, validation=validation, method=args.method)
    positions = table.index.to_numpy()
    res = None
    if args.verify is not None:      # every refit before anything is written: an error leaves no file
        res = verify(prob.att, positions[:args.verify], "relabel" if args.kind == "relabel" else "remove", validation)
    from ..suspects import DEFAULT_METHOD
    method = args.method or DEFAULT_METHOD[args.kind]
    how = args.kind if args.kind == "loss" else f"{args.kind}, {method.upper()}"
    print(prob.header())
    if args.out is not None:
        shown = table if args.top is None else table.head(args.top)
        _write_atomic(args.out, lambda fh: write_table(shown.reset_index(drop=True), fh,
                                                       suffix if suffix == ".csv" else ".parquet"),
                      binary=suffix != ".csv")
        print(f"wrote {len(shown)} rows to {args.out}, most suspicious first ({how})")
    else:
        top = 20 if args.top is None else args.top
        print(f"the {min(top, len(table))} most suspicious of {len(table)} rows ({how}; --out FILE writes them all)")
        print(table.head(top).to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    if res is not None:
        b, a = res["before"], res["after"]
        acc = "" if b["accuracy"] is None else f", accuracy {b['accuracy']:.4f} -> {a['accuracy']:.4f}"
        what = "relabelling" if args.kind == "relabel" else "removing"
        print(f"{what} the top {res['k']}: validation loss {b['loss']:.6g} -> {a['loss']:.6g}{acc} "
              f"(certified refit: {'yes' if a['converged'] else 'NO'})")


def cmd_check(args):
    prob = load_problem(args)
    if args.sets < 0:
        raise UserError(f"--sets must be >= 0, got {args.sets}")
    names = args.metric or (["test-pred", "test-loss"] if prob.X_test is not None else []) + ["self-loss"]
    metrics = {n: _metric(prob, n, args.label) for n in dict.fromkeys(names)}
    if args.lds is not None and args.lds < 3:
        raise UserError(f"--lds must be at least 3 subsets (a rank correlation over subsets), got {args.lds}")
    report = prob.att.diagnose(metrics, n_sets=args.sets)
    yardsticks = _yardsticks(prob, metrics, args.lds) if args.lds is not None else None
    if args.json:
        out = {"model": prob.describe(), **report.to_dict()}
        if yardsticks is not None:
            out["yardsticks"] = yardsticks
        print(json.dumps(out, indent=2, default=_plain))
    else:
        print(prob.header())
        print(repr(report))
        for name, y in (yardsticks or {}).items():
            lds_, loo = y["lds"], y["loo_corr"]
            print(f"{name}: LDS over {y['n_subsets']} half-data subsets " + ", ".join(f"{m} {v:.3f}" for m, v in lds_.items())
                  + f"; LOO correlation over {y['loo_rows']} rows " + ", ".join(f"{m} {v:.3f}" for m, v in loo.items())
                  + f" ({y['seconds']:.1f} s of refits)")


def _yardsticks(prob, metrics, n_subsets, loo_rows=100):
    """LDS and LOO correlation for the metrics with test points (test-pred, test-loss)."""
    from ..diagnostics import lds, loo_correlation
    out = {}
    alive = np.flatnonzero(np.asarray(prob.model.objective_.s) > 0)
    rows = np.sort(np.random.default_rng(0).choice(alive, min(loo_rows, alive.size), replace=False))
    for name, metric in metrics.items():
        if name not in ("test-pred", "test-loss"):
            continue
        r = lds(prob.att, metric, n_subsets=n_subsets)
        loo = loo_correlation(prob.att, metric, rows=rows)
        out[name] = {"lds": r.score, "lds_interval": r.interval, "loo_corr": loo.score,
                     "loo_corr_interval": loo.interval, "n_subsets": int(r.actual.shape[0]),
                     "loo_rows": int(loo.actual.shape[0]), "unconverged": r.n_unconverged + loo.n_unconverged,
                     "seconds": r.seconds["refits"] + loo.seconds["refits"] + r.seconds["scores"] + loo.seconds["scores"]}
    return out


def cmd_audit(args):
    from ..audit import audit
    from ..metrics import Logit
    from ..tables.files import is_table_path
    l2 = args.l2 if args.l2 is not None else (0.0 if is_table_path(args.data) else 1.0)
    if args.certify and (args.family != "squared" or l2 != 0):
        raise UserError("--certify is for unpenalised least squares: give --family squared --l2 0")
    if args.out is not None:
        _check_out_folder(args.out)
    prob = load_problem(args)
    if args.coef is not None:
        if args.target == "flip":
            raise UserError("--target flip is for --test-row; a coefficient takes sign, significance or opposite")
        quantity = _metric(prob, f"coef:{args.coef}", None)
    else:
        if args.target != "flip":
            raise UserError("--test-row goes with --target flip (its predicted class changes)")
        if prob.model.family != "logistic":
            raise UserError("--target flip is for --family logistic (a binary predicted class)")
        quantity = Logit(_test_row(prob, args.test_row))
        quantity.name = f"logit[test row {args.test_row}]"
    if args.time_limit is not None and not args.time_limit > 0:
        raise UserError(f"--time-limit must be a positive number of seconds, got {args.time_limit:g}")
    groups = _clusters(prob, args.cluster)
    result = audit(prob.att, quantity, target=args.target, se=args.se, cluster=groups, method=args.method,
                   alpha=args.alpha, max_fraction=args.max_fraction, time_limit=args.time_limit,
                   progress=not args.quiet and not args.json, certify=args.certify,
                   certify_method=args.certify_method)
    model = prob.describe(args.se if args.target in ("significance", "opposite") else None, args.cluster)
    if args.out is not None:
        _write_audit(result, args.out, model)
    if args.json:
        print(json.dumps({"model": model, **result.to_dict()}, indent=2, default=_plain))
    else:
        print(prob.header(model.get("se"), None))
        print(result)


def _test_row(prob, text):
    """One test row (a one-row table or array) named by id (--id) or position."""
    X = prob.X_test
    if X is None:
        raise UserError("--test-row needs test rows: give --test FILE, --test-rows LIST or --test-fraction F")
    if hasattr(X, "iloc"):
        if prob.id_name != "row":
            hit = [i for i, v in enumerate(X.index.tolist()) if str(v) == text]
            if not hit:
                raise UserError(f"--test-row: no test row has the id {text!r}")
            return X.iloc[[hit[0]]]
        pos = _position(text, X.shape[0])
        return X.iloc[[pos]]
    pos = _position(text, X.shape[0])
    return X[pos:pos + 1]


def _position(text, n):
    if not text.isdigit() or int(text) >= n:
        raise UserError(f"--test-row: give a position in 0..{n - 1} among the test rows, got {text!r}")
    return int(text)


def _clusters(prob, column):
    """Cluster labels of the training rows from a column of DATA."""
    if column is None:
        return None
    if prob.train is None:
        raise UserError("--cluster needs a table (.csv, .parquet) with that column")
    if column not in prob.train.columns:
        raise UserError(f"--cluster: DATA has no column {column!r}")
    groups = prob.train[column].reindex(prob.model.row_ids_)
    if groups.isna().any():
        raise UserError(f"--cluster: column {column!r} has missing values in the rows fitted")
    return groups.to_numpy()


def _check_out_folder(out):
    """--out names a folder that exists or can be created (checked before any work)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out: {out!r} is a file, not a folder")
    up = os.path.dirname(os.path.abspath(out))
    while up and not os.path.exists(up):
        up = os.path.dirname(up)
    if up and not os.path.isdir(up):
        raise UserError(f"--out: {up!r} is a file, not a folder, so {out!r} cannot be created")


def _write_audit(result, out, model):
    """audit.json, rows.csv, path.csv and audit.png in ``out``, each written atomically."""
    _check_out_folder(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out: cannot create the folder {out!r} ({exc.strerror})") from None
    data = {"model": model, **result.to_dict()}
    _write_atomic(os.path.join(out, "audit.json"), lambda fh: fh.write(json.dumps(data, indent=2, default=_plain) + "\n"))
    _write_atomic(os.path.join(out, "rows.csv"), lambda fh: fh.write(
        "row,position\n" + "".join(f"{r},{p}\n" for r, p in zip(result.rows, result.positions))))
    _write_atomic(os.path.join(out, "path.csv"), lambda fh: result.to_frame().to_csv(fh, index=False, lineterminator="\n"))
    fig = result.plot()
    _write_atomic(os.path.join(out, "audit.png"), lambda fh: fig.savefig(fh, format="png", dpi=120), binary=True)


def _plain(x):
    """JSON for numpy scalars (ids read from a table)."""
    return x.item() if hasattr(x, "item") else str(x)


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
                    log=(lambda msg: None) if args.quiet else (lambda msg: print(msg, flush=True)),
                    scheduler=args.scheduler or args.dask)
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


COMMANDS = {"fit": cmd_fit, "suspects": cmd_suspects, "check": cmd_check, "audit": cmd_audit, "scores": cmd_scores, "effect": cmd_effect, "reproduce": cmd_reproduce, "datasets": cmd_datasets}
