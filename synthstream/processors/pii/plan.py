"""What each field holds, decided from its values first, with field names as a weaker prior.

Run once per schema version (the redactor caches the result by schema fingerprint). Every
sampled value is classified (:func:`classify_field_value`: check digits, formats, digit
counts of integers, dates, the person-name lexicon), and the field gets, in this order:

1. ``value``: one structured entity in at least ``min_share`` of the values (CPF, CNPJ,
   e-mail, card, phone, CEP; integers by digit count, check digits and their spread);
2. ``value``: dates whose years look like birth years (ages 0-110, spread over several
   decades) -> DATE_OF_BIRTH; a narrow recent range (event times) is not;
3. ``value``: values shaped like person names (capitalised words, many distinct) with
   name-lexicon support -> PERSON, replaced whole;
4. ``role``: any other free-text field is left to NER (``scan``);
5. ``name``: the field name's hint when it calls for redaction (``first`` -> PERSON);
6. ``mixed``: precise PII (check-digit or format evidence well above chance) in at least
   ``scan_share`` of the values and ``scan_min`` values: the field is scanned value by
   value (``scan_values``), never kept;
7. ``name``: the remaining hints (a city is kept);
8. ``mixed``: a smaller share of full person names;
9. ``none``: kept.

Each :class:`FieldDetection` carries a human-readable ``reason`` (counts, shares, entity
names and rules; never a value) that ``synthstream infer-schema`` prints.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from synthstream.processors.pii.checksums import cnpj_is_valid, cpf_is_valid, luhn_is_valid
from synthstream.processors.pii.names import NameMatcher, default_matcher
from synthstream.processors.pii.types import Entity
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

Source = Literal["name", "value", "mixed", "role", "none"]

#: Field-name hints (English and Portuguese), matched on lower-cased name tokens.
_NAME_HINTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), entity)
    for pattern, entity in (
        (r"^(first|given|fore)(_?name)?$|^(pre)?nome$|^primeiro_nome$|^givenname$", Entity.PERSON),
        (r"^(last|sur|family)(_?name)?$|^sobrenome$|^surname$|^mothers_?maiden$|^mothersmaiden$", Entity.PERSON),
        (r"^(full_?)?name$|^nome_completo$|^customer_name$|^cardholder$|^titular$", Entity.PERSON),
        (r"e_?mail", Entity.EMAIL_ADDRESS),
        (r"phone|^tel(efone)?|celular|mobile|^fone", Entity.PHONE_NUMBER),
        (r"^cpf$|_cpf$|^cpf_", Entity.BR_CPF),
        (r"^cnpj$|_cnpj$|^cnpj_", Entity.BR_CNPJ),
        (r"^cep$|_cep$", Entity.BR_CEP),
        (r"^zip(_?code)?$|^post(al)?_?code$|^zipcode$", Entity.ZIP_CODE),
        (r"street|^address|endereco|logradouro|streetaddress", Entity.STREET_ADDRESS),
        (r"^city$|^cidade$|^town$|^municipio$", Entity.LOCATION),
        (r"^dob$|birth|nascimento|^birthday$", Entity.DATE_OF_BIRTH),
        (r"^cc_?num(ber)?$|card_?num|^card$|cartao|^ccnumber$|^pan$", Entity.CREDIT_CARD),
        (r"^iban$", Entity.IBAN_CODE),
        (r"^ip(_?addr(ess)?)?$|^client_ip$", Entity.IP_ADDRESS),
        (r"^ssn$|social_?security", Entity.US_SSN),
    )
)

#: Entities whose value evidence decides a whole field.
_VALUE_ENTITIES = {
    Entity.EMAIL_ADDRESS,
    Entity.BR_CPF,
    Entity.BR_CNPJ,
    Entity.CREDIT_CARD,
    Entity.IBAN_CODE,
    Entity.IP_ADDRESS,
    Entity.US_SSN,
    Entity.BR_PHONE,
    Entity.PHONE_NUMBER,
    Entity.BR_CEP,
}

#: Entities precise enough to be acted on one value at a time in a mixed field.
SCAN_ENTITIES: frozenset[str] = frozenset(
    {
        Entity.EMAIL_ADDRESS.value,
        Entity.BR_CPF.value,
        Entity.BR_CNPJ.value,
        Entity.CREDIT_CARD.value,
        Entity.IBAN_CODE.value,
        Entity.IP_ADDRESS.value,
        Entity.US_SSN.value,
        Entity.BR_PHONE.value,
        Entity.PHONE_NUMBER.value,
        Entity.BR_CEP.value,
        Entity.PERSON.value,
        Entity.DATE_OF_BIRTH.value,
    }
)

#: Why an entity is believed, for the plan's reasons.
_EVIDENCE = {
    Entity.BR_CPF.value: "check digits valid",
    Entity.BR_CNPJ.value: "check digits valid",
    Entity.CREDIT_CARD.value: "Luhn valid",
    Entity.IBAN_CODE.value: "mod-97 valid",
    Entity.EMAIL_ADDRESS.value: "address format",
    Entity.BR_PHONE.value: "phone format or digit count",
    Entity.PHONE_NUMBER.value: "phone format",
    Entity.BR_CEP.value: "CEP format or 8 digits",
    Entity.IP_ADDRESS.value: "valid address",
    Entity.US_SSN.value: "SSN format",
    Entity.PERSON.value: "name shape and lexicon",
}

_DIGITS_ONLY = re.compile(r"[\d.\-/ ]+")
_ISO_DATE = re.compile(r"((?:19|20)\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(?:[ T][\d:.]+(?:Z|[+-]\d\d:?\d\d)?)?")
_DMY_DATE = re.compile(r"(0?[1-9]|[12]\d|3[01])[/.-](0?[1-9]|1[0-2])[/.-]((?:1[89]|20)\d\d)")
_MOBILE = re.compile(r"(?:55)?[1-9]{2}9\d{8}")
_LANDLINE = re.compile(r"(?:55)?[1-9]{2}[2-5]\d{7}")


@dataclass(frozen=True)
class FieldDetection:
    """The entity detected in one field, where the evidence came from, its share, and why."""

    field: str
    entity: str | None
    source: Source
    share: float
    reason: str = ""


def name_hint(field: str) -> str | None:
    """The entity a field's name suggests, or None."""
    lowered = re.sub(r"[^a-z0-9]+", "_", field.lower()).strip("_")
    for pattern, entity in _NAME_HINTS:
        if pattern.search(lowered):
            return str(entity)
    return None


