"""Validate raw topic values against a record schema and return canonical records.

:class:`RecordValidator` is the first processor of the ingest path: bytes in, a canonical
record out (exactly the schema's fields, in order, with canonical Python values), or a
:class:`~synthstream.errors.RecordRejected` signal whose ``reason`` is a stable code for the
dead-letter topic:

==================== ===========================================================
reason               when
==================== ===========================================================
``empty_value``      a tombstone (``None``) or zero bytes
``oversized``        more than ``max_record_bytes`` (checked before any parsing)
``not_utf8``         JSON that is not UTF-8
``malformed_json``   not parseable JSON
``not_an_object``    JSON (or Avro) that is not an object/record
``malformed_avro``   a bad Confluent frame or Avro body
``unknown_schema_id`` a frame naming a schema id the store does not hold
``schema_violation`` missing required field, null in a non-nullable field, wrong type,
                     unparseable timestamp, or an extra field under
                     ``extra_fields="reject"``; the detail lists every violating field
``value_out_of_range`` the type is right but the value cannot be encoded: a ``long``
                     outside the signed 64-bit range, a non-finite ``double`` (NaN,
                     Infinity), a timestamp outside years 1-9999 once converted to UTC
``unencodable_string`` a string that is not valid Unicode text (a lone surrogate):
                     UTF-8, Avro and HMAC cannot take it
==================== ===========================================================

A record with both kinds of problem is a ``schema_violation``. The range guards exist because
such a value passed the type check before and crashed the process at encode time, on every
restart (a poison pill); now it is dead-lettered like any other bad record.

Details name fields, expected types, received JSON types and the rule broken; never values,
and never the names of keys the schema does not know (a key can itself be personal data,
e.g. an e-mail address used as a key): those are only counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from synthstream.errors import RecordRejected, SerdeError
from synthstream.schemas.record import FieldSpec, FieldType, RecordSchema
from synthstream.schemas.serde import AvroDecoder, InMemorySchemaStore, SchemaStore, decode_json_object

SourceFormat = Literal["auto", "json", "avro"]
ExtraFields = Literal["drop", "reject"]
SOURCE_FORMATS: tuple[SourceFormat, ...] = ("auto", "json", "avro")
EXTRA_FIELD_POLICIES: tuple[ExtraFields, ...] = ("drop", "reject")

Record = dict[str, Any]
Converter = Callable[[Any], Any]

#: Stand-in for a field absent from the record.
_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()
#: The signed 64-bit range of an Avro ``long``: a value outside it cannot be encoded.
LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1
#: Reason codes of the range guards (see the module docstring).
OUT_OF_RANGE = "value_out_of_range"
UNENCODABLE_STRING = "unencodable_string"
SCHEMA_VIOLATION = "schema_violation"
#: An ISO-8601 expanded year (``10000-01-01``, ``+12345-...``, ``-0001-...``): outside datetime's range.
_EXPANDED_YEAR = re.compile(r"\s*([+-]\d{4,}|\d{5,})-")


class _Invalid(Exception):  # noqa: N818 - internal signal, never escapes this module
    """A converter's signal: this value does not fit; ``problem`` says how (no value inside).

    ``reason`` is the dead-letter reason the problem maps to: a wrong type is a
    ``schema_violation``, a right type with an unencodable value is a range reason.
    """

    def __init__(self, problem: str, reason: str = SCHEMA_VIOLATION) -> None:
        self.problem = problem
        self.reason = reason


@dataclass
class ValidationResult:
    """Outcome of :meth:`RecordValidator.process`: positions in the batch with records or rejections."""

    valid: list[tuple[int, Record]] = field(default_factory=list)
    rejected: list[tuple[int, RecordRejected]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Per-type converters (value -> canonical value, or _Invalid)
# ---------------------------------------------------------------------------------------------


def json_type_name(value: Any) -> str:
    """Return the JSON type name of a decoded value (``datetime`` from Avro reads as ``timestamp``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, datetime):
        return "timestamp"
    return type(value).__name__


def _wrong(value: Any) -> _Invalid:
    return _Invalid(f"got {json_type_name(value)}")


def _long_range() -> _Invalid:
    return _Invalid("got integer outside the 64-bit range [-2^63, 2^63-1]", OUT_OF_RANGE)


