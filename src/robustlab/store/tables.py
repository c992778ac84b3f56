"""Results as tables: DataFrames from stored rows, the wide pivot, and exact file export.

pandas is imported inside the functions, never at import time: the engine imports the store to write cells,
and a worker that only measures should not pay pandas' import (about a second) for it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustlab.store.keys import KEY_COLUMNS
from robustlab.store.schema import RESULT_COLUMNS, RUN_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["export_frame", "is_frame", "pivot_results", "results_frame", "runs_frame"]

_EXPORT_SUFFIXES = (".csv", ".json", ".parquet")


def results_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows of the ``results`` table (all columns, table order) as a typed DataFrame.

    Args:
        rows: the rows, as sqlite3 returns them.

    Returns:
        One row per cell; ``value`` float64 (NaN where undefined), ``n`` a nullable Int64, ``severity`` and
        ``seed`` int64, the other columns str.
    """
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=list(RESULT_COLUMNS))
    text = {name: "str" for name in RESULT_COLUMNS if name not in ("severity", "value", "n", "seed")}
    return frame.astype({**text, "severity": "int64", "value": "float64", "n": "Int64", "seed": "int64"})


def runs_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows of the ``runs`` table followed by their result count as a typed DataFrame.

    Args:
        rows: the ``runs`` columns in table order plus ``n_results``, as sqlite3 returns them.

    Returns:
        The runs, ``started_at`` / ``finished_at`` as UTC timestamps and ``n_results`` int64.
    """
    import pandas as pd

    frame = pd.DataFrame.from_records(rows, columns=[*RUN_COLUMNS, "n_results"])
    for name in ("started_at", "finished_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame.astype({"n_results": "int64"})


def is_frame(data: object) -> bool:
    """Whether ``data`` is a pandas DataFrame, without importing pandas when nobody has yet.

    Args:
        data: anything.

    Returns:
        ``True`` for a DataFrame.
    """
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, pandas.DataFrame)


def _json_value(value: Any) -> Any:
    """A DataFrame cell as a plain JSON value; JSON has no NaN or infinity, so those become null."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    return value


def export_frame(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a DataFrame to ``.csv``, ``.json`` (a list of records) or ``.parquet``, chosen by extension.

    Floats are written exactly: CSV and JSON use the shortest text that reads back to the same double (pandas
    >= 3 reads it back exactly; older pandas needs ``read_csv(..., float_precision="round_trip")``). JSON has
    no NaN or infinity, so non-finite values are written as ``null``. The file is written next to its
    destination and moved into place, so a failure never leaves a half-written file.

    Args:
        frame: the table to write; its index is written only when it is not a default range index.
        path: the output file; overwritten if it exists.

    Returns:
        The path written.

    Raises:
        ValueError: unsupported extension.
        FileNotFoundError: the output folder does not exist.
        ImportError: ``.parquet`` without pyarrow installed.
    """
    import pandas as pd

    out = Path(path).expanduser()
    suffix = out.suffix.lower()
    if suffix not in _EXPORT_SUFFIXES:
        raise ValueError(f"cannot export to {out}: the extension must be one of {list(_EXPORT_SUFFIXES)}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot export to {out}: folder {out.parent} does not exist")
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ImportError(f"exporting {out} needs pyarrow: pip install pyarrow (or export to .csv / .json)")
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()  # a pivot's row labels are data
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        elif suffix == ".json":
            # pandas' to_json rounds floats to at most 15 significant digits; json.dumps writes repr (exact)
            records = [
                {str(k): _json_value(v) for k, v in record.items()} for record in frame.to_dict(orient="records")
            ]
            tmp.write_text(json.dumps(records, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %d rows to %s", len(frame), out)
    return out


def pivot_results(results: pd.DataFrame) -> pd.DataFrame:
    """A wide view of long-format results: one row per evaluated condition, one column per metric.

    The rows are ``model × perturbation × severity``, refined by every other key column (dataset, split,
    params_json, seed) that is not constant in ``results`` — so an attack evaluated at several ``eps`` or a
    corruption under several seeds gets one row each and no value is ever aggregated away. Metric columns
    (rather than severity columns) keep the table well defined for attacks, which have no severities, and for
    any mix of metrics.

    Args:
        results: long-format results as returned by :meth:`Store.results`.

    Returns:
        A DataFrame indexed by the row key columns with one float column per metric, sorted.

    Raises:
        ValueError: ``results`` lacks the key columns, or holds two values for one cell (e.g. rows
            concatenated from two stores).
    """
    missing = [c for c in (*KEY_COLUMNS, "value") if c not in results.columns]
    if missing:
        raise ValueError(f"results lacks column(s) {missing}; pass a DataFrame from Store.results()")
    index = [
        c
        for c in ("model", "dataset", "split", "perturbation", "severity", "params_json", "seed")
        if c in ("model", "perturbation", "severity") or results[c].nunique(dropna=False) > 1
    ]
    if results.duplicated([*index, "metric"]).any():
        raise ValueError("results holds more than one value for the same cell; cannot pivot without aggregating")
    wide = results.pivot(index=index, columns="metric", values="value").sort_index()
    wide.columns.name = None
    return wide
