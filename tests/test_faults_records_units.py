"""Poison-pill guards without a broker: the validator's range rules, operators safe per value, plan checks."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from synthstream.errors import ConfigError, RecordRejected
from synthstream.processors.pii.operators import (
    Pseudonymizer,
    fake_function,
    generalize_function,
    operator_problem,
)
from synthstream.processors.pii.redactor import FieldPlan, PiiRedactor, RedactionPlan
from synthstream.processors.validator import RecordValidator, field_converter
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from synthstream.schemas.serde import avro_schema
from tests.helpers import pipeline_config

KEY = Pseudonymizer(b"unit-test-key-0123456789abcdef", "u1")
SCHEMA = RecordSchema(
    name="Pay",
    fields=(
        FieldSpec(name="id", type=FieldType.LONG, role=FieldRole.NUMERIC),
        FieldSpec(name="amount", type=FieldType.DOUBLE, role=FieldRole.NUMERIC, nullable=True),
        FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
        FieldSpec(name="city", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="vip", type=FieldType.BOOLEAN, role=FieldRole.CATEGORICAL),
    ),
)
GOOD = b'{"id": 1, "amount": 2.5, "ts": "2024-01-01T00:00:00Z", "city": "Porto", "vip": true}'


def _with(**raw: str) -> bytes:
    """GOOD with some fields replaced by raw JSON literals (so out-of-range integers stay exact)."""
    text = GOOD.decode()
    for name, literal in raw.items():
        head, _, rest = text.partition(f'"{name}": ')
        _, _, tail = rest.partition(",") if "," in rest else ("", "", "}")
        text = f'{head}"{name}": {literal},{tail}' if tail != "}" else f'{head}"{name}": {literal}}}'
    return text.encode()


def _rejected(value: bytes) -> RecordRejected:
    with pytest.raises(RecordRejected) as info:
        RecordValidator(SCHEMA, source_format="json")(value)
    return info.value


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"id": "9223372036854775808"}, "'id'"),
        ({"id": "-9223372036854775809"}, "'id'"),
        ({"id": "18446744073709551616"}, "'id'"),  # beyond u64: the parser hands a float over
        ({"id": "1e19"}, "'id'"),
        ({"ts": '"0001-01-01T00:00:00+14:00"'}, "'ts'"),
        ({"ts": '"9999-12-31T23:59:59-14:00"'}, "'ts'"),
        ({"ts": '"10000-01-01T00:00:00"'}, "'ts'"),
    ],
)
def test_values_that_cannot_be_encoded_are_out_of_range(raw: dict[str, str], field: str) -> None:
    exc = _rejected(_with(**raw))
    assert exc.reason == "value_out_of_range", exc.detail
    assert field in exc.detail
    for literal in raw.values():
        assert literal.strip('"') not in exc.detail


def test_extremes_inside_the_range_pass() -> None:
    validate = RecordValidator(SCHEMA, source_format="json")
    assert validate(_with(id="9223372036854775807"))["id"] == 2**63 - 1
    assert validate(_with(id="-9223372036854775808"))["id"] == -(2**63)
    assert validate(_with(ts='"0001-01-01T00:00:00Z"'))["ts"] == datetime(1, 1, 1, tzinfo=UTC)


def test_non_finite_doubles_from_avro_are_out_of_range() -> None:
    parsed = fastavro.parse_schema(avro_schema(SCHEMA))
    from synthstream.schemas.serde import InMemorySchemaStore, frame

    store = InMemorySchemaStore()
    schema_id = store.register("pay", avro_schema(SCHEMA))
    for special in (float("nan"), float("inf"), float("-inf")):
        buffer = io.BytesIO()
        record = {"id": 1, "amount": special, "ts": datetime(2024, 1, 1, tzinfo=UTC), "city": "x", "vip": False}
        fastavro.schemaless_writer(buffer, parsed, record)
        with pytest.raises(RecordRejected) as info:
            RecordValidator(SCHEMA, source_format="avro", store=store)(frame(schema_id, buffer.getvalue()))
        assert info.value.reason == "value_out_of_range" and "'amount'" in info.value.detail


def test_a_string_that_is_not_unicode_text_is_refused() -> None:
    convert = field_converter(SCHEMA.field("city"))
    assert convert("São Paulo") == "São Paulo"
    with pytest.raises(Exception) as info:  # the converter's internal signal
        convert("Zorblax\ud800")
    assert getattr(info.value, "reason", None) == "unencodable_string"
    assert "Zorblax" not in str(info.value.args)


def test_mixed_problems_are_a_schema_violation_naming_each_field() -> None:
    exc = _rejected(_with(id="9223372036854775808", city="7"))
    assert exc.reason == "schema_violation"
    assert "'id'" in exc.detail and "'city'" in exc.detail


def test_unknown_key_names_are_counted_never_named() -> None:
    value = GOOD[:-1] + b', "maria.zorblax@example.com": 1, "123.456.789-09": 2}'
    with pytest.raises(RecordRejected) as info:
        RecordValidator(SCHEMA, source_format="json", extra_fields="reject")(value)
    assert "2 field(s) not in the schema" in info.value.detail
    assert "zorblax" not in info.value.detail and "123.456" not in info.value.detail


# -- operators: the right type out for every value in -----------------------------------------


@pytest.mark.parametrize(
    ("kind", "field_type", "values"),
    [
        ("year", FieldType.LONG, [0, 7, 1988, 198803, 19880309, 1_700_000_000, -(2**63), 2**63 - 1]),
        ("month", FieldType.LONG, [0, 1988, 198803, 19880309, 1_700_000_000_000, -(2**63), 2**63 - 1]),
        ("band", FieldType.LONG, [0, 37, -1, -(2**63), 2**63 - 1]),
        ("band", FieldType.DOUBLE, [0.0, 37.5, -0.5, 1e308, -1e308, 5e-324]),
        ("prefix", FieldType.LONG, [0, 28654, -(2**63), 2**63 - 1]),
        ("prefix", FieldType.STRING, ["", "01310-100", "Zorblax"]),
        ("year", FieldType.STRING, ["", "1988-03-09", "junk"]),
        ("year", FieldType.TIMESTAMP, [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)]),
    ],
)
def test_generalizations_keep_the_type_and_the_range(kind: Any, field_type: FieldType, values: list[Any]) -> None:
    fn = generalize_function(kind, field_type=field_type)
    expected = {FieldType.LONG: int, FieldType.DOUBLE: float, FieldType.STRING: str, FieldType.TIMESTAMP: datetime}
    assert fn(None) is None
    for value in values:
        out = fn(value)
        assert type(out) is expected[field_type], (kind, value, out)
        if field_type == FieldType.LONG:
            assert -(2**63) <= out <= 2**63 - 1


def test_generalizing_a_type_it_cannot_handle_is_refused_at_construction() -> None:
    for kind, field_type in [("band", FieldType.STRING), ("year", FieldType.DOUBLE), ("prefix", FieldType.BOOLEAN)]:
        with pytest.raises(ValueError, match=f"generalize: {kind} needs a field of type"):
            generalize_function(kind, field_type=field_type)


@pytest.mark.parametrize(
    ("entity", "field_type", "value", "py_type"),
    [
        ("CREDIT_CARD", FieldType.LONG, 9_223_372_036_854_775_807, int),
        ("IBAN_CODE", FieldType.LONG, 12345, int),  # an IBAN's digits overflow a long
        ("PHONE_NUMBER", FieldType.LONG, 99_999_999_999_999_999, int),
        ("DATE_OF_BIRTH", FieldType.LONG, 19880309, int),
        ("DATE_OF_BIRTH", FieldType.LONG, 1988, int),
        ("DATE_OF_BIRTH", FieldType.DOUBLE, 1988.0, float),
        ("PHONE_NUMBER", FieldType.DOUBLE, 11987654321.0, float),
        ("EMAIL_ADDRESS", FieldType.BOOLEAN, True, bool),
        ("PERSON", FieldType.STRING, "Zorblax Quux", str),
        ("DATE_OF_BIRTH", FieldType.TIMESTAMP, datetime(1988, 3, 9, tzinfo=UTC), datetime),
    ],
)
def test_fakes_keep_the_field_type_and_the_long_range(
    entity: str, field_type: FieldType, value: Any, py_type: type
) -> None:
    out = fake_function(entity, "en_US", KEY, field_type)(value)
    assert type(out) is py_type
    if py_type is int:
        assert -(2**63) <= out <= 2**63 - 1


# -- operator/type mismatches up front, every problem at once -----------------------------------


def test_the_plan_refuses_every_mismatch_at_once() -> None:
    plan = RedactionPlan(
        SCHEMA.fingerprint(),
        (
            FieldPlan("id", None, "generalize", "config", "year"),
            FieldPlan("amount", None, "generalize", "config", "prefix"),
            FieldPlan("ts", None, "keep", "none"),
            FieldPlan("city", None, "generalize", "config", "band"),
            FieldPlan("vip", None, "scan", "config"),
        ),
    )
    with pytest.raises(ConfigError) as info:
        PiiRedactor(SCHEMA, plan, pseudonymizer=KEY)
    text = str(info.value)
    assert "amount: generalize: prefix" in text and "city: generalize: band" in text and "vip: scan" in text
    assert "id:" not in text  # year on a long is supported


def test_the_pipeline_config_refuses_mismatched_overrides_before_any_record(tmp_path: Path) -> None:
    config = pipeline_config(
        "t",
        tmp_path,
        tmp_path / "sample.csv",
        fields={
            "city": {"redact": "generalize", "generalize": "band"},
            "vip": {"redact": "scan"},
            "nope": {"redact": "keep"},
            "amount": {"redact": "generalize", "generalize": "band"},
        },
    )
    problems = config.schema_problems(SCHEMA)
    assert len(problems) == 3, problems
    assert any("fields.city: generalize: band needs a field of type double or long, not string" in p for p in problems)
    assert any(p.startswith("fields.vip: scan") for p in problems)
    assert any(p.startswith("fields.nope: no such field") for p in problems)
    with pytest.raises(ConfigError, match="3 problem"):
        config.check_schema(SCHEMA)


def test_generalize_without_the_generalize_operator_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="generalize: band is set but redact is 'mask'"):
        pipeline_config("t", tmp_path, tmp_path / "s.csv", fields={"city": {"redact": "mask", "generalize": "band"}})
    assert operator_problem("generalize", FieldType.STRING, "band") is not None
    assert operator_problem("pseudonymize", FieldType.BOOLEAN) is None


def test_shaped_fakes_of_19_digit_longs_stay_in_the_long_range() -> None:
    """A 19-digit phone-shaped fake is random digits: about 8 % would exceed 2^63-1 unguarded."""
    fake = fake_function("PHONE_NUMBER", "en_US", KEY, FieldType.LONG)
    outs = [fake(9_000_000_000_000_000_000 + i) for i in range(200)]
    assert all(-(2**63) <= out <= 2**63 - 1 for out in outs)
