"""Loading what a command works on: an ``.npz`` of arrays, or a table with a formula or a
target column; the fitted model, its attribution, and the test rows of the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .parser import UserError, parse_index_list, parse_list

__all__ = ["Problem", "load_problem"]

TABLE_ONLY = ("formula", "id", "test", "test_rows", "test_fraction", "weights")


@dataclass
class Problem:
    """A fitted problem: the model, its attribution and what the metrics need."""

    model: object
    att: object
    n: int                              # training rows used
    X_test: object = None               # array or DataFrame, or None (no test rows)
    y_test: object = None               # labels, or None (a formula reads them from X_test)
    ids: object = None                  # tables: training row ids (--id) or DATA row numbers
    id_name: str | None = None
    notes: dict = field(default_factory=dict)   # how the test rows were chosen, dropped rows
    train: object = None                # tables: the training DataFrame (indexed by row id)
    weights: str | None = None          # tables: the --weights column

    def describe(self, se=None, cluster=None) -> dict:
        """What was fitted, for every header: family, l2 and its convention, the weights and
        what they mean, the SE type (when one is used) and the number of observations."""
        m = self.model
        s = np.asarray(m.objective_.s)
        n_obs = float(s.sum()) if m.weight_kind == "frequency" else int(np.count_nonzero(s > 0))
        out = {"family": m.family, "l2": float(m.l2), "penalty": m.penalty,
               "weights": None if self.weights is None else {"column": self.weights, "meaning": m.weight_kind},
               "n": int(n_obs) if float(n_obs).is_integer() else n_obs, "n_rows": int(self.n)}
        if getattr(m, "fixed_effects_", None) is not None:
            fe, s = m.fixed_effects_, np.asarray(m.objective_.s)
            out["fixed_effects"] = [{"name": k, "levels": fe.n_levels(k, s), "absorbed": k == fe.absorbed}
                                    for k in fe.names]
        if m.family == "2sls":
            out["instruments"] = {"endogenous": list(m.endogenous_), "instruments": list(m.instruments_)}
        if se is not None:
            out["se"] = se + (f", clustered by {cluster}" if cluster else "")
        return out

    def header(self, se=None, cluster=None) -> str:
        """:meth:`describe` in one line."""
        d = self.describe(se, cluster)
        w = "none" if d["weights"] is None else f"{d['weights']['column']} ({d['weights']['meaning']})"
        n = f"n = {d['n']}" + (f" ({d['n_rows']} rows)" if d["n"] != d["n_rows"] else "")
        se_text = f", se {d['se']}" if "se" in d else ""
        fe = f", fixed effects {self.model.describe_fixed_effects()}" if "fixed_effects" in d else ""
        if "instruments" in d:
            fe += f", {self.model.describe_instruments()}"
        return f"model: {d['family']}, l2 = {d['l2']:g} ({d['penalty']} penalty){fe}, weights {w}{se_text}, {n}"

    def positions(self, text: str, arg: str) -> np.ndarray:
        """Rows named on the command line: for .npz data 0-based positions; for a table its
        ids (--id) or its 0-based row numbers in DATA."""
        if self.ids is None:
            return parse_index_list(text, arg)
        from ..tables.ids import positions_of
        items = parse_index_list(text, arg) if self.id_name == "row" else _typed(parse_list(text, arg), self.ids, arg)
        return positions_of(self.ids, items, arg)

    def label_of(self, positions):
        """The rows as the user knows them: ids (or DATA row numbers), else positions."""
        pos = np.asarray(positions)
        return (pos if self.ids is None else np.asarray(self.ids)[pos]).tolist()


def _typed(items, like, arg, what="ids"):
    """Strings from the command line in the dtype of ``like`` (numbers stay numbers)."""
    kind = np.asarray(like).dtype.kind
    try:
        if kind in "iub":
            return np.array([int(t) for t in items])
        if kind == "f":
            return np.array([float(t) for t in items])
    except ValueError:
        raise UserError(f"{arg}: the {what} in the data file are numbers; got {', '.join(items[:3])}") from None
    return np.array(items, dtype=object)


def _check_l2(args, table: bool):
    """--l2, its default resolved: 0 (unpenalised, as statsmodels) for tables, 1 for .npz."""
    if args.l2 is None:
        args.l2 = 0.0 if table else 1.0
    if not np.isfinite(args.l2) or args.l2 < 0:
        raise UserError(f"--l2 must be a finite number >= 0, got {args.l2}")


def _labels(text, y, arg):
    """Comma-separated labels in the dtype of ``y``."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{arg}: no labels given")
    out = _typed(items, y, arg, "labels")
    return out.astype(str) if out.dtype == object else out


