"""A Brazilian PII canary nobody tuned for: records and Portuguese sentences made with mimesis.

mimesis (not Faker: Faker feeds synthstream's name lexicon) makes the people, e-mails,
phones, CEPs, cards, dates and sentences' names; CPFs and CNPJs come from an independent
implementation of the check-digit rule written here (not synthstream's ``checksums``). Field
names are uninformative (``ref``, ``col7``, ``dt``...), one field mixes 30 % CPFs with 70 %
lot codes, CEPs and CPFs also come as integers, and ``obs`` holds Portuguese sentences.

:func:`canary_records` makes the table (seeded), :func:`canary_recall` scores a redactor's
output per planted entity. Used by ``benchmarks/pii.py`` and the tests.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

NAME_PARTICLES = {"da", "de", "do", "das", "dos", "e"}

#: Planted entity of each canary field; fields not listed hold no PII.
FIELD_ENTITIES: dict[str, str] = {
    "ref": "BR_CPF",  # formatted
    "col3": "BR_CPF",  # bare digits (string)
    "col11": "BR_CPF",  # integer
    "doc": "BR_CNPJ",
    "info": "EMAIL_ADDRESS",
    "col4": "PHONE",
    "col12": "PHONE",  # integer (mobile with area code)
    "col9": "BR_CEP",  # integer (leading zero lost)
    "loc": "BR_CEP",  # formatted string
    "col5": "CREDIT_CARD",
    "dt": "DATE_OF_BIRTH",  # ISO
    "dt2": "DATE_OF_BIRTH",  # dd/mm/yyyy
    "col7": "PERSON",  # full name
    "col8": "PERSON",  # first name only
    "nm": "PERSON",  # surname only
    "lote": "BR_CPF",  # mixed: 30 % CPFs, 70 % LOTE-nnn
}
#: Non-PII fields, for over-redaction counts.
PLAIN_FIELDS = ("amount", "status", "job", "event", "n_items")

_TEMPLATES = (
    "Cliente {name} solicitou reembolso; CPF {cpf} em {date}.",
    "{name} ligou em {date} pedindo segunda via, telefone {phone}.",
    "Atendimento a {name} (e-mail {email}) concluído em {date}.",
    "O titular {name}, CPF {cpf_bare}, informou mudança de endereço.",
    "Reclamação registrada por {name} sobre a entrega do pedido.",
    "Reunião com {name} marcada para {date}; contato {phone}.",
    "Sr(a). {name} pediu o cancelamento do contrato.",
    "Segundo {name}, o produto chegou danificado em {date}.",
    "Pagamento do boleto confirmado por {name} no dia {date}.",
    "Encaminhar para {name} a nota fiscal da empresa CNPJ {cnpj}.",
)


def make_cpf(rng: random.Random, formatted: bool) -> str:
    """A CPF by the published rule (weights 10..2 then 11..2, mod 11), independent of synthstream."""
    base = [rng.randint(0, 9) for _ in range(9)]
    while len(set(base)) == 1:
        base = [rng.randint(0, 9) for _ in range(9)]
    for size in (9, 10):
        total = sum(d * w for d, w in zip(base[:size], range(size + 1, 1, -1), strict=True))
        base.append(0 if total % 11 < 2 else 11 - total % 11)
    s = "".join(map(str, base))
    return f"{s[:3]}.{s[3:6]}.{s[6:9]}-{s[9:]}" if formatted else s


def make_cnpj(rng: random.Random) -> str:
    """A numeric CNPJ by the published rule, independent of synthstream."""
    base = [rng.randint(0, 9) for _ in range(8)] + [0, 0, 0, 1]
    for weights in ((5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2), (6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2)):
        total = sum(d * w for d, w in zip(base, weights, strict=True))
        base.append(0 if total % 11 < 2 else 11 - total % 11)
    s = "".join(map(str, base))
    return f"{s[:2]}.{s[2:5]}.{s[5:8]}/{s[8:12]}-{s[12:]}"


def portuguese_sentences(n: int, seed: int = 0) -> list[tuple[str, list[str], dict[str, str]]]:
    """``n`` customer-service sentences: (text, planted name tokens, planted structured values)."""
    from mimesis import Datetime, Person
    from mimesis.locales import Locale

    rng = random.Random(seed)
    person = Person(Locale.PT_BR, seed=seed)
    when = Datetime(Locale.PT_BR, seed=seed)
    out = []
    for i in range(n):
        name = person.full_name()
        if rng.random() < 0.3:  # Brazilian names often carry particles and a second surname
            name = f"{name} {rng.choice(['da', 'de', 'dos'])} {person.surname()}"
        planted = {
            "cpf": make_cpf(rng, True),
            "cpf_bare": make_cpf(rng, False),
            "date": when.date(start=2015, end=2024).strftime("%d/%m/%Y"),
            "phone": person.telephone(),
            "email": person.email(),
            "cnpj": make_cnpj(rng),
        }
        template = _TEMPLATES[i % len(_TEMPLATES)]
        text = template.format(name=name, **planted)
        used = {k: v for k, v in planted.items() if "{" + k + "}" in template}
        tokens = [t for t in name.split() if t.lower() not in NAME_PARTICLES]
        out.append((text, tokens, used))
    return out


def canary_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` Brazilian customer records (see the module docstring), seeded."""
    from mimesis import Address, Datetime, Payment, Person
    from mimesis.locales import Locale

    rng = random.Random(seed)
    person = Person(Locale.PT_BR, seed=seed)
    address = Address(Locale.PT_BR, seed=seed)
    payment = Payment(seed=seed)
    when = Datetime(Locale.PT_BR, seed=seed)
    sentences = portuguese_sentences(n, seed=seed + 1)
    today = date(2025, 1, 1)
    rows = []
    for i in range(n):
        birth = today - timedelta(days=rng.randint(18 * 365, 95 * 365))
        cep = address.postal_code()
        mobile = f"{rng.randint(11, 99)}9{rng.randint(0, 99_999_999):08d}"
        rows.append(
            {
                "ref": make_cpf(rng, True),
                "col3": make_cpf(rng, False),
                "col11": int(make_cpf(rng, False)),
                "doc": make_cnpj(rng),
                "info": person.email(),
                "col4": person.telephone(),
                "col12": int(mobile),
                "col9": int(address.postal_code().replace("-", "")),
                "loc": cep,
                "col5": payment.credit_card_number(),
                "dt": birth.isoformat(),
                "dt2": (today - timedelta(days=rng.randint(18 * 365, 95 * 365))).strftime("%d/%m/%Y"),
                "col7": person.full_name(),
                "col8": person.first_name(),
                "nm": person.surname(),
                "lote": make_cpf(rng, rng.random() < 0.5) if rng.random() < 0.3 else f"LOTE-{rng.randint(100, 999)}",
                "obs": sentences[i][0],
                "amount": round(rng.uniform(5, 900), 2),
                "status": rng.choice(["aberto", "fechado", "pendente"]),
                "job": person.occupation(),
                "event": when.datetime(start=2024, end=2024).isoformat(timespec="seconds"),
                "n_items": rng.randint(1, 9),
            }
        )
    return rows


