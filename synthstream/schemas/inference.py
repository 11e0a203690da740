"""Infer a :class:`RecordSchema` (types, nullability, roles) from a sample of records.

Roles decide how every later stage treats a field (identifiers are never modelled, free text
goes through NER, categoricals get marginals), so the rules are explicit, deterministic and
documented on :func:`infer_schema`; anything they get wrong is fixed with ``roles=``.

Field names are the original record keys (what JSON records carry), even when they are not
valid Avro names: the Avro serde maps them to sanitised names on the wire (see
:func:`synthstream.schemas.serde.avro_field_names`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from synthstream.connectors.files import column_key, parse_timestamps, read_table
from synthstream.errors import SchemaError
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from synthstream.schemas.time_text import written_format

#: Share of non-null sampled strings that must parse as ISO-like datetimes for a timestamp field.
TIMESTAMP_SHARE = 0.95
#: A long with at most this many distinct values is categorical (codes, flags, small counts).
MAX_CATEGORICAL_INTEGERS = 10
#: distinct / non-null above this is "nearly unique".
NEARLY_UNIQUE = 0.9
#: An id-named column with many repeats is still an entity key when distinct / non-null reaches
#: this share and it has at least :data:`ENTITY_KEY_MIN_DISTINCT` distinct values.
ENTITY_KEY_SHARE = 0.05
#: Fewest distinct values of an entity key (``education-num`` has 16 levels and is no key).
ENTITY_KEY_MIN_DISTINCT = 50
#: Strings with distinct / non-null above this, and whitespace or long values, are free text.
FREE_TEXT_CARDINALITY = 0.5
#: Cardinality rules (nearly unique, <= 10 distinct, high cardinality) need at least this many
#: non-null sampled values; below it every distinct count looks "unique" and proves nothing.
MIN_EVIDENCE = 20
#: Average length above which high-cardinality strings are free text even without whitespace.
FREE_TEXT_LENGTH = 40

_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_ISO_LIKE = re.compile(
    r"^\d{4}-\d{2}-\d{2}"  # date
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?"  # optional time
    r"\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?$"  # optional offset
)
_ID_TOKENS = frozenset({"id", "ids", "uuid", "guid", "index", "idx", "num", "number"})


@dataclass(frozen=True)
class _Profile:
    """What the role rules need to know about one sampled column."""

    non_null: int
    distinct: int

    @property
    def distinct_share(self) -> float:
        return self.distinct / self.non_null if self.non_null else 0.0

    @property
    def enough(self) -> bool:
        return self.non_null >= MIN_EVIDENCE


def infer_schema(
    frame: pd.DataFrame,
    *,
    name: str = "Record",
    roles: Mapping[str, FieldRole | str] | None = None,
    max_rows: int = 10_000,
) -> RecordSchema:
    """Infer the schema of ``frame`` from at most ``max_rows`` rows (evenly spaced, so deterministic).

    Physical type, per column:

    * bool dtype -> ``boolean``; integer dtype -> ``long``; a float column whose non-null
      values are all integral *and* which holds nulls (how pandas stores an int column with
      gaps) -> ``long``; other floats -> ``double``;
    * datetime64, or strings of which >= 95 % of the non-null sample parse as ISO-like
      datetimes (``2019-01-01 00:00:18``, ``1988-03-09``, with optional ``T``/offset) -> ``timestamp``;
    * anything else -> ``string``.

    ``nullable`` is true when the sample holds a null (or a timestamp string that does not parse).

    Role, per column:

    * ``timestamp`` -> datetime; ``boolean`` -> categorical;
    * ``long`` whose name hints an identifier (``id``, ``*_id``, ``fooId``, ``uuid``, ``index``,
      a ``num``/``number`` token, ``unnamed*`` such as pandas' ``Unnamed: 0``, an empty name) *and*
      whose values are nearly unique (distinct/non-null > 0.9) or look like an entity key (at
      least 50 distinct values and distinct/non-null >= 0.05, e.g. ``cc_num`` with 878 cards over
      5,039 transactions) -> identifier. ``education-num`` (16 levels) therefore stays a number;
    * otherwise ``long`` with <= 10 distinct values -> categorical; other numbers -> numeric
      (doubles are never identifiers);
    * ``string`` without whitespace that is nearly unique, or id-named with entity-key
      cardinality -> identifier (hex transaction numbers, customer codes);
      distinct/non-null > 0.5 with whitespace or an average length > 40 -> free_text;
      otherwise categorical.

    Cardinality proves nothing in a tiny sample (5 rows are always "unique"), so the
    nearly-unique, <= 10 levels and > 0.5 rules need at least 20 non-null sampled values;
    below that numbers are numeric, strings categorical (free text if longer than 40 on
    average), and only an id-like name with unique values makes an identifier.

    ``roles`` overrides the inferred role of named fields; an unknown name raises
    :class:`SchemaError` listing the valid ones. Field names are the column labels as strings
    (an empty label becomes ``"Unnamed: <position>"``).
    """
    _check_record_name(name)
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, not {max_rows}")
    if frame.shape[1] == 0:
        raise SchemaError("cannot infer a schema from a table without columns")
    sample = _sample(frame, max_rows)
    fields = tuple(_infer_field(column_key(col, i), sample.iloc[:, i]) for i, col in enumerate(sample.columns))
    schema = RecordSchema(name=name, fields=fields)
    return schema.with_roles(_parse_roles(roles)) if roles else schema


def infer_schema_from_file(
    path: Path,
    *,
    name: str | None = None,
    roles: Mapping[str, FieldRole | str] | None = None,
    max_rows: int = 10_000,
) -> RecordSchema:
    """Read the first ``max_rows`` rows of a CSV/Parquet/JSONL file and infer its schema.

    The record name defaults to the file stem made into a valid Avro name.
    """
    frame = read_table(Path(path), nrows=max_rows)
    return infer_schema(frame, name=name or _name_from_stem(Path(path).stem), roles=roles, max_rows=max_rows)


def _check_record_name(name: str) -> None:
    if not _AVRO_NAME.fullmatch(name):
        raise SchemaError(f"record name {name!r} is not a valid Avro name ([A-Za-z_][A-Za-z0-9_]*)")


def _name_from_stem(stem: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", stem)
    return cleaned if re.match(r"[A-Za-z_]", cleaned) else f"R_{cleaned}"


def _parse_roles(roles: Mapping[str, FieldRole | str]) -> dict[str, FieldRole]:
    parsed: dict[str, FieldRole] = {}
    bad: list[str] = []
    for field_name, role in roles.items():
        try:
            parsed[field_name] = FieldRole(role)
        except ValueError:
            bad.append(f"{field_name!r}: {role!r}")
    if bad:
        raise SchemaError(f"unknown roles {bad}; valid roles are {[r.value for r in FieldRole]}")
    return parsed


def _sample(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame
    positions = np.linspace(0, len(frame) - 1, max_rows).round().astype(np.int64)
    return frame.iloc[np.unique(positions)]


def _infer_field(name: str, column: pd.Series) -> FieldSpec:
    non_null = column.dropna()
    nullable = len(non_null) < len(column)
    ftype, unparsed = _physical_type(column, non_null, nullable)
    profile = _profile(non_null)
    role = _role(name, ftype, non_null, profile)
    return FieldSpec(name=name, type=ftype, role=role, nullable=nullable or unparsed)


def _physical_type(column: pd.Series, non_null: pd.Series, nullable: bool) -> tuple[FieldType, bool]:
    """Return the wire type, and whether some non-null values will not convert (so the field is nullable)."""
    dtype = column.dtype
    if ptypes.is_bool_dtype(dtype):
        return FieldType.BOOLEAN, False
    if ptypes.is_integer_dtype(dtype):
        return FieldType.LONG, False
    if ptypes.is_float_dtype(dtype):
        integral = len(non_null) > 0 and bool(np.all(np.mod(non_null.to_numpy(dtype=np.float64), 1.0) == 0.0))
        return (FieldType.LONG if nullable and integral else FieldType.DOUBLE), False
    if ptypes.is_datetime64_any_dtype(dtype):
        return FieldType.TIMESTAMP, False
    return _object_type(non_null)


def _object_type(non_null: pd.Series) -> tuple[FieldType, bool]:
    if len(non_null) == 0:
        return FieldType.STRING, False
    kinds = {type(v) for v in non_null}
    if kinds <= {bool, np.bool_}:
        return FieldType.BOOLEAN, False
    if kinds <= {int, np.int64} and bool not in kinds:
        return FieldType.LONG, False
    if all(issubclass(k, str) for k in kinds):
        parsed = _timestamp_share(non_null)
        if parsed >= TIMESTAMP_SHARE:
            return FieldType.TIMESTAMP, parsed < 1.0
    return FieldType.STRING, False


def _timestamp_share(strings: pd.Series) -> float:
    """Share of the strings that look ISO-like *and* parse as a date-time.

    Dated text in one other pattern (``Jan 1 2000``, ``2010/01/01 00:00``, ``01/31/2020``;
    :mod:`synthstream.schemas.time_text`) counts too when that pattern reads the share: such a
    column was free text before, scanned by NER, which replaced 94 % of an hourly series' times.
    """
    iso_like = strings.str.strip().str.match(_ISO_LIKE)
    if iso_like.mean() < TIMESTAMP_SHARE:
        if written_format(strings, TIMESTAMP_SHARE) is not None:
            return float(parse_timestamps(strings.str.strip()).notna().mean())
        return float(iso_like.mean())
    parsed = parse_timestamps(strings.str.strip().where(iso_like, None))
    return float(parsed.notna().mean())


def _profile(non_null: pd.Series) -> _Profile:
    try:
        distinct = int(non_null.nunique())
    except TypeError:  # unhashable values (lists/dicts from JSON)
        distinct = int(non_null.map(repr).nunique())
    return _Profile(non_null=len(non_null), distinct=distinct)


def _role(name: str, ftype: FieldType, non_null: pd.Series, profile: _Profile) -> FieldRole:
    if ftype is FieldType.TIMESTAMP:
        return FieldRole.DATETIME
    if ftype is FieldType.BOOLEAN:
        return FieldRole.CATEGORICAL
    if ftype is FieldType.LONG:
        if _hints_identifier(name) and _key_like(profile):
            return FieldRole.IDENTIFIER
        few_levels = profile.enough and profile.distinct <= MAX_CATEGORICAL_INTEGERS
        return FieldRole.CATEGORICAL if few_levels else FieldRole.NUMERIC
    if ftype is FieldType.DOUBLE:
        return FieldRole.NUMERIC
    return _string_role(name, non_null, profile)


def _string_role(name: str, non_null: pd.Series, profile: _Profile) -> FieldRole:
    if profile.non_null == 0:
        return FieldRole.CATEGORICAL
    text = non_null.map(lambda v: v if isinstance(v, str) else repr(v))
    has_space = bool(text.str.contains(r"\s", regex=True).any())
    unique = profile.enough and profile.distinct_share > NEARLY_UNIQUE
    if not has_space and (unique or (_hints_identifier(name) and _key_like(profile))):
        return FieldRole.IDENTIFIER
    long_values = float(text.str.len().mean()) > FREE_TEXT_LENGTH
    varied = profile.enough and profile.distinct_share > FREE_TEXT_CARDINALITY
    if (varied and (has_space or long_values)) or (long_values and not profile.enough):
        return FieldRole.FREE_TEXT
    return FieldRole.CATEGORICAL


def _key_like(profile: _Profile) -> bool:
    """Nearly unique, or an entity key: many repeats yet high cardinality."""
    if profile.distinct_share > NEARLY_UNIQUE:
        return True
    return profile.distinct >= ENTITY_KEY_MIN_DISTINCT and profile.distinct_share >= ENTITY_KEY_SHARE


def _hints_identifier(name: str) -> bool:
    """Whether a column name reads like an identifier (``id``, ``user_id``, ``userId``, ``cc_num``...)."""
    if not name.strip():
        return True
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)  # userId -> user_Id
    tokens = [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]
    if not tokens or tokens[0].startswith("unnamed") or "number" in name.lower():
        return True
    return any(t in _ID_TOKENS for t in tokens)