def _classes(args, y):
    """``classes=`` for the fit, after checking --classes / --label against the family."""
    if args.family == "multinomial":
        return None if args.classes is None else _labels(args.classes, y, "--classes")
    for opt in ("classes", "label"):
        if getattr(args, opt) is not None:
            raise UserError(f"--{opt} is for --family multinomial")
    return None


def _set_label(args, model, y):
    if args.family == "multinomial":
        args.label = model.classes_[-1] if args.label is None else _labels(args.label, y, "--label")[0]
        if args.label not in model.classes_:
            from .._validation import show
            raise UserError(f"--label: {show(args.label)} is not one of the classes {model.classes_.tolist()}")


def load_problem(args) -> Problem:
    from ..tables.files import is_table_path
    table = is_table_path(args.data)
    _check_l2(args, table)
    if getattr(args, "weight_kind", None) is not None and getattr(args, "weights", None) is None:
        raise UserError("--weight-kind says what the --weights COLUMN means; give --weights too")
    if table:
        return _load_table(args)
    given = [f"--{o.replace('_', '-')}" for o in TABLE_ONLY + (("target",) if args.command != "audit" else ())
             if getattr(args, o, None) is not None]
    given += ["--drop-missing"] * bool(getattr(args, "drop_missing", False))
    if given:
        raise UserError(f"{given[0]} is for tables (.csv, .parquet); DATA here is {args.data!r}")
    return _load_npz(args)


def _load_npz(args) -> Problem:
    from ..attribution import Attribution
    from ..datasets import load_npz
    from ..glm import GLM
    from ..metrics import select_test_subset
    data = load_npz(args.data)
    model = GLM(family=args.family, l2=args.l2, penalty=args.penalty, fit_intercept=not args.no_intercept)
    model.fit(data.X_train, data.y_train, classes=_classes(args, data.y_train))
    _set_label(args, model, data.y_train)
    if args.test_index is not None:
        idx = parse_index_list(args.test_index, "--test-index")
        n_test = data.X_test.shape[0]
        if idx.min() < 0 or idx.max() >= n_test:
            raise UserError(f"--test-index: indices must lie in 0..{n_test - 1}")
    elif args.command == "suspects":
        idx = np.arange(data.X_test.shape[0])        # validation: every test row, not the paper's subset
    else:
        idx = select_test_subset(model, data.X_test, data.y_test)
    return Problem(model, Attribution(model), data.n, data.X_test[idx], data.y_test[idx],
                   notes={"test_index": idx.tolist()})


def _split(args, frame):
    """``(train, test or None, notes)`` from --test / --test-rows / --test-fraction."""
    from ..tables.files import read_table
    chosen = [o for o in ("test", "test_rows", "test_fraction") if getattr(args, o) is not None]
    if len(chosen) > 1:
        raise UserError(f"give one of --test, --test-rows, --test-fraction (got {', '.join('--' + c.replace('_', '-') for c in chosen)})")
    if not chosen:
        return frame, None, {}
    if args.test is not None:
        test = read_table(args.test, "--test")
        if args.id is not None:
            test = _with_ids(test, args.id, "--test")
        return frame, test, {"test": args.test}
    n = len(frame.index)
    if args.test_rows is not None:
        items = parse_list(args.test_rows, "--test-rows")
        if args.id is not None:
            wanted = _typed(items, frame.index, "--test-rows")
            absent = [w for w in wanted.tolist() if w not in set(frame.index.tolist())]
            if absent:
                raise UserError(f"--test-rows: ids not in DATA: {absent[:5]}")
            mask = frame.index.isin(wanted)
        else:
            pos = parse_index_list(args.test_rows, "--test-rows")
            if pos.min() < 0 or pos.max() >= n:
                raise UserError(f"--test-rows: positions must lie in 0..{n - 1}")
            mask = np.zeros(n, dtype=bool)
            mask[pos] = True
        notes = {"test_rows": "given"}
    else:
        f = args.test_fraction
        if not (0 < f < 1):
            raise UserError(f"--test-fraction must lie strictly between 0 and 1, got {f}")
        k = int(round(f * n))
        if k < 1 or k >= n:
            raise UserError(f"--test-fraction {f} of {n} rows leaves no test or no training rows")
        mask = np.zeros(n, dtype=bool)
        mask[np.random.default_rng(args.seed).permutation(n)[:k]] = True
        notes = {"test_fraction": f, "seed": args.seed}
    test = frame[mask]
    notes["test_ids" if args.id is not None else "test_positions"] = (
        test.index.tolist() if args.id is not None else np.flatnonzero(mask).tolist())
    return frame[~mask], test, notes