def _to_long(value: Any) -> int:
    if type(value) is int:
        if LONG_MIN <= value <= LONG_MAX:
            return value
        raise _long_range()
    if isinstance(value, int) and not isinstance(value, bool):
        return _to_long(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid("got number (non-finite)", OUT_OF_RANGE)
        if not value.is_integer():
            raise _Invalid("got number (not integral)")
        # JSON parsers hand integers beyond the 64-bit range over as floats, rounded: -2^63-1
        # arrives as the float -2^63. A float at or beyond 2^63 in size is therefore refused,
        # never silently rounded into range.
        if abs(value) >= 2.0**63:
            raise _long_range()
        return int(value)
    raise _wrong(value)


def _to_double(value: Any) -> float:
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise _Invalid("got number (non-finite: NaN or Infinity)", OUT_OF_RANGE)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise _Invalid("got integer (too large for a double)", OUT_OF_RANGE) from None
    if isinstance(value, float):
        return _to_double(float(value))
    raise _wrong(value)


def _to_string(value: Any) -> str:
    if type(value) is str:
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Invalid("got string that is not valid Unicode text (lone surrogate)", UNENCODABLE_STRING) from None
        return value
    raise _wrong(value)


def _to_boolean(value: Any) -> bool:
    if value is True or value is False:
        return value
    raise _wrong(value)


def _to_timestamp(value: Any) -> datetime:
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            if _EXPANDED_YEAR.match(value):
                raise _Invalid("got timestamp outside years 1-9999", OUT_OF_RANGE) from None
            raise _Invalid("got string (not an ISO-8601 timestamp)") from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise _wrong(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is UTC:
        return parsed
    try:
        # 0001-01-01T00:00:00+14:00 is a valid ISO string whose UTC instant is before year 1.
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _Invalid("got timestamp outside years 1-9999 once converted to UTC", OUT_OF_RANGE) from None


_BY_TYPE: dict[FieldType, Converter] = {
    FieldType.LONG: _to_long,
    FieldType.DOUBLE: _to_double,
    FieldType.STRING: _to_string,
    FieldType.BOOLEAN: _to_boolean,
    FieldType.TIMESTAMP: _to_timestamp,
}


def field_converter(spec: FieldSpec) -> Converter:
    """Build the converter of one field, specialised once for its type and nullability.

    It takes the raw value (or the missing marker) and returns the canonical value.
    """
    convert = _BY_TYPE[spec.type]
    if spec.nullable:

        def nullable(value: Any) -> Any:
            if value is None or value is _MISSING:
                return None
            return convert(value)

        return nullable

    def required(value: Any) -> Any:
        if value is None:
            raise _Invalid("got null (not nullable)")
        if value is _MISSING:
            raise _Invalid("but the field is missing")
        return convert(value)

    return required


# ---------------------------------------------------------------------------------------------
# The validator
# ---------------------------------------------------------------------------------------------


class RecordValidator:
    """Turns raw values into canonical records of ``schema`` or raises :class:`RecordRejected`.

    ``source_format``: ``"json"``, ``"avro"`` (Confluent framed, writer schema from ``store``) or
    ``"auto"`` (Avro when the first byte is 0x00, else JSON). ``extra_fields``: ``"drop"``
    ignores keys the schema lacks, ``"reject"`` treats them as a violation. Everything is
    resolved in ``__init__``; the per-record path has no configuration branches.

    Coercions: ``long`` accepts integers (not booleans) and integral numbers; ``double``
    accepts integers and finite numbers; ``timestamp`` accepts ISO-8601 strings (naive = UTC)
    and datetimes; ``boolean`` only booleans; ``string`` only strings.
    """

    def __init__(
        self,
        schema: RecordSchema,
        *,
        source_format: SourceFormat = "auto",
        store: SchemaStore | None = None,
        max_record_bytes: int = 1_048_576,
        extra_fields: ExtraFields = "drop",
    ) -> None:
        if not isinstance(schema, RecordSchema):
            raise TypeError(f"schema must be a RecordSchema, not {type(schema).__name__}")
        if source_format not in SOURCE_FORMATS:
            raise ValueError(f"unknown source_format {source_format!r}; choose one of {list(SOURCE_FORMATS)}")
        if extra_fields not in EXTRA_FIELD_POLICIES:
            raise ValueError(f"unknown extra_fields {extra_fields!r}; choose one of {list(EXTRA_FIELD_POLICIES)}")
        if isinstance(max_record_bytes, bool) or not isinstance(max_record_bytes, int) or max_record_bytes < 1:
            raise ValueError(f"max_record_bytes must be a positive integer, not {max_record_bytes!r}")
        if source_format == "avro" and store is None:
            raise ValueError("source_format='avro' needs a schema store to look writer schemas up")
        self.schema = schema
        self.source_format = source_format
        self.store = store
        self.max_record_bytes = max_record_bytes
        self.extra_fields = extra_fields
        self._fields: tuple[tuple[str, Converter], ...] = tuple((f.name, field_converter(f)) for f in schema.fields)
        self._names = frozenset(schema.field_names)
        self._decode = self._build_decoder(source_format, store)
        self._conform = self._build_conformer(extra_fields)

    def __repr__(self) -> str:
        return (
            f"RecordValidator(schema={self.schema.name!r}, source_format={self.source_format!r}, "
            f"max_record_bytes={self.max_record_bytes}, extra_fields={self.extra_fields!r})"
        )

    def __call__(self, value: bytes | None) -> Record:
        """Return the canonical record in ``value``; raise :class:`RecordRejected` with a stable reason."""
        if not value:
            raise RecordRejected("empty_value", "the value is empty (a tombstone or zero bytes)")
        if len(value) > self.max_record_bytes:
            raise RecordRejected(
                "oversized", f"value of {len(value)} bytes exceeds max_record_bytes={self.max_record_bytes}"
            )
        try:
            obj = self._decode(value)
        except SerdeError as exc:
            raise RecordRejected(exc.reason, exc.detail) from None
        return self._conform(obj)

    def process(self, values: Sequence[bytes | None]) -> ValidationResult:
        """Validate a micro-batch; each outcome keeps its position in ``values``."""
        result = ValidationResult()
        valid, rejected = result.valid.append, result.rejected.append
        for i, value in enumerate(values):
            try:
                valid((i, self(value)))
            except RecordRejected as exc:
                rejected((i, exc))
        return result

    # -- construction helpers -------------------------------------------------------------------

    @staticmethod
    def _build_decoder(source_format: SourceFormat, store: SchemaStore | None) -> Callable[[bytes], Any]:
        avro = AvroDecoder(store if store is not None else InMemorySchemaStore())
        if source_format == "json":
            return decode_json_object
        if source_format == "avro":
            return avro

        def auto(value: bytes) -> Any:
            return avro(value) if value[0] == 0 else decode_json_object(value)

        return auto

    def _build_conformer(self, extra_fields: ExtraFields) -> Callable[[Any], Record]:
        fields, names, describe = self._fields, self._names, self._describe
        reject_extra = extra_fields == "reject"
        n_fields = len(fields)

        def conform(obj: dict[str, Any]) -> Record:
            get = obj.get
            try:
                record = {name: convert(get(name, _MISSING)) for name, convert in fields}
            except _Invalid:
                raise describe(obj, reject_extra) from None
            return record

        def conform_strict(obj: dict[str, Any]) -> Record:
            record = conform(obj)
            if len(obj) > n_fields or not names.issuperset(obj):
                raise describe(obj, reject_extra)
            return record

        return conform_strict if reject_extra else conform

    # -- the slow path: say everything that is wrong ----------------------------------------------

    def _describe(self, obj: dict[str, Any], reject_extra: bool) -> RecordRejected:
        """The rejection of ``obj``: every violating field named, the reason from the worst problem.

        Only schema field names appear; keys the schema does not know are counted, never named.
        """
        problems: list[str] = []
        reasons: set[str] = set()
        for spec, (name, convert) in zip(self.schema.fields, self._fields, strict=True):
            try:
                convert(obj.get(name, _MISSING))
            except _Invalid as exc:
                problems.append(f"{name!r}: expected {_expected(spec)}, {exc.problem}")
                reasons.add(exc.reason)
        if reject_extra:
            extra = sum(1 for k in obj if k not in self._names)
            if extra:
                problems.append(f"{extra} field(s) not in the schema (names withheld: a key can hold personal data)")
                reasons.add(SCHEMA_VIOLATION)
        reason = SCHEMA_VIOLATION if SCHEMA_VIOLATION in reasons or len(reasons) != 1 else reasons.pop()
        detail = f"{len(problems)} violation(s) of schema {self.schema.name}: " + "; ".join(problems)
        return RecordRejected(reason, detail)


def _expected(spec: FieldSpec) -> str:
    return f"{spec.type.value}{' or null' if spec.nullable else ''}"
