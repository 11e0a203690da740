"""Event models of synthstream's own output topics, their Avro schemas and serde.

Every event is a frozen pydantic model (unknown fields are refused) with a stable
``event_id`` (derived from what caused it, see :func:`stable_event_id`, so at-least-once
consumers can dedupe) and an ``occurred_at`` UTC timestamp. The Avro schema of each model is
derived by :func:`avro_schema_for`, so the models are the single source of the contract.

========================  ==============================
model                     default topic
========================  ==============================
:class:`DeadLetterEvent`  ``synthstream.deadletter``
:class:`ModelLifecycleEvent`  ``synthstream.models``
:class:`StatsEvent`       ``<stream>.stats``
:class:`DriftEvent`       ``synthstream.drift``
:class:`PrivacyAuditEvent`  ``synthstream.privacy-audit``
:class:`PiiFindingsEvent`  ``synthstream.pii-findings``
========================  ==============================
"""

from __future__ import annotations

import copy
import hashlib
import io
import types
import typing
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

import fastavro
import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from synthstream.errors import SchemaError, SerdeError
from synthstream.schemas.serde import SchemaStore, decode_json_object, frame, unframe

#: Namespace of the Avro records derived from event models.
EVENT_NAMESPACE = "synthstream.events"


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: A datetime normalised to UTC (naive values are taken as UTC), as Avro ``timestamp-micros`` keeps it.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def stable_event_id(*parts: object) -> str:
    """Return a 32-hex-digit id derived from ``parts`` (e.g. source topic, partition, offset).

    The same parts give the same id in every process, so a redelivered record produces an
    event that consumers recognise as a duplicate.

    >>> stable_event_id("payments", 0, 42) == stable_event_id("payments", 0, 42)
    True
    """
    if not parts:
        raise ValueError("stable_event_id needs at least one part")
    canonical = orjson.dumps([str(p) for p in parts])
    return hashlib.sha256(canonical).hexdigest()[:32]


class Event(BaseModel):
    """Fields every output event carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, description="Stable id derived from the event's cause; consumers dedupe on it.")
    occurred_at: UtcDatetime = Field(description="When the event happened (UTC).")


class DeadLetterEvent(Event):
    """A record that could not be processed: its coordinates and why (never its value)."""

    source_topic: str = Field(description="Topic the record was consumed from.")
    partition: int = Field(ge=0, description="Partition of the record in the source topic.")
    offset: int = Field(ge=0, description="Offset of the record in its partition.")
    reason: str = Field(description="Stable reason code, e.g. malformed_json or schema_violation.")
    detail: str = Field(description="Field names and types involved; never record values.")
    payload_bytes: int = Field(ge=0, description="Size of the rejected value in bytes.")
    stage: str = Field(description="Pipeline stage that rejected the record, e.g. validate or redact.")


class ModelLifecycleEvent(Event):
    """A generator version was trained, promoted, rejected or rolled back."""

    stream: str = Field(description="Stream the model belongs to.")
    model_version: int = Field(ge=0, description="Version number in the model registry.")
    generator: str = Field(description="Generator kind, e.g. gaussian_copula or aim.")
    action: Literal["trained", "promoted", "rejected", "rolled_back"] = Field(description="What happened.")
    rows: int = Field(ge=0, description="Training rows used.")
    seed: int = Field(description="Seed the model was fitted with.")
    fit_seconds: float = Field(ge=0, description="Wall-clock fitting time in seconds.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Quality/privacy metrics by name.")
    reason: str | None = Field(default=None, description="Why it was rejected or rolled back, if it was.")


class StatsQuery(BaseModel):
    """One released statistic: a (marginal) query over attributes and its noisy answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query: list[str] = Field(description="Attribute names the query is over (one = a 1-way marginal).")
    values: list[float] = Field(description="Noisy answers, in the query's cell order.")
    noise_scale: float = Field(ge=0, description="Standard deviation (Gaussian) or scale (Laplace) of the noise.")


class StatsEvent(Event):
    """Differentially private statistics of one window."""

    stream: str = Field(description="Stream the statistics describe.")
    window_start: UtcDatetime = Field(description="Inclusive start of the window (UTC).")
    window_end: UtcDatetime = Field(description="Exclusive end of the window (UTC).")
    queries: list[StatsQuery] = Field(description="The released queries and answers.")
    mechanism: str = Field(description="Noise mechanism, e.g. gaussian or laplace.")
    epsilon: float = Field(ge=0, description="Privacy loss ε spent by this release.")
    delta: float = Field(ge=0, le=1, description="δ of this release (0 for pure DP).")
    unit: str = Field(description="Privacy unit: record, or the entity key field.")
    w: int = Field(ge=1, description="w of w-event privacy: windows that share the budget.")


