"""Tables as people have them: DataFrames, formulas, column names and row ids, CSV / Parquet.

* :mod:`.frame`: numeric DataFrames (features by name, the index as row ids, missing values);
* :mod:`.formula`: formulas encoded by formulaic, the encoding kept for other tables;
* :mod:`.ids`: removal sets by row id or by position;
* :mod:`.files`: reading and writing CSV / Parquet (used by the command line only).

pandas, formulaic and pyarrow are imported only when a table, a formula or a file arrives.
"""

from .frame import ColumnEncoding, is_frame, is_series
from .ids import positions_of, resolve_rows

__all__ = ["ColumnEncoding", "is_frame", "is_series", "positions_of", "resolve_rows"]
