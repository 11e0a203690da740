"""Value-based PII detection: mixed fields, identifiers as integers, dates of birth, plan reasons.

Data are generated here with seeded code (the CPF/CNPJ generator in ``benchmarks.pii_br`` is
written independently of synthstream's check-digit code), so the detectors run on values
they were not built from.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from benchmarks.pii_br import make_cnpj, make_cpf
from synthstream.processors.pii.operators import Pseudonymizer
from synthstream.processors.pii.patterns import TextScanner
from synthstream.processors.pii.plan import detect_fields
from synthstream.processors.pii.redactor import PiiRedactor, build_plan
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

KEY = Pseudonymizer(b"detect-test-key-0123456789abcdef", "t1")
TODAY = date(2025, 6, 1)


def _schema(**fields: tuple[FieldType, FieldRole]) -> RecordSchema:
    return RecordSchema(fields=tuple(FieldSpec(name=n, type=t, role=r, nullable=True) for n, (t, r) in fields.items()))


def _mixed_rows(n: int, seed: int = 1) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        lot = make_cpf(rng, rng.random() < 0.5) if rng.random() < 0.3 else f"LOTE-{rng.randint(100, 999)}"
        rows.append({"lote": lot, "qty": rng.randint(1, 50)})
    return rows


def test_mixed_field_is_scanned_value_by_value():
    """30 % CPFs among lot codes: never kept; every CPF replaced, every lot code kept."""
    schema = _schema(lote=(FieldType.STRING, FieldRole.CATEGORICAL), qty=(FieldType.LONG, FieldRole.NUMERIC))
    rows = _mixed_rows(2_000)
    plan = {f.field: f for f in build_plan(schema, rows[:500]).fields}
    assert plan["lote"].operator == "scan_values" and plan["lote"].entity == "BR_CPF"
    assert plan["qty"].operator == "keep"
    out = PiiRedactor(schema, build_plan(schema, rows[:500]), pseudonymizer=KEY).process(rows)
    cpfs = 0
    for raw, red in zip(rows, out, strict=True):
        if str(raw["lote"]).startswith("LOTE-"):
            assert red["lote"] == raw["lote"]
        else:
            cpfs += 1
            digits = "".join(c for c in str(raw["lote"]) if c.isdigit())
            assert red["lote"].startswith("t1_") and digits not in red["lote"]
    assert cpfs > 400


def test_a_few_cpfs_in_a_mostly_clean_field_are_not_kept():
    """PII in a small share of values (here 3 %) is enough to scan the field."""
    rng = random.Random(3)
    rows = [{"code": make_cpf(rng, True) if i % 33 == 0 else f"SKU{rng.randint(1000, 9999)}"} for i in range(600)]
    schema = _schema(code=(FieldType.STRING, FieldRole.CATEGORICAL))
    detection = detect_fields(schema, rows)["code"]
    assert detection.source == "mixed" and detection.entity == "BR_CPF"


def test_random_eleven_digit_numbers_are_not_cpfs():
    """Random 11-digit ids pass the CPF check 1 % of the time: far from enough to scan them."""
    rng = random.Random(4)
    rows = [{"order": rng.randrange(10**10, 10**11)} for _ in range(1_000)]
    schema = _schema(order=(FieldType.LONG, FieldRole.NUMERIC))
    assert detect_fields(schema, rows)["order"].entity is None


def test_integer_cep_cpf_and_phone_fields_are_recognised():
    rng = random.Random(5)
    rows = [
        {
            "col9": rng.randrange(1_000_000, 99_999_999),  # CEPs: leading zero lost as integers
            "col11": int(make_cpf(rng, False)),
            "col12": int(f"{rng.randint(11, 99)}9{rng.randrange(10**8):08d}"),
            "seq": 10_000_000 + i,  # an 8-digit counter is not a CEP
        }
        for i in range(500)
    ]
    schema = _schema(
        col9=(FieldType.LONG, FieldRole.NUMERIC),
        col11=(FieldType.LONG, FieldRole.NUMERIC),
        col12=(FieldType.LONG, FieldRole.NUMERIC),
        seq=(FieldType.LONG, FieldRole.NUMERIC),
    )
    plan = {f.field: f for f in build_plan(schema, rows).fields}
    assert (plan["col9"].entity, plan["col9"].operator) == ("BR_CEP", "generalize")
    assert (plan["col11"].entity, plan["col11"].operator) == ("BR_CPF", "pseudonymize")
    assert (plan["col12"].entity, plan["col12"].operator) == ("BR_PHONE", "fake")
    assert plan["seq"].operator == "keep"
    redactor = PiiRedactor(schema, build_plan(schema, rows), pseudonymizer=KEY)
    assert redactor.output_schema.field("col11").type == FieldType.STRING
    out = redactor.process(rows)
    for raw, red in zip(rows, out, strict=True):
        assert str(raw["col11"]) not in str(red["col11"])
        assert red["col12"] != raw["col12"]
        assert red["col9"] == raw["col9"] // 10**5 * 10**5  # the first 3 of 8 digits


def _birth_dates(rng: random.Random, n: int) -> list[date]:
    return [TODAY - timedelta(days=rng.randint(0, 100 * 365)) for _ in range(n)]


@pytest.mark.parametrize("form", ["iso", "dmy", "timestamp"])
def test_dates_of_birth_by_value_in_a_field_named_dt(form):
    rng = random.Random(6)
    births = _birth_dates(rng, 400)
    events = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 500_000)) for _ in births]
    if form == "iso":
        dt, kind = [d.isoformat() for d in births], FieldType.STRING
    elif form == "dmy":
        dt, kind = [d.strftime("%d/%m/%Y") for d in births], FieldType.STRING
    else:
        dt, kind = [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in births], FieldType.TIMESTAMP
    rows = [{"dt": d, "ts": e} for d, e in zip(dt, events, strict=True)]
    schema = _schema(dt=(kind, FieldRole.DATETIME), ts=(FieldType.TIMESTAMP, FieldRole.DATETIME))
    found = detect_fields(schema, rows, today=TODAY)
    assert found["dt"].entity == "DATE_OF_BIRTH" and found["dt"].source == "value"
    assert found["ts"].entity is None, "recent event timestamps are not dates of birth"
    plan = build_plan(schema, rows)
    out = PiiRedactor(schema, plan, pseudonymizer=KEY).process(rows)
    for raw, red in zip(rows, out, strict=True):
        if form == "dmy":
            assert red["dt"] == f"01/01/{raw['dt'][-4:]}"
        elif form == "iso":
            assert red["dt"] == f"{raw['dt'][:4]}-01-01"
        else:
            assert (red["dt"].month, red["dt"].day, red["dt"].year) == (1, 1, raw["dt"].year)
        assert red["ts"] == raw["ts"]


@pytest.mark.parametrize("grid", ["monthly", "daily", "hourly", "yearly"])
def test_a_time_axis_spanning_decades_is_not_taken_for_dates_of_birth(grid):
    """A monthly series from 1967 to 2015 was generalised as dates of birth (it was the time axis)."""
    start = datetime(1967, 7, 1, tzinfo=UTC)
    if grid == "monthly":
        stamps = [datetime(1967 + (6 + k) // 12, (6 + k) % 12 + 1, 1, tzinfo=UTC) for k in range(574)]
    elif grid == "daily":
        stamps = [start + timedelta(days=30 * k) for k in range(500)]  # every 30 days, 41 years
    elif grid == "hourly":
        stamps = [start + timedelta(days=37 * k, hours=k % 24) for k in range(500)]
    else:
        stamps = [datetime(1950 + k, 7, 14, tzinfo=UTC) for k in range(60)]
    for kind, values in ((FieldType.TIMESTAMP, stamps), (FieldType.STRING, [d.date().isoformat() for d in stamps])):
        if kind is FieldType.STRING and grid == "hourly":
            continue  # ISO dates drop the time of day; the other three grids are tested as text too
        rows = [{"dt": v} for v in values]
        found = detect_fields(_schema(dt=(kind, FieldRole.DATETIME)), rows, today=TODAY)
        assert found["dt"].entity is None, (grid, kind, found["dt"].reason)


def test_plan_reasons_explain_without_values():
    rng = random.Random(7)
    rows = [
        {
            "lote": r["lote"],
            "doc": make_cnpj(rng),
            "mail": f"pessoa{rng.randint(1, 10**6)}@exemplo.com.br",
            "status": rng.choice(["aberto", "fechado"]),
        }
        for r in _mixed_rows(300, seed=8)
    ]
    schema = _schema(
        lote=(FieldType.STRING, FieldRole.CATEGORICAL),
        doc=(FieldType.STRING, FieldRole.IDENTIFIER),
        mail=(FieldType.STRING, FieldRole.IDENTIFIER),
        status=(FieldType.STRING, FieldRole.CATEGORICAL),
    )
    plan = {f.field: f for f in build_plan(schema, rows).fields}
    assert "BR_CPF" in plan["lote"].reason and "300 sampled values" in plan["lote"].reason
    assert "value by value" in plan["lote"].reason
    assert plan["doc"].reason.startswith("value: 100% of 300") and "check digits" in plan["doc"].reason
    assert plan["status"].reason.startswith("none:")
    values = {str(v) for row in rows for v in row.values()}
    digits = {"".join(c for c in v if c.isdigit()) for v in values}
    for fp in plan.values():
        assert fp.reason
        words = set(fp.reason.replace(",", " ").replace(";", " ").split())
        assert not words & values, fp.field
        assert not {d for d in digits if len(d) >= 5 and d in fp.reason}, fp.field


def test_the_scanner_finds_independently_generated_identifiers_in_text():
    """TextScanner (not only cpf_is_valid) on CPFs/CNPJs made by an independent generator, and dates."""
    rng = random.Random(9)
    scanner = TextScanner()
    for _ in range(300):
        cpf, bare, cnpj = make_cpf(rng, True), make_cpf(rng, False), make_cnpj(rng)
        day = date(2020, 1, 1) + timedelta(days=rng.randint(0, 1500))
        text = f"Cliente com CPF {cpf} (ou {bare}), empresa {cnpj}, atendido em {day:%d/%m/%Y}."
        found = {(f.entity_type, text[f.start : f.end]) for f in scanner.scan(text)}
        assert ("BR_CPF", cpf) in found and ("BR_CPF", bare) in found
        assert ("BR_CNPJ", cnpj) in found
        assert ("DATE_TIME", f"{day:%d/%m/%Y}") in found
    # A broken check digit is not a CPF.
    broken = make_cpf(rng, True)
    broken = broken[:-1] + str((int(broken[-1]) + 1) % 10)
    assert not any(f.entity_type == "BR_CPF" for f in scanner.scan(f"CPF {broken}."))


def test_a_category_that_looks_like_a_name_is_a_category_but_varied_names_among_codes_are_scanned():
    """diamonds' ``cut``: "Very Good" (Good is a surname) in 22 % of rows made ``init`` plan a keyed fake.

    One repeated value is a category; a field with a fifth of its values varied full names is not.
    """
    rng = random.Random(3)
    grades = ["Ideal", "Premium", "Very Good", "Good", "Fair"]
    rows = [{"cut": rng.choices(grades, weights=[40, 25, 22, 9, 4])[0]} for _ in range(1_000)]
    schema = _schema(cut=(FieldType.STRING, FieldRole.CATEGORICAL))
    detection = detect_fields(schema, rows)["cut"]
    assert detection.entity is None and detection.source == "none", detection.reason
    people = ["Maria Silva", "John Smith", "Ana Souza", "Peter Brown", "Julia Costa", "Robert Miller"]
    mixed = [{"cut": rng.choice(people) if rng.random() < 0.2 else rng.choice(grades[:3])} for _ in range(1_000)]
    assert detect_fields(schema, mixed)["cut"].entity == "PERSON"
