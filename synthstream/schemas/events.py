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
:class:`BudgetEvent`      ``synthstream.privacy-budget``
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
    """A generator version was trained, promoted, rejected or rolled back; or a fit progressed or failed.

    ``training_progress`` events come while a fit runs (``progress`` is the fraction done,
    ``reason`` says what is happening, e.g. ``epoch 3/30``); ``training_failed`` ends a fit that
    produced no version (``reason`` says why, e.g. the privacy budget is spent). Both carry the
    version number the fit reserved.
    """

    stream: str = Field(description="Stream the model belongs to.")
    model_version: int = Field(ge=0, description="Version number in the model registry.")
    generator: str = Field(description="Generator kind, e.g. gaussian_copula or aim.")
    action: Literal[
        "trained", "promoted", "rejected", "rolled_back", "training_progress", "training_failed", "retry", "stalled"
    ] = Field(
        description="What happened: retry = the scheduler's plan after a rejection (reason says which generator "
        "and data); stalled = no version published for several fits (reason says why)."
    )
    rows: int = Field(ge=0, description="Training rows used.")
    seed: int = Field(description="Seed the model was fitted with.")
    fit_seconds: float = Field(ge=0, description="Wall-clock fitting time in seconds (so far, while training).")
    metrics: dict[str, float] = Field(default_factory=dict, description="Quality/privacy metrics by name.")
    reason: str | None = Field(
        default=None,
        description="Why it was rejected, rolled back, retried or stalled; on trained: text fields generated empty.",
    )
    progress: float | None = Field(
        default=None, ge=0, le=1, description="Fraction of the fit done (training_progress events)."
    )


