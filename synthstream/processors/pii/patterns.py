"""Fast recognizers: precompiled patterns plus check digits, no NLP.

:class:`TextScanner` finds entities inside free text; :func:`classify_value` says what a
whole structured value is. Both are the redactor's hot path, so everything is compiled
once and validation (CPF/CNPJ check digits, Luhn, IBAN mod-97, IP ranges) keeps precision
up without a model. No email recognizer here needs tldextract (which would download the
public suffix list at run time and fails offline).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from synthstream.processors.pii.checksums import cnpj_is_valid, cpf_is_valid, iban_is_valid, luhn_is_valid
from synthstream.processors.pii.types import Entity, Finding

Validator = Callable[[str], bool]


def _always(_: str) -> bool:
    return True


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _card_ok(text: str) -> bool:
    digits = "".join(c for c in text if c.isdigit())
    return 13 <= len(digits) <= 19 and luhn_is_valid(digits)


@dataclass(frozen=True)
class _Rule:
    entity: str
    pattern: re.Pattern[str]
    score: float
    validate: Validator = _always


_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_CPF = r"\d{3}\.\d{3}\.\d{3}-\d{2}"
_CNPJ = r"[0-9A-Z]{2}\.[0-9A-Z]{3}\.[0-9A-Z]{3}/[0-9A-Z]{4}-\d{2}"
_BR_PHONE = (
    r"(?:\+55[\s-]?)?\(\d{2}\)\s?\d{4,5}[-\s]?\d{4}|\+55[\s-]?\d{2}[\s-]?\d{4,5}[-\s]?\d{4}"
    r"|(?<!\d)[1-9]{2}[\s-]\d{4,5}-\d{4}"
)
_PHONE = (
    r"(?:\+1[\s.-]?)?\(\d{3}\)[\s.-]?\d{3}[\s.-]\d{4}"
    r"|(?:\+1[\s.-]?)?\d{3}[.-]\d{3}[.-]\d{4}"
    r"|\+\d{2,3}(?:[\s.-]\d{1,4}){2,5}"
)
_SSN = r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}"
_CARD = r"(?:\d[ -]?){12,18}\d"
_IBAN = r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?"
_IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
_IPV6 = r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"  # candidates; ipaddress validates
_CEP = r"\d{5}-\d{3}"
_URL = r"https?://[^\s<>\"']+|www\.[^\s<>\"']+"
#: Calendar dates written with numbers: ISO ``2021-04-03`` and day-first ``03/04/2021`` (also ``-``/``.``).
_DATE = (
    r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"|(?:0?[1-9]|[12]\d|3[01])([/.-])(?:0?[1-9]|1[0-2])\1(?:1[89]|20)\d\d"
    r"|(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/(?:1[89]|20)\d\d"
)

#: Raw patterns of the Brazilian identifiers, shared with the Presidio recognizers.
BR_PATTERNS: dict[str, str] = {"BR_CPF": _CPF, "BR_CNPJ": _CNPJ, "BR_PHONE": _BR_PHONE, "BR_CEP": _CEP}

_RULES: tuple[_Rule, ...] = (
    _Rule(Entity.EMAIL_ADDRESS, re.compile(rf"(?<![\w.+-]){_EMAIL}\b"), 1.0),
    _Rule(Entity.BR_CPF, re.compile(rf"(?<![\w.]){_CPF}(?![\w])|(?<![\w.-])\d{{11}}(?![\w])"), 1.0, cpf_is_valid),
    _Rule(
        Entity.BR_CNPJ,
        re.compile(rf"(?<![\w.]){_CNPJ}(?!\w)|(?<![\w.-])[0-9A-Z]{{12}}\d{{2}}(?!\w)"),
        1.0,
        cnpj_is_valid,
    ),
    _Rule(Entity.CREDIT_CARD, re.compile(rf"(?<![\w-]){_CARD}(?![\w-])"), 1.0, _card_ok),
    _Rule(Entity.IBAN_CODE, re.compile(rf"\b{_IBAN}\b"), 1.0, iban_is_valid),
    _Rule(Entity.US_SSN, re.compile(rf"(?<![\w-]){_SSN}(?![\w-])"), 0.85),
    _Rule(Entity.BR_PHONE, re.compile(rf"(?<![\w+]){_BR_PHONE}(?!\w)"), 0.8),
    _Rule(Entity.PHONE_NUMBER, re.compile(rf"(?<![\w+]){_PHONE}(?!\w)"), 0.75),
    _Rule(Entity.IP_ADDRESS, re.compile(rf"(?<![\w.]){_IPV4}(?![\w.])|(?<![\w:]){_IPV6}(?![\w:])"), 0.9, _ip_ok),
    _Rule(Entity.BR_CEP, re.compile(rf"(?<![\w-]){_CEP}(?![\w-])"), 0.6),
    _Rule(Entity.URL, re.compile(_URL), 0.6),
    _Rule(Entity.DATE_TIME, re.compile(rf"(?<![\w/.-])(?:{_DATE})(?![\w/]|[.-]\d)"), 0.85),
)
SUPPORTED: tuple[str, ...] = tuple(
    dict.fromkeys(r.entity.value if isinstance(r.entity, Entity) else r.entity for r in _RULES)
)


class TextScanner:
    """Finds structured PII inside free text with compiled patterns and check digits.

    Overlapping matches are resolved by score, then length: a valid CPF (score 1.0) wins
    over the phone pattern that also matches 11 bare digits.
    """

    def __init__(self, entities: Iterable[str] | None = None) -> None:
        wanted = list(SUPPORTED) if entities is None else [str(e) for e in entities]
        unknown = sorted(set(wanted) - set(SUPPORTED))
        if unknown:
            raise ValueError(f"unsupported entities {unknown}; the scanner knows {list(SUPPORTED)}")
        self.entities = tuple(wanted)
        self._rules = tuple(r for r in _RULES if r.entity in set(wanted))

    def __repr__(self) -> str:
        return f"TextScanner(entities={list(self.entities)})"

    def scan(self, text: str) -> list[Finding]:
        """Non-overlapping findings in ``text``, in order of position."""
        candidates: list[Finding] = []
        for rule in self._rules:
            for match in rule.pattern.finditer(text):
                if rule.validate(match.group()):
                    candidates.append(Finding(str(rule.entity), match.start(), match.end(), rule.score, "pattern"))
        if len(candidates) < 2:
            return candidates
        return resolve_overlaps(candidates)

    __call__ = scan


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep the best of overlapping findings (higher score, then longer), ordered by start."""
    kept: list[Finding] = []
    for f in sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


