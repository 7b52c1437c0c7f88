"""Reading and writing tables: CSV and Parquet (pandas; Parquet through pyarrow)."""

from __future__ import annotations

import os

__all__ = ["TABLE_SUFFIXES", "is_table_path", "read_table", "write_table"]

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def is_table_path(path) -> bool:
    return str(path).lower().endswith(TABLE_SUFFIXES)


def read_table(path, name: str = "DATA"):
    """A CSV or Parquet file as a DataFrame; one-line errors for a missing or unreadable file."""
    import pandas as pd
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{name}: no such file {path!r}")
    try:
        if path.lower().endswith(".csv"):
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except ImportError as exc:        # pragma: no cover (pyarrow is a dependency)
        raise ValueError(f"{name}: reading Parquet needs pyarrow ({exc})") from None
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise ValueError(f"{name}: cannot read {path!r} as a table ({text[0] if text else type(exc).__name__})") from None


def write_table(frame, fh_or_path, suffix: str):
    """Write ``frame`` (index included only if named) as CSV or Parquet by ``suffix``."""
    if suffix == ".csv":
        frame.to_csv(fh_or_path, index=False, lineterminator="\n")
    else:
        frame.to_parquet(fh_or_path, index=False)
