"""Fail closed: a crashed attack, a crashed leak check or anything unexpected in the gate rejects the version.

Before, an exception inside one anonymeter attack became "not built" and, with the overall
coverage at 50 % or more, the version passed. Every failure here is real (anonymeter
raising on a column it was told to use, a name matcher raising on a non-ASCII name, an
executor that cannot run the audit, a registry that cannot store it), against the real
embedded broker where an event is published; nothing in the privacy math is mocked.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest
from structlog.testing import capture_logs

from synthstream.config import AuditConfig
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.evaluation.leaks import VerbatimLeakCheck
from synthstream.evaluation.privacy_risk import linkability_risk
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.models.registry import Lineage, ModelRegistry, ModelVersion
from synthstream.processors.auditor import Attack, Auditor
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.events import EventSerde, PrivacyAuditEvent, PrivacyGuarantee
from synthstream.schemas.serde import InMemorySchemaStore
from synthstream.streams.audit import AUDIT_ARTIFACT, AuditGate
from tests.helpers import read_topic
from tests.test_audit_leaks import SCHEMA, SMALL, customers


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training and control records and the real copula's sample (with fresh free text)."""
    training, control = customers(800, seed=1), customers(800, seed=2)
    model = GaussianCopulaGenerator(seed=3).fit(training, SCHEMA)
    synthetic = pd.DataFrame(model.sample_columns(SMALL.synthetic_rows, seed=4))
    synthetic["obs"] = [f"pedido {i} registrado" for i in range(len(synthetic))]
    return training, control, synthetic


def _broken_linkability() -> Attack:
    """A real anonymeter attack told to link through a column the data does not have: it raises inside."""
    return Attack(
        name="linkability:misconfigured",
        family="linkability",
        requested=100,
        run=functools.partial(linkability_risk, aux_cols=(["idade"], ["no-such-field"]), n_attacks=100),
        seed_offset=9,
    )


def test_a_crashed_attack_fails_the_audit_that_would_otherwise_pass(tables) -> None:
    training, control, synthetic = tables
    plain = Auditor(SCHEMA, SMALL)
    baseline = plain.audit(training, control, synthetic, seed=1)
    assert baseline.verdict == "pass", baseline.reasons

    auditor = Auditor(SCHEMA, SMALL, attacks=[*plain.attacks, _broken_linkability()])
    report = auditor.audit(training, control, synthetic, seed=1)

    assert report.verdict == "fail"
    assert report.reasons == ["attack linkability:misconfigured crashed (KeyError): failing closed"]
    # Coverage alone would have let it through: 4 of 5 attacks built, far above the 50 % floor.
    assert report.attacks_built / report.attacks_requested >= SMALL.min_attack_coverage
    [crashed] = [a for a in report.attacks if a.name == "linkability:misconfigured"]
    assert crashed.risk is None and crashed.attacks_built == 0 and crashed.detail == "crashed: KeyError"
    # The other attacks still ran and are reported as measured.
    assert [a.risk is not None for a in report.attacks] == [True, True, True, False]
    assert {a.name for a in report.attacks} == {a.name for a in plain.attacks} | {"linkability:misconfigured"}


def test_an_attack_that_cannot_be_built_on_the_data_is_decided_up_front_not_by_an_exception(tables) -> None:
    training, control, _ = tables
    report = Auditor(SCHEMA, SMALL).audit(training, control, training.head(0), seed=1)
    assert report.verdict == "fail"
    assert not [r for r in report.reasons if "crashed" in r]  # "not built", counted against coverage
    assert all(a.detail == "not built: no records to attack" for a in report.attacks if a.attack != "inference")
    assert any("attack attempts could be built" in r for r in report.reasons)


def test_a_crashed_leak_check_fails_the_audit(tables) -> None:
    training, control, synthetic = tables
    auditor = Auditor(SCHEMA, SMALL)
    baseline = auditor.audit(training, control, synthetic, seed=1)
    assert baseline.verdict == "pass" and baseline.leaks is not None

    def ascii_lexicon(value: str) -> bool:  # a name matcher that breaks on "Natália"
        return value.encode("ascii").istitle()

    auditor.leak_check = VerbatimLeakCheck(SCHEMA, entities=SMALL.leak_entities, person_detector=ascii_lexicon)
    report = auditor.audit(training, control, synthetic, seed=1)
    assert report.verdict == "fail" and report.leaks is None
    assert report.reasons == ["the verbatim-leak check could not run (UnicodeEncodeError): failing closed"]