def sentence_truth(n: int, seed: int) -> list[tuple[list[str], dict[str, str]]]:
    """The planted name tokens and values of ``canary_records(n, seed)``'s ``obs`` sentences."""
    return [(tokens, used) for _, tokens, used in portuguese_sentences(n, seed=seed + 1)]


def _forms(value: Any) -> set[str]:
    text = str(value)
    digits = "".join(c for c in text if c.isdigit())
    return {text} | ({digits, digits.lstrip("0")} if len(digits) >= 7 else set())


def _leaks(original: Any, redacted: Any) -> bool:
    out = str(redacted)
    return any(form and form in out for form in _forms(original))


def _date_leaks(original: Any, redacted: Any) -> bool:
    """A birth date leaks when its day and month survive (the year alone is the generalization)."""
    if isinstance(original, datetime):
        return isinstance(redacted, datetime) and redacted.date() == original.date()
    return str(original) in str(redacted)


def _first_of_january(value: Any) -> bool:
    """Dates on 1 January look the same once generalized to the year: not scored."""
    if isinstance(value, datetime | date):
        return (value.month, value.day) == (1, 1)
    text = str(value)
    return text.endswith("-01-01") or text.startswith("01/01/")


def token_survives(token: str, text: str) -> bool:
    """Whether ``token`` is still in ``text`` as a whole word."""
    return re.search(rf"(?<!\w){re.escape(token)}(?!\w)", text) is not None