class DriftEvent(Event):
    """A field's distribution moved away from what the current model was trained on."""

    stream: str = Field(description="Stream the field belongs to.")
    field: str = Field(description="Field name that drifted.")
    detector: str = Field(description="Detector that fired, e.g. psi, ks or adwin.")
    statistic: float = Field(description="Value of the detector's statistic.")
    threshold: float = Field(description="Threshold the statistic crossed.")
    severity: Literal["info", "warning", "critical"] = Field(description="How far past the threshold.")
    model_version: int | None = Field(default=None, description="Model made stale by the drift, if any.")


class PrivacyGuarantee(BaseModel):
    """The formal guarantee of a model, or the statement that there is none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["formal", "empirical_only"] = Field(description="formal DP, or empirical protection only.")
    epsilon: float | None = Field(default=None, ge=0, description="ε of a formal guarantee.")
    delta: float | None = Field(default=None, ge=0, le=1, description="δ of a formal guarantee.")
    unit: str | None = Field(default=None, description="Privacy unit of a formal guarantee.")
    mechanism: str | None = Field(default=None, description="Mechanism behind a formal guarantee, e.g. aim.")


class PrivacyAuditEvent(Event):
    """The audit of one model version: guarantee, measured risks, quality and verdict."""

    stream: str = Field(description="Stream the model belongs to.")
    model_version: int = Field(ge=0, description="Audited model version.")
    guarantee: PrivacyGuarantee = Field(description="Formal guarantee, or empirical only.")
    risks: dict[str, float] = Field(description="Measured attack risks by name, e.g. singling_out.")
    quality: dict[str, float] = Field(description="Quality metrics by name.")
    verdict: Literal["pass", "fail"] = Field(description="Whether the model may be promoted.")


class PiiFinding(BaseModel):
    """How many values of one entity type were found in one field (never the values)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(description="Field name.")
    entity_type: str = Field(description="Entity type, e.g. EMAIL_ADDRESS or PERSON.")
    operator: str = Field(description="Redaction operator applied, e.g. mask or pseudonym.")
    count: int = Field(ge=0, description="Number of findings in the window.")


class PiiFindingsEvent(Event):
    """Counts of PII found per field and entity type in one window."""

    stream: str = Field(description="Stream the findings come from.")
    window_start: UtcDatetime = Field(description="Inclusive start of the window (UTC).")
    window_end: UtcDatetime = Field(description="Exclusive end of the window (UTC).")
    findings: list[PiiFinding] = Field(description="Counts per field and entity type.")


#: Every event model, for contract tests and topic wiring.
EVENT_MODELS: tuple[type[Event], ...] = (
    DeadLetterEvent,
    ModelLifecycleEvent,
    StatsEvent,
    DriftEvent,
    PrivacyAuditEvent,
    PiiFindingsEvent,
)


# ---------------------------------------------------------------------------------------------
# pydantic -> Avro
# ---------------------------------------------------------------------------------------------

_PRIMITIVES: dict[Any, Any] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
    datetime: {"type": "long", "logicalType": "timestamp-micros"},
}


