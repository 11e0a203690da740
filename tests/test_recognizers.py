"""Every recognizer with valid and invalid examples, formatted and bare; CPFs from real rows."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from synthstream.processors.pii.checksums import (
    cnpj_is_valid,
    cpf_is_valid,
    generate_card,
    generate_cnpj,
    generate_cpf,
    iban_is_valid,
    luhn_is_valid,
)
from synthstream.processors.pii.patterns import TextScanner, classify_value
from synthstream.processors.pii.presidio_ext import build_presidio_analyzer
from tests.helpers import FAKE_IDENTITIES_CSV


def _flip_last_digit(value: str) -> str:
    pos = max(i for i, c in enumerate(value) if c.isdigit())
    return value[:pos] + str((int(value[pos]) + 1) % 10) + value[pos + 1 :]


def _found(text: str, entity: str) -> list[str]:
    return [text[f.start : f.end] for f in TextScanner().scan(text) if f.entity_type == entity]


@pytest.mark.parametrize("cpf", ["529.982.247-25", "52998224725", "308.271.618-08"])
def test_cpf_valid_formatted_and_bare(cpf):
    assert cpf_is_valid(cpf)
    assert classify_value(cpf) == "BR_CPF"
    assert _found(f"O CPF {cpf} consta no cadastro.", "BR_CPF") == [cpf]


@pytest.mark.parametrize("cpf", ["529.982.247-26", "52998224724", "111.111.111-11", "00000000000", "529.982.247"])
def test_cpf_invalid_check_digits_are_not_cpfs(cpf):
    assert not cpf_is_valid(cpf)
    assert classify_value(cpf) != "BR_CPF"
    assert _found(f"O CPF {cpf} consta no cadastro.", "BR_CPF") == []


def _reference_cpf_digits(nine: str) -> str:
    """The two CPF check digits written from the Receita Federal rule, independent of the package's code."""
    first = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True)) * 10 % 11 % 10
    second = sum(int(d) * w for d, w in zip(nine + str(first), range(11, 1, -1), strict=True)) * 10 % 11 % 10
    return f"{first}{second}"


def _reference_cpfs(rng: random.Random, n: int) -> list[str]:
    """``n`` valid CPFs built by the reference rule, half formatted (123.456.789-09), half bare."""
    out = []
    while len(out) < n:
        nine = "".join(rng.choice("0123456789") for _ in range(9))
        if len(set(nine)) == 1:
            continue
        raw = nine + _reference_cpf_digits(nine)
        out.append(f"{raw[:3]}.{raw[3:6]}.{raw[6:9]}-{raw[9:]}" if len(out) % 2 else raw)
    return out


def _corrupt_check_digit(value: str, which: int, rng: random.Random) -> str:
    """The CPF with check digit ``which`` (0: first, 1: second) replaced by a different digit."""
    positions = [i for i, c in enumerate(value) if c.isdigit()]
    pos = positions[9 + which]
    wrong = rng.choice([d for d in "0123456789" if d != value[pos]])
    return value[:pos] + wrong + value[pos + 1 :]


def test_cpf_scanner_recall_and_precision_at_scale():
    """The scanner (not the check-digit helper) on 1,000 reference CPFs and on each with a corrupted check digit."""
    rng = random.Random(11)
    valid = _reference_cpfs(rng, 1_000)
    corrupted = [_corrupt_check_digit(v, i % 2, rng) for i, v in enumerate(valid)]
    scanner = TextScanner()
    found = [
        [text[f.start : f.end] for f in scanner.scan(text) if f.entity_type == "BR_CPF"]
        for text in (f"Cliente com CPF {v} solicitou reembolso." for v in valid)
    ]
    assert [v for f, v in zip(found, valid, strict=True) if f != [v]] == []
    assert sum(classify_value(v) == "BR_CPF" for v in valid) == len(valid)
    assert [c for c in corrupted if _found(f"Cliente com CPF {c} solicitou reembolso.", "BR_CPF")] == []
    assert not any(classify_value(c) == "BR_CPF" for c in corrupted)


def test_generated_cpfs_pass_the_reference_rule():
    rng = random.Random(5)
    for value in (generate_cpf(rng, formatted=rng.random() < 0.5) for _ in range(500)):
        raw = value.replace(".", "").replace("-", "")
        assert raw[9:] == _reference_cpf_digits(raw[:9]), value


def test_cpfs_of_the_brazilian_fake_identities():
    people = pd.read_csv(FAKE_IDENTITIES_CSV, encoding="utf-8-sig")
    ids = [str(v) for v in people.loc[people["Country"] == "BR", "NationalID"].dropna()]
    assert len(ids) >= 80
    # FakeNameGenerator writes CPF-formatted ids with valid check digits (checked by the reference rule);
    # the scanner finds every one of them in a sentence.
    raw = [v.replace(".", "").replace("-", "") for v in ids]
    assert all(r[9:] == _reference_cpf_digits(r[:9]) for r in raw)
    assert all(_found(f"O CPF {v} consta no cadastro.", "BR_CPF") == [v] for v in ids)