class StatsQuery(BaseModel):
    """One released statistic: a query over attributes, its cells and noisy answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query: list[str] = Field(description="Attribute names the query is over (empty for the total count).")
    kind: Literal["count", "marginal", "sum"] = Field(description="Total count, a 1-/2-way marginal, a clipped sum.")
    cells: list[str] = Field(
        description="Cell labels in the order of values (2-way cells are 'a_cell|b_cell', row-major)."
    )
    values: list[float] = Field(description="Noisy answers, in cell order.")
    noise_scale: float = Field(ge=0, description="Standard deviation of the noise added to each value.")
    consistent: list[float] | None = Field(
        default=None,
        description="Marginals: the noisy answers projected onto non-negative cells that sum to the window's "
        "estimated size (post-processing, no extra cost; closer to the truth per cell, slightly biased).",
    )


class StatsEvent(Event):
    """Differentially private statistics of one event-time window, with the guarantee they carry."""

    stream: str = Field(description="Stream the statistics describe.")
    window_index: int = Field(description="Index of the window: start = index x window length since the epoch.")
    window_start: UtcDatetime = Field(description="Inclusive start of the window (UTC).")
    window_end: UtcDatetime = Field(description="Exclusive end of the window (UTC).")
    queries: list[StatsQuery] = Field(description="The released queries and answers.")
    means: dict[str, float | None] = Field(
        default_factory=dict, description="Clipped means (noisy sum / noisy count): post-processing, no extra cost."
    )
    mechanism: str = Field(description="Noise mechanism: gaussian (discrete Gaussian, zCDP) or laplace.")
    rho: float | None = Field(default=None, ge=0, description="zCDP ρ spent by this window (gaussian).")
    epsilon: float = Field(ge=0, description="ε spent by this window alone (converted at delta for gaussian).")
    delta: float = Field(ge=0, le=1, description="δ of this window's (ε, δ) statement.")
    unit: str = Field(description="Privacy unit: record, or the entity key field.")
    max_records_per_entity: int = Field(ge=1, description="Contribution bound k per unit and window.")
    w: int = Field(ge=1, description="w of w-event privacy: windows that share the budget.")
    guarantee_epsilon: float = Field(ge=0, description="ε that any w consecutive windows together satisfy.")
    guarantee_delta: float = Field(ge=0, le=1, description="δ that any w consecutive windows together satisfy.")
    records_late: int = Field(default=0, ge=0, description="Records that arrived after their window closed.")
    records_dropped_by_bounding: int = Field(
        default=0, ge=0, description="Records beyond the per-entity contribution bound in this window."
    )
    records_redelivered: int = Field(
        default=0, ge=0, description="Redelivered records of windows released before a restart (already counted)."
    )
    bootstrap: list[str] = Field(
        default_factory=list, description="Domains learned with DP in this window (e.g. quantiles:age)."
    )
    domains: dict[str, str] = Field(
        default_factory=dict,
        description="Where each attribute's cells come from: declared, dp_quantiles or dp_threshold.",
    )


class BudgetEvent(Event):
    """A DP release was refused because it would exceed its budget."""

    stream: str = Field(description="Stream whose budget is exhausted.")
    scope: str = Field(description="Budget scope, e.g. stats or model.")
    unit: str = Field(description="Privacy unit of the budget.")
    window_index: int | None = Field(default=None, description="Window whose release was refused, if windowed.")
    requested_rho: float = Field(ge=0, description="ρ the refused release needed.")
    requested_epsilon: float = Field(ge=0, description="ε the refused release needed.")
    reason: str = Field(description="Which budget term would have been exceeded, with numbers.")


class DriftEvent(Event):
    """A drift monitor's state changed for some fields in one window, and what the policy did about it.

    ``monitor`` says what moved: ``detector`` (a river change detector on a numeric field),
    ``distance`` (a window against the trailing windows of the stream), ``staleness`` (a
    window against the promoted model's training profile) or ``divergence`` (the synthetic
    feed against the real stream). Events are sent when a field starts drifting, escalates,
    clears (severity ``info``), or when a retrain held back by the cool-down is finally
    requested. ``event_id`` derives from stream, monitor, statistic, fields and the window's
    source coordinates, so the same drift in a redelivered window gets the same id.
    """

    stream: str = Field(description="Stream the fields belong to.")
    monitor: Literal["detector", "distance", "staleness", "divergence"] = Field(
        description="Which monitor observed the drift."
    )
    fields: list[str] = Field(min_length=1, description="Field names the statistic is about.")
    statistic: str = Field(description="Statistic name: psi, js, adwin, page_hinkley or kswin.")
    value: float = Field(description="Value of the statistic in this window.")
    threshold: float = Field(description="Warning threshold of the statistic (crossed upwards = drift).")
    severity: Literal["info", "warning", "critical"] = Field(
        description="warning/critical: past the warning/critical threshold; info: the drift cleared."
    )
    window_start: UtcDatetime = Field(description="Timestamp of the window's first record (UTC).")
    window_end: UtcDatetime = Field(description="Timestamp of the window's last record (UTC).")
    window_records: int = Field(ge=0, description="Records in the window.")
    model_version: int | None = Field(default=None, description="Promoted model version at the time, if any.")
    action: Literal["none", "alert", "retrain", "cooldown"] = Field(
        description="What the policy did: alert only, requested a retrain, or held one back (cool-down); "
        "none for a cleared drift."
    )


class PrivacyGuarantee(BaseModel):
    """The formal guarantee of a model, or the statement that there is none.

    A formal guarantee comes from the privacy ledger: ε and δ spent on the data the model
    was derived from, the privacy unit, and the chain of mechanisms (e.g. the windowed
    Gaussian marginals, then AIM as post-processing). Without one, ``kind`` is
    ``empirical_only`` and the audit's measured attack risks are the only protection claimed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["formal", "empirical_only"] = Field(description="formal DP, or empirical protection only.")
    epsilon: float | None = Field(default=None, ge=0, description="ε of a formal guarantee.")
    delta: float | None = Field(default=None, ge=0, le=1, description="δ of a formal guarantee.")
    unit: str | None = Field(default=None, description="Privacy unit of a formal guarantee.")
    mechanism: str | None = Field(default=None, description="Mechanism behind a formal guarantee, e.g. aim.")
    mechanisms: list[str] = Field(
        default_factory=list,
        description="The mechanism chain behind a formal guarantee, first to last (e.g. gaussian marginals, aim).",
    )
    source: str | None = Field(
        default=None, description="Where the guarantee was read from, e.g. the ledger and its release ids."
    )