class _Gate:
    """An AuditGate on fresh topics and a fresh registry, with one registered copula version."""

    def __init__(self, kafka: Any, names: Any, tmp_path: Any, tables: Any) -> None:
        training, control, _ = tables
        self.kafka = kafka
        self.topic = names.topic("privacy-audit")
        self.store = InMemorySchemaStore()
        self.registry = ModelRegistry(tmp_path, "clientes")
        self.buffer = TrainingBuffer(5_000, holdout_share=0.5, holdout_max=2_000, seed=0)
        self.buffer.extend(control.to_dict("records"))
        self.training = training.to_dict("records")
        self.model = GaussianCopulaGenerator(seed=3).fit(training, SCHEMA)
        lineage = Lineage(rows=len(training), schema_fingerprint=SCHEMA.fingerprint(), seed=3, fit_seconds=0.1)
        self.version: ModelVersion = self.registry.register(self.model, lineage=lineage)

    def gate(self, producer: Producer, executor: Any, guarantee: Any = None) -> AuditGate:
        return AuditGate(
            config=AuditConfig(**{**SMALL.model_dump(), "holdout_share": 0.5}),
            schema=SCHEMA,
            buffer=self.buffer,
            registry=self.registry,
            executor=executor,
            producer=producer,
            topic=self.topic,
            serde=EventSerde(PrivacyAuditEvent, self.store),
            stream="clientes",
            guarantee=guarantee,
        )

    async def events(self) -> list[PrivacyAuditEvent]:
        serde = EventSerde(PrivacyAuditEvent, self.store)
        return [serde.decode(r.value) for r in await read_topic(self.kafka, self.topic)]


def _rejections(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "audit.rejected" and e["log_level"] == "warning"]


def _no_values(logs: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    text = repr(logs)
    raw = [str(r[f]) for r in records for f in ("col7", "ref", "obs")]
    assert not [v for v in raw if v in text], "a training value reached a log line"


async def test_a_gate_whose_audit_cannot_run_rejects_with_a_warning_and_an_event(
    kafka, names, tmp_path, tables
) -> None:
    harness = _Gate(kafka, names, tmp_path, tables)
    await ensure_topics(kafka, [harness.topic])
    dead = ThreadPoolExecutor(1)
    dead.shutdown()  # the audit worker is gone: nothing can be scheduled on it
    async with Producer(kafka) as producer:
        gate = harness.gate(producer, dead)
        with capture_logs() as logs:
            decision = await gate.evaluate(harness.version, harness.model, harness.training)
    assert not decision.promote
    assert decision.reasons == ("the audit could not run (RuntimeError): failing closed",)
    [warning] = _rejections(logs)
    assert warning["version"] == 1 and warning["reasons"] == list(decision.reasons)
    [event] = await harness.events()
    assert event.verdict == "fail" and event.model_version == 1 and list(event.reasons) == list(decision.reasons)
    assert gate.rejections == 1
    _no_values(logs, harness.training)


async def test_a_guarantee_that_cannot_be_read_rejects_a_version_that_passed(kafka, names, tmp_path, tables) -> None:
    harness = _Gate(kafka, names, tmp_path, tables)
    await ensure_topics(kafka, [harness.topic])

    def unreadable_ledger(version: ModelVersion) -> PrivacyGuarantee:
        return PrivacyGuarantee.model_validate({"kind": "formal", "epsilon": -1.0})  # a corrupt ledger row

    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as pool:
            passing = await harness.gate(producer, pool).evaluate(harness.version, harness.model, harness.training)
            gate = harness.gate(producer, pool, guarantee=unreadable_ledger)
            with capture_logs() as logs:
                decision = await gate.evaluate(harness.version, harness.model, harness.training)
    assert passing.promote, passing.reasons
    assert not decision.promote
    assert decision.reasons == ("the privacy guarantee could not be read (ValidationError): failing closed",)
    assert _rejections(logs) and any(e["event"] == "audit.guarantee_failed" for e in logs)
    first, second = await harness.events()
    assert first.verdict == "pass" and second.verdict == "fail" and second.guarantee.kind == "empirical_only"
    _no_values(logs, harness.training)


async def test_anything_unexpected_in_the_gate_rejects_the_version(kafka, names, tmp_path, tables) -> None:
    harness = _Gate(kafka, names, tmp_path, tables)
    await ensure_topics(kafka, [harness.topic])
    # The version's artifact folder cannot take the audit: a plain file sits where its folder goes.
    blocked = harness.version.artifact.parent / "extra"
    blocked.write_bytes(b"")
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as pool:
            gate = harness.gate(producer, pool)
            with capture_logs() as logs:
                decision = await gate.evaluate(harness.version, harness.model, harness.training)
    assert not decision.promote
    assert decision.reasons == ("the audit gate failed while storing the audit (FileExistsError): failing closed",)
    assert any(e["event"] == "audit.gate_failed" and e["log_level"] == "error" for e in logs)
    [warning] = _rejections(logs)
    assert warning["reasons"] == list(decision.reasons)
    [event] = await harness.events()  # the audit passed, but could not be stored: the event says fail
    assert event.verdict == "fail" and list(event.reasons) == list(decision.reasons)
    assert not (blocked / AUDIT_ARTIFACT).exists()
    assert gate.rejections == 1
    _no_values(logs, harness.training)
