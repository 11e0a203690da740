"""The audit's verbatim-leak check: real training values in the synthetic sample fail the version.

Seeded Brazilian customer records (valid CPFs, Portuguese full names in a field with an
uninformative name, free text); the Gaussian copula is fitted on them for real and its
sample is the synthetic frame. Leaks are planted by copying training values into known
rows, so the counts the check reports can be asserted exactly. Nothing is mocked: the
recognisers, the leak check, anonymeter and the report run as in production.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from synthstream.config import AuditConfig
from synthstream.evaluation.leaks import (
    DEFAULT_LEAK_ENTITIES,
    VerbatimLeakCheck,
    looks_like_name,
    name_tokens,
    person_name,
)
from synthstream.evaluation.report import render_report
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.models.registry import Lineage
from synthstream.processors.auditor import Auditor, AuditRecord, AuditReport
from synthstream.processors.pii.checksums import generate_cpf
from synthstream.schemas.events import EventSerde, LeakFinding, PrivacyAuditEvent
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from synthstream.schemas.serde import InMemorySchemaStore
from synthstream.streams.audit import EMPIRICAL_ONLY, audit_event

FIRST = [
    "Ana",
    "Beatriz",
    "Carla",
    "Daniela",
    "Eduarda",
    "Fernanda",
    "Gabriela",
    "Helena",
    "Isabela",
    "Juliana",
    "Larissa",
    "Mariana",
    "Natália",
    "Patrícia",
    "Renata",
    "Sofia",
    "Tatiana",
    "Vitória",
    "André",
    "Bruno",
    "Carlos",
    "Diego",
    "Eduardo",
    "Felipe",
    "Gustavo",
    "Henrique",
    "Igor",
    "João",
    "Lucas",
    "Marcelo",
    "Nicolas",
    "Otávio",
    "Paulo",
    "Rafael",
    "Sérgio",
    "Thiago",
    "Vinícius",
]
SURNAMES = [
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
    "Soares",
    "Fernandes",
    "Vieira",
    "Barbosa",
    "Rocha",
    "Dias",
    "Nascimento",
    "Andrade",
    "Moreira",
    "Nunes",
    "Marques",
    "Machado",
    "Mendes",
    "Freitas",
    "Cardoso",
    "Ramos",
    "Gonçalves",
    "Santana",
    "Teixeira",
]
#: Surnames no training record has: names built from them are fresh (not a leak).
FRESH_SURNAMES = [
    "Cavalcanti",
    "Tavares",
    "Monteiro",
    "Moura",
    "Correia",
    "Pinto",
    "Araújo",
    "Batista",
    "Campos",
    "Xavier",
    "Siqueira",
    "Prado",
]
CITIES = ("São Paulo", "Rio de Janeiro", "Belo Horizonte", "Curitiba", "Recife")
PLANS = ("basico", "plus", "premium")
CHANNELS = ("app", "web", "loja", "telefone")

SCHEMA = RecordSchema(
    name="clientes",
    fields=(
        FieldSpec(name="col7", type=FieldType.STRING, role=FieldRole.IDENTIFIER),  # full names, uninformative name
        FieldSpec(name="ref", type=FieldType.STRING, role=FieldRole.IDENTIFIER),  # CPFs
        FieldSpec(name="obs", type=FieldType.STRING, role=FieldRole.FREE_TEXT),
        FieldSpec(name="cidade", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="plano", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="canal", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="idade", type=FieldType.LONG, role=FieldRole.NUMERIC),
        FieldSpec(name="valor", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
    ),
)
#: Audit sizes that keep a real anonymeter run to seconds.
SMALL = AuditConfig(synthetic_rows=1_000, n_attacks=100, singling_out_max_attempts=2_000, min_holdout=200)


def full_name(rng: random.Random, surnames: tuple[str, ...] | list[str] = SURNAMES) -> str:
    """A Portuguese full name: first name, sometimes a particle, two surnames."""
    particle = rng.choice(["", "", "da ", "de ", "dos "])
    return f"{rng.choice(FIRST)} {particle}{rng.choice(surnames)} {rng.choice(surnames)}"


def customers(n: int, seed: int) -> pd.DataFrame:
    """``n`` seeded customer records: a unique name and CPF each, categories and numbers that correlate."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        name = full_name(rng)
        city = rng.choice(CITIES)
        age = rng.randint(18, 80)
        plan = PLANS[min(2, age // 30)] if rng.random() < 0.7 else rng.choice(PLANS)
        rows.append(
            {
                "col7": name,
                "ref": generate_cpf(rng),
                "obs": f"Cliente {name} pediu reembolso em {city}",
                "cidade": city,
                "plano": plan,
                "canal": rng.choice(CHANNELS),
                "idade": age,
                "valor": round(20.0 + 3.0 * age + rng.gauss(0, 15), 2),
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training and control records (different people) and the fitted copula's sample with fresh text."""
    training, control = customers(800, seed=1), customers(800, seed=2)
    control = control[~control["col7"].isin(set(training["col7"]))].reset_index(drop=True)
    model = GaussianCopulaGenerator(seed=3).fit(training, SCHEMA)
    synthetic = pd.DataFrame(model.sample_columns(SMALL.synthetic_rows, seed=4))
    # Fresh sentences whatever the copula does with free text, so each test plants exactly the leaks it counts.
    rng = random.Random(5)
    synthetic["obs"] = [f"Cliente {full_name(rng, FRESH_SURNAMES)} pediu reembolso" for _ in range(len(synthetic))]
    return training, control, synthetic


def _values(frame: pd.DataFrame, field: str) -> list[str]:
    return [str(v) for v in frame[field].tolist()]


def _finding(findings: list[LeakFinding], field: str, check: str, entity: str | None = None) -> LeakFinding:
    [found] = [f for f in findings if f.field == field and f.check == check and f.entity_type == entity]
    return found


def _record(report: AuditReport) -> AuditRecord:
    return AuditRecord(
        stream="clientes",
        model_version=2,
        generator="gaussian_copula",
        audited_at=datetime(2024, 5, 1, tzinfo=UTC),
        audit_seconds=1.0,
        event_id="e2",
        guarantee=EMPIRICAL_ONLY,
        lineage=Lineage(rows=800, schema_fingerprint=SCHEMA.fingerprint(), seed=3, fit_seconds=0.1),
        report=report,
    )


def _planted(training: pd.DataFrame, synthetic: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The synthetic frame with training values copied into known rows, and what was planted."""
    leaky = synthetic.copy()
    rows = np.random.default_rng(6).permutation(len(leaky))
    names_at, cpfs_at, text_at = rows[:37], rows[37:60], rows[60:71]
    source = np.random.default_rng(7).permutation(len(training))
    names = training["col7"].iloc[source[:37]].tolist()
    cpfs = training["ref"].iloc[source[40:63]].tolist()
    # Reformatted copies are still copies: bare digits for a formatted CPF.
    leaky.loc[cpfs_at, "ref"] = [c.replace(".", "").replace("-", "") if i % 2 else c for i, c in enumerate(cpfs)]
    leaky.loc[names_at, "col7"] = names
    # Fresh sentences that quote a real name and a real CPF (names 0-10, CPFs 0-10 of the planted ones).
    leaky.loc[text_at, "obs"] = [
        f"Atendimento de {names[i]} concluido; documento {cpfs[i]} conferido" for i in range(len(text_at))
    ]
    planted = {"names": names, "cpfs": cpfs, "n_names": 37, "n_cpfs": 23, "n_text": 11}
    return leaky, planted


def names_at(frame: pd.DataFrame, planted: dict[str, Any]) -> list[int]:
    """Positions of the rows whose name was planted."""
    return [i for i, v in enumerate(frame["col7"].tolist()) if v in set(planted["names"])]


def test_the_name_shape_and_tokens_the_check_uses() -> None:
    assert looks_like_name("Ana Beatriz da Silva") and looks_like_name("João dos Santos")
    assert not looks_like_name("Silva") and not looks_like_name("LOTE-123 A") and not looks_like_name("pediu o app")
    assert name_tokens("Cliente  Ana da Silva; CPF 1") == ("cliente", "ana", "da", "silva", "cpf")


def test_a_replaying_generator_fails_with_the_fields_named_and_the_counts_right(data) -> None:
    training, control, synthetic = data
    leaky, planted = _planted(training, synthetic)
    auditor = Auditor(SCHEMA, SMALL)
    report = auditor.audit(training, control, leaky, seed=1)

    assert report.verdict == "fail"
    assert report.leaks is not None
    findings = report.leaks
    # (a) rare values: every planted name and CPF is held by one training record.
    names = _finding(findings, "col7", "rare_value")
    assert (names.rows, names.values, names.leak) == (37, 37, True)
    assert names.share == pytest.approx(37 / 1_000) and names.control_share == 0.0
    cpfs = _finding(findings, "ref", "rare_value")
    assert cpfs.rows == 12 and cpfs.leak  # only the 12 copies in training's own format are equal strings
    assert not _finding(findings, "cidade", "rare_value").leak
    # (b) recognisers: every real CPF (either format) and every real name, also inside free text.
    cpf_hits = _finding(findings, "ref", "recognised", "BR_CPF")
    assert (cpf_hits.rows, cpf_hits.values, cpf_hits.leak) == (23, 23, True)
    person = _finding(findings, "col7", "recognised", "PERSON")
    assert (person.rows, person.values, person.leak) == (37, 37, True)
    # Fresh: the copula's identifier strings the name matcher takes for names (if any): not leaks.
    shaped = sum(person_name(v) for v in leaky["col7"].drop(index=leaky.index[names_at(leaky, planted)]))
    assert person.fresh_rows == shaped
    in_text = _finding(findings, "obs", "recognised", "PERSON")
    assert (in_text.rows, in_text.values) == (11, 11)
    assert _finding(findings, "obs", "recognised", "BR_CPF").rows == 11
    reasons = " ".join(report.reasons)
    for field in ("'col7'", "'ref'", "'obs'"):
        assert f"verbatim leak: field {field}" in reasons
    assert "37 distinct real PERSON values" in reasons and "23 distinct real BR_CPF values" in reasons
    assert report.risks["leak_recognised_share"] == pytest.approx(37 / 1_000)

    # The event and the report name fields and counts, never a value.
    event = audit_event(_record(report))
    serde = EventSerde(PrivacyAuditEvent, InMemorySchemaStore())
    decoded = serde.decode(serde.encode(event))
    assert decoded.leaks == event.leaks and decoded.verdict == "fail"
    page = render_report(_record(report))
    texts = {
        "event": event.model_dump_json(),
        "avro": serde.encode(event).decode("latin-1"),
        "report": report.model_dump_json(),
        "html": page,
    }
    secrets = [*planted["names"], *planted["cpfs"], *(c.replace(".", "").replace("-", "") for c in planted["cpfs"])]
    secrets += _values(training, "col7") + _values(training, "ref")
    for where, text in texts.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{len(leaked)} training values in the {where}"
    assert "<section id='leaks'>" in page and "recognised PERSON" in page and "col7" in page


def test_fresh_fakes_that_look_like_pii_are_counted_and_pass(data) -> None:
    training, control, synthetic = data
    fresh = synthetic.copy()
    rng = random.Random(11)
    real_cpfs = set(training["ref"])
    cpfs = []
    while len(cpfs) < len(fresh):
        candidate = generate_cpf(rng)
        if candidate not in real_cpfs:
            cpfs.append(candidate)
    fresh["ref"] = cpfs
    fresh["col7"] = [full_name(rng, FRESH_SURNAMES) for _ in range(len(fresh))]
    check = VerbatimLeakCheck(SCHEMA, k=5, max_rare_share=0.001, entities=AuditConfig().leak_entities)
    result = check(training, control, fresh)

    assert not result.leaked, result.reasons
    cpf = _finding(result.findings, "ref", "recognised", "BR_CPF")
    assert (cpf.rows, cpf.values, cpf.fresh_rows, cpf.leak) == (0, 0, len(fresh), False)
    person = _finding(result.findings, "col7", "recognised", "PERSON")
    assert (person.rows, person.fresh_rows, person.leak) == (0, len(fresh), False)
    assert all(not f.leak for f in result.findings)
    # The same frame through the whole audit: no leak reason (attacks and quality are judged as before).
    report = Auditor(SCHEMA, SMALL).audit(training, control, fresh, seed=2)
    assert not [r for r in report.reasons if "verbatim leak" in r]
    assert report.risks["leak_rare_share_excess"] == 0.0


def test_short_codes_that_real_records_share_by_chance_do_not_fail(data) -> None:
    """Lot codes from a small space collide by chance: the control records set the baseline."""
    training, control, synthetic = data
    schema = RecordSchema(
        name="lotes", fields=(*SCHEMA.fields, FieldSpec(name="lote", type=FieldType.STRING, role=FieldRole.IDENTIFIER))
    )

    def codes(n: int, seed: int) -> list[str]:
        rng = random.Random(seed)
        return [f"LOTE-{rng.randrange(1_000):03d}" for _ in range(n)]

    training = training.assign(lote=codes(len(training), 21))
    control = control.assign(lote=codes(len(control), 22))
    fresh = synthetic.assign(lote=codes(len(synthetic), 23))
    check = VerbatimLeakCheck(schema, k=5, max_rare_share=0.001, entities=())
    lots = _finding(check(training, control, fresh).findings, "lote", "rare_value")
    assert lots.share > 0.3 and lots.control_share is not None and lots.control_share > 0.3
    assert not lots.leak
    # The same field replayed from training is a leak: every row carries a rare training code.
    replayed = synthetic.assign(lote=training["lote"].sample(len(synthetic), replace=True, random_state=1).tolist())
    assert _finding(check(training, control, replayed).findings, "lote", "rare_value").leak


def test_declared_public_labels_are_not_rare_training_values(data) -> None:
    """A DP model spreads noise over every declared label: emitting a rare *public* label reveals nobody.

    CI saw AIM (ε = 4, Adult's code book declared) fail the gate on rare declared countries: 3.25 % of
    synthetic rows vs 1.97 % of control rows. The same rows fail when the labels are not declared.
    """
    training, control, synthetic = data
    schema = RecordSchema(
        name="countries",
        fields=(*SCHEMA.fields, FieldSpec(name="country", type=FieldType.STRING, role=FieldRole.CATEGORICAL)),
    )
    rare = [f"C{i:02d}" for i in range(14)]  # 14 labels, each held by 1-3 training records
    rng = random.Random(5)
    training = training.assign(country=[rng.choice(rare) if i % 60 == 0 else "US" for i in range(len(training))])
    control = control.assign(country=["US"] * len(control))
    noisy = synthetic.assign(country=[rng.choice(rare) if i % 8 == 0 else "US" for i in range(len(synthetic))])
    strict = VerbatimLeakCheck(schema, k=5, max_rare_share=0.001, entities=())
    assert _finding(strict(training, control, noisy).findings, "country", "rare_value").leak
    public = VerbatimLeakCheck(schema, k=5, max_rare_share=0.001, entities=(), public_values={"country": [*rare, "US"]})
    finding = _finding(public(training, control, noisy).findings, "country", "rare_value")
    assert not finding.leak and finding.rows == 0


def test_leak_options_are_checked_up_front() -> None:
    with pytest.raises(ValueError, match=r"unknown leak entities \['NOPE'\]; choose from"):
        Auditor(SCHEMA, AuditConfig(leak_entities=["BR_CPF", "NOPE"]))
    with pytest.raises(ValueError, match="at least 2"):
        VerbatimLeakCheck(SCHEMA, k=1)
    assert "k=5" in repr(VerbatimLeakCheck(SCHEMA))
    assert AuditConfig().leak_entities == list(DEFAULT_LEAK_ENTITIES)  # one default, stated twice


def test_name_like_fields_are_found_by_their_values_not_places() -> None:
    """Repeated customers (few distinct names) are still names; city names are not."""
    rng = random.Random(31)
    people = [full_name(rng) for _ in range(40)]
    training = pd.DataFrame(
        {"titular_x": [people[i % 40] for i in range(800)], "cidade": [CITIES[i % 5] for i in range(800)]}
    )
    schema = RecordSchema(
        name="t",
        fields=(
            FieldSpec(name="titular_x", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
            FieldSpec(name="cidade", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        ),
    )
    synthetic = pd.DataFrame({"titular_x": people[:10] * 10, "cidade": list(CITIES) * 20})
    result = VerbatimLeakCheck(schema, entities=["PERSON"])(training, training.head(0), synthetic)
    person = _finding(result.findings, "titular_x", "recognised", "PERSON")
    assert (person.rows, person.values, person.leak) == (100, 10, True)  # common in training, still real names
    assert not [f for f in result.findings if f.field == "cidade" and f.check == "recognised"]
    assert not _finding(result.findings, "titular_x", "rare_value").leak  # 20 records each: not rare


def test_events_written_before_the_leak_check_still_decode() -> None:
    """Backwards-compatible Avro: the new field is optional with a null default."""
    import io

    import fastavro

    from synthstream.schemas.events import avro_schema_for

    new = avro_schema_for(PrivacyAuditEvent)
    old = {**new, "fields": [f for f in new["fields"] if f["name"] != "leaks"]}
    event = PrivacyAuditEvent(
        event_id="e1",
        occurred_at=datetime(2024, 5, 1, tzinfo=UTC),
        stream="s",
        model_version=1,
        guarantee=EMPIRICAL_ONLY,
        risks={},
        quality={},
        verdict="pass",
    )
    buffer = io.BytesIO()
    record = {k: v for k, v in event.model_dump().items() if k != "leaks"}
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), record)
    buffer.seek(0)
    read = fastavro.schemaless_reader(buffer, fastavro.parse_schema(old), fastavro.parse_schema(new))
    assert PrivacyAuditEvent.model_validate(read).leaks is None
