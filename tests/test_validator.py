"""RecordValidator: the bad-input matrix, coercions and throughput, on real Adult and transaction rows."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.errors import RecordRejected
from synthstream.processors.validator import RecordValidator, ValidationResult
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import RecordSchema
from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore, JsonRecordSerde, frame
from tests.helpers import ADULT_CSV, TRANSACTIONS_CSV


@pytest.fixture(scope="module")
def adult() -> tuple[RecordSchema, list[dict]]:
    frame_ = read_table(ADULT_CSV, nrows=20_000)
    schema = infer_schema(frame_, name="Adult")
    return schema, records_from_frame(frame_, schema)


@pytest.fixture(scope="module")
def tx() -> tuple[RecordSchema, list[dict]]:
    frame_ = read_table(TRANSACTIONS_CSV, nrows=200)
    schema = infer_schema(frame_, name="Transactions")
    return schema, records_from_frame(frame_, schema)


@pytest.fixture
def schema(adult: tuple[RecordSchema, list[dict]]) -> RecordSchema:
    return adult[0]


@pytest.fixture
def good(adult: tuple[RecordSchema, list[dict]]) -> dict:
    """A valid record as a consumer sees it on the wire (decoded JSON)."""
    return orjson.loads(JsonRecordSerde(adult[0]).encode(adult[1][0]))


def rejected(validator: RecordValidator, value: bytes | None) -> RecordRejected:
    with pytest.raises(RecordRejected) as exc:
        validator(value)
    return exc.value


# -- options ---------------------------------------------------------------------------------------


def test_options_are_validated(schema: RecordSchema) -> None:
    with pytest.raises(ValueError, match=r"'auto', 'json', 'avro'"):
        RecordValidator(schema, source_format="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'drop', 'reject'"):
        RecordValidator(schema, extra_fields="keep")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        RecordValidator(schema, max_record_bytes=0)
    with pytest.raises(ValueError, match="store"):
        RecordValidator(schema, source_format="avro")
    assert "source_format='auto'" in repr(RecordValidator(schema))


# -- valid records ---------------------------------------------------------------------------------


def test_valid_json_records_are_canonical(adult: tuple[RecordSchema, list[dict]]) -> None:
    schema, records = adult
    serde = JsonRecordSerde(schema)
    validator = RecordValidator(schema)
    for record in records[:500]:
        out = validator(serde.encode(record))
        assert out == record
        assert list(out) == schema.field_names
    assert any(r["workclass"] is None for r in records[:500])


def test_valid_avro_records_are_canonical(adult: tuple[RecordSchema, list[dict]]) -> None:
    schema, records = adult
    store = InMemorySchemaStore()
    serde = AvroRecordSerde(schema, store, "adult-value")
    for fmt in ("auto", "avro"):
        validator = RecordValidator(schema, source_format=fmt, store=store)  # type: ignore[arg-type]
        assert [validator(v) for v in serde.encode_many(records[:200])] == records[:200]


def test_timestamps_and_numeric_coercions(tx: tuple[RecordSchema, list[dict]]) -> None:
    schema, records = tx
    validator = RecordValidator(schema, source_format="json")
    wire = orjson.loads(JsonRecordSerde(schema).encode(records[0]))
    wire.update(
        trans_date_trans_time="2019-01-01 00:00:18",  # naive -> UTC
        dob="1988-03-09T02:00:00+02:00",  # offset -> UTC
        amt=5,  # int accepted for a double
        cc_num=2703186189652095.0,  # integral float accepted for a long
    )
    out = validator(orjson.dumps(wire))
    assert out["trans_date_trans_time"] == datetime(2019, 1, 1, 0, 0, 18, tzinfo=UTC)
    assert out["dob"] == datetime(1988, 3, 9, tzinfo=UTC) and out["dob"].tzinfo is UTC
    assert out["amt"] == 5.0 and type(out["amt"]) is float
    assert type(out["cc_num"]) is int
    avro = AvroRecordSerde(schema, store := InMemorySchemaStore(), "tx")
    assert RecordValidator(schema, store=store)(avro.encode(records[3])) == records[3]


def test_nullable_fields_may_be_missing(schema: RecordSchema, good: dict) -> None:
    del good["workclass"]
    assert RecordValidator(schema)(orjson.dumps(good))["workclass"] is None


# -- the bad-input matrix --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty_value"),
        (b"", "empty_value"),
        (b'{"age": 39, "workclass": "State-gov"', "malformed_json"),
        (b"not json at all", "malformed_json"),
        (b"\xff\xfe\x00garbage", "not_utf8"),
        (b'{"age": "caf\xe9"}', "not_utf8"),
        (b"[1, 2, 3]", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b"null", "not_an_object"),
        (frame(123_456_789, b"\x02\x04"), "unknown_schema_id"),
        (b"\x00\x00\x01", "malformed_avro"),
        (b'{"age": "thirty-nine"}', "schema_violation"),
    ],
)
def test_bad_inputs(schema: RecordSchema, value: bytes | None, reason: str) -> None:
    exc = rejected(RecordValidator(schema), value)
    assert exc.reason == reason
    assert "thirty" not in exc.detail and "garbage" not in exc.detail


def test_oversized_is_checked_before_parsing(schema: RecordSchema, good: dict) -> None:
    size = len(orjson.dumps(good))
    validator = RecordValidator(schema, max_record_bytes=size)
    assert rejected(validator, b"{" + b" " * size).reason == "oversized"  # would be malformed_json
    assert rejected(validator, orjson.dumps(dict(good, income="x" * 400))).reason == "oversized"
    assert validator(orjson.dumps(good))["age"] == good["age"]  # exactly at the limit is fine


def test_truncated_and_unknown_avro(adult: tuple[RecordSchema, list[dict]]) -> None:
    schema, records = adult
    store = InMemorySchemaStore()
    encoded = AvroRecordSerde(schema, store, "adult-value").encode(records[0])
    validator = RecordValidator(schema, store=store)
    assert rejected(validator, encoded[:-4]).reason == "malformed_avro"
    assert rejected(validator, frame(7, encoded[5:])).reason == "unknown_schema_id"
    # Without a store, auto still reads JSON and dead-letters Avro as unknown.
    assert rejected(RecordValidator(schema), encoded).reason == "unknown_schema_id"
    # Forced JSON does not look for Avro.
    assert rejected(RecordValidator(schema, source_format="json"), encoded).reason in {"malformed_json", "not_utf8"}
    # Forced Avro does not accept JSON.
    avro_only = RecordValidator(schema, source_format="avro", store=store)
    assert rejected(avro_only, b'{"age": 1}').reason == "malformed_avro"


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"age": "39"}, "age", "expected long, got string"),
        ({"age": True}, "age", "expected long, got boolean"),
        ({"age": 39.5}, "age", "not integral"),
        ({"age": None}, "age", "got null"),
        ({"income": 1}, "income", "expected string, got integer"),
        ({"workclass": ["Private"]}, "workclass", "expected string or null, got array"),
        ({"hours-per-week": {"h": 40}}, "hours-per-week", "got object"),
    ],
)
def test_wrong_types(schema: RecordSchema, good: dict, change: dict, field: str, problem: str) -> None:
    exc = rejected(RecordValidator(schema), orjson.dumps(dict(good, **change)))
    assert exc.reason == "schema_violation"
    assert f"'{field}'" in exc.detail and problem in exc.detail


def test_missing_required_field(schema: RecordSchema, good: dict) -> None:
    del good["income"]
    exc = rejected(RecordValidator(schema), orjson.dumps(good))
    assert exc.reason == "schema_violation" and "'income': expected string, but the field is missing" in exc.detail


def test_double_rules(tx: tuple[RecordSchema, list[dict]]) -> None:
    schema, records = tx
    wire = orjson.loads(JsonRecordSerde(schema).encode(records[0]))
    validator = RecordValidator(schema)
    exc = rejected(validator, orjson.dumps(dict(wire, amt=False)))
    assert "'amt': expected double, got boolean" in exc.detail
    # JSON has no NaN/inf: the parser refuses them (Python's json module would write them).
    for literal in (b"NaN", b"Infinity", b"1e999"):
        value = orjson.dumps({k: v for k, v in wire.items() if k != "amt"})[:-1] + b',"amt":' + literal + b"}"
        assert rejected(validator, value).reason == "malformed_json"
    exc = rejected(validator, orjson.dumps(dict(wire, dob="09/03/1988")))
    assert "'dob': expected timestamp, got string (not an ISO-8601 timestamp)" in exc.detail
    assert "09/03" not in exc.detail


def test_non_finite_double_from_avro(tx: tuple[RecordSchema, list[dict]]) -> None:
    schema, records = tx
    store = InMemorySchemaStore()
    value = AvroRecordSerde(schema, store, "tx").encode(dict(records[0], amt=float("nan")))
    exc = rejected(RecordValidator(schema, store=store), value)
    assert exc.reason == "value_out_of_range" and "'amt'" in exc.detail and "non-finite" in exc.detail


def test_every_violation_is_reported_at_once(schema: RecordSchema, good: dict) -> None:
    bad = dict(good, age="thirty-nine", workclass=7, income=None, extra="secret")
    del bad["sex"]
    for policy in ("drop", "reject"):
        exc = rejected(RecordValidator(schema, extra_fields=policy), orjson.dumps(bad))  # type: ignore[arg-type]
        for field in ("'age'", "'workclass'", "'income'", "'sex'"):
            assert field in exc.detail
        assert "thirty" not in exc.detail and "secret" not in exc.detail
        # Unknown keys are counted, never named (a key can be personal data).
        assert "'extra'" not in exc.detail
        assert ("1 field(s) not in the schema" in exc.detail) is (policy == "reject")
    assert exc.detail.startswith("5 violation(s)")


def test_extra_fields_policies(schema: RecordSchema, good: dict) -> None:
    value = orjson.dumps(dict(good, unexpected=1, another="x"))
    assert list(RecordValidator(schema, extra_fields="drop")(value)) == schema.field_names
    exc = rejected(RecordValidator(schema, extra_fields="reject"), value)
    assert exc.reason == "schema_violation" and "2 field(s) not in the schema" in exc.detail
    assert "unexpected" not in exc.detail and "another" not in exc.detail
    # An extra field alongside a missing nullable one is still caught.
    del good["workclass"]
    exc = rejected(RecordValidator(schema, extra_fields="reject"), orjson.dumps(dict(good, other=1)))
    assert "1 field(s) not in the schema" in exc.detail and "other" not in exc.detail
    assert RecordValidator(schema, extra_fields="reject")(orjson.dumps(good))["workclass"] is None


# -- batches and speed ------------------------------------------------------------------------------


def test_process_keeps_positions(adult: tuple[RecordSchema, list[dict]]) -> None:
    schema, records = adult
    serde = JsonRecordSerde(schema)
    values = [serde.encode(records[0]), None, b"{", serde.encode(records[1]), b'{"age": 1}']
    result = RecordValidator(schema).process(values)
    assert isinstance(result, ValidationResult)
    assert [(i, r) for i, r in result.valid] == [(0, records[0]), (3, records[1])]
    assert [(i, e.reason) for i, e in result.rejected] == [
        (1, "empty_value"),
        (2, "malformed_json"),
        (4, "schema_violation"),
    ]
