"""The PII redactor on real card transactions: plan, operators, output schema, findings, cache."""

from __future__ import annotations

import copy
from datetime import datetime

import pytest

from synthstream.config import FieldOverride, RedactionConfig
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.errors import ConfigError
from synthstream.processors.pii.operators import Pseudonymizer
from synthstream.processors.pii.redactor import PiiRedactor, build_plan, cached_plan, make_redactor
from synthstream.processors.redactor import PassThroughRedactor
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import FieldRole, FieldType
from tests.helpers import TRANSACTIONS_CSV

KEY = Pseudonymizer(b"test-key-0123456789abcdef", "t1")


@pytest.fixture(scope="module")
def transactions():
    frame = read_table(TRANSACTIONS_CSV, nrows=2_000)
    schema = infer_schema(frame, name="Transactions")
    return schema, records_from_frame(frame, schema)


def test_auto_plan_on_transactions(transactions):
    schema, records = transactions
    plan = {f.field: (f.entity, f.operator) for f in build_plan(schema, records[:1_000]).fields}
    assert plan["first"] == ("PERSON", "fake")
    assert plan["last"] == ("PERSON", "fake")
    assert plan["street"] == ("STREET_ADDRESS", "fake")
    assert plan["cc_num"] == ("CREDIT_CARD", "pseudonymize")
    assert plan["dob"] == ("DATE_OF_BIRTH", "generalize")
    assert plan["zip"] == ("ZIP_CODE", "generalize")
    for field in ("merchant", "category", "amt", "job", "trans_num", "is_fraud", "lat"):
        assert plan[field][1] == "keep", field


def test_redacted_records_and_output_schema(transactions):
    schema, records = transactions
    redactor = PiiRedactor(schema, build_plan(schema, records[:1_000]), pseudonymizer=KEY)
    before = copy.deepcopy(records[:500])
    out = redactor.process(records[:500])
    assert records[:500] == before, "the redactor must not modify its input"
    out_schema = redactor.output_schema
    assert out_schema.field("cc_num").type == FieldType.STRING
    assert out_schema.field("cc_num").role == FieldRole.IDENTIFIER
    assert out_schema.field("first").type == FieldType.STRING
    for raw, red in zip(records[:500], out, strict=True):
        assert red["first"] != raw["first"] and red["last"] != raw["last"]
        assert red["street"] != raw["street"]
        assert red["cc_num"].startswith("t1_") and str(raw["cc_num"]) not in red["cc_num"]
        assert isinstance(red["dob"], datetime) and (red["dob"].month, red["dob"].day) == (1, 1)
        assert red["dob"].year == raw["dob"].year
        assert red["zip"] == int(str(raw["zip"])[:3] + "0" * (len(str(raw["zip"])) - 3))
        assert red["city"] == raw["city"] and red["amt"] == raw["amt"]
    # The same person gets the same fake and the same pseudonym in every record.
    by_card: dict[object, set[tuple[str, str, str]]] = {}
    for raw, red in zip(records[:500], out, strict=True):
        by_card.setdefault(raw["cc_num"], set()).add((red["first"], red["last"], red["cc_num"]))
    assert all(len(v) == 1 for v in by_card.values())
    # A fresh redactor with the same key (a restart) gives identical output.
    again = PiiRedactor(schema, build_plan(schema, records[:1_000]), pseudonymizer=KEY).process(records[:50])
    assert again == out[:50]


def test_findings_are_counted_per_field_entity_operator(transactions):
    schema, records = transactions
    redactor = PiiRedactor(schema, build_plan(schema, records[:1_000]), pseudonymizer=KEY)
    redactor.process(records[:300])
    redactor.process(records[300:400])
    findings = {(f, e, o): n for f, e, o, n in redactor.drain_findings()}
    assert findings[("first", "PERSON", "fake")] == 400
    assert findings[("cc_num", "CREDIT_CARD", "pseudonymize")] == 400
    assert ("city", "LOCATION", "keep") not in findings
    assert redactor.drain_findings() == []


