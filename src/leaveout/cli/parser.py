"""The ``leaveout`` argument parser and the parsing of list arguments."""

from __future__ import annotations

import argparse
import os

import numpy as np

EXIT_USAGE = 2


class UserError(Exception):
    """An error caused by the user's input; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_list(text: str, arg: str) -> list:
    """Parse ``"a,b,c"`` or ``"@file"`` (one item per line) into a list of strings."""
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
        raise UserError(f"{arg}: nothing given")
    return items


def parse_index_list(text: str, arg: str) -> np.ndarray:
    """Parse ``"1,2,3"`` or ``"@file"`` (one index per line) into an int array."""
    items = parse_list(text, arg)
    try:
        return np.array([int(t) for t in items], dtype=np.int64)
    except ValueError:
        bad = next(t for t in items if not t.lstrip("-").isdigit())
        raise UserError(f"{arg}: {bad!r} is not an integer row index") from None


def metric_name(text: str) -> str:
    """``--metric``: test-pred, test-loss or coef:NAME."""
    if text in ("test-pred", "test-loss") or (text.startswith("coef:") and len(text) > 5):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose test-pred, test-loss or coef:NAME)")


def check_metric(text: str) -> str:
    """``check --metric``: test-pred, test-loss, self-loss or coef:NAME."""
    return text if text == "self-loss" else metric_name(text)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


def _add_model_args(p, response=True):
    p.add_argument("data", metavar="DATA",
                   help=".npz file with X_train, y_train, X_test, y_test; or a table (.csv, .parquet) "
                        "with --formula or --target")
    p.add_argument("--test-index", metavar="LIST",
                   help=".npz: test rows for the metrics: comma-separated 0-based indices or @file "
                        "(default: the 50 highest-loss test rows plus 50 others drawn with seed 0)")
    t = p.add_argument_group("tables (.csv, .parquet)")
    t.add_argument("--formula", metavar="F", help='model formula, e.g. "y ~ x1 + C(g) + x1:x2" (formulaic)')
    if response:
        t.add_argument("--target", metavar="COLUMN",
                       help="the response column; every other numeric column is a feature")
    t.add_argument("--id", metavar="COLUMN", help="column of row ids (then --remove and --test-rows take ids)")
    t.add_argument("--test", metavar="FILE", help="test rows from another table with the same columns")
    t.add_argument("--test-rows", metavar="LIST", help="hold these rows of DATA out as test rows: ids with --id, "
                                                       "else 0-based positions; comma-separated or @file")
    t.add_argument("--test-fraction", type=float, metavar="F", help="hold out a seeded random fraction F of DATA")
    t.add_argument("--seed", type=int, default=0, help="seed of --test-fraction (default 0)")
    t.add_argument("--drop-missing", action="store_true",
                   help="drop rows with a missing value in a used column, --weights included (default: an error)")
    t.add_argument("--weights", metavar="COLUMN",
                   help="sample weights from this column of DATA (non-negative; row i's loss counts w_i times)")
    t.add_argument("--weight-kind", choices=["analytic", "frequency"],
                   help="what a weight means for standard errors: analytic (default; statsmodels WLS, GLM "
                        "var_weights) or frequency (a row stands for w_i identical rows; GLM freq_weights)")
    p.add_argument("--family", choices=["logistic", "squared", "poisson", "multinomial"], default="logistic",
                   help="loss and link (default logistic; squared and poisson take real / count labels; "
                        "multinomial: softmax over any number of classes)")
    p.add_argument("--classes", metavar="LIST",
                   help="multinomial: the classes, comma-separated, in the order of the model's columns "
                        "(default: the sorted labels of y_train); each must occur in y_train")
    p.add_argument("--label", metavar="CLASS",
                   help="multinomial: the class whose predicted probability test-pred sums "
                        "(default: the last class)")
    p.add_argument("--l2", type=float, default=None, metavar="L",
                   help="L2 penalty strength (default: 0 for tables, the unpenalised fit of statsmodels; 1.0 for "
                        ".npz data)")
    p.add_argument("--penalty", choices=["fixed", "per_sample"], default="fixed",
                   help="fixed: sum of losses + (L/2)|theta|^2; per_sample: mean loss + (L/2)|theta|^2")
    p.add_argument("--no-intercept", action="store_true", help="fit without an intercept")


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__
    parser = _Parser(prog="leaveout", description="Predict and measure the effect of removing training samples.")
    parser.add_argument("--version", action="version", version=f"leaveout {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("fit", help="fit the model and print its coefficient table (as statsmodels' summary)",
                       description="Fit the model and print each coefficient with its standard error, z (t for the "
                                   "squared family's nonrobust SE), p-value and confidence interval. At l2 = 0 the "
                                   "numbers equal statsmodels' OLS / WLS / GLM for the same SE type, with two "
                                   "conventions that differ: HC1 here is always n/(n-p) times HC0 (statsmodels' "
                                   "GLM applies no factor), and under --weight-kind frequency the cluster HC1 factor "
                                   "counts n = sum of the weights (statsmodels counts rows).")
    _add_model_args(p)
    p.add_argument("--se", choices=["nonrobust", "HC0", "HC1"], default="nonrobust",
                   help="standard errors (default nonrobust); with --cluster HC0 has no small-sample factor, "
                        "HC1 G/(G-1)(n-1)/(n-p)")
    p.add_argument("--cluster", metavar="COLUMN", help="cluster-robust standard errors by this column of DATA")
    p.add_argument("--alpha", type=float, default=0.05, help="confidence intervals at 1 - alpha (default 0.05)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("scores", help="per-sample leverage and IF/RIF scores for one metric")
    _add_model_args(p)
    p.add_argument("--metric", required=True, metavar="METRIC", type=metric_name,
                   help="test-pred, test-loss, or coef:NAME (a coefficient by name or position)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="output table, CSV or Parquet by extension (id or index, leverage, if, rif); if and rif "
                        "are the predicted change of the metric when the row alone is removed (positive: the "
                        "metric goes up without it)")

    p = sub.add_parser("effect", help="IF/RIF/NS predictions and the exact retrain for one removal set")
    _add_model_args(p)
    p.add_argument("--remove", required=True, metavar="LIST",
                   help="rows to remove: 0-based indices (ids with --id), comma-separated or @file")
    p.add_argument("--coef", action="append", metavar="NAME", help="also report this coefficient; repeatable")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("suspects", help="training rows ranked by how likely they are mislabelled or harmful")
    _add_model_args(p)
    p.add_argument("--kind", choices=["loo", "loss", "self", "validation", "relabel"], default="loo",
                   help="loo (default; the best flipped-label detector in benchmarks/README.md): the row's loss "
                        "when it is left out of the fit; loss: its training loss; self: how much its own loss "
                        "rises when removed; validation: removing it lowers the validation loss; relabel: "
                        "flipping its label lowers the validation loss")
    p.add_argument("--method", choices=["rif", "if"],
                   help="estimator (default: if for loo, as measured best; rif for self, validation, relabel)")
    p.add_argument("--validation", metavar="FILE",
                   help="validation rows (same columns); default: the test rows (--test*, or the .npz test split)")
    p.add_argument("--top", type=int, metavar="K", help="keep the K most suspicious rows")
    p.add_argument("--verify", type=int, metavar="K",
                   help="refit without (relabel: with flipped labels of) the top K rows and report the "
                        "validation loss and accuracy")
    p.add_argument("--out", metavar="FILE",
                   help="output table, CSV or Parquet by extension (default: print the top rows)")

    p = sub.add_parser("check", help="can IF / RIF / NS be believed here? Theorem 3.1's constants and a "
                                     "calibration against certified retrains")
    _add_model_args(p)
    p.add_argument("--metric", action="append", metavar="METRIC", type=check_metric,
                   help="test-pred, test-loss, self-loss or coef:NAME; repeatable (default: all that apply)")
    p.add_argument("--sets", type=int, default=30, metavar="N", help="removal sets retrained for the calibration (default 30)")
    p.add_argument("--lds", type=int, metavar="N",
                   help="also the field's yardsticks for test-pred and test-loss: the linear datamodeling score over "
                        "N random half-data subsets, and the leave-one-out correlation over up to 100 rows, each "
                        "against certified refits")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("audit", help="the fewest rows whose removal changes a conclusion, verified by refits")
    _add_model_args(p, response=False)
    q = p.add_argument_group("audit")
    what = q.add_mutually_exclusive_group(required=True)
    what.add_argument("--coef", metavar="NAME", help="the coefficient (by name, or 0-based position for .npz)")
    what.add_argument("--test-row", metavar="ID", help="a test row (id with --id, else 0-based position among "
                                                      "the test rows): its predicted class (--target flip)")
    q.add_argument("--target", choices=["sign", "significance", "opposite", "flip"], default="sign",
                   help="what must change (default sign; flip for --test-row)")
    q.add_argument("--se", choices=["nonrobust", "HC0", "HC1"], default="nonrobust",
                   help="standard error for significance (default nonrobust); with --cluster HC0 has no "
                        "small-sample factor, HC1 G/(G-1)(n-1)/(n-p)")
    q.add_argument("--cluster", metavar="COLUMN", help="cluster-robust standard error by this column of DATA")
    q.add_argument("--method", choices=["adaptive", "one-shot", "rif"], default="adaptive",
                   help="adaptive (default): re-rank after each removal and verify; one-shot: zaminfluence; "
                        "rif: one-shot with RIF")
    q.add_argument("--alpha", type=float, default=0.05, help="two-sided level (default 0.05; normal critical value)")
    q.add_argument("--max-fraction", type=float, default=0.1, metavar="F",
                   help="remove at most this fraction of the rows (default 0.1)")
    q.add_argument("--time-limit", type=float, metavar="S",
                   help="seconds for the search, and separately for --certify (default: no limit for the "
                        "search, 60 s for the certificate's mixed-integer program)")
    q.add_argument("--certify", action="store_true",
                   help="also prove a lower bound: no set of fewer rows changes the conclusion (OLS: --family "
                        "squared --l2 0; a coefficient; sign, or significance with --se nonrobust)")
    q.add_argument("--certify-method", choices=["auto", "exact", "bound"], default="auto",
                   help="exact: closed forms and mixed-integer programs (HiGHS) for small d; bound: "
                        "Rubinstein-Hopkins triangle bounds, fast for large n and d; auto (default): both")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.add_argument("--out", metavar="DIR", help="also write audit.json, rows.csv, path.csv and audit.png here")
    q.add_argument("--quiet", action="store_true", help="no progress bar")

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
    p.add_argument("--quiet", action="store_true", help="no progress bars or status lines")

    p = sub.add_parser("datasets", help="list the available datasets")
    p.add_argument("--data-dir", metavar="DIR", default=os.environ.get("LEAVEOUT_DATA_DIR"),
                   help="also list the .npz files in this folder (default $LEAVEOUT_DATA_DIR)")
    return parser