def _with_ids(frame, column, arg):
    if column not in frame.columns:
        raise UserError(f"--id: {arg} has no column {column!r}")
    ids = frame[column]
    if ids.isna().any():
        raise UserError(f"--id: column {column!r} of {arg} has missing ids")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise UserError(f"--id: column {column!r} of {arg} repeats the id {dup.iloc[0]!r}; ids must be unique")
    return frame.set_index(column)


def _load_table(args) -> Problem:
    from ..attribution import Attribution
    from ..glm import GLM
    from ..tables.files import read_table
    if args.test_index is not None:
        raise UserError("--test-index is for .npz data; with a table use --test, --test-rows or --test-fraction")
    response = getattr(args, "target", None) if args.command != "audit" else None
    if args.command == "audit" and args.formula is None:
        raise UserError("audit on a table needs --formula \"y ~ ...\"")
    if (args.formula is None) == (response is None):
        raise UserError("a table needs exactly one of --formula \"y ~ ...\" or --target COLUMN")
    frame = read_table(args.data, "DATA")
    if args.id is not None:
        frame = _with_ids(frame, args.id, "DATA")
    train, test, notes = _split(args, frame)
    missing = "drop" if args.drop_missing else "raise"
    weights, train, n_unweighted = _weights(args, train)
    kind = {"weight_kind": args.weight_kind} if args.weight_kind else {}
    if args.formula is not None:
        if args.no_intercept:
            raise UserError("--no-intercept: with --formula write the intercept into the formula ('- 1')")
        resp = args.formula.split("~", 1)[0].strip()
        y_like = train[resp] if resp in train.columns else np.zeros(1)
        model = GLM.from_formula(args.formula, train, family=args.family, l2=args.l2, penalty=args.penalty,
                                 missing=missing, classes=_classes(args, y_like), sample_weight=weights, **kind)
        X_test, y_test = test, None
    else:
        if args.target not in train.columns:
            raise UserError(f"--target: DATA has no column {args.target!r}")
        features = [c for c in train.columns if c not in (args.target, args.weights)]
        bad = [str(c) for c in features if train[c].dtype.kind not in "biuf"]
        if bad:
            raise UserError(f"--target: the columns {bad} are not numeric; use --formula with C(column)")
        y_like = train[args.target]
        model = GLM(family=args.family, l2=args.l2, penalty=args.penalty, fit_intercept=not args.no_intercept, **kind)
        model.fit(train[features], y_like, classes=_classes(args, y_like), missing=missing,
                  sample_weight=None if weights is None else train[weights])
        X_test = y_test = None
        if test is not None:
            absent = [c for c in features if c not in test.columns]
            if absent:
                raise UserError(f"--test: the test table lacks the columns {absent}")
            X_test, y_test = test[features], _test_column(test, args.target)
    _set_label(args, model, y_like)
    if model.n_dropped_ + n_unweighted:
        notes["dropped_missing"] = int(model.n_dropped_ + n_unweighted)
    # rows are known by their id (--id) or by their 0-based row number in DATA
    return Problem(model, Attribution(model), len(model.row_ids_), X_test, y_test,
                   ids=model.row_ids_, id_name=args.id or "row", notes=notes, train=train, weights=weights)


def _weights(args, train):
    """``(column or None, training rows, rows dropped for a missing weight)`` after checking the
    --weights column: numeric, finite, non-negative, not all zero; a missing weight is an error,
    or with --drop-missing drops its row."""
    col = getattr(args, "weights", None)
    if col is None:
        return None, train, 0
    if col not in train.columns:
        raise UserError(f"--weights: DATA has no column {col!r}")
    w = train[col]
    if w.dtype.kind not in "biuf":
        raise UserError(f"--weights: column {col!r} is not numeric ({w.dtype}); give a column of non-negative numbers")
    missing = w.isna().to_numpy()
    dropped = 0
    if missing.any():
        if not args.drop_missing:
            first = ", ".join(str(v) for v in train.index[missing][:3].tolist())
            raise UserError(f"--weights: column {col!r} has {int(missing.sum())} missing values (first rows: {first}); "
                            "fill them or give --drop-missing")
        train, dropped = train[~missing], int(missing.sum())
        w = train[col]
    values = w.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise UserError(f"--weights: column {col!r} has infinite values; weights must be finite")
    if np.any(values < 0):
        first = train.index[values < 0][0]
        raise UserError(f"--weights: column {col!r} has negative weights (first at row {first}); weights must be >= 0")
    if not np.any(values > 0):
        raise UserError(f"--weights: column {col!r} is zero in every training row; at least one weight must be positive")
    return col, train, dropped


def _test_column(test, target):
    if target not in test.columns:
        raise UserError(f"--test: the test table has no column {target!r}")
    return test[target]
