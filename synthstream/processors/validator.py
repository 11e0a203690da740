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
                     non-finite double, unparseable timestamp, or an extra field under
                     ``extra_fields="reject"``; the detail lists every violating field
==================== ===========================================================

Details name fields, expected types and received JSON types; never values.
"""

from __future__ import annotations

import math
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
#: How many extra field names a rejection detail lists.
_MAX_EXTRA_NAMES = 10


class _Invalid(Exception):  # noqa: N818 - internal signal, never escapes this module
    """A converter's signal: this value does not fit; ``problem`` says how (no value inside)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


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


def _to_long(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise _Invalid("got number (not integral)" if math.isfinite(value) else "got number (non-finite)")
    raise _wrong(value)


def _to_double(value: Any) -> float:
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise _Invalid("got number (non-finite)")
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise _Invalid("got integer (too large for a double)") from None
    if isinstance(value, float):
        return _to_double(float(value))
    raise _wrong(value)


def _to_string(value: Any) -> str:
    if type(value) is str:
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
            raise _Invalid("got string (not an ISO-8601 timestamp)") from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise _wrong(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


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
                raise RecordRejected("schema_violation", describe(obj, reject_extra)) from None
            return record

        def conform_strict(obj: dict[str, Any]) -> Record:
            record = conform(obj)
            if len(obj) > n_fields or not names.issuperset(obj):
                raise RecordRejected("schema_violation", describe(obj, reject_extra))
            return record

        return conform_strict if reject_extra else conform

    # -- the slow path: say everything that is wrong ----------------------------------------------

    def _describe(self, obj: dict[str, Any], reject_extra: bool) -> str:
        problems: list[str] = []
        for spec, (name, convert) in zip(self.schema.fields, self._fields, strict=True):
            try:
                convert(obj.get(name, _MISSING))
            except _Invalid as exc:
                problems.append(f"{name!r}: expected {_expected(spec)}, {exc.problem}")
        if reject_extra:
            extra = [k for k in obj if k not in self._names]
            if extra:
                shown = ", ".join(repr(str(k)[:64]) for k in extra[:_MAX_EXTRA_NAMES])
                more = f" and {len(extra) - _MAX_EXTRA_NAMES} more" if len(extra) > _MAX_EXTRA_NAMES else ""
                problems.append(f"{len(extra)} field(s) not in the schema: {shown}{more}")
        return f"{len(problems)} violation(s) of schema {self.schema.name}: " + "; ".join(problems)


def _expected(spec: FieldSpec) -> str:
    return f"{spec.type.value}{' or null' if spec.nullable else ''}"
