"""Crash-safe result tables: append-only CSV, one group of rows per unit of work."""

from __future__ import annotations

import os

import numpy as np

from .config import RunError

__all__ = ["ResultStore", "atomic_write"]


def atomic_write(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fmt(v):
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def _parse(col, text):
    if col in ("dataset", "strategy", "metric"):
        return text
    if col in ("k", "test_index"):
        return int(text)
    if col in ("retrain_converged", "set_applies", "global_applies"):
        return text == "true"
    return float(text)


class ResultStore:
    """An append-only CSV table, one group of rows per key, crash-safe.

    Parameters
    ----------
    path : str
    columns : list of str
    key : tuple of str
        Columns identifying one unit of work (all its rows are written together).
    group_size : int
        Rows per unit; a unit with fewer rows (an interrupted write) is dropped on load.
    """

    def __init__(self, path, columns, key, group_size):
        self.path, self.columns, self.key, self.group_size = path, list(columns), tuple(key), group_size

    def load(self) -> list[dict]:
        """Read all complete rows, repairing a torn tail left by a crash."""
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8", newline="") as fh:
            text = fh.read()
        lines = text.split("\n")
        torn = lines[-1] != ""          # the last line was cut off mid-write
        body = lines[:-1]
        if not body:
            os.unlink(self.path)
            return []
        header = body[0].split(",")
        if header != self.columns:
            raise RunError(f"{self.path} has columns {header}, expected {self.columns}; use a new --out folder")
        rows = []
        for line in body[1:]:
            parts = line.split(",")
            if len(parts) != len(self.columns):
                torn = True
                continue
            try:
                rows.append({c: _parse(c, p) for c, p in zip(self.columns, parts)})
            except ValueError:
                torn = True
        counts = {}
        for r in rows:
            counts[self._key(r)] = counts.get(self._key(r), 0) + 1
        complete = [r for r in rows if counts[self._key(r)] == self.group_size]
        if torn or len(complete) != len(rows):
            self._rewrite(complete)
        return complete

    def _key(self, row):
        return tuple(row[c] for c in self.key)

    def _lines(self, rows):
        return "".join(",".join(_fmt(r[c]) for c in self.columns) + "\n" for r in rows)

    def _rewrite(self, rows):
        atomic_write(self.path, ",".join(self.columns) + "\n" + self._lines(rows))

    def append(self, rows):
        """Append one unit of rows with a single write and an fsync."""
        new = not os.path.exists(self.path)
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write((",".join(self.columns) + "\n" if new else "") + self._lines(rows))
            fh.flush()
            os.fsync(fh.fileno())
