"""File sources: read CSV, Parquet and JSON Lines samples and replay them as canonical records.

Two jobs live here:

* :func:`read_table` loads a sample into a DataFrame with the null conventions of the public
  datasets we replay (UCI Adult writes a missing value as ``?`` after a space);
* :func:`records_from_frame` / :func:`iter_file_records` turn rows into the canonical in-memory
  values of a :class:`~synthstream.schemas.record.RecordSchema` (``int``, ``float``, ``str``,
  ``bool``, tz-aware UTC ``datetime``, ``None``), column by column, fast enough to replay a
  million rows.

Conversion never invents data: a value that cannot be brought to its field's type is passed
through as it is (a float that is not integral in a ``long`` field, a number in a ``timestamp``
field), so the validator downstream dead-letters it with a precise reason. The one exception is
an unparseable timestamp string, which becomes ``None``: a DataFrame cannot hold both.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api import types as ptypes

from synthstream.errors import SchemaError
from synthstream.schemas.record import FieldSpec, FieldType, RecordSchema

#: File suffixes :func:`read_table` understands, and the reader each one uses.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".jsonl", ".ndjson")

#: Strings read as null in CSV files besides pandas' defaults (Adult marks missing values with ``?``).
CSV_NULL_MARKERS: tuple[str, ...] = ("?",)

Record = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Reading tables
# ---------------------------------------------------------------------------------------------


def read_table(path: Path, *, nrows: int | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON Lines file (chosen by suffix) into a DataFrame.

    CSV values are stripped of leading spaces and ``?``/empty cells are null, the conventions
    of UCI Adult. ``nrows`` reads only the first rows, for sampling a large file cheaply.
    Raises :class:`SchemaError` for a missing file or an unsupported suffix.
    """
    path = Path(path)
    suffix = _checked_suffix(path)
    if nrows is not None and nrows < 0:
        raise ValueError(f"nrows must be >= 0, not {nrows}")
    if suffix == ".csv":
        return pd.read_csv(path, nrows=nrows, **_csv_options())
    if suffix == ".parquet":
        return _read_parquet(path, nrows)
    with path.open("rb") as fh:
        lines = fh if nrows is None else itertools.islice(fh, nrows)
        return _frame_from_json_lines(lines, path)


def column_key(column: object, position: int) -> str:
    """Return the record key (and schema field name) of a DataFrame column.

    Column labels are turned into strings; an empty label gets pandas' CSV convention
    ``"Unnamed: <position>"`` so that every field has a non-empty name.
    """
    key = str(column)
    return key if key else f"Unnamed: {position}"


