"""Wilkinson formulas (``y ~ x1 + C(g) + x1:x2``), encoded by the formulaic library.

The encoding learnt on the training table (categorical levels, contrasts, column order) is
kept with the model and reused for every other table, so a test table is encoded exactly as
the training one. Where formulaic would silently turn a level it never saw into a row of
zeros (a ``DataMismatchWarning``), this raises an error naming the levels; a missing column is
formulaic's error naming the factor.

Intercept: formulaic's ``Intercept`` column is not a feature here. A formula with an
intercept (the default) fits ``fit_intercept=True``, the intercept last in ``theta`` and
unpenalised; ``y ~ x - 1`` or ``y ~ 0 + x`` fits without one.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from .frame import missing_rows_error

__all__ = ["FormulaEncoding", "split_fixed_effects", "factor_columns", "is_iv_formula", "iv_matrices"]


def _formulaic():
    try:
        import formulaic
    except ImportError:      # pragma: no cover (a dependency of the install)
        raise ImportError("formulas need the formulaic package: pip install formulaic") from None
    return formulaic


class FormulaEncoding:
    """A formula and the model spec learnt from the training table.

    Attributes
    ----------
    formula : str
    has_intercept : bool
    feature_names : ndarray of str
        Columns of the encoded matrix, without the intercept (formulaic's names, e.g.
        ``"C(g)[T.b]"``, ``"x1:x2"``).
    response_name : str
    """

    def __init__(self, formula: str, spec, response_name: str):
        self.formula = formula
        self.spec = spec
        self.response_name = response_name
        names = list(spec.rhs.column_names)
        self.has_intercept = "Intercept" in names
        self.feature_names = np.array([c for c in names if c != "Intercept"], dtype=object)

    @classmethod
    def learn(cls, formula: str, data, missing: str = "raise"):
        """Encode the training table: ``(encoding, X (n, d), y (n,), row ids)``."""
        if not isinstance(formula, str) or "~" not in formula:
            raise ValueError(f"formula must be a string 'response ~ terms', got {formula!r}")
        fl = _formulaic()
        if len(data.index) == 0:
            raise ValueError(f"the table has no rows (only its header: {', '.join(map(str, data.columns[:6]))}); "
                             "nothing to fit")
        try:
            mm = fl.model_matrix(formula, data, na_action="drop")
        except Exception as exc:     # formulaic's errors name the factor; keep one line
            raise ValueError(f"formula {formula!r}: {_first_line(exc)}") from None
        used = [c for c in data.columns if str(c) in {str(v) for v in _required(mm.model_spec)}]
        _warn_numbers_read_as_text(data, used)
        if not hasattr(mm, "lhs") or mm.lhs.shape[1] == 0:
            raise ValueError(f"formula {formula!r} has no response; write 'response ~ terms'")
        kept_ids = mm.rhs.index
        if len(kept_ids) < len(data.index):
            dropped = data.index[~data.index.isin(kept_ids)]
            if missing != "drop":
                raise missing_rows_error(dropped)
            if len(kept_ids) == 0:
                empty = [str(c) for c in used if data[c].isna().all()]
                what = (f"the column{'s' * (len(empty) > 1)} {', '.join(map(repr, empty))} "
                        f"{'are' if len(empty) > 1 else 'is'} empty" if empty else
                        "every row misses a value in some column the formula uses")
                raise ValueError(f"no rows left after dropping those with missing values: {what}; "
                                 "drop it from the formula or fill it")
        lhs_name = str(mm.model_spec.lhs.formula)
        enc = cls(formula, mm.model_spec, lhs_name)
        y = enc._response(data.loc[kept_ids] if len(kept_ids) < len(data.index) else data, mm.lhs)
        X = enc._features(mm.rhs)
        return enc, X, y, np.asarray(kept_ids)

    def _features(self, rhs) -> np.ndarray:
        cols = [c for c in rhs.columns if c != "Intercept"]
        return np.asarray(rhs[cols].to_numpy(dtype=np.float64))

    def _response(self, rows, lhs):
        # a plain column keeps its labels (any two classes, any class names); an expression
        # such as np.log(y) is formulaic's single numeric column
        if self.response_name in rows.columns:
            return rows[self.response_name].to_numpy()
        if lhs.shape[1] != 1:
            raise ValueError(f"the response {self.response_name!r} must be one column")
        return np.asarray(lhs.to_numpy(dtype=np.float64)).ravel()

    def _matrices(self, data, which, name):
        spec = getattr(self.spec, which)
        with warnings.catch_warnings():
            # formulaic casts an unseen level to NaN (a row of zero dummies) with this warning
            warnings.filterwarnings("error", message=".*categories outside of the nominated levels.*")
            try:
                return spec.get_model_matrix(data, na_action="raise")
            except Warning as w:
                levels = _first_line(w).split(" They are being")[0]
                raise ValueError(f"{name}: {levels} (levels the model never saw)") from None
            except Exception as exc:
                raise ValueError(f"{name}: {_first_line(exc)}") from None

    def transform(self, data, name="X", missing="raise"):
        """``(matrix, row ids, kept)`` of another table under the training encoding."""
        if missing == "drop":
            rows = data.dropna(subset=[c for c in self._variables() if c in data.columns])
        else:
            rows = data
        rhs = self._matrices(rows, "rhs", name)
        kept = np.asarray(data.index.isin(rows.index))
        return self._features(rhs), np.asarray(rows.index), kept

    def response(self, data, name="X"):
        """The response of another table (labels as they are)."""
        if self.response_name in data.columns:
            y = data[self.response_name]
            if y.isna().any():
                raise missing_rows_error(data.index[y.isna()], [self.response_name])
            return y.to_numpy()
        return self._response(data, self._matrices(data, "lhs", name))

    def _variables(self):
        """The data columns the right-hand side reads."""
        return sorted(str(v) for v in getattr(self.spec.rhs, "required_variables", ()))


def split_fixed_effects(formula: str):
    """``"y ~ x1 + x2 | fe1 + fe2^fe3"`` as ``("y ~ x1 + x2", ["fe1", "fe2^fe3"])`` (fixest's
    syntax; no ``|``: no fixed effects)."""
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must be a string 'response ~ terms', got {formula!r}")
    parts = [p.strip() for p in formula.split("|")]
    if len(parts) == 1:
        return formula, []
    if any("~" in p for p in parts[1:]):
        raise ValueError(f"formula {formula!r}: instrumental variables are 'y ~ w | e ~ z' or, with fixed effects, "
                         "'y ~ w | fe | e ~ z'")
    if len(parts) > 2:
        raise ValueError(f"formula {formula!r} has more than one '|'; write 'y ~ x1 + x2 | fe1 + fe2'")
    terms = [t.strip() for t in parts[1].split("+")]
    if not parts[1] or any(not t for t in terms) or any(not re.fullmatch(r"[^\s^()]+(\s*\^\s*[^\s^()]+)*", t)
                                                      for t in terms):
        raise ValueError(f"formula {formula!r}: after '|' give fixed-effect columns joined by '+' (and '^' for "
                         "an interaction), e.g. 'y ~ x | firm + year'")
    if parts[0].split("~", 1)[1].strip() in ("", "0", "-1"):
        return parts[0].split("~", 1)[0] + "~ 0", terms
    return parts[0], terms


def is_iv_formula(formula) -> bool:
    """``"y ~ w | e ~ z"`` (pyfixest's instrumental-variables syntax)?"""
    return isinstance(formula, str) and "|" in formula and "~" in formula.split("|")[-1]


def iv_matrices(formula: str, data, missing: str = "raise") -> dict:
    """The pieces of ``"y ~ w1 + w2 | e1 + e2 ~ z1 + z2"``: exogenous, endogenous and
    instrument matrices, the response and the row ids (rows with a missing value in any of
    them dropped with ``missing="drop"``, an error otherwise)."""
    parts = [p.strip() for p in formula.split("|")]
    fe_labels = None
    if len(parts) == 3:                            # y ~ w | fe1 + fe2 | e ~ z
        _main, terms = split_fixed_effects(f"{parts[0]} | {parts[1]}")
        fe_labels = factor_columns(data, terms)
        na = fe_labels.isna().any(axis=1)
        if na.any():
            if missing != "drop":
                raise missing_rows_error(data.index[na], [c for c in fe_labels.columns if fe_labels[c].isna().any()])
            data, fe_labels = data.loc[~na], fe_labels.loc[~na]
        parts = [parts[0], parts[2]]
    if len(parts) != 2 or parts[1].count("~") != 1 or "~" not in parts[0]:
        raise ValueError(f"formula {formula!r}: write instrumental variables as 'y ~ exogenous | endogenous ~ "
                         "instruments' (e.g. 'lwage ~ exper | educ ~ fatheduc + motheduc')")
    main, iv = parts
    endog, instr = (t.strip() for t in iv.split("~"))
    if not endog or not instr:
        raise ValueError(f"formula {formula!r}: name the endogenous regressors before '~' and their instruments "
                         "after it")
    fl = _formulaic()
    rhs = main.split("~", 1)[1].strip() or "1"
    try:
        every = fl.model_matrix(f"{main.split('~', 1)[0]} ~ {rhs} + {endog} + {instr}", data, na_action="drop")
    except Exception as exc:
        raise ValueError(f"formula {formula!r}: {_first_line(exc)}") from None
    kept = every.rhs.index
    if len(kept) < len(data.index):
        if missing != "drop":
            raise missing_rows_error(data.index[~data.index.isin(kept)])
        data = data.loc[kept]
    enc, W, y, ids = FormulaEncoding.learn(main, data, "raise")
    pieces = {}
    for key, terms in (("endog", endog), ("instruments", instr)):
        try:
            mm = fl.model_matrix(f"0 + {terms}", data, na_action="raise")
        except Exception as exc:
            raise ValueError(f"formula {formula!r}: {_first_line(exc)}") from None
        pieces[key] = (np.asarray(mm.to_numpy(dtype=np.float64)), [str(c) for c in mm.columns])
    return {"exog": W, "endog": pieces["endog"][0], "instruments": pieces["instruments"][0], "y": y, "ids": ids,
            "intercept": enc.has_intercept, "fixed_effects": fe_labels,
            "names": {"exog": [str(c) for c in enc.feature_names], "endog": pieces["endog"][1],
                      "instruments": pieces["instruments"][1]}}


def _required(spec):
    """The data columns a model spec reads, both sides."""
    out = set()
    for side in ("lhs", "rhs"):
        out |= {str(v) for v in getattr(getattr(spec, side, None), "required_variables", ())}
    return out


def _warn_numbers_read_as_text(data, columns):
    """Warn when a column the formula uses is text but nearly all of it reads as numbers (a
    typo in a numeric column turns it into one dummy per distinct value)."""
    import pandas as pd
    for col in columns:
        s = data[col]
        if s.dtype.kind not in "OSU" and str(s.dtype) not in ("string", "str"):
            continue
        vals = s.dropna()
        if len(vals) < 5:
            continue
        as_num = pd.to_numeric(vals, errors="coerce")
        bad = vals[as_num.isna()]
        if 0 < len(bad) <= 0.1 * len(vals) and as_num.notna().sum() >= 0.9 * len(vals):
            shown = ", ".join(repr(str(b)) for b in bad.unique()[:3])
            warnings.warn(f"column {col!r} is read as text with {vals.nunique()} levels, but {len(vals) - len(bad)} "
                          f"of its {len(vals)} values are numbers (not: {shown}); fix those entries to use it as "
                          "a number", UserWarning, stacklevel=4)


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def factor_columns(data, terms):
    """A DataFrame of one label column per fixed-effect term (``a^b`` combined)."""
    import pandas as pd
    out = {}
    for term in terms:
        parts = [p.strip() for p in term.split("^")]
        for p in parts:
            if p not in data.columns:
                raise ValueError(f"fixed effect {p!r} is not a column of the table (columns: "
                                 f"{', '.join(map(str, list(data.columns)[:8]))})")
        if len(parts) == 1:
            out[term] = data[parts[0]]
        else:
            cols = [data[p] for p in parts]
            combo = cols[0].astype(str)
            for c in cols[1:]:
                combo = combo + "^" + c.astype(str)
            combo[pd.concat(cols, axis=1).isna().any(axis=1)] = np.nan
            out["^".join(parts)] = combo
    return pd.DataFrame(out, index=data.index)