def canary_recall(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """Per-entity recall (share of planted values that do not survive) plus sentence-level numbers.

    Structured: a value is caught when none of its forms (as written, its digits, its digits
    without leading zeros) is in the redacted value; names: token level (every name token
    gone). Free text (``obs``): each planted value and each name token. Over-redaction: share
    of plain values changed.
    """
    hits: dict[str, list[int]] = {}

    def add(entity: str, caught: bool) -> None:
        hits.setdefault(entity, [0, 0])
        hits[entity][0] += int(caught)
        hits[entity][1] += 1

    for b, a in zip(before, after, strict=True):
        for field, entity in FIELD_ENTITIES.items():
            value = b[field]
            if field == "lote" and str(value).startswith("LOTE-"):
                continue
            if entity == "PERSON":
                for token in str(value).split():
                    if token.lower() not in NAME_PARTICLES:
                        add("PERSON", not token_survives(token, str(a.get(field))))
            elif entity == "DATE_OF_BIRTH":
                if _first_of_january(value):
                    continue
                add(entity, not _date_leaks(value, a.get(field)))
            else:
                add(entity, not _leaks(value, a.get(field)))
    kept_lots = sum(1 for b, a in zip(before, after, strict=True) if str(b["lote"]).startswith("LOTE-"))
    kept_lots_same = sum(
        1 for b, a in zip(before, after, strict=True) if str(b["lote"]).startswith("LOTE-") and a["lote"] == b["lote"]
    )
    text_hits: dict[str, list[int]] = {}
    for (tokens, used), a in zip(sentence_truth(len(before), seed), after, strict=True):
        text = str(a["obs"])
        for token in tokens:
            text_hits.setdefault("PERSON", [0, 0])
            text_hits["PERSON"][0] += int(not token_survives(token, text))
            text_hits["PERSON"][1] += 1
        for key, value in used.items():
            entity = {"cpf": "BR_CPF", "cpf_bare": "BR_CPF", "date": "DATE", "phone": "PHONE"}.get(key, key.upper())
            text_hits.setdefault(entity, [0, 0])
            text_hits[entity][0] += int(value not in text)
            text_hits[entity][1] += 1
    changed = {
        f: sum(1 for b, a in zip(before, after, strict=True) if str(a.get(f)) != str(b[f])) / max(1, len(before))
        for f in PLAIN_FIELDS
    }
    return {
        "fields": {e: round(c / t, 4) for e, (c, t) in sorted(hits.items())},
        "text": {e: round(c / t, 4) for e, (c, t) in sorted(text_hits.items())},
        "mixed_non_pii_kept": round(kept_lots_same / max(1, kept_lots), 4),
        "plain_fields_changed": {k: round(v, 4) for k, v in changed.items()},
    }


def structured_targets(result: Mapping[str, Any]) -> Iterable[tuple[str, float]]:
    """(entity, recall) pairs of the structured identifiers (fields and text together, minimum)."""
    for entity, recall in result["fields"].items():
        if entity != "PERSON":
            yield entity, recall
