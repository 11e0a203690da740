"""Operators and the field plan: pseudonyms, fakes, masks, generalizations, detection."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from synthstream.errors import ConfigError
from synthstream.processors.pii.checksums import cpf_is_valid, luhn_is_valid
from synthstream.processors.pii.operators import (
    Pseudonymizer,
    fake_function,
    generalize_function,
    key_from_env,
    mask_function,
    output_type,
)
from synthstream.processors.pii.plan import default_operator, detect_fields, name_hint
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from tests.helpers import FAKE_IDENTITIES_CSV

K1 = Pseudonymizer(b"first-key-0123456789abcdef", "k1")
K2 = Pseudonymizer(b"second-key-0123456789abcdef", "k2")


def test_pseudonyms_are_stable_keyed_and_reveal_nothing():
    value = "Jennifer Banks"
    assert K1(value) == K1(value) == Pseudonymizer(b"first-key-0123456789abcdef", "k1")(value)
    assert K1(value) != K2(value)
    assert K1(value).startswith("k1_") and K2(value).startswith("k2_")
    assert K1(value) != K1("Jennifer Bank")
    out = K1(value)
    assert not any(value[i : i + 4].lower() in out.lower() for i in range(len(value) - 3))
    assert "first-key" not in repr(K1)
    with pytest.raises(TypeError):
        __import__("pickle").dumps(K1)


def test_key_from_env(monkeypatch):
    monkeypatch.delenv("SYNTHSTREAM_PSEUDONYM_KEY", raising=False)
    with pytest.raises(ConfigError, match="SYNTHSTREAM_PSEUDONYM_KEY"):
        key_from_env()
    monkeypatch.setenv("SYNTHSTREAM_PSEUDONYM_KEY", "short")
    with pytest.raises(ConfigError, match="shorter"):
        key_from_env()
    monkeypatch.setenv("SYNTHSTREAM_PSEUDONYM_KEY", "a-long-enough-secret-key")
    key, key_id = key_from_env()
    assert key == b"a-long-enough-secret-key" and len(key_id) == 8
    with pytest.raises(ConfigError):
        Pseudonymizer(b"short", "k")


@pytest.mark.parametrize("locale", ["en_US", "pt_BR"])
def test_fakes_are_stable_per_person_and_format_preserving(locale):
    name = fake_function("PERSON", locale, K1, FieldType.STRING, variant="first_name")
    assert (
        name("Jennifer")
        == name("Jennifer")
        == fake_function("PERSON", locale, K1, FieldType.STRING, variant="first_name")("Jennifer")
    )
    assert name("Jennifer") != "Jennifer"
    assert len({name(f"person{i}") for i in range(50)}) > 20
    assert name(None) is None
    cpf = fake_function("BR_CPF", locale, K1, FieldType.STRING)("529.982.247-25")
    assert cpf_is_valid(cpf) and cpf != "529.982.247-25" and cpf[3] == "." and cpf[-3] == "-"
    card = fake_function("CREDIT_CARD", locale, K1, FieldType.LONG)(2703186189652095)
    assert isinstance(card, int) and len(str(card)) == 16 and luhn_is_valid(str(card)) and card != 2703186189652095
    phone = fake_function("BR_PHONE", locale, K1, FieldType.STRING)("(11) 98765-4321")
    assert phone != "(11) 98765-4321" and phone[0] == "(" and phone[-5] == "-"
    dob = fake_function("DATE_OF_BIRTH", locale, K1, FieldType.TIMESTAMP)(datetime(1988, 3, 9, tzinfo=UTC))
    assert isinstance(dob, datetime) and dob.tzinfo is not None


def test_fakes_differ_across_keys():
    a = fake_function("PERSON", "en_US", K1, FieldType.STRING)
    b = fake_function("PERSON", "en_US", K2, FieldType.STRING)
    assert sum(a(f"p{i}") != b(f"p{i}") for i in range(20)) >= 15


def test_mask_and_generalize():
    assert mask_function()("4111-1111-1111-1234") == "****-****-****-1234"
    assert mask_function()("jose@exemplo.com") == "j***@exemplo.com"
    year = generalize_function("year", field_type=FieldType.TIMESTAMP)
    assert year(datetime(1988, 3, 9, 12, tzinfo=UTC)) == datetime(1988, 1, 1, tzinfo=UTC)
    assert generalize_function("month", field_type=FieldType.STRING)("1988-03-09") == "1988-03-01"
    assert generalize_function("prefix", field_type=FieldType.LONG)(28654) == 28600
    assert generalize_function("prefix", field_type=FieldType.STRING)("01310-100") == "013**-***"
    assert generalize_function("band", field_type=FieldType.LONG)(37) == 30
    with pytest.raises(ValueError, match="unknown generalization"):
        generalize_function("decade", field_type=FieldType.LONG)  # type: ignore[arg-type]
    assert output_type("pseudonymize", FieldType.LONG) == FieldType.STRING
    assert output_type("fake", FieldType.LONG) == FieldType.LONG


@pytest.mark.parametrize(
    ("name", "entity"),
    [
        ("first", "PERSON"),
        ("GivenName", "PERSON"),
        ("sobrenome", "PERSON"),
        ("EmailAddress", "EMAIL_ADDRESS"),
        ("TelephoneNumber", "PHONE_NUMBER"),
        ("cpf", "BR_CPF"),
        ("dob", "DATE_OF_BIRTH"),
        ("Birthday", "DATE_OF_BIRTH"),
        ("cc_num", "CREDIT_CARD"),
        ("zip", "ZIP_CODE"),
        ("street", "STREET_ADDRESS"),
        ("merchant", None),
        ("category", None),
        ("job", None),
        ("amt", None),
        ("state", None),
    ],
)
def test_name_hints(name, entity):
    assert name_hint(name) == entity


def test_plan_on_fake_identities_uses_values():
    people = pd.read_csv(FAKE_IDENTITIES_CSV, encoding="utf-8-sig")
    br = people[people["Country"] == "BR"]
    columns = ["GivenName", "Surname", "EmailAddress", "NationalID", "StreetAddress", "City", "Occupation"]
    schema = RecordSchema(
        fields=tuple(
            FieldSpec(name=c, type=FieldType.STRING, role=FieldRole.CATEGORICAL, nullable=True) for c in columns
        )
    )
    sample = [{c: (None if pd.isna(v) else str(v)) for c, v in row.items()} for row in br[columns].to_dict("records")]
    found = detect_fields(schema, sample)
    assert found["NationalID"].entity == "BR_CPF" and found["NationalID"].source == "value"
    assert found["EmailAddress"].entity == "EMAIL_ADDRESS"
    assert found["GivenName"].entity == "PERSON" and found["Surname"].entity == "PERSON"
    assert found["StreetAddress"].entity == "STREET_ADDRESS"
    assert found["Occupation"].entity is None
    assert default_operator(found["NationalID"], schema.field("NationalID")) == "pseudonymize"
    assert default_operator(found["GivenName"], schema.field("GivenName")) == "fake"
    assert default_operator(found["Occupation"], schema.field("Occupation")) == "keep"