class _AvroBuilder:
    """Converts one model tree, keeping record and enum names unique within the schema."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.defined: dict[type[BaseModel], str] = {}
        self.names: set[str] = set()

    def unique(self, name: str) -> str:
        candidate, n = name, 2
        while candidate in self.names:
            candidate, n = f"{name}{n}", n + 1
        self.names.add(candidate)
        return candidate

    def record(self, model: type[BaseModel]) -> Any:
        if model in self.defined:
            return self.defined[model]
        name = self.unique(model.__name__)
        self.defined[model] = f"{self.namespace}.{name}"
        fields = [self.field(model, fname, info) for fname, info in model.model_fields.items()]
        schema: dict[str, Any] = {"type": "record", "name": name, "namespace": self.namespace, "fields": fields}
        if model.__doc__:
            schema["doc"] = " ".join(model.__doc__.split())
        return schema

    def field(self, model: type[BaseModel], name: str, info: Any) -> dict[str, Any]:
        avro_type = self.type_of(info.annotation, f"{model.__name__}{_camel(name)}")
        out: dict[str, Any] = {"name": name, "type": avro_type}
        if isinstance(avro_type, list) and avro_type[0] == "null" and not info.is_required():
            out["default"] = None
        if info.description:
            out["doc"] = info.description
        return out

    def type_of(self, annotation: Any, context: str) -> Any:
        origin = get_origin(annotation)
        if origin is Annotated:
            return self.type_of(get_args(annotation)[0], context)
        if annotation in _PRIMITIVES:
            return copy.deepcopy(_PRIMITIVES[annotation])
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.record(annotation)
        if origin is Literal:
            return self.enum(get_args(annotation), context)
        if origin in (Union, types.UnionType):
            return self.union(get_args(annotation), context)
        if origin is list:
            (item,) = get_args(annotation)
            return {"type": "array", "items": self.type_of(item, context + "Item")}
        if origin is dict:
            key, value = get_args(annotation)
            if key is not str:
                raise SchemaError(f"{context}: Avro maps need str keys, not {key!r}")
            return {"type": "map", "values": self.type_of(value, context + "Value")}
        raise SchemaError(f"{context}: no Avro type for annotation {annotation!r}")

    def enum(self, symbols: tuple[Any, ...], context: str) -> dict[str, Any]:
        if not all(isinstance(s, str) for s in symbols):
            raise SchemaError(f"{context}: only Literal[str, ...] converts to an Avro enum")
        return {"type": "enum", "name": self.unique(context), "namespace": self.namespace, "symbols": list(symbols)}

    def union(self, members: tuple[Any, ...], context: str) -> list[Any]:
        non_null = [m for m in members if m is not type(None)]
        branches = [self.type_of(m, context) for m in non_null]
        return ["null", *branches] if len(non_null) < len(members) else branches


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def avro_schema_for(model: type[BaseModel], *, namespace: str = EVENT_NAMESPACE) -> dict[str, Any]:
    """Return the Avro record schema of a pydantic model.

    ``str``/``int``/``float``/``bool``/``bytes`` -> string/long/double/boolean/bytes;
    ``datetime`` -> long with logicalType ``timestamp-micros``; ``X | None`` -> ``["null", X]``
    (default null when the field has a default); ``list[X]`` -> array; ``dict[str, X]`` -> map;
    nested models -> records (defined once, then referenced by full name);
    ``Literal["a", "b"]`` -> an enum named after model and field. Field descriptions become
    ``doc``. Anything else raises :class:`SchemaError`.
    """
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"avro_schema_for needs a pydantic model class, not {model!r}")
    schema = _AvroBuilder(namespace).record(model)
    return typing.cast(dict[str, Any], schema)


# ---------------------------------------------------------------------------------------------
# Serde
# ---------------------------------------------------------------------------------------------

E = TypeVar("E", bound=BaseModel)


def _validation_detail(model: type[BaseModel], exc: ValidationError) -> str:
    """Where and why validation failed, without the offending input values."""
    problems = [f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['type']}" for err in exc.errors()]
    return f"not a valid {model.__name__}: " + "; ".join(problems)


class EventSerde(Generic[E]):
    """Events of one model as Confluent-framed Avro (registered in a store) or as JSON.

    ``decode`` reads with the writer schema named by the frame and resolves it to this
    model's schema, so older writers stay readable. Errors are :class:`SerdeError`:
    ``malformed_avro``, ``unknown_schema_id``, ``malformed_json``, ``not_an_object``, ``schema_violation``.
    """

    def __init__(self, model: type[E], store: SchemaStore, *, subject: str | None = None) -> None:
        self.model = model
        self.store = store
        self.avro = avro_schema_for(model)
        self.subject = subject or f"{self.avro['namespace']}.{self.avro['name']}-value"
        self.schema_id = store.register(self.subject, self.avro)
        self._parsed = fastavro.parse_schema(copy.deepcopy(self.avro))
        self._writers: dict[int, Any] = {self.schema_id: self._parsed}

    def __repr__(self) -> str:
        return f"EventSerde(model={self.model.__name__}, schema_id={self.schema_id})"

    def encode(self, event: E) -> bytes:
        """Encode the event as framed Avro."""
        self._check_type(event)
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, self._parsed, event.model_dump())
        return frame(self.schema_id, buffer.getvalue())

    def decode(self, data: bytes) -> E:
        """Decode a framed Avro value back to the event."""
        schema_id, payload = unframe(data)
        writer = self._writer(schema_id)
        reader = None if schema_id == self.schema_id else self._parsed
        try:
            value = fastavro.schemaless_reader(io.BytesIO(payload), writer, reader)
        except Exception:  # fastavro raises EOFError, StructError, SchemaResolutionError...
            raise SerdeError(
                "malformed_avro", f"{len(payload)} bytes do not decode as {self.model.__name__} (schema {schema_id})"
            ) from None
        return self._validate(value)

    def encode_json(self, event: E) -> bytes:
        """Encode the event as a JSON object (timestamps as ISO-8601 strings)."""
        self._check_type(event)
        return event.model_dump_json().encode()

    def decode_json(self, data: bytes) -> E:
        """Decode a JSON object back to the event."""
        return self._validate(decode_json_object(data))

    def _writer(self, schema_id: int) -> Any:
        parsed = self._writers.get(schema_id)
        if parsed is None:
            parsed = self._writers[schema_id] = fastavro.parse_schema(copy.deepcopy(self.store.get(schema_id)))
        return parsed

    def _validate(self, value: Any) -> E:
        if not isinstance(value, dict):
            raise SerdeError("not_an_object", f"the value is not a {self.model.__name__} object")
        try:
            return self.model.model_validate(value)
        except ValidationError as exc:
            raise SerdeError("schema_violation", _validation_detail(self.model, exc)) from None

    def _check_type(self, event: object) -> None:
        if not isinstance(event, self.model):
            raise TypeError(f"{self!r} encodes {self.model.__name__}, not {type(event).__name__}")