def _digits_entity(digits: str, *, integer: bool) -> str | None:
    """The identifier a bare digit string is by check digits (integers may have lost leading zeros)."""
    n = len(digits)
    if (n == 11 or (integer and 9 <= n <= 10)) and cpf_is_valid(digits.zfill(11)):
        return Entity.BR_CPF.value
    if (n == 14 or (integer and 12 <= n <= 13)) and cnpj_is_valid(digits.zfill(14)):
        return Entity.BR_CNPJ.value
    if 13 <= n <= 19 and digits[0] in "23456" and luhn_is_valid(digits):
        return Entity.CREDIT_CARD.value
    return None


def classify_field_value(
    value: Any, *, names: NameMatcher | None = None, classify: Callable[[str], str | None] | None = None
) -> str | None:
    """The PII a single structured value is, by precise evidence only (used per value by ``scan_values``).

    Check digits (CPF, CNPJ, cards, also as bare integers), formats (e-mail, formatted
    phone, CEP, IBAN, IP), a full person name (two or more capitalised words with lexicon
    support) or a calendar date (DATE_OF_BIRTH: only called on fields scanned for them).
    Bare numbers without check digits (8-digit CEPs, phones as integers) are not judged
    here: they are recognised per field, by their spread (:func:`detect_fields`).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime | date):
        return Entity.DATE_OF_BIRTH.value
    integer = isinstance(value, int)
    text = str(value).strip()
    if not text:
        return None
    if integer or text.isdigit():
        return _digits_entity(text.lstrip("-"), integer=integer)
    if classify is None:
        from synthstream.processors.pii.patterns import classify_value

        classify = classify_value
    entity = classify(text)
    if entity in SCAN_ENTITIES:
        return entity
    if entity == Entity.DATE_TIME.value:
        return Entity.DATE_OF_BIRTH.value if _year_of(text) is not None else None
    if entity is None and (names or default_matcher()).is_name(text) and " " in text:
        return Entity.PERSON.value
    return None


def _year_of(value: Any) -> int | None:
    if isinstance(value, datetime | date):
        return value.year
    if not isinstance(value, str):
        return None
    text = value.strip()
    m = _ISO_DATE.fullmatch(text)
    if m:
        return int(m.group(1))
    m = _DMY_DATE.fullmatch(text)
    return int(m.group(3)) if m else None


def _birth_like(years: Sequence[int], today: date) -> tuple[bool, str]:
    """Whether sampled years look like birth years: ages 0-110 spread over at least three decades."""
    if not years:
        return False, ""
    ordered = sorted(years)
    in_range = sum(1 for y in ordered if today.year - 110 <= y <= today.year) / len(ordered)
    low, high = ordered[int(0.05 * (len(ordered) - 1))], ordered[int(0.95 * (len(ordered) - 1))]
    decades = len({y // 10 for y in ordered})
    ok = in_range >= 0.95 and high - low >= 20 and decades >= 3
    return ok, f"{decades} decades of plausible birth years (90% of the years span {high - low} years)"


def _as_datetime(value: Any) -> datetime | None:
    """A sampled date value as a naive datetime (a date at midnight), or None."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _ISO_DATE.fullmatch(text):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            return None
    m = _DMY_DATE.fullmatch(text)
    if m is None:
        return None
    try:
        return datetime(int(m.group(3)), int(m.group(2)), int(m.group(1)))
    except ValueError:
        return None


