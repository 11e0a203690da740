"""Framing, schema stores, record serde (JSON, Avro) and event models, on real Adult/transaction rows."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import fastavro
import orjson
import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.errors import SchemaError, SerdeError, UnknownSchemaIdError
from synthstream.schemas.events import (
    EVENT_MODELS,
    BudgetEvent,
    DeadLetterEvent,
    DriftEvent,
    EventSerde,
    ModelLifecycleEvent,
    PiiFinding,
    PiiFindingsEvent,
    PrivacyAuditEvent,
    PrivacyGuarantee,
    StatsEvent,
    StatsQuery,
    avro_schema_for,
    stable_event_id,
)
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from synthstream.schemas.serde import (
    AvroRecordSerde,
    FileSchemaStore,
    InMemorySchemaStore,
    JsonRecordSerde,
    SchemaStore,
    avro_field_names,
    avro_schema,
    frame,
    schema_id_for,
    unframe,
)
from tests.helpers import ADULT_CSV, TRANSACTIONS_CSV

NOW = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def adult_frame() -> pd.DataFrame:
    return read_table(ADULT_CSV, nrows=5_000)


@pytest.fixture(scope="module")
def adult_schema(adult_frame: pd.DataFrame) -> RecordSchema:
    return infer_schema(adult_frame, name="Adult")


@pytest.fixture(scope="module")
def adult_records(adult_frame: pd.DataFrame, adult_schema: RecordSchema) -> list[dict]:
    return records_from_frame(adult_frame, adult_schema)


@pytest.fixture(scope="module")
def tx() -> tuple[RecordSchema, list[dict]]:
    frame_ = read_table(TRANSACTIONS_CSV, nrows=300)
    schema = infer_schema(frame_, name="Transactions")
    return schema, records_from_frame(frame_, schema)


# -- framing -------------------------------------------------------------------------------------


def test_frame_and_unframe() -> None:
    framed = frame(258, b"payload")
    assert framed == b"\x00\x00\x00\x01\x02payload"
    assert unframe(framed) == (258, b"payload")
    assert unframe(frame(0, b"")) == (0, b"")
    with pytest.raises(SerdeError) as short:
        unframe(b"\x00\x00\x01")
    assert short.value.reason == "malformed_avro"
    with pytest.raises(SerdeError) as magic:
        unframe(b"\x01\x00\x00\x00\x01xx")
    assert magic.value.reason == "malformed_avro"
    with pytest.raises(ValueError, match="4 unsigned bytes"):
        frame(2**32, b"")


# -- stores ----------------------------------------------------------------------------------------


def test_schema_ids_are_content_derived(adult_schema: RecordSchema) -> None:
    avro = avro_schema(adult_schema)
    reordered = json.loads(json.dumps(avro, sort_keys=True))
    assert schema_id_for(avro) == schema_id_for(reordered)
    assert 0 <= schema_id_for(avro) < 2**31
    other = avro_schema(adult_schema.with_roles({"age": FieldRole.CATEGORICAL}))
    assert schema_id_for(other) != schema_id_for(avro)


def test_in_memory_store(adult_schema: RecordSchema) -> None:
    store = InMemorySchemaStore()
    assert isinstance(store, SchemaStore)
    avro = avro_schema(adult_schema)
    ids: list[int] = []
    threads = [threading.Thread(target=lambda: ids.append(store.register("adult-value", avro))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and store.ids() == ids[:1]
    assert store.register("other-subject", avro) == ids[0]
    assert store.get(ids[0]) == avro
    assert store.subjects() == {"adult-value": ids[:1], "other-subject": ids[:1]}
    with pytest.raises(UnknownSchemaIdError) as unknown:
        store.get(12345)
    assert unknown.value.reason == "unknown_schema_id" and unknown.value.schema_id == 12345
    with pytest.raises(SchemaError, match="not a valid Avro schema"):
        store.register("bad", {"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]})


def test_file_store_is_shared_between_instances(tmp_path: Path, adult_schema: RecordSchema) -> None:
    first = FileSchemaStore(tmp_path / "schemas")
    second = FileSchemaStore(tmp_path / "schemas")
    assert isinstance(first, SchemaStore)
    schema_id = first.register("adult-value", avro_schema(adult_schema))
    assert (tmp_path / "schemas" / f"{schema_id}.avsc").is_file()
    assert not [p for p in (tmp_path / "schemas").iterdir() if p.suffix != ".avsc"]  # no temp files left
    assert second.ids() == [schema_id]
    assert second.get(schema_id) == avro_schema(adult_schema)
    assert second.register("again", avro_schema(adult_schema)) == schema_id
    with pytest.raises(UnknownSchemaIdError):
        second.get(schema_id + 1)
    # A serde in one "process" writes, a serde on another instance reads.
    writer = AvroRecordSerde(adult_schema, first, "adult-value")
    reader = AvroRecordSerde(adult_schema, FileSchemaStore(tmp_path / "schemas"), "adult-value")
    record = {f.name: None for f in adult_schema.fields} | {
        "age": 30,
        "fnlwgt": 1,
        "education": "x",
        "education-num": 1,
        "marital-status": "x",
        "relationship": "x",
        "race": "x",
        "sex": "x",
        "capital-gain": 0,
        "capital-loss": 0,
        "hours-per-week": 40,
        "income": "<=50K",
    }
    assert reader.decode(writer.encode(record)) == record


# -- JSON ------------------------------------------------------------------------------------------


def test_json_round_trip_with_nulls_and_timestamps(tx: tuple[RecordSchema, list[dict]]) -> None:
    schema, records = tx
    serde = JsonRecordSerde(schema)
    data = serde.encode(records[0])
    assert b'"trans_date_trans_time":"2019-01-01T00:00:18+00:00"' in data
    decoded = serde.decode(data)
    assert decoded["trans_date_trans_time"] == "2019-01-01T00:00:18+00:00"  # parsed, not typed
    assert datetime.fromisoformat(decoded["dob"]) == records[0]["dob"]
    with_null = dict(records[1], merchant=None)
    assert serde.decode(serde.encode(with_null))["merchant"] is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe{}", "not_utf8"),
        (b'{"a": 1', "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b"42", "not_an_object"),
    ],
)
def test_json_decode_errors(adult_schema: RecordSchema, data: bytes, reason: str) -> None:
    with pytest.raises(SerdeError) as exc:
        JsonRecordSerde(adult_schema).decode(data)
    assert exc.value.reason == reason


# -- Avro ------------------------------------------------------------------------------------------


def test_avro_name_sanitising() -> None:
    assert avro_field_names(["age", "education-num", "Unnamed: 0", "", "9lives", "ok_name"]) == [
        "age",
        "education_num",
        "Unnamed__0",
        "_",
        "_9lives",
        "ok_name",
    ]
    # Valid names keep theirs; the sanitised one gets a suffix.
    assert avro_field_names(["a-b", "a_b", "a b"]) == ["a_b_2", "a_b", "a_b_3"]


def test_avro_schema_keeps_original_names(adult_schema: RecordSchema) -> None:
    avro = avro_schema(adult_schema)
    fastavro.parse_schema(avro)
    by_name = {f["name"]: f for f in avro["fields"]}
    assert by_name["education_num"]["original_name"] == "education-num"
    assert "original_name" not in by_name["age"]
    assert by_name["native_country"]["type"] == ["null", "string"]


def test_avro_round_trip_adult(adult_schema: RecordSchema, adult_records: list[dict]) -> None:
    store = InMemorySchemaStore()
    serde = AvroRecordSerde(adult_schema, store, "adult-value")
    assert store.ids() == [serde.schema_id]
    encoded = serde.encode_many(adult_records)
    assert encoded[0] == serde.encode(adult_records[0])
    assert encoded[0][:5] == frame(serde.schema_id, b"")
    decoded = [serde.decode(v) for v in encoded]
    assert decoded == adult_records
    assert any(r["workclass"] is None for r in decoded)
    # A plain fastavro reader sees sanitised names.
    plain = fastavro.schemaless_reader(io.BytesIO(encoded[0][5:]), fastavro.parse_schema(store.get(serde.schema_id)))
    assert "education_num" in plain and "education-num" not in plain


def test_avro_round_trip_timestamps(tx: tuple[RecordSchema, list[dict]]) -> None:
    schema, records = tx
    serde = AvroRecordSerde(schema, InMemorySchemaStore(), "tx-value")
    for record in records[:50]:
        back = serde.decode(serde.encode(record))
        assert back == record
        assert back["dob"].tzinfo is not None and back["dob"].utcoffset() == timedelta(0)
        assert "Unnamed: 0" in back


def test_avro_decode_errors(adult_schema: RecordSchema, adult_records: list[dict]) -> None:
    store = InMemorySchemaStore()
    serde = AvroRecordSerde(adult_schema, store, "adult-value")
    good = serde.encode(adult_records[0])
    with pytest.raises(UnknownSchemaIdError) as unknown:
        serde.decode(frame(123_456_789, good[5:]))
    assert unknown.value.reason == "unknown_schema_id"
    for bad in (good[:-3], good[:6], good + b"\x00\x00", b"\x00\x01"):
        with pytest.raises(SerdeError) as exc:
            serde.decode(bad)
        assert exc.value.reason == "malformed_avro"
        assert "Bachelors" not in str(exc.value)


def test_avro_encode_refuses_bad_records_without_values(adult_schema: RecordSchema) -> None:
    serde = AvroRecordSerde(adult_schema, InMemorySchemaStore(), "adult-value")
    with pytest.raises(SerdeError) as exc:
        serde.encode({"age": "secret-value"})
    assert exc.value.reason == "encode_failed" and "secret-value" not in str(exc.value)


def test_avro_throughput(adult_schema: RecordSchema, adult_records: list[dict]) -> None:
    serde = AvroRecordSerde(adult_schema, InMemorySchemaStore(), "adult-value")
    start = time.perf_counter()
    encoded = serde.encode_many(adult_records)
    enc_rate = len(encoded) / (time.perf_counter() - start)
    start = time.perf_counter()
    for value in encoded:
        serde.decode(value)
    dec_rate = len(encoded) / (time.perf_counter() - start)
    # ~95k encode/s and ~75k decode/s measured on one core; loose bounds for a noisy CI machine.
    assert enc_rate > 25_000 and dec_rate > 25_000, (enc_rate, dec_rate)


def test_hand_written_schema_with_odd_names_round_trips() -> None:
    schema = RecordSchema(
        name="Odd",
        fields=(
            FieldSpec(name="Unnamed: 0", type=FieldType.LONG, role=FieldRole.IDENTIFIER),
            FieldSpec(name="a-b", type=FieldType.DOUBLE, role=FieldRole.NUMERIC, nullable=True),
            FieldSpec(name="a_b", type=FieldType.BOOLEAN, role=FieldRole.CATEGORICAL),
            FieldSpec(name="when", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
        ),
    )
    serde = AvroRecordSerde(schema, InMemorySchemaStore(), "odd")
    record = {"Unnamed: 0": 7, "a-b": None, "a_b": True, "when": NOW}
    assert serde.decode(serde.encode(record)) == record
    # Naive datetimes are taken as UTC.
    naive = dict(record, when=NOW.replace(tzinfo=None))
    assert serde.decode(serde.encode(naive))["when"] == NOW


# -- events ----------------------------------------------------------------------------------------


def sample_events() -> list[BaseModel]:
    return [
        DeadLetterEvent(
            event_id=stable_event_id("src", 0, 17),
            occurred_at=NOW,
            source_topic="src",
            partition=0,
            offset=17,
            reason="malformed_json",
            detail="value of 9 bytes is not valid JSON",
            payload_bytes=9,
            stage="validate",
        ),
        ModelLifecycleEvent(
            event_id=stable_event_id("adult", 3, "promoted"),
            occurred_at=NOW,
            stream="adult",
            model_version=3,
            generator="gaussian_copula",
            action="promoted",
            rows=5_000,
            seed=42,
            fit_seconds=1.25,
            metrics={"fidelity": 0.91},
            reason=None,
        ),
        StatsEvent(
            event_id="s1",
            occurred_at=NOW,
            stream="adult",
            window_index=29_000_000,
            window_start=NOW - timedelta(minutes=1),
            window_end=NOW,
            queries=[
                StatsQuery(query=[], kind="count", cells=["total"], values=[30.0], noise_scale=1.5),
                StatsQuery(query=["sex"], kind="marginal", cells=["F", "M"], values=[10.5, 20.25], noise_scale=1.5),
                StatsQuery(query=["age"], kind="sum", cells=["sum(age)"], values=[1234.5], noise_scale=90.0),
            ],
            means={"age": 41.2, "hours": None},
            mechanism="gaussian",
            rho=0.01,
            epsilon=0.5,
            delta=1e-6,
            unit="entity:cc_num",
            max_records_per_entity=3,
            w=10,
            guarantee_epsilon=1.0,
            guarantee_delta=1.01e-6,
            records_late=2,
            records_dropped_by_bounding=5,
            bootstrap=["bootstrap:domain:sex"],
            domains={"sex": "dp_threshold", "age": "declared"},
        ),
        BudgetEvent(
            event_id="b1",
            occurred_at=NOW,
            stream="adult",
            scope="stats",
            unit="record",
            window_index=29_000_001,
            requested_rho=0.01,
            requested_epsilon=0.0,
            reason="rho 0.03 > 0.025",
        ),
        DriftEvent(
            event_id="d1",
            occurred_at=NOW,
            stream="adult",
            monitor="staleness",
            fields=["age"],
            statistic="psi",
            value=0.3,
            threshold=0.1,
            severity="critical",
            window_start=NOW - timedelta(seconds=2),
            window_end=NOW,
            window_records=2_000,
            model_version=None,
            action="retrain",
        ),
        PrivacyAuditEvent(
            event_id="a1",
            occurred_at=NOW,
            stream="adult",
            model_version=3,
            guarantee=PrivacyGuarantee(kind="empirical_only"),
            risks={"singling_out": 0.012},
            quality={"fidelity": 0.9},
            verdict="pass",
        ),
        PrivacyAuditEvent(
            event_id="a2",
            occurred_at=NOW,
            stream="adult",
            model_version=4,
            guarantee=PrivacyGuarantee(kind="formal", epsilon=1.0, delta=1e-7, unit="record", mechanism="aim"),
            risks={},
            quality={},
            verdict="fail",
        ),
        PiiFindingsEvent(
            event_id="p1",
            occurred_at=NOW,
            stream="tx",
            window_start=NOW - timedelta(minutes=5),
            window_end=NOW,
            findings=[PiiFinding(field="first", entity_type="PERSON", operator="pseudonym", count=12)],
        ),
    ]


def test_every_event_model_has_an_example() -> None:
    assert {type(e) for e in sample_events()} == set(EVENT_MODELS)


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: type(e).__name__)
def test_events_round_trip_avro_and_json(event: BaseModel) -> None:
    store = InMemorySchemaStore()
    serde = EventSerde(type(event), store)
    data = serde.encode(event)
    assert unframe(data)[0] == serde.schema_id
    assert serde.decode(data) == event
    assert serde.decode_json(serde.encode_json(event)) == event
    # A second serde (another process) decodes through the store alone.
    assert EventSerde(type(event), store).decode(data) == event


def test_event_models_are_strict_and_documented() -> None:
    for model in EVENT_MODELS:
        assert model.model_config["frozen"] and model.model_config["extra"] == "forbid"
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
    event = sample_events()[0]
    with pytest.raises(ValidationError):
        type(event)(**event.model_dump(), unexpected=1)
    with pytest.raises(ValidationError):
        event.reason = "other"  # type: ignore[misc]


def test_event_timestamps_are_utc() -> None:
    plus_two = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    event = DriftEvent(
        event_id="x",
        occurred_at=plus_two,
        stream="s",
        monitor="detector",
        fields=["f"],
        statistic="adwin",
        value=1.0,
        threshold=0.5,
        severity="critical",
        window_start=plus_two,
        window_end=plus_two,
        window_records=10,
        action="alert",
    )
    assert event.occurred_at.tzinfo is UTC and event.occurred_at == plus_two
    naive = DriftEvent.model_validate({**event.model_dump(), "occurred_at": datetime(2024, 1, 1)})
    assert naive.occurred_at == datetime(2024, 1, 1, tzinfo=UTC)


def test_event_decode_errors_name_no_values() -> None:
    serde = EventSerde(DeadLetterEvent, InMemorySchemaStore())
    with pytest.raises(SerdeError) as bad_json:
        serde.decode_json(b'{"event_id": "secret-id-value"}')
    assert bad_json.value.reason == "schema_violation" and "secret-id-value" not in str(bad_json.value)
    with pytest.raises(SerdeError) as malformed:
        serde.decode_json(b"{")
    assert malformed.value.reason == "malformed_json"
    with pytest.raises(SerdeError) as truncated:
        serde.decode(serde.encode(sample_events()[0])[:-4])  # type: ignore[arg-type]
    assert truncated.value.reason == "malformed_avro"
    with pytest.raises(UnknownSchemaIdError):
        serde.decode(frame(42, b"\x00"))
    with pytest.raises(TypeError):
        serde.encode(sample_events()[1])  # type: ignore[arg-type]


def test_stable_event_id() -> None:
    a = stable_event_id("topic", 0, 42)
    assert a == stable_event_id("topic", 0, 42) and len(a) == 32 and int(a, 16) >= 0
    assert a != stable_event_id("topic", 0, 43) != stable_event_id("topic", 1, 42)
    assert stable_event_id("a|b", "c") != stable_event_id("a", "b|c")


# -- pydantic -> Avro converter ----------------------------------------------------------------------


class Inner(BaseModel):
    """A nested record."""

    model_config = ConfigDict(frozen=True)

    label: str = Field(description="A label.")


class Everything(BaseModel):
    """Every supported annotation."""

    s: str
    i: int
    f: float
    b: bool
    when: datetime
    maybe: int | None = None
    tags: list[str]
    scores: dict[str, float]
    inner: Inner
    inners: list[Inner]
    other: Inner | None = None
    mode: Literal["a", "b_c"]
    blob: bytes


def test_avro_schema_for_every_supported_type() -> None:
    schema = avro_schema_for(Everything)
    parsed = fastavro.parse_schema(schema)
    fields = {f["name"]: f for f in schema["fields"]}
    assert schema["name"] == "Everything" and schema["namespace"] == "synthstream.events"
    assert fields["s"]["type"] == "string" and fields["i"]["type"] == "long"
    assert fields["f"]["type"] == "double" and fields["b"]["type"] == "boolean"
    assert fields["when"]["type"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert fields["maybe"]["type"] == ["null", "long"] and fields["maybe"]["default"] is None
    assert fields["tags"]["type"] == {"type": "array", "items": "string"}
    assert fields["scores"]["type"] == {"type": "map", "values": "double"}
    assert fields["inner"]["type"]["type"] == "record" and fields["inner"]["type"]["name"] == "Inner"
    assert fields["inners"]["type"]["items"] == "synthstream.events.Inner"  # defined once, then referenced
    assert fields["other"]["type"] == ["null", "synthstream.events.Inner"]
    assert fields["mode"]["type"]["type"] == "enum" and fields["mode"]["type"]["symbols"] == ["a", "b_c"]
    assert fields["inner"]["type"]["fields"][0]["doc"] == "A label."

    value = Everything(
        s="x",
        i=1,
        f=0.5,
        b=True,
        when=NOW,
        tags=["t"],
        scores={"k": 1.0},
        inner=Inner(label="l"),
        inners=[Inner(label="m")],
        mode="b_c",
        blob=b"\x01",
    )
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, value.model_dump())
    buffer.seek(0)
    assert Everything.model_validate(fastavro.schemaless_reader(buffer, parsed)) == value


def test_avro_schema_for_refuses_unsupported_types() -> None:
    class BadKey(BaseModel):
        m: dict[int, str]

    class BadLiteral(BaseModel):
        n: Literal[1, 2]

    class BadType(BaseModel):
        t: tuple[int, int]

    for model in (BadKey, BadLiteral, BadType):
        with pytest.raises(SchemaError):
            avro_schema_for(model)
    with pytest.raises(TypeError):
        avro_schema_for(dict)  # type: ignore[arg-type]


def test_event_schemas_parse_and_are_stable() -> None:
    for model in EVENT_MODELS:
        schema = avro_schema_for(model)
        fastavro.parse_schema(schema)
        assert orjson.dumps(schema) == orjson.dumps(avro_schema_for(model))
