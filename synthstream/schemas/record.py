"""The record schema: the wire contract of a stream's records.

A :class:`RecordSchema` lists the fields of a source stream with their physical type
(what crosses the wire), nullability and semantic role (how generators, redaction and
statistics treat the field). It converts to and from an Avro schema so any Kafka client
can read what synthstream publishes.

Canonical in-memory values, used by every processor and generator:
``boolean`` -> ``bool``, ``long`` -> ``int``, ``double`` -> ``float``, ``string`` -> ``str``,
``timestamp`` -> timezone-aware UTC ``datetime``; a null is ``None``.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthstream.errors import SchemaError


class FieldType(StrEnum):
    """Physical type of a field on the wire."""

    BOOLEAN = "boolean"
    LONG = "long"
    DOUBLE = "double"
    STRING = "string"
    TIMESTAMP = "timestamp"


class FieldRole(StrEnum):
    """Semantic role of a field: decides how it is modelled and protected."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    DATETIME = "datetime"
    IDENTIFIER = "identifier"
    FREE_TEXT = "free_text"


_AVRO_PRIMITIVE: dict[FieldType, Any] = {
    FieldType.BOOLEAN: "boolean",
    FieldType.LONG: "long",
    FieldType.DOUBLE: "double",
    FieldType.STRING: "string",
    FieldType.TIMESTAMP: {"type": "long", "logicalType": "timestamp-micros"},
}


class FieldSpec(BaseModel):
    """One field of a record schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Field name as it appears in records.")
    type: FieldType = Field(description="Physical type on the wire.")
    role: FieldRole = Field(description="Semantic role used by generators and redaction.")
    nullable: bool = Field(default=False, description="Whether null/missing is allowed.")
    doc: str | None = Field(default=None, description="Free-form description.")

    @property
    def continuous(self) -> bool:
        """A number or timestamp with a numeric or datetime role: measured as a number, not as categories."""
        return self.role in (FieldRole.NUMERIC, FieldRole.DATETIME) and self.type in (
            FieldType.LONG,
            FieldType.DOUBLE,
            FieldType.TIMESTAMP,
        )

    def to_avro(self) -> dict[str, Any]:
        """Return this field as an Avro record field (role kept as a custom attribute)."""
        avro_type: Any = _AVRO_PRIMITIVE[self.type]
        field: dict[str, Any] = {"name": self.name}
        if self.nullable:
            field["type"] = ["null", avro_type]
            field["default"] = None
        else:
            field["type"] = avro_type
        field["role"] = self.role.value
        if self.doc:
            field["doc"] = self.doc
        return field


class RecordSchema(BaseModel):
    """Ordered fields of a stream's records, convertible to an Avro record schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="Record", description="Avro record name.")
    namespace: str = Field(default="synthstream.records", description="Avro namespace.")
    fields: tuple[FieldSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> RecordSchema:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate field names: {dupes}")
        return self

    @property
    def field_names(self) -> list[str]:
        """Field names in schema order."""
        return [f.name for f in self.fields]

    def field(self, name: str) -> FieldSpec:
        """Return the field called ``name``; :class:`SchemaError` if absent."""
        for f in self.fields:
            if f.name == name:
                return f
        raise SchemaError(f"no field named {name!r}; fields are {self.field_names}")

    def with_roles(self, roles: dict[str, FieldRole]) -> RecordSchema:
        """Return a copy with some field roles overridden (e.g. from configuration)."""
        unknown = sorted(set(roles) - set(self.field_names))
        if unknown:
            raise SchemaError(f"role overrides name unknown fields {unknown}; fields are {self.field_names}")
        fields = tuple(f.model_copy(update={"role": roles[f.name]}) if f.name in roles else f for f in self.fields)
        return self.model_copy(update={"fields": fields})

    def to_avro(self) -> dict[str, Any]:
        """Return the Avro record schema (a JSON-compatible dict)."""
        return {
            "type": "record",
            "name": self.name,
            "namespace": self.namespace,
            "fields": [f.to_avro() for f in self.fields],
        }

    @classmethod
    def from_avro(cls, avro: dict[str, Any]) -> RecordSchema:
        """Build a schema from an Avro record schema written by :meth:`to_avro` or by hand.

        Fields without a ``role`` attribute get the role implied by their type.
        """
        if avro.get("type") != "record" or not isinstance(avro.get("fields"), list):
            raise SchemaError("an Avro record schema needs type 'record' and a list of fields")
        fields: list[FieldSpec] = []
        problems: list[str] = []
        for raw in avro["fields"]:
            name = raw.get("name", "?")
            avro_type = raw.get("type")
            nullable = False
            if isinstance(avro_type, list):
                non_null = [t for t in avro_type if t != "null"]
                nullable = len(non_null) < len(avro_type)
                if len(non_null) != 1:
                    problems.append(f"field {name!r}: only unions of null and one type are supported")
                    continue
                avro_type = non_null[0]
            ftype = _field_type_from_avro(avro_type)
            if ftype is None:
                problems.append(f"field {name!r}: unsupported Avro type {json.dumps(avro_type)}")
                continue
            role = raw.get("role") or _default_role(ftype)
            try:
                fields.append(
                    FieldSpec(name=name, type=ftype, role=FieldRole(role), nullable=nullable, doc=raw.get("doc"))
                )
            except ValueError as exc:
                problems.append(f"field {name!r}: {exc}")
        if problems:
            raise SchemaError("invalid Avro schema: " + "; ".join(problems))
        return cls(
            name=avro.get("name", "Record"),
            namespace=avro.get("namespace", "synthstream.records"),
            fields=tuple(fields),
        )

    def fingerprint(self) -> str:
        """Stable SHA-256 of the Avro form: identifies a schema version."""
        canonical = json.dumps(self.to_avro(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _field_type_from_avro(avro_type: Any) -> FieldType | None:
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") in {"timestamp-micros", "timestamp-millis"}:
            return FieldType.TIMESTAMP
        avro_type = avro_type.get("type")
    mapping = {
        "boolean": FieldType.BOOLEAN,
        "int": FieldType.LONG,
        "long": FieldType.LONG,
        "float": FieldType.DOUBLE,
        "double": FieldType.DOUBLE,
        "string": FieldType.STRING,
    }
    return mapping.get(avro_type) if isinstance(avro_type, str) else None


def _default_role(ftype: FieldType) -> FieldRole:
    return {
        FieldType.BOOLEAN: FieldRole.CATEGORICAL,
        FieldType.LONG: FieldRole.NUMERIC,
        FieldType.DOUBLE: FieldRole.NUMERIC,
        FieldType.STRING: FieldRole.CATEGORICAL,
        FieldType.TIMESTAMP: FieldRole.DATETIME,
    }[ftype]