@pytest.mark.parametrize(
    ("cnpj", "ok"),
    [
        ("11.222.333/0001-81", True),
        ("11222333000181", True),
        ("12.ABC.345/01DE-35", True),  # alphanumeric CNPJ (from July 2026), published example
        ("12ABC34501DE35", True),
        ("12.ABC.345/01DE-36", False),
        ("11.222.333/0001-82", False),
        ("00000000000000", False),
    ],
)
def test_cnpj_numeric_and_alphanumeric(cnpj, ok):
    assert cnpj_is_valid(cnpj) is ok
    assert (classify_value(cnpj) == "BR_CNPJ") is ok
    assert bool(_found(f"Empresa CNPJ {cnpj} ativa.", "BR_CNPJ")) is ok


def test_generated_alphanumeric_cnpjs_validate():
    rng = random.Random(3)
    for _ in range(500):
        value = generate_cnpj(rng, alphanumeric=True)
        assert cnpj_is_valid(value) and not cnpj_is_valid(_flip_last_digit(value))


@pytest.mark.parametrize("card", ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "378282246310005"])
def test_cards_pass_luhn(card):
    assert luhn_is_valid(card)
    assert classify_value(card) == "CREDIT_CARD"
    assert _found(f"Paid with {card} yesterday.", "CREDIT_CARD") == [card]


def test_luhn_failures_are_not_cards():
    rng = random.Random(5)
    for _ in range(200):
        card = generate_card(rng)
        bad = _flip_last_digit(card)
        assert luhn_is_valid(card) and not luhn_is_valid(bad)
        assert _found(f"card {bad} on file", "CREDIT_CARD") == []


def test_iban():
    assert iban_is_valid("GB82 WEST 1234 5698 7654 32") and iban_is_valid("GB82WEST12345698765432")
    assert not iban_is_valid("GB82 WEST 1234 5698 7654 33")
    assert _found("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN_CODE") == ["GB82 WEST 1234 5698 7654 32"]


@pytest.mark.parametrize(
    ("text", "entity", "expected"),
    [
        ("ligue (11) 98765-4321 hoje", "BR_PHONE", ["(11) 98765-4321"]),
        ("ligue +55 11 98765 4321 hoje", "BR_PHONE", ["+55 11 98765 4321"]),
        ("CEP 01310-100, São Paulo", "BR_CEP", ["01310-100"]),
        ("mail jose.silva@exemplo.com.br now", "EMAIL_ADDRESS", ["jose.silva@exemplo.com.br"]),
        ("call (212) 555-0100 now", "PHONE_NUMBER", ["(212) 555-0100"]),
        ("from 192.168.1.7 and 10.0.0.300", "IP_ADDRESS", ["192.168.1.7"]),
        ("v6 2001:db8::8a2e:370:7334 here", "IP_ADDRESS", ["2001:db8::8a2e:370:7334"]),
        ("ssn 123-45-6789 and 000-12-3456", "US_SSN", ["123-45-6789"]),
    ],
)
def test_text_recognizers(text, entity, expected):
    assert _found(text, entity) == expected


@pytest.mark.parametrize(
    ("value", "entity"),
    [
        ("jose@exemplo.com.br", "EMAIL_ADDRESS"),
        ("(11) 98765-4321", "BR_PHONE"),
        ("01310-100", "BR_CEP"),
        ("28654", "ZIP_CODE"),
        ("192.168.0.1", "IP_ADDRESS"),
        ("2019-01-01 00:00:18", "DATE_TIME"),
        ("Moravian Falls", None),
        ("107.23", None),
        ("Psychologist, counselling", None),
        ("0b242abb623afc578575680df30655b9", None),
    ],
)
def test_classify_whole_values(value, entity):
    assert classify_value(value) == entity


def test_unknown_scanner_entity_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported entities"):
        TextScanner(["BR_RG"])


@pytest.fixture(scope="module")
def presidio():
    return build_presidio_analyzer(with_br=True)


def test_presidio_with_our_br_recognizers_offline(presidio):
    text = "Cliente com CPF 529.982.247-25 e email jose@exemplo.com.br; CPF errado 529.982.247-26."
    found = {(r.entity_type, text[r.start : r.end]) for r in presidio.analyze(text, language="en") if r.score >= 0.9}
    assert ("BR_CPF", "529.982.247-25") in found
    assert ("EMAIL_ADDRESS", "jose@exemplo.com.br") in found  # tldextract works offline
    assert ("BR_CPF", "529.982.247-26") not in found