def _calendar_grid(values: Sequence[Any], min_dates: int = 20) -> str | None:
    """Why sampled dates are event times on a calendar grid rather than dates of birth, or None.

    A monthly economic series from 1967 to 2015 spans five decades of "plausible birth years" and
    was generalised as dates of birth, although it was the stream's time axis. Birth dates fall at
    midnight on every day of the month at uneven gaps; event times carry a time of day, sit on
    one or two days of the month (monthly, yearly grids), or are evenly spaced (daily, weekly).
    """
    stamps = [d for d in (_as_datetime(v) for v in values) if d is not None]
    if len(stamps) < min_dates:
        return None
    timed = sum(1 for d in stamps if (d.hour, d.minute, d.second, d.microsecond) != (0, 0, 0, 0)) / len(stamps)
    if timed > 0.05:
        return f"{_pct(timed)} carry a time of day"
    days = {d.day for d in stamps}
    if len(days) <= 2:
        return f"all on {len(days)} day(s) of the month"
    distinct = sorted({d.date() for d in stamps})
    if len(distinct) >= min_dates:
        gaps = Counter((b - a).days for a, b in itertools.pairwise(distinct))
        modal, count = gaps.most_common(1)[0]
        if count / (len(distinct) - 1) >= 0.8:
            return f"evenly spaced every {modal} day(s)"
    return None


def _increasing_share(numbers: Sequence[int]) -> float:
    if len(numbers) < 3:
        return 0.0
    return sum(1 for a, b in itertools.pairwise(numbers) if b > a) / (len(numbers) - 1)


