"""What each field holds: field-name hints plus value detection on a sample.

Run once per schema version (the redactor caches the result by schema fingerprint), like
presidio-structured: names give a prior (``first`` -> PERSON, ``cpf`` -> BR_CPF), values
give evidence (``classify_value`` on a sample). Precedence: a value entity found in at least
``min_share`` of the sampled non-null values wins; otherwise the name hint; otherwise none.
Free-text fields are left to NER (source ``role``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from synthstream.processors.pii.types import Entity
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

Source = Literal["name", "value", "role", "none"]

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

#: Entities whose value evidence may override a name hint. DATE_TIME only confirms a DOB hint.
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


@dataclass(frozen=True)
class FieldDetection:
    """The entity detected in one field, where the evidence came from, and its share."""

    field: str
    entity: str | None
    source: Source
    share: float


def name_hint(field: str) -> str | None:
    """The entity a field's name suggests, or None."""
    lowered = re.sub(r"[^a-z0-9]+", "_", field.lower()).strip("_")
    for pattern, entity in _NAME_HINTS:
        if pattern.search(lowered):
            return str(entity)
    return None


def _value_entity(
    spec: FieldSpec, sample: Sequence[Mapping[str, Any]], classify: Callable[[str], str | None]
) -> tuple[str | None, float]:
    if spec.type not in (FieldType.STRING, FieldType.LONG):
        return None, 0.0
    values = [str(rec.get(spec.name)) for rec in sample if rec.get(spec.name) is not None]
    if not values:
        return None, 0.0
    counts = Counter(classify(v) for v in values)
    entity, n = max(((e, n) for e, n in counts.items() if e is not None), key=lambda t: t[1], default=(None, 0))
    return entity, n / len(values)


def detect_fields(
    schema: RecordSchema,
    sample: Sequence[Mapping[str, Any]],
    *,
    classify: Callable[[str], str | None] | None = None,
    min_share: float = 0.6,
) -> dict[str, FieldDetection]:
    """Detect the entity of every field of ``schema`` from its name and ``sample`` values."""
    if not 0 < min_share <= 1:
        raise ValueError("min_share must be in (0, 1]")
    if classify is None:
        from synthstream.processors.pii.patterns import classify_value

        classify = classify_value
    out: dict[str, FieldDetection] = {}
    for spec in schema.fields:
        if spec.role == FieldRole.FREE_TEXT:
            out[spec.name] = FieldDetection(spec.name, None, "role", 0.0)
            continue
        hint = name_hint(spec.name)
        entity, share = _value_entity(spec, sample, classify)
        if entity in _VALUE_ENTITIES and share >= min_share:
            # Phone evidence on a field named like a BR phone keeps the BR entity, and vice versa.
            out[spec.name] = FieldDetection(spec.name, entity, "value", share)
        elif hint is not None:
            out[spec.name] = FieldDetection(spec.name, hint, "name", share)
        else:
            out[spec.name] = FieldDetection(spec.name, None, "none", share)
    return out


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
    """The operator the ``auto`` policy picks for a detected field."""
    if spec.role == FieldRole.FREE_TEXT:
        return "scan"
    if detection.entity is None:
        return "keep"
    return AUTO_OPERATORS.get(detection.entity, "keep")
