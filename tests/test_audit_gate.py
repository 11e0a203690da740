"""The promotion gate end to end: real registry, real broker topics, audits in a worker process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Self

import numpy as np
import pandas as pd
import pytest

from synthstream.config import AuditConfig, PublisherConfig, TrainingConfig
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.models import training as training_module
from synthstream.models.base import Generator
from synthstream.models.registry import ModelRegistry, ModelVersion
from synthstream.privacy.ledger import PrivacyLedger
from synthstream.processors.auditor import AuditRecord
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent, PrivacyAuditEvent, PrivacyGuarantee
from synthstream.schemas.record import FieldRole, RecordSchema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.audit import AUDIT_ARTIFACT, AuditGate, audit_executor
from synthstream.streams.publisher import HEADER_MODEL_VERSION, SyntheticPublisher
from synthstream.streams.trainer import GateDecision, RetrainScheduler, lineage_guarantee
from tests.helpers import ADULT_CSV, adult_schema, read_topic

GATE_CONFIG = AuditConfig(
    holdout_share=0.4,
    synthetic_rows=2_000,
    n_attacks=200,
    singling_out_max_attempts=5_000,
    target_field="income",
)


class ReplayGenerator:
    """A deliberately leaky generator: it "samples" by replaying its training rows."""

    name = "replay"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rows: pd.DataFrame | None = None
        self._schema: RecordSchema | None = None
        self._rng = np.random.default_rng(seed)

    def fit(self, records: Sequence[Mapping[str, Any]] | pd.DataFrame, schema: RecordSchema) -> Self:
        self._rows = pd.DataFrame(records).reset_index(drop=True)
        self._schema = schema
        return self

    def sample_columns(self, n: int, *, seed: int | None = None) -> dict[str, list[Any]]:
        assert self._rows is not None
        rng = self._rng if seed is None else np.random.default_rng(seed)
        rows = self._rows.iloc[rng.integers(0, len(self._rows), size=n)]
        return {c: rows[c].astype(object).where(rows[c].notna(), None).tolist() for c in rows.columns}

    def sample(self, n: int, *, seed: int | None = None) -> list[dict[str, Any]]:
        columns = self.sample_columns(n, seed=seed)
        return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]

    @property
    def fitted(self) -> bool:
        return self._rows is not None

    @property
    def schema(self) -> RecordSchema | None:
        return self._schema


@pytest.fixture(scope="module")
def adult_records() -> tuple[RecordSchema, list[dict[str, Any]]]:
    frame = read_table(ADULT_CSV, nrows=8_000)
    schema = adult_schema(frame)
    return schema, records_from_frame(frame, schema)


@pytest.fixture(scope="module")
def audit_pool() -> Iterator[ProcessPoolExecutor]:
    executor = audit_executor()
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


class _Harness:
    """A scheduler with a gate, wired to fresh topics, as Pipeline.build wires them."""

    def __init__(self, kafka: Any, names: Any, tmp_path: Any, schema: RecordSchema, pool: ProcessPoolExecutor) -> None:
        self.kafka = kafka
        self.schema = schema
        self.pool = pool
        self.models_topic = names.topic("models")
        self.audit_topic = names.topic("privacy-audit")
        self.synthetic_topic = names.topic("synthetic")
        self.store = InMemorySchemaStore()
        self.registry = ModelRegistry(tmp_path, "adult")
        self.buffer = TrainingBuffer(20_000, holdout_share=GATE_CONFIG.holdout_share, holdout_max=5_000, seed=0)

    async def topics(self) -> None:
        await ensure_topics(self.kafka, [self.models_topic, self.audit_topic, self.synthetic_topic])

    def scheduler(
        self,
        producer: Producer,
        fits: ThreadPoolExecutor,
        gate: Any,
        config: TrainingConfig | None = None,
        ledger: PrivacyLedger | None = None,
    ) -> RetrainScheduler:
        return RetrainScheduler(
            config=config or TrainingConfig(min_records=300, seed=0),
            ledger=ledger,
            buffer=self.buffer,
            registry=self.registry,
            schema=self.schema,
            executor=fits,
            producer=producer,
            models_topic=self.models_topic,
            lifecycle_serde=EventSerde(ModelLifecycleEvent, self.store),
            stream="adult",
            gate=gate,
        )

    def gate(
        self, producer: Producer, guarantee: Any = None, public_values: dict[str, list[str]] | None = None
    ) -> AuditGate:
        return AuditGate(
            config=GATE_CONFIG,
            schema=self.schema,
            buffer=self.buffer,
            registry=self.registry,
            executor=self.pool,
            producer=producer,
            topic=self.audit_topic,
            serde=EventSerde(PrivacyAuditEvent, self.store),
            stream="adult",
            guarantee=guarantee,
            public_values=public_values,
        )

    async def audits(self) -> list[PrivacyAuditEvent]:
        serde = EventSerde(PrivacyAuditEvent, self.store)
        return [serde.decode(r.value) for r in await read_topic(self.kafka, self.audit_topic)]

    async def lifecycle(self) -> list[ModelLifecycleEvent]:
        serde = EventSerde(ModelLifecycleEvent, self.store)
        return [serde.decode(r.value) for r in await read_topic(self.kafka, self.models_topic)]


async def test_a_dp_model_passes_and_its_audit_event_carries_the_ledgers_guarantee(
    kafka, names, tmp_path, adult_records, audit_pool
) -> None:
    schema, records = adult_records
    harness = _Harness(kafka, names, tmp_path, schema, audit_pool)
    await harness.topics()
    gate_before = harness.gate(producer=None)  # type: ignore[arg-type]  # only its control-set check is used
    harness.buffer.extend(records[:200])
    assert not gate_before.ready  # ~80 control records: an audit now would fail closed
    harness.buffer.extend(records[200:5_000])
    assert gate_before.ready
    asked: list[int] = []

    def ledger(version: ModelVersion) -> PrivacyGuarantee:
        asked.append(version.version)
        return lineage_guarantee(version)  # what Pipeline.build hands the gate

    # A real DP model: AIM at ε = 4 (kept short: 2 x fields rounds), public categorical labels.
    categorical = [f.name for f in schema.fields if f.role is FieldRole.CATEGORICAL]
    config = TrainingConfig(
        generator="aim",
        min_records=300,
        seed=0,
        privacy={"required": True, "epsilon": 4.0, "delta": 1e-6},
        marginal={
            "bins": 16,
            "rounds": 2 * len(schema.fields),
            "round_iters": 100,
            "iters": 300,
            "labels": {c: sorted({str(r[c]) for r in records}) for c in categorical},
        },
    )
    privacy_ledger = PrivacyLedger(tmp_path / "privacy.duckdb")
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as fits:
            # The declared code book is public (what Pipeline.build passes from training.marginal.labels).
            gate = harness.gate(producer, guarantee=ledger, public_values=dict(config.marginal.labels))
            scheduler = harness.scheduler(producer, fits, gate, config=config, ledger=privacy_ledger)
            version = await scheduler.retrain()
    assert version is not None and version.status == "promoted"
    assert asked == [1] and harness.registry.current().version == 1
    [event] = await harness.audits()
    assert event.verdict == "pass" and event.model_version == 1 and event.generator == "aim"
    assert event.guarantee == ledger(version)
    # The guarantee is the ledger's: AIM's fit spent the stream's model budget, per record.
    assert event.guarantee.kind == "formal" and event.guarantee.mechanism == "aim"
    assert event.guarantee.unit == "record" and event.guarantee.epsilon == pytest.approx(4.0, rel=1e-3)
    assert event.guarantee.delta == pytest.approx(1e-6)
    [summary] = [s for s in privacy_ledger.summaries() if s.scope == "model"]
    assert summary.releases > len(schema.fields)  # every 1-way measurement, selection and round
    assert event.control_rows == harness.buffer.holdout_size > 1_500
    assert event.training_rows == len(harness.buffer) and event.synthetic_rows == 2_000
    assert 0 < event.attacks_built <= event.attacks_requested == 4 * 200
    assert {a.name for a in event.attacks} >= {"singling_out_univariate", "linkability", "inference:income"}
    assert "dcr_share" in event.risks and "tstr_ratio" in event.quality
    stored = AuditRecord.model_validate_json(harness.registry.load_extra(1, AUDIT_ARTIFACT) or b"")
    assert stored.guarantee == event.guarantee and stored.report.verdict == "pass"
    assert stored.event_id == event.event_id and stored.lineage == version.lineage
    lifecycle = [(e.model_version, e.action) for e in await harness.lifecycle()]
    assert (1, "training_progress") in lifecycle  # AIM reports its rounds while it fits
    assert [e for e in lifecycle if e[1] != "training_progress"] == [(1, "trained"), (1, "promoted")]


class _ProbedGate:
    """Wraps a gate and snapshots a progress probe when its evaluation starts and when it ends.

    Progress counters (loop ticks, records ingested, records published), not clocks: if the audit
    blocked the event loop, no other task could run between the two snapshots and they would be equal.
    """

    def __init__(self, gate: AuditGate, probe: Callable[[], tuple[int, int, int]]) -> None:
        self.gate = gate
        self.probe = probe
        self.window: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None

    async def evaluate(self, version: ModelVersion, model: Generator, training: Sequence[Any]) -> GateDecision:
        started = self.probe()
        decision = await self.gate.evaluate(version, model, training)
        self.window = (started, self.probe())
        return decision


async def test_a_leaky_generator_is_rejected_while_ingest_and_the_feed_keep_running(
    kafka, names, tmp_path, adult_records, audit_pool, monkeypatch
) -> None:
    schema, records = adult_records
    harness = _Harness(kafka, names, tmp_path, schema, audit_pool)
    await harness.topics()
    harness.buffer.extend(records[:5_000])
    monkeypatch.setitem(training_module.GENERATORS, "replay", ReplayGenerator)
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as fits:
            scheduler = harness.scheduler(producer, fits, gate=None)
            first = await scheduler.retrain()  # v1: the copula, promoted without a gate
            assert first is not None and first.status == "promoted"
            # The generator name is not one the config accepts; bypass validation for the leaky one.
            scheduler.config = TrainingConfig.model_construct(
                **{**scheduler.config.model_dump(), "generator": "replay"}
            )

            stop = asyncio.Event()
            ticks = 0
            publisher = SyntheticPublisher(
                registry=harness.registry,
                producer=producer,
                topic=harness.synthetic_topic,
                encode_many=lambda rows: [JsonRecordSerde(schema).encode(r) for r in rows],
                config=PublisherConfig(rate=2_000, batch_size=100, format="json"),
                stream="adult",
            )
            probed = _ProbedGate(
                harness.gate(producer), lambda: (ticks, harness.buffer.total_seen, publisher.published)
            )
            scheduler.gate = probed

            async def heartbeat() -> None:
                nonlocal ticks
                while not stop.is_set():
                    ticks += 1
                    await asyncio.sleep(0.01)

            async def ingest() -> None:  # the buffer keeps filling, for as long as the audit runs
                start = 5_000
                while not stop.is_set():
                    harness.buffer.extend(records[start : start + 100])
                    start = 5_000 if start + 100 >= 8_000 else start + 100
                    await asyncio.sleep(0.05)

            tasks = [asyncio.create_task(c) for c in (heartbeat(), ingest(), publisher.run(stop))]
            second = await scheduler.retrain()
            stop.set()
            await asyncio.gather(*tasks)

    assert second is not None and second.status == "rejected"
    assert harness.registry.current().version == 1  # the previous version keeps publishing
    assert probed.window is not None
    (ticks_0, seen_0, published_0), (ticks_1, seen_1, published_1) = probed.window
    # The audit ran in the worker: while it ran, the loop ticked, ingest went on and the feed published.
    assert ticks_1 > ticks_0 and seen_1 > seen_0 and published_1 > published_0, probed.window
    synthetic = await read_topic(kafka, harness.synthetic_topic)
    assert synthetic and {dict(r.headers)[HEADER_MODEL_VERSION] for r in synthetic} == {b"1"}

    [event] = await harness.audits()
    assert event.model_version == 2 and event.verdict == "fail" and event.generator == "replay"
    assert event.guarantee.kind == "empirical_only"
    assert event.risks["dcr_share"] > 0.8 and event.risks["singling_out_univariate"] > 0.3
    assert any(r.startswith("singling_out_univariate risk") for r in event.reasons)
    lifecycle = [(e.model_version, e.action) for e in await harness.lifecycle()]
    # After the rejection the scheduler says how it retries (issue 17).
    assert lifecycle == [(1, "trained"), (1, "promoted"), (2, "trained"), (2, "rejected"), (2, "retry")]
    rejected = (await harness.lifecycle())[-2]
    assert rejected.reason is not None and "dcr_share" in rejected.reason
    assert rejected.metrics["risk.dcr_share"] == event.risks["dcr_share"]
    stored = AuditRecord.model_validate_json(harness.registry.load_extra(2, AUDIT_ARTIFACT) or b"")
    assert stored.report.verdict == "fail" and harness.registry.get(2).reason == rejected.reason