def _numeric_entity(values: Sequence[Any], integer: bool) -> tuple[str | None, int, str]:
    """CEP or phone numbers written as bare digits (integers or digit strings): by digit count and spread."""
    digits = [str(v).strip() for v in values]
    digits = [d for d in digits if d.isdigit()]
    if not digits:
        return None, 0, ""
    n = len(values)
    numbers = [int(d) for d in digits]
    counter_like = _increasing_share(numbers) >= 0.9
    distinct = len(set(digits))
    if counter_like or distinct < min(10, max(2, n // 2)):
        return None, 0, ""
    cep = sum(1 for d in digits if len(d) == 8 or (integer and len(d) == 7))
    mobile = sum(1 for d in digits if _MOBILE.fullmatch(d))
    landline = [d for d in digits if _LANDLINE.fullmatch(d)]
    ddds = len({d[-10:-8] for d in landline})
    phones = mobile + (len(landline) if ddds >= 3 else 0)
    ddds = len({d[-11:-9] for d in digits if _MOBILE.fullmatch(d)} | {d[-10:-8] for d in landline})
    if cep >= phones and cep:
        return Entity.BR_CEP.value, cep, "8-digit CEP shape, spread values, not a counter"
    if phones:
        return Entity.BR_PHONE.value, phones, f"phone digit counts with {ddds} distinct area codes, not a counter"
    return None, 0, ""


def _candidate_shares(values: Sequence[Any], entity: str, found: int) -> float:
    """Valid identifiers among values of the same shape: far above chance (1% for CPF) means real ones."""
    if entity not in (Entity.BR_CPF.value, Entity.BR_CNPJ.value, Entity.CREDIT_CARD.value):
        return 1.0
    lengths = {Entity.BR_CPF.value: (9, 11), Entity.BR_CNPJ.value: (12, 14), Entity.CREDIT_CARD.value: (13, 19)}[entity]
    shaped = 0
    for v in values:
        text = str(v)
        if _DIGITS_ONLY.fullmatch(text) and lengths[0] <= sum(c.isdigit() for c in text) <= lengths[1]:
            shaped += 1
    return found / max(1, shaped)


def detect_fields(
    schema: RecordSchema,
    sample: Sequence[Mapping[str, Any]],
    *,
    classify: Callable[[str], str | None] | None = None,
    min_share: float = 0.6,
    scan_share: float = 0.02,
    scan_min: int = 3,
    names: NameMatcher | None = None,
    today: date | None = None,
) -> dict[str, FieldDetection]:
    """Detect the entity of every field of ``schema`` from ``sample`` values and its name (see module doc).

    Args:
        schema: the fields to plan.
        sample: sampled records (raw values; none of them ends up in a reason).
        classify: whole-value classifier for strings; default
            :func:`synthstream.processors.pii.patterns.classify_value`.
        min_share: share of values that makes a whole field an entity.
        scan_share: smallest share of precise PII values that makes a field ``mixed``.
        scan_min: smallest count of precise PII values that makes a field ``mixed``.
        names: the person-name matcher; default the shipped lexicon.
        today: reference date for plausible birth years (default: now).
    """
    if not 0 < min_share <= 1:
        raise ValueError("min_share must be in (0, 1]")
    if not 0 < scan_share <= min_share or scan_min < 1:
        raise ValueError("scan_share must be in (0, min_share] and scan_min >= 1")
    matcher = names or default_matcher()
    now = today or datetime.now(UTC).date()
    out: dict[str, FieldDetection] = {}
    for spec in schema.fields:
        out[spec.name] = _detect_one(spec, sample, classify, min_share, scan_share, scan_min, matcher, now)
    return out


def _detect_one(
    spec: FieldSpec,
    sample: Sequence[Mapping[str, Any]],
    classify: Callable[[str], str | None] | None,
    min_share: float,
    scan_share: float,
    scan_min: int,
    matcher: NameMatcher,
    today: date,
) -> FieldDetection:
    name = spec.name
    hint = name_hint(name)
    values = [rec.get(name) for rec in sample if rec.get(name) is not None]
    n = len(values)
    of_n = f"of {n} sampled values"
    if spec.type in (FieldType.STRING, FieldType.LONG):
        memo: dict[Any, str | None] = {}
        for v in values:
            if v not in memo:
                memo[v] = classify_field_value(v, names=matcher, classify=classify)
        per_value = [memo[v] for v in values]
    else:
        per_value = [None] * n
    counts = Counter(e for e in per_value if e is not None and e != Entity.DATE_OF_BIRTH.value)
    # 2. one structured entity in most values (check digits, formats, digit counts and spread).
    numeric, numeric_n, numeric_why = (
        _numeric_entity(values, spec.type == FieldType.LONG)
        if spec.type in (FieldType.STRING, FieldType.LONG)
        else (None, 0, "")
    )
    top, top_n = max(((e, c) for e, c in counts.items() if e in _VALUE_ENTITIES), key=lambda t: t[1], default=(None, 0))
    if numeric is not None and numeric_n > top_n:
        top, top_n, why = numeric, numeric_n, numeric_why
    else:
        why = _EVIDENCE.get(top or "", "")
    if n and top is not None and top_n / n >= min_share:
        return FieldDetection(name, top, "value", top_n / n, f"value: {_pct(top_n / n)} {of_n} are {top} ({why})")
    # 3. dates of birth by value.
    years = [y for y in (_year_of(v) for v in values) if y is not None]
    if n and spec.type in (FieldType.STRING, FieldType.TIMESTAMP) and len(years) / n >= min_share:
        birth, detail = _birth_like(years, today)
        if birth and _calendar_grid(values) is None:
            return FieldDetection(
                name,
                Entity.DATE_OF_BIRTH.value,
                "value",
                len(years) / n,
                f"value: {_pct(len(years) / n)} {of_n} are dates; {detail}",
            )
    # 4. person names by shape and lexicon (before the free-text role: inference calls many-word
    #    high-cardinality strings such as full names free text).
    if n and spec.type == FieldType.STRING and hint in (None, Entity.PERSON.value):  # a city named after a person
        person = _person_field(values, matcher, n)
        if person is not None:
            return FieldDetection(name, Entity.PERSON.value, "value", person[0], person[1])
    if spec.role == FieldRole.FREE_TEXT:
        return FieldDetection(name, None, "role", 0.0, "role: free text, scanned by NER and recognizers")
    # 5. a hint that calls for redaction.
    if hint is not None and hint != Entity.LOCATION.value:
        share = counts.get(hint, 0) / n if n else 0.0
        return FieldDetection(name, hint, "name", share, f"name: the field name suggests {hint}")
    # 6. precise PII in part of the values: scan value by value.
    precise = {e: c for e, c in counts.items() if e != Entity.PERSON.value}
    precise = {e: c for e, c in precise.items() if _candidate_shares(values, e, c) >= 0.5}
    pii = sum(precise.values())
    if n and pii >= scan_min and pii / n >= scan_share:
        entity = max(precise, key=lambda e: precise[e])
        detail = ", ".join(
            f"{_pct(c / n)} {e} ({_EVIDENCE.get(e, 'format')})" for e, c in sorted(precise.items(), key=lambda t: -t[1])
        )
        return FieldDetection(
            name, entity, "mixed", pii / n, f"value: {detail} {of_n}; scanned value by value, other values kept"
        )
    # 7. remaining hints (a city is a quasi-identifier, kept by default).
    if hint is not None:
        return FieldDetection(name, hint, "name", 0.0, f"name: the field name suggests {hint}")
    # 8. a smaller share of full person names: scan value by value.
    if n and spec.type == FieldType.STRING:
        full = counts.get(Entity.PERSON.value, 0)
        # Names vary: one category that looks like a name ("Very Good": "Good" is a surname), repeated
        # in a fifth of the rows, is a category. At least 3 distinct name-shaped values are needed.
        names = {str(v) for v, e in zip(values, per_value, strict=True) if e == Entity.PERSON.value}
        if full >= scan_min and full / n >= max(scan_share, 0.05) and len(names) >= 3:
            return FieldDetection(
                name,
                Entity.PERSON.value,
                "mixed",
                full / n,
                f"value: {_pct(full / n)} {of_n} are full person names (name shape and lexicon); "
                "scanned value by value, other values kept",
            )
    return FieldDetection(name, None, "none", 0.0, f"none: no PII found in {n} sampled values and no name hint")


def _person_field(values: Sequence[Any], matcher: NameMatcher, n: int) -> tuple[float, str] | None:
    """(share, reason) when most values are shaped like names with lexicon support and vary like names."""
    texts = [str(v) for v in values]
    distinct = len(set(texts))
    if distinct < 10 or distinct / n < 0.2:
        return None  # a handful of categories is not a name field
    shapes = [matcher.name_shape(t) for t in texts]
    shaped = [s for s in shapes if s is not None]
    hits = sum(1 for s in shaped if s[1] >= 1)
    if len(shaped) / n >= 0.8 and hits / n >= 0.2:
        return len(shaped) / n, (
            f"value: {_pct(len(shaped) / n)} of {n} sampled values are shaped like person names, "
            f"{_pct(hits / n)} with a name-lexicon word, {distinct} distinct"
        )
    return None


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


#: The ``auto`` policy: entity -> operator.
AUTO_OPERATORS: dict[str, str] = {
    Entity.PERSON: "fake",
    Entity.EMAIL_ADDRESS: "fake",
    Entity.PHONE_NUMBER: "fake",
    Entity.BR_PHONE: "fake",
    Entity.STREET_ADDRESS: "fake",
    Entity.CREDIT_CARD: "pseudonymize",
    Entity.BR_CPF: "pseudonymize",
    Entity.BR_CNPJ: "pseudonymize",
    Entity.IBAN_CODE: "pseudonymize",
    Entity.US_SSN: "pseudonymize",
    Entity.DATE_OF_BIRTH: "generalize",
    Entity.ZIP_CODE: "generalize",
    Entity.BR_CEP: "generalize",
    Entity.IP_ADDRESS: "mask",
    # A city alone is a quasi-identifier, not direct PII: kept by default so the synthetic
    # data keeps its geography; set `redact: fake` on the field to replace it.
    Entity.LOCATION: "keep",
}


def default_operator(detection: FieldDetection, spec: FieldSpec) -> str:
    """The operator the ``auto`` policy picks for a detected field (``scan_values`` for mixed fields)."""
    if detection.source == "role" or (spec.role == FieldRole.FREE_TEXT and detection.entity is None):
        return "scan"
    if detection.entity is None:
        return "keep"
    if detection.source == "mixed":
        return "scan_values"
    return AUTO_OPERATORS.get(detection.entity, "keep")