def test_overrides_drop_and_entity(transactions):
    schema, records = transactions
    overrides = {
        "trans_num": FieldOverride(redact="drop"),
        "city": FieldOverride(redact="fake", entity="LOCATION"),
        "dob": FieldOverride(redact="generalize", generalize="month"),
    }
    redactor = PiiRedactor(schema, build_plan(schema, records[:500], overrides), pseudonymizer=KEY)
    out = redactor.process(records[:100])
    assert "trans_num" not in redactor.output_schema.field_names
    assert all("trans_num" not in r for r in out)
    assert sum(r["city"] != raw["city"] for r, raw in zip(out, records, strict=False)) > 90
    assert all(r["dob"].day == 1 and r["dob"].month == raw["dob"].month for r, raw in zip(out, records, strict=False))
    with pytest.raises(ConfigError, match="no such field"):
        build_plan(schema, records[:10], {"nope": FieldOverride(redact="drop")})


def test_a_plan_that_needs_a_key_refuses_to_run_without_one(transactions):
    schema, records = transactions
    with pytest.raises(ConfigError, match="pseudonym key"):
        PiiRedactor(schema, build_plan(schema, records[:500]), pseudonymizer=None)


def test_plan_is_cached_per_schema_version_and_overrides(transactions, tmp_path):
    schema, records = transactions
    first = cached_plan(tmp_path, schema, records[:500])
    assert len(list(tmp_path.glob("plan-*.json"))) == 1
    # The cache answers without looking at values again (an empty sample gives the same plan).
    assert cached_plan(tmp_path, schema, []) == first
    changed = cached_plan(tmp_path, schema, records[:500], {"city": FieldOverride(redact="drop")})
    assert changed != first
    assert len(list(tmp_path.glob("plan-*.json"))) == 2
    # The cached plan names entities and operators, never values.
    text = "".join(p.read_text() for p in tmp_path.glob("plan-*.json"))
    assert records[0]["first"] not in text and str(records[0]["cc_num"]) not in text


def test_disabled_redaction_is_the_pass_through_hook(transactions):
    schema, records = transactions
    redactor = make_redactor(RedactionConfig(enabled=False), {}, schema, records[:10], pseudonymizer=None)
    assert isinstance(redactor, PassThroughRedactor) and redactor.redacts is False


def test_free_text_fields_go_through_ner(transactions):
    schema, records = transactions
    schema = schema.with_roles({"job": FieldRole.FREE_TEXT})
    notes = [
        dict(r, job=f"Customer {r['first']} {r['last']} asked us to call 555-201-{1000 + i} or mail x{i}@example.com.")
        for i, r in enumerate(records[:100])
    ]
    redactor = make_redactor(RedactionConfig(), {}, schema, notes, pseudonymizer=KEY)
    out = redactor.process(notes)
    for red in out:
        # Pattern-backed entities are always caught ...
        assert "@example.com" not in red["job"] and "555-201-" not in red["job"]
    # ... names depend on the NER model (en_core_web_sm): a floor a little below what we measured.
    hidden = sum(raw["last"] not in red["job"] for raw, red in zip(notes, out, strict=True))
    assert hidden >= 85, f"only {hidden}/100 surnames redacted"
    counted = {(f, e) for f, e, _, _ in redactor.drain_findings()}
    assert ("job", "PERSON") in counted and ("job", "EMAIL_ADDRESS") in counted


def test_the_automatic_operator_fits_the_field_type_and_a_config_choice_is_checked_as_set():
    """A double `birth_year` (19.0, 41.9) took `generalize: year` and init wrote a file its own check refused."""
    from synthstream.schemas.record import FieldSpec, RecordSchema

    schema = RecordSchema(
        name="People",
        fields=(
            FieldSpec(name="birth_year", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
            FieldSpec(name="height", type=FieldType.LONG, role=FieldRole.NUMERIC),
        ),
    )
    rows = [{"birth_year": 19.0 + i * 0.7, "height": 150 + i} for i in range(60)]
    plan = build_plan(schema, rows)
    (year,) = [p for p in plan.fields if p.field == "birth_year"]
    assert (year.entity, year.operator, year.generalize) == ("DATE_OF_BIRTH", "generalize", "band")
    assert "does not fit a double" in year.reason
    out = PiiRedactor(schema, plan).process(rows)
    assert {r["birth_year"] for r in out} <= {10.0, 20.0, 30.0, 40.0, 50.0, 60.0}
    set_in_config = {"birth_year": FieldOverride(redact="generalize", generalize="year")}
    with pytest.raises(ConfigError, match="generalize: year needs a field of type"):
        PiiRedactor(schema, build_plan(schema, rows, set_in_config))
