"""Serde for records: JSON, and Avro in the Confluent wire format, plus the schema stores.

Wire format of an Avro value (Confluent's, so any Schema Registry aware client can read it):
one magic byte ``0``, the schema id as a 4-byte big-endian integer, then the schemaless
Avro body. Schema ids are *content derived* (:func:`schema_id_for`), so separate processes
agree on them without a registry; a Schema Registry client can replace
:class:`InMemorySchemaStore`/:class:`FileSchemaStore` later behind :class:`SchemaStore`.

Avro field names must match ``[A-Za-z_][A-Za-z0-9_]*``, record keys need not (Adult has
``education-num``, pandas makes ``Unnamed: 0``). Policy: a :class:`RecordSchema` keeps the
original keys; only the Avro encoding uses sanitised names (:func:`avro_field_names`), each
renamed field carrying its original key in the ``"original_name"`` attribute. Encode and
decode translate, so callers always see the original keys.

Errors are :class:`SerdeError` with a stable ``reason``; messages name sizes, positions and
field names, never record values.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import tempfile
import threading
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import fastavro
import orjson

from synthstream.errors import SchemaError, SerdeError, UnknownSchemaIdError
from synthstream.schemas.record import RecordSchema

#: First byte of a Confluent-framed value.
MAGIC_BYTE = 0
#: Magic byte plus the 4-byte schema id.
HEADER_SIZE = 5
#: The Avro attribute holding a field's original record key when its Avro name differs.
ORIGINAL_NAME = "original_name"

Record = dict[str, Any]

_VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_]")


# ---------------------------------------------------------------------------------------------
# Confluent framing
# ---------------------------------------------------------------------------------------------


def frame(schema_id: int, payload: bytes) -> bytes:
    """Prefix ``payload`` with the Confluent header: magic byte 0 and the big-endian schema id."""
    if not 0 <= schema_id < 2**32:
        raise ValueError(f"schema id must fit in 4 unsigned bytes, not {schema_id}")
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def unframe(data: bytes) -> tuple[int, bytes]:
    """Split a Confluent-framed value into ``(schema_id, payload)``; ``malformed_avro`` if not framed."""
    if len(data) < HEADER_SIZE:
        raise SerdeError("malformed_avro", f"value of {len(data)} bytes is shorter than the 5-byte Confluent header")
    if data[0] != MAGIC_BYTE:
        raise SerdeError("malformed_avro", f"magic byte is {data[0]}, expected {MAGIC_BYTE}")
    return int.from_bytes(data[1:HEADER_SIZE], "big"), bytes(data[HEADER_SIZE:])


# ---------------------------------------------------------------------------------------------
# Schema ids and stores
# ---------------------------------------------------------------------------------------------


def canonical_json(schema: dict[str, Any]) -> str:
    """Return the schema as compact JSON with sorted keys: the input of :func:`schema_id_for`."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def schema_id_for(schema: dict[str, Any]) -> int:
    """Deterministic schema id: the first 31 bits of SHA-256 of the canonical JSON.

    Every process computes the same id for the same schema, without coordination.
    """
    digest = hashlib.sha256(canonical_json(schema).encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


@runtime_checkable
class SchemaStore(Protocol):
    """Where Avro writer schemas are registered and looked up by id.

    Ids are content derived (:func:`schema_id_for`); a Confluent Schema Registry client can
    implement this protocol later (it would hand out registry ids instead).
    """

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Store ``schema`` under ``subject`` (idempotent) and return its id."""
        ...

    def get(self, schema_id: int) -> dict[str, Any]:
        """Return the schema with this id (treat it as read-only); :class:`UnknownSchemaIdError` if absent."""
        ...

    def ids(self) -> list[int]:
        """Ids of every schema held, ascending."""
        ...


def _checked_schema(schema: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if not isinstance(schema, dict):
        raise SchemaError(f"an Avro schema to register must be a JSON object, not {type(schema).__name__}")
    try:
        fastavro.parse_schema(copy.deepcopy(schema))
    except Exception as exc:  # fastavro raises several types for bad schemas
        raise SchemaError(f"not a valid Avro schema: {exc}") from None
    return schema_id_for(schema), json.loads(canonical_json(schema))


def _collision(schema_id: int) -> SchemaError:
    return SchemaError(f"schema id {schema_id} already holds a different schema (SHA-256 prefix collision)")


class InMemorySchemaStore:
    """A thread-safe schema store in process memory (tests, single-process runs, caches)."""

    def __init__(self) -> None:
        self._schemas: dict[int, dict[str, Any]] = {}
        self._canonical: dict[int, str] = {}
        self._subjects: dict[str, set[int]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"InMemorySchemaStore(schemas={len(self._schemas)})"

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Store ``schema`` under ``subject`` (idempotent) and return its content-derived id."""
        schema_id, stored = _checked_schema(schema)
        text = canonical_json(stored)
        with self._lock:
            known = self._canonical.get(schema_id)
            if known is not None and known != text:
                raise _collision(schema_id)
            self._schemas.setdefault(schema_id, stored)
            self._canonical[schema_id] = text
            self._subjects.setdefault(subject, set()).add(schema_id)
        return schema_id

    def get(self, schema_id: int) -> dict[str, Any]:
        """Return the schema with this id; :class:`UnknownSchemaIdError` if absent."""
        try:
            return self._schemas[schema_id]
        except KeyError:
            raise UnknownSchemaIdError(schema_id) from None

    def ids(self) -> list[int]:
        """Ids of every schema held, ascending."""
        with self._lock:
            return sorted(self._schemas)

    def subjects(self) -> dict[str, list[int]]:
        """Subjects registered in this process and the ids under each."""
        with self._lock:
            return {s: sorted(ids) for s, ids in sorted(self._subjects.items())}


class FileSchemaStore:
    """A schema store in a directory: one ``<id>.avsc`` JSON file per schema.

    Writes are atomic (temporary file in the same directory, then :func:`os.replace`), so
    several processes can share the directory; reads are lazy and cached. Subjects are not
    persisted (ids are content derived, so they are not needed to decode).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FileSchemaStore(directory={str(self.directory)!r})"

    def _path(self, schema_id: int) -> Path:
        return self.directory / f"{schema_id}.avsc"

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Write ``schema`` (once) and return its content-derived id; ``subject`` is informational."""
        schema_id, stored = _checked_schema(schema)
        text = canonical_json(stored)
        with self._lock:
            path = self._path(schema_id)
            if path.exists():
                if canonical_json(self._load(schema_id)) != text:
                    raise _collision(schema_id)
            else:
                self._write_atomically(path, text)
            self._cache[schema_id] = stored
        return schema_id

    def get(self, schema_id: int) -> dict[str, Any]:
        """Return the schema with this id (read from disk on first use); :class:`UnknownSchemaIdError` if absent."""
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        with self._lock:
            return self._load(schema_id)

    def ids(self) -> list[int]:
        """Ids of every schema file in the directory (including those other processes wrote), ascending."""
        return sorted(int(p.stem) for p in self.directory.glob("*.avsc") if p.stem.isdigit())

    def _load(self, schema_id: int) -> dict[str, Any]:
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        try:
            text = self._path(schema_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UnknownSchemaIdError(schema_id) from None
        try:
            schema = json.loads(text)
        except json.JSONDecodeError:
            schema = None
        if not isinstance(schema, dict):
            raise SchemaError(f"schema file {self._path(schema_id).name} is not a JSON object")
        self._cache[schema_id] = schema
        return schema

    def _write_atomically(self, path: Path, text: str) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# ---------------------------------------------------------------------------------------------
# Avro names
# ---------------------------------------------------------------------------------------------


def sanitise_avro_name(name: str) -> str:
    """``name`` made into a valid Avro name: invalid characters become ``_``, a leading digit gets ``_``.

    >>> sanitise_avro_name("education-num"), sanitise_avro_name("Unnamed: 0"), sanitise_avro_name("1st")
    ('education_num', 'Unnamed__0', '_1st')
    """
    cleaned = _INVALID_CHARS.sub("_", name)
    return cleaned if _VALID_NAME.fullmatch(cleaned) else f"_{cleaned}"


def avro_field_names(names: Sequence[str]) -> list[str]:
    """Return unique valid Avro names for record keys, in order; valid keys keep their own name.

    Keys that are already valid Avro names are reserved first, so ``a_b`` stays ``a_b`` and a
    sibling ``a-b`` becomes ``a_b_2``. Deterministic for a given list of keys.

    >>> avro_field_names(["age", "education-num", "education_num", ""])
    ['age', 'education_num_2', 'education_num', '_']
    """
    taken = {n for n in names if _VALID_NAME.fullmatch(n)}
    out: list[str] = []
    for name in names:
        if _VALID_NAME.fullmatch(name):
            out.append(name)
            continue
        base = sanitise_avro_name(name)
        candidate, suffix = base, 2
        while candidate in taken:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(candidate)
        out.append(candidate)
    return out


def avro_schema(schema: RecordSchema) -> dict[str, Any]:
    """Return the Avro form of ``schema`` with sanitised field names (originals in ``"original_name"``)."""
    avro = schema.to_avro()
    fields = avro["fields"]
    for field, avro_name in zip(fields, avro_field_names([f["name"] for f in fields]), strict=True):
        if field["name"] != avro_name:
            field[ORIGINAL_NAME] = field["name"]
            field["name"] = avro_name
    if not _VALID_NAME.fullmatch(avro["name"]):
        avro["name"] = sanitise_avro_name(avro["name"])
    return avro


def original_names(avro: dict[str, Any]) -> dict[str, str]:
    """Avro field name -> record key, for the fields an Avro schema renamed."""
    return {f["name"]: f[ORIGINAL_NAME] for f in avro.get("fields", []) if ORIGINAL_NAME in f}


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


class JsonRecordSerde:
    """Records as JSON objects (orjson); datetimes become ISO-8601 strings with a timezone.

    ``decode`` only parses: it does not check the record against the schema (that is the
    validator's job), so it is also fit for records of an older or newer schema version.
    """

    _OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY

    def __init__(self, schema: RecordSchema) -> None:
        self.schema = schema

    def __repr__(self) -> str:
        return f"JsonRecordSerde(schema={self.schema.name!r})"

    def encode(self, record: Record) -> bytes:
        """Encode the record as UTF-8 JSON; :class:`SerdeError` ``encode_failed`` for values JSON cannot hold."""
        try:
            return orjson.dumps(record, option=self._OPTIONS)
        except orjson.JSONEncodeError as exc:
            raise SerdeError("encode_failed", f"record cannot be encoded as JSON ({exc})") from None

    def decode(self, data: bytes) -> Record:
        """Decode the JSON object in ``data``; reasons ``not_utf8``, ``malformed_json``, ``not_an_object``."""
        return decode_json_object(data)


def decode_json_object(data: bytes) -> Record:
    """Parse ``data`` as one JSON object; :class:`SerdeError` with a stable reason otherwise."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _json_error(data, exc) from None
    if type(value) is not dict:
        raise SerdeError("not_an_object", f"the JSON value is {_json_kind(value)}, not an object")
    return value


def _json_error(data: bytes, exc: orjson.JSONDecodeError) -> SerdeError:
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError as bad:
        return SerdeError("not_utf8", f"value of {len(data)} bytes is not valid UTF-8 (at byte {bad.start})")
    return SerdeError(
        "malformed_json", f"value of {len(data)} bytes is not valid JSON (line {exc.lineno}, column {exc.colno})"
    )


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else type(value).__name__


# ---------------------------------------------------------------------------------------------
# Avro
# ---------------------------------------------------------------------------------------------


class AvroDecoder:
    """Decodes Confluent-framed Avro records with the writer schema named by their id.

    Parsed writer schemas are cached per id. Returned dicts use original record keys
    (``"original_name"`` attributes are honoured). Reasons: ``malformed_avro``,
    ``unknown_schema_id``, ``not_an_object``.
    """

    def __init__(self, store: SchemaStore) -> None:
        self.store = store
        self._writers: dict[int, tuple[Any, dict[str, str]]] = {}

    def __repr__(self) -> str:
        return f"AvroDecoder(store={self.store!r})"

    def writer(self, schema_id: int) -> tuple[Any, dict[str, str]]:
        """Return the parsed writer schema of ``schema_id`` and its renames (cached)."""
        cached = self._writers.get(schema_id)
        if cached is None:
            raw = self.store.get(schema_id)
            try:
                parsed = fastavro.parse_schema(copy.deepcopy(raw))
            except Exception:
                raise SerdeError("malformed_avro", f"writer schema {schema_id} is not a valid Avro schema") from None
            cached = self._writers[schema_id] = (parsed, original_names(raw) if isinstance(raw, dict) else {})
        return cached

    def __call__(self, data: bytes) -> Record:
        """Decode one framed value into a dict keyed by original field names."""
        schema_id, payload = unframe(data)
        parsed, renames = self.writer(schema_id)
        buffer = io.BytesIO(payload)
        try:
            value = fastavro.schemaless_reader(buffer, parsed)
        except Exception:  # fastavro raises EOFError, StructError, IndexError, UnicodeDecodeError...
            raise SerdeError(
                "malformed_avro", f"Avro body of {len(payload)} bytes does not decode with schema {schema_id}"
            ) from None
        if buffer.tell() != len(payload):
            raise SerdeError(
                "malformed_avro",
                f"Avro body has {len(payload) - buffer.tell()} trailing bytes after a record of schema {schema_id}",
            )
        if type(value) is not dict:
            raise SerdeError("not_an_object", f"schema {schema_id} does not describe a record")
        record = typing.cast(Record, value)
        if renames:
            return {renames.get(k, k): v for k, v in record.items()}
        return record


class AvroRecordSerde:
    """Records as Confluent-framed schemaless Avro (fastavro), registered in a :class:`SchemaStore`.

    The schema's Avro form, with sanitised field names, is registered under ``subject`` on
    construction. ``encode`` takes records keyed by original names; ``decode`` returns them so.
    """

    def __init__(self, schema: RecordSchema, store: SchemaStore, subject: str) -> None:
        if not subject:
            raise ValueError("subject must be a non-empty string")
        self.schema = schema
        self.store = store
        self.subject = subject
        self.avro = avro_schema(schema)
        self._schema_id = store.register(subject, self.avro)
        self._parsed = fastavro.parse_schema(copy.deepcopy(self.avro))
        self._header = frame(self._schema_id, b"")
        renames = original_names(self.avro)
        self._to_avro = {original: avro for avro, original in renames.items()}
        self._decoder = AvroDecoder(store)

    def __repr__(self) -> str:
        return f"AvroRecordSerde(schema={self.schema.name!r}, subject={self.subject!r}, schema_id={self._schema_id})"

    @property
    def schema_id(self) -> int:
        """The id the schema's Avro form has in the store."""
        return self._schema_id

    def encode(self, record: Record) -> bytes:
        """One record as framed Avro; :class:`SerdeError` ``encode_failed`` if it does not fit the schema."""
        buffer = io.BytesIO()
        buffer.write(self._header)
        if self._to_avro:
            record = self._rename(record)
        try:
            fastavro.schemaless_writer(buffer, self._parsed, record)
        except Exception as exc:  # fastavro raises ValueError, TypeError, AttributeError...
            raise SerdeError(
                "encode_failed", f"record does not fit Avro schema {self.schema.name} ({type(exc).__name__})"
            ) from None
        return buffer.getvalue()

    def encode_many(self, records: Iterable[Record]) -> list[bytes]:
        """Encode a batch (the publisher's hot path): one buffer per record, no per-call setup."""
        writer, parsed, header = fastavro.schemaless_writer, self._parsed, self._header
        rename = self._rename if self._to_avro else None
        out: list[bytes] = []
        append = out.append
        for record in records:
            buffer = io.BytesIO()
            buffer.write(header)
            try:
                writer(buffer, parsed, rename(record) if rename else record)
            except Exception as exc:
                raise SerdeError(
                    "encode_failed",
                    f"record {len(out)} of the batch does not fit Avro schema {self.schema.name} "
                    f"({type(exc).__name__})",
                ) from None
            append(buffer.getvalue())
        return out

    def decode(self, data: bytes) -> Record:
        """Decode a framed value back to a record keyed by original names, read with its *writer* schema."""
        return self._decoder(data)

    def _rename(self, record: Record) -> Record:
        to_avro = self._to_avro
        return {to_avro.get(k, k): v for k, v in record.items()}
