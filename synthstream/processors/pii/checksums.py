"""Check-digit algorithms for identifiers: CPF, CNPJ (numeric and alphanumeric), Luhn, IBAN.

A pattern alone over-matches (any 11 digits look like a CPF); the check digits are what
make a recognizer precise. Generators of valid values serve tests, benchmarks and fakes.
"""

from __future__ import annotations

import random
import re

_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")
_CNPJ_WEIGHTS_1 = (5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_CNPJ_WEIGHTS_2 = (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)
_IBAN_LENGTHS = {
    "AD": 24,
    "AT": 20,
    "BE": 16,
    "BG": 22,
    "BR": 29,
    "CH": 21,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "EE": 20,
    "ES": 24,
    "FI": 18,
    "FR": 27,
    "GB": 22,
    "GR": 27,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IS": 26,
    "IT": 27,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MT": 31,
    "NL": 18,
    "NO": 15,
    "PL": 28,
    "PT": 25,
    "RO": 24,
    "SA": 24,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "TR": 26,
    "AE": 23,
    "IL": 23,
}


def _cpf_digit(digits: list[int]) -> int:
    weight = len(digits) + 1
    total = sum(d * (weight - i) for i, d in enumerate(digits))
    rest = total % 11
    return 0 if rest < 2 else 11 - rest


def cpf_is_valid(text: str) -> bool:
    """Whether ``text`` (``123.456.789-09`` or 11 bare digits) is a CPF with valid check digits."""
    raw = _NON_ALNUM.sub("", text)
    if len(raw) != 11 or not raw.isdigit() or raw == raw[0] * 11:
        return False
    digits = [int(c) for c in raw]
    return _cpf_digit(digits[:9]) == digits[9] and _cpf_digit(digits[:10]) == digits[10]


def _cnpj_digit(values: list[int], weights: tuple[int, ...]) -> int:
    rest = sum(v * w for v, w in zip(values, weights, strict=True)) % 11
    return 0 if rest < 2 else 11 - rest


def cnpj_is_valid(text: str) -> bool:
    """Whether ``text`` is a CNPJ with valid check digits, numeric or alphanumeric.

    The alphanumeric CNPJ (issued from July 2026) has 12 characters in [0-9A-Z] and two
    numeric check digits; each character counts as ``ord(char) - 48``, so digits keep
    their value and the numeric CNPJ is the special case.
    """
    raw = _NON_ALNUM.sub("", text).upper()
    if len(raw) != 14 or not raw[12:].isdigit() or raw == raw[0] * 14:
        return False
    if not all(c.isdigit() or "A" <= c <= "Z" for c in raw[:12]):
        return False
    values = [ord(c) - 48 for c in raw[:12]]
    first = _cnpj_digit(values, _CNPJ_WEIGHTS_1)
    second = _cnpj_digit([*values, first], _CNPJ_WEIGHTS_2)
    return raw[12:] == f"{first}{second}"


def luhn_is_valid(digits: str) -> bool:
    """Whether a digit string (separators allowed) passes the Luhn check (payment cards)."""
    raw = [int(c) for c in digits if c.isdigit()]
    if len(raw) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(raw)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_is_valid(text: str) -> bool:
    """Whether ``text`` is an IBAN (ISO 13616): known country length and mod-97 == 1."""
    raw = _NON_ALNUM.sub("", text).upper()
    if len(raw) < 15 or not raw[:2].isalpha() or not raw[2:4].isdigit():
        return False
    expected = _IBAN_LENGTHS.get(raw[:2])
    if expected is not None and len(raw) != expected:
        return False
    rearranged = raw[4:] + raw[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def generate_cpf(rng: random.Random, *, formatted: bool = True) -> str:
    """A random CPF with valid check digits."""
    while True:
        digits = [rng.randrange(10) for _ in range(9)]
        if len(set(digits)) > 1:
            break
    digits.append(_cpf_digit(digits))
    digits.append(_cpf_digit(digits))
    raw = "".join(map(str, digits))
    return f"{raw[:3]}.{raw[3:6]}.{raw[6:9]}-{raw[9:]}" if formatted else raw


def generate_cnpj(rng: random.Random, *, alphanumeric: bool = False, formatted: bool = True) -> str:
    """A random CNPJ with valid check digits (alphanumeric root when asked)."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" if alphanumeric else "0123456789"
    body = [rng.choice(alphabet) for _ in range(8)] + list("0001")
    values = [ord(c) - 48 for c in body]
    first = _cnpj_digit(values, _CNPJ_WEIGHTS_1)
    second = _cnpj_digit([*values, first], _CNPJ_WEIGHTS_2)
    raw = "".join(body) + f"{first}{second}"
    return f"{raw[:2]}.{raw[2:5]}.{raw[5:8]}/{raw[8:12]}-{raw[12:]}" if formatted else raw


def generate_card(rng: random.Random, *, prefix: str = "4", length: int = 16) -> str:
    """A random Luhn-valid card number (digits only)."""
    body = [int(c) for c in prefix] + [rng.randrange(10) for _ in range(length - len(prefix) - 1)]
    for check in range(10):
        if luhn_is_valid("".join(map(str, [*body, check]))):
            return "".join(map(str, [*body, check]))
    raise AssertionError("unreachable: one check digit always satisfies Luhn")