def _checked_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SchemaError(
            f"cannot read {path.name!r}: unsupported file type {suffix or '(none)'!r}; "
            f"supported suffixes are {list(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise SchemaError(f"cannot read {path}: no such file")
    return suffix


def _csv_options() -> dict[str, Any]:
    return {"na_values": list(CSV_NULL_MARKERS), "skipinitialspace": True, "low_memory": False}


def _read_parquet(path: Path, nrows: int | None) -> pd.DataFrame:
    if nrows is None:
        return pd.read_parquet(path)
    with pq.ParquetFile(path) as pf:
        batches = []
        remaining = nrows
        for batch in pf.iter_batches(batch_size=max(1, min(nrows, 65_536))):
            if remaining <= 0:
                break
            batches.append(batch.slice(0, remaining))
            remaining -= batch.num_rows
        if not batches:
            return pf.schema_arrow.empty_table().to_pandas()
        return pa.Table.from_batches(batches).to_pandas()


def _frame_from_json_lines(lines: Any, path: Path) -> pd.DataFrame:
    rows: list[Record] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise SchemaError(f"{path.name}: line {number} is not valid JSON") from None
        if not isinstance(row, dict):
            raise SchemaError(f"{path.name}: line {number} is not a JSON object")
        rows.append(row)
    return pd.DataFrame.from_records(rows) if rows else pd.DataFrame()


# ---------------------------------------------------------------------------------------------
# Rows to canonical records
# ---------------------------------------------------------------------------------------------


def records_from_frame(frame: pd.DataFrame, schema: RecordSchema) -> list[Record]:
    """Convert the rows of ``frame`` to canonical records of ``schema``, one column at a time.

    Each record holds exactly the schema's fields, in order. NaN/NaT become ``None``, numpy
    scalars become Python scalars, integral floats in ``long`` fields become ``int``, and
    timestamps become tz-aware UTC datetimes (naive ones are taken as UTC). A field missing
    from the frame is all ``None`` when nullable, else :class:`SchemaError`.
    """
    columns = {column_key(col, i): col for i, col in enumerate(frame.columns)}
    missing = [f.name for f in schema.fields if f.name not in columns and not f.nullable]
    if missing:
        raise SchemaError(f"the table lacks required fields {missing}; its columns are {list(columns)}")
    n = len(frame)
    values = [_convert_column(frame[columns[f.name]], f) if f.name in columns else [None] * n for f in schema.fields]
    names = schema.field_names
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def iter_file_records(path: Path, schema: RecordSchema, *, chunk_rows: int = 10_000) -> Iterator[list[Record]]:
    """Yield the file's rows as canonical records, ``chunk_rows`` at a time, without loading it whole.

    CSV is read in chunks, Parquet batch by batch, JSON Lines a slice of lines at a time.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, not {chunk_rows}")
    path = Path(path)
    for chunk in _iter_frames(path, _checked_suffix(path), chunk_rows):
        if len(chunk):
            yield records_from_frame(chunk, schema)


def _iter_frames(path: Path, suffix: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if suffix == ".csv":
        with pd.read_csv(path, chunksize=chunk_rows, **_csv_options()) as reader:
            yield from reader
    elif suffix == ".parquet":
        with pq.ParquetFile(path) as pf:
            for batch in pf.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
    else:
        with path.open("rb") as fh:
            while True:
                lines = list(itertools.islice(fh, chunk_rows))
                if not lines:
                    return
                yield _frame_from_json_lines(lines, path)


def _convert_column(series: pd.Series, spec: FieldSpec) -> list[Any]:
    converter = _CONVERTERS[spec.type]
    return converter(series)


def _with_nulls(values: list[Any], mask: npt.NDArray[np.bool_]) -> list[Any]:
    """Put ``None`` where ``mask`` is set (a loop over the null positions only)."""
    for i in np.flatnonzero(mask):
        values[i] = None
    return values


def _as_list(array: npt.NDArray[Any]) -> list[Any]:
    """Return the array as a list of Python scalars (numpy's C-speed ``tolist``)."""
    return typing.cast(list[Any], array.tolist())


def _python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _object_values(series: pd.Series, convert: Callable[[Any], Any], native: str | None = None) -> list[Any]:
    """Nulls to ``None``; other values through ``convert``, skipped when all are already ``native``.

    ``native`` is a :func:`pandas.api.types.infer_dtype` name (e.g. ``"string"``): when every
    non-null value has that kind, the values are taken as they are, at C speed.
    """
    mask = series.isna().to_numpy()
    values = series.to_numpy(dtype=object).tolist()
    if native is None or ptypes.infer_dtype(series, skipna=True) != native:
        values = [convert(_python_scalar(v)) for v in values]
    return _with_nulls(values, mask)


def _long_column(series: pd.Series) -> list[Any]:
    if ptypes.is_bool_dtype(series.dtype):
        return _object_values(series, lambda v: v)
    if ptypes.is_integer_dtype(series.dtype):
        if isinstance(series.dtype, np.dtype):
            return _as_list(series.to_numpy())
        mask = series.isna().to_numpy()
        return _with_nulls(_as_list(series.to_numpy(dtype=np.int64, na_value=0)), mask)
    if ptypes.is_float_dtype(series.dtype):
        arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
        mask = np.isnan(arr)
        finite = np.where(mask, 0.0, arr)
        integral = np.isfinite(finite) & (np.floor(finite) == finite) & (np.abs(finite) < 2.0**63)
        out: list[Any] = finite.astype(np.int64).tolist()
        for i in np.flatnonzero(~integral):
            out[i] = float(arr[i])
        return _with_nulls(out, mask)
    return _object_values(series, _long_scalar)


def _long_scalar(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _double_column(series: pd.Series) -> list[Any]:
    if ptypes.is_bool_dtype(series.dtype):
        return _object_values(series, lambda v: v)
    if ptypes.is_numeric_dtype(series.dtype):
        arr = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return _with_nulls(arr.tolist(), np.isnan(arr))
    return _object_values(series, lambda v: float(v) if isinstance(v, int) and not isinstance(v, bool) else v)


def _boolean_column(series: pd.Series) -> list[Any]:
    if ptypes.is_bool_dtype(series.dtype) and isinstance(series.dtype, np.dtype):
        return _as_list(series.to_numpy())
    return _object_values(series, lambda v: v, native="boolean")


def _string_column(series: pd.Series) -> list[Any]:
    if ptypes.is_integer_dtype(series.dtype) or ptypes.is_bool_dtype(series.dtype):
        return _object_values(series, str)
    return _object_values(series, _string_scalar, native="string")


def _string_scalar(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, (list, dict)) else str(value)


def _timestamp_column(series: pd.Series) -> list[Any]:
    if ptypes.is_datetime64_any_dtype(series.dtype):
        stamps = series
    elif ptypes.is_object_dtype(series.dtype) or ptypes.is_string_dtype(series.dtype):
        stamps = parse_timestamps(series)
    else:
        return _object_values(series, lambda v: v)
    stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    mask = stamps.isna().to_numpy()
    values = pd.DatetimeIndex(stamps).to_pydatetime().tolist()
    return _with_nulls(values, mask)


def parse_timestamps(series: pd.Series) -> pd.Series:
    """Parse strings (and datetimes) as UTC timestamps; anything unparseable becomes NaT.

    ISO-8601 is tried first (fast, and what JSON records carry), then pandas' mixed parser.
    Naive values are taken as UTC.
    """
    strings = series
    if series.dtype == object and ptypes.infer_dtype(series, skipna=True) != "string":
        strings = series.where(series.map(lambda v: isinstance(v, str)), None)
    try:
        return pd.to_datetime(strings, utc=True, format="ISO8601", errors="raise")
    except (ValueError, TypeError, OverflowError):
        return pd.to_datetime(strings, utc=True, format="mixed", errors="coerce")


_CONVERTERS: dict[FieldType, Callable[[pd.Series], list[Any]]] = {
    FieldType.LONG: _long_column,
    FieldType.DOUBLE: _double_column,
    FieldType.BOOLEAN: _boolean_column,
    FieldType.STRING: _string_column,
    FieldType.TIMESTAMP: _timestamp_column,
}