_WHOLE: tuple[tuple[str, re.Pattern[str], Validator], ...] = (
    (Entity.EMAIL_ADDRESS, re.compile(_EMAIL), _always),
    (Entity.BR_CPF, re.compile(rf"{_CPF}|\d{{11}}"), cpf_is_valid),
    (Entity.BR_CNPJ, re.compile(rf"{_CNPJ}|[0-9A-Z]{{12}}\d{{2}}"), cnpj_is_valid),
    (Entity.CREDIT_CARD, re.compile(_CARD), _card_ok),
    (Entity.IBAN_CODE, re.compile(_IBAN), iban_is_valid),
    (Entity.US_SSN, re.compile(_SSN), _always),
    (Entity.IP_ADDRESS, re.compile(rf"{_IPV4}|{_IPV6}"), _ip_ok),
    (Entity.BR_CEP, re.compile(_CEP), _always),
    (Entity.ZIP_CODE, re.compile(r"\d{5}(?:-\d{4})?"), _always),
    (Entity.BR_PHONE, re.compile(_BR_PHONE), _always),
    (Entity.PHONE_NUMBER, re.compile(rf"{_PHONE}|\d{{3}}[\s.-]\d{{3}}[\s.-]\d{{4}}(?:\s?x\d{{1,5}})?"), _always),
    (Entity.URL, re.compile(_URL), _always),
    (
        Entity.DATE_TIME,
        re.compile(
            r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
            r"|\d{1,2}/\d{1,2}/\d{2,4}"
        ),
        _always,
    ),
)


def classify_value(value: str) -> str | None:
    """The entity a whole structured value is (e.g. a valid CPF, an email), or None."""
    text = value.strip()
    if not text or len(text) > 64:
        return None
    for entity, pattern, validate in _WHOLE:
        if pattern.fullmatch(text) and validate(text):
            return str(entity)
    return None
