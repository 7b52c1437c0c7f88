"""DataFrames in, numbers out: feature names, row ids, missing values.

A model fitted on a table keeps an *encoding* that turns any other table into the same
numeric columns: :class:`ColumnEncoding` (a DataFrame of numeric features: the columns are
selected by name) or :class:`~leaveout.tables.formula.FormulaEncoding` (a formula, encoded by
formulaic). pandas is imported only when a DataFrame arrives.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["is_frame", "is_series", "ColumnEncoding", "missing_rows_error", "check_missing"]

MISSING = ("raise", "drop")


def is_frame(x) -> bool:
    """True for a pandas DataFrame (if pandas was never imported, nothing can be one)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, pd.DataFrame)


def is_series(x) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, pd.Series)


def _show_ids(ids, k=5) -> str:
    shown = ", ".join(repr(i.item() if hasattr(i, "item") else i) for i in list(ids)[:k])
    return shown + (", ..." if len(ids) > k else "")


def missing_rows_error(ids, columns=None) -> ValueError:
    where = f" in {', '.join(map(str, columns))}" if columns else ""
    return ValueError(
        f"{len(ids)} rows have missing values{where} (first ids: {_show_ids(ids)}); "
        "drop them with missing='drop' (--drop-missing on the command line) or impute them")


def check_missing(missing: str) -> str:
    if missing not in MISSING:
        raise ValueError(f"missing={missing!r} is not supported; choose 'raise' or 'drop'")
    return missing


class ColumnEncoding:
    """Numeric features selected by column name.

    Parameters
    ----------
    columns : list of str
        The feature columns, in order.
    """

    has_intercept = None      # the model's fit_intercept decides

    def __init__(self, columns):
        self.columns = [str(c) for c in columns]

    @classmethod
    def learn(cls, X, name="X"):
        """The encoding of a training DataFrame; refuses non-numeric columns by name."""
        bad = [str(c) for c in X.columns if not (X[c].dtype.kind in "biuf")]
        if bad:
            raise ValueError(f"{name} has non-numeric columns {bad}; encode them, or fit with a formula "
                             "(GLM.from_formula, --formula) and C(column)")
        return cls(list(X.columns))

    @property
    def feature_names(self):
        return np.array(self.columns, dtype=object)

    def transform(self, X, name="X", missing="raise"):
        """``(matrix (n, d) float64, row ids, kept)`` of a DataFrame with these columns.

        ``kept`` is the boolean mask of the rows used (rows with a missing value are dropped
        under ``missing="drop"``, else refused).
        """
        absent = [c for c in self.columns if c not in set(map(str, X.columns))]
        if absent:
            raise ValueError(f"{name} lacks the columns {absent} the model was fitted with")
        sub = X.rename(columns=str)[self.columns]
        bad = [c for c in self.columns if sub[c].dtype.kind not in "biuf"]
        if bad:
            raise ValueError(f"{name} has non-numeric values in columns {bad}")
        values = sub.to_numpy(dtype=np.float64, na_value=np.nan)
        kept = ~np.isnan(values).any(axis=1)
        if not kept.all():
            if missing != "drop":
                cols = [c for c in self.columns if sub[c].isna().any()]
                raise missing_rows_error(X.index[~kept], cols)
            values = values[kept]
        return values, np.asarray(X.index[kept]), kept

    def response(self, X, name="X"):
        raise ValueError(f"the model was not fitted with a formula: give the labels of {name} explicitly")