class AttackRisk(BaseModel):
    """One privacy attack of an audit: its measured risk with a confidence interval, and whether it was built.

    The risk is anonymeter's residual risk (success on training records beyond success on
    the control set). ``attacks_built`` can be below ``attacks_requested`` (anonymeter could
    not generate enough singling-out queries, or the data were too small); a risk of
    ``None`` means the attack could not be built at all, and ``detail`` says why.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Attack name, e.g. singling_out_multivariate or inference:income.")
    attack: Literal["singling_out", "linkability", "inference"] = Field(description="Attack family.")
    risk: float | None = Field(default=None, ge=0, le=1, description="Point estimate of the risk; None if not built.")
    ci_low: float | None = Field(default=None, ge=0, le=1, description="Lower end of the confidence interval.")
    ci_high: float | None = Field(default=None, ge=0, le=1, description="Upper end of the confidence interval.")
    attacks_requested: int = Field(ge=0, description="Attack attempts (queries or targets) requested.")
    attacks_built: int = Field(ge=0, description="Attack attempts that could actually be built and run.")
    detail: str | None = Field(default=None, description="Caveats or why the attack was not built (never values).")


class LeakFinding(BaseModel):
    """Synthetic values of one field that repeat training data verbatim: counts only, never the values.

    ``check`` says which test found them: ``rare_value`` (a training value held by fewer than
    ``k`` training records; ``share`` is judged against the same share among real unseen
    control records, ``control_share``) or ``recognised`` (a value a PII recogniser flags,
    ``entity_type``, that is also in the training data; ``fresh_rows`` counts the recognised
    values that are *not* in training, e.g. fakes or pseudonyms, which are not leaks).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(description="Field of the synthetic sample.")
    check: Literal["rare_value", "recognised"] = Field(description="Which verbatim-leak test this counts.")
    entity_type: str | None = Field(default=None, description="Entity a recogniser saw (recognised check only).")
    rows: int = Field(ge=0, description="Synthetic rows carrying such a training value.")
    values: int = Field(ge=0, description="Distinct training values found in the synthetic sample.")
    share: float = Field(ge=0, le=1, description="rows / synthetic rows.")
    control_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The same share among real control records: the baseline of rare_value, context for recognised.",
    )
    fresh_rows: int | None = Field(
        default=None, ge=0, description="Rows with a recognised value that is not in training (not a leak)."
    )
    leak: bool = Field(description="Whether this finding fails the version.")


class PrivacyAuditEvent(Event):
    """The audit of one model version: guarantee, measured risks, quality and verdict."""

    stream: str = Field(description="Stream the model belongs to.")
    model_version: int = Field(ge=0, description="Audited model version.")
    guarantee: PrivacyGuarantee = Field(description="Formal guarantee, or empirical only.")
    risks: dict[str, float] = Field(
        description="Measured risks by name: attack point estimates and distance metrics (e.g. dcr_share)."
    )
    quality: dict[str, float] = Field(description="Quality metrics by name.")
    verdict: Literal["pass", "fail"] = Field(description="Whether the model may be promoted.")
    generator: str | None = Field(default=None, description="Generator kind of the audited version.")
    attacks: list[AttackRisk] = Field(default_factory=list, description="Every requested attack with its CI.")
    attacks_requested: int = Field(default=0, ge=0, description="Attack attempts requested over all attacks.")
    attacks_built: int = Field(default=0, ge=0, description="Attack attempts actually built over all attacks.")
    reasons: list[str] = Field(default_factory=list, description="Why the verdict is what it is (thresholds crossed).")
    training_rows: int = Field(default=0, ge=0, description="Records the version was trained on.")
    control_rows: int = Field(default=0, ge=0, description="Held-out control records the attacks were scored on.")
    synthetic_rows: int = Field(default=0, ge=0, description="Synthetic records sampled for the audit.")
    leaks: list[LeakFinding] | None = Field(
        default=None,
        description="Verbatim-leak check per field: counts of training values repeated in the synthetic sample "
        "(None: an event from before the check existed, or the check could not run).",
    )


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
    BudgetEvent,
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
