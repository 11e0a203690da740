"""Wiring of one pipeline: source topic -> ingest -> buffer -> retrain -> registry -> publisher.

Why plain aiokafka here and not a faust agent: measured on the embedded broker, a minimal
faust agent did ~3,500 records/s, took ~31 s to its first output (group join held for
half of faust's rebalance timeout) and had ~0.7 s p50 latency because faust fixes the
fetch wait at 1.5 s. The targets (>=10,000 records/s on 2 cores, p99 < 250 ms, first output
< 10 s) need micro-batches (``getmany``), a tunable fetch wait and explicit commits after
the outputs are acknowledged, which aiokafka gives directly. The stages themselves are
transport-free processors, so :mod:`synthstream.streams.faust_app` runs the same ones.

Roles let the parts run as separate workers, each output produced by exactly one of them:

- ``ingest`` is the only role that reads the raw source topic: validate, redact, dead-letter,
  publish ``<stream>.redacted``, PII findings and the windowed DP statistics;
- ``trainer`` consumes ``<stream>.redacted`` (:class:`~synthstream.streams.redacted.RedactedStage`),
  never the source: buffer, drift monitors, sequence state, retrain, audit, registry. A training
  node never receives a raw record. With redaction disabled there is no redacted topic, and the
  trainer refuses to start (the safe choice: a "redacted" topic carrying unredacted records
  would be a lie other consumers rely on); run role ``all`` then;
- ``publisher`` reads no records at all: it samples the registry's promoted version;
- ``all`` does everything in one process.

Broker loss: a :class:`~synthstream.connectors.kafka.BrokerMonitor` probes the cluster every
second (``/health`` turns ``degraded`` within a few seconds); sends and commits retry with
backoff, so the stages wait and resume when the broker returns (topics a memory-only broker
forgot are re-created, schemas re-published); after ``unavailable_timeout_s`` the run ends
with :class:`~synthstream.errors.BrokerUnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Literal

from synthstream.config import PipelineConfig
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import BatchConsumer, BatchSender, BrokerMonitor, Producer
from synthstream.connectors.registry import schema_store_for
from synthstream.connectors.schema_topic import SchemaTopicReader, publish_schema
from synthstream.connectors.statedir import check_state_dir
from synthstream.connectors.topics import ensure_pipeline_topics
from synthstream.errors import ConfigError, SynthstreamError
from synthstream.log import get_logger
from synthstream.models.registry import ModelRegistry
from synthstream.privacy.ledger import PrivacyLedger
from synthstream.processors.buffer import TrainingBuffer
from synthstream.processors.redactor import Redactor
from synthstream.processors.sequences import EntitySequences, SlidingWindows
from synthstream.processors.validator import RecordValidator
from synthstream.schemas.events import (
    BudgetEvent,
    DeadLetterEvent,
    EventSerde,
    ModelLifecycleEvent,
    PiiFindingsEvent,
    PrivacyAuditEvent,
    StatsEvent,
)
from synthstream.schemas.record import RecordSchema
from synthstream.schemas.serde import AvroRecordSerde, JsonRecordSerde, SchemaStore
from synthstream.settings import KafkaSettings
from synthstream.streams.audit import AuditGate
from synthstream.streams.findings import FindingsReporter
from synthstream.streams.ingest import BatchObserver, IngestCounters, IngestStage, LatencyTracker, SourceRecord
from synthstream.streams.publisher import SyntheticPublisher
from synthstream.streams.redacted import RedactedStage
from synthstream.streams.sequence_publisher import SequencePublisher, feed_schema
from synthstream.streams.sequence_trainer import SequenceScheduler
from synthstream.streams.stats import StatsStage
from synthstream.streams.status import RunStatus, closing_log, run_status
from synthstream.streams.trainer import RetrainScheduler, lineage_guarantee, training_executor

Role = Literal["all", "ingest", "trainer", "publisher"]
ROLES: tuple[Role, ...] = ("all", "ingest", "trainer", "publisher")


@dataclass
class PipelineSummary:
    """What a pipeline run did: counts, versions, latency."""

    stream: str
    role: Role
    counters: IngestCounters
    model_versions: list[int]
    synthetic_published: int
    seconds: float
    latency: dict[str, float] = field(default_factory=dict)
    first_synthetic_after_s: float | None = None
    sequence_versions: list[int] = field(default_factory=list)
    sequences_published: int = 0


class Pipeline:
    """One configured pipeline and its worker role(s); :meth:`run` drives it."""

    def __init__(
        self,
        config: PipelineConfig,
        settings: KafkaSettings,
        schema: RecordSchema,
        *,
        role: Role = "all",
        store: SchemaStore | None = None,
        redactor: Redactor | None = None,
        executor: Executor | None = None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; choose one of {list(ROLES)}")
        self.config = config
        self.settings = settings
        self.schema = schema
        self.role = role
        self.store = store or schema_store_for(config)  # the Schema Registry when schema_registry.url is set
        # Fail on an unusable state directory (read-only, full, no permission) before anything writes.
        check_state_dir(config.state_dir)
        config.check_schema(schema)  # operator/type mismatches of every field, at once, before any record
        self.redactor = redactor if redactor is not None else self._default_redactor()
        if role == "trainer" and not self.redactor.redacts:
            raise ConfigError(
                [
                    f"role 'trainer' reads {config.redacted_topic}, which exists only when redaction is enabled; "
                    "enable redaction (and run an ingest worker) or run role 'all'"
                ],
                f"pipeline {config.stream!r}",
            )
        #: What leaves the redactor: the schema of the redacted topic, the buffer and the models.
        self.output_schema: RecordSchema = getattr(self.redactor, "output_schema", schema)
        self.findings: FindingsReporter | None = None
        #: Stages fed every redacted micro-batch (see :meth:`_build_observers`).
        self.observers: list[BatchObserver] = []
        self._executor = executor
        self._own_executor = executor is None
        audit = config.audit
        # A share of the arriving (redacted) records becomes the audit's control set: never trained on.
        self.buffer = TrainingBuffer(
            config.buffer.max_records,
            holdout_share=audit.holdout_share if audit.enabled else 0.0,
            holdout_max=audit.holdout_max,
            seed=audit.seed,
        )
        self.registry = ModelRegistry(config.state_dir / "models", config.stream)
        #: The durable privacy ledger (DuckDB) shared by every DP release of this state directory.
        self.ledger = PrivacyLedger(config.state_dir / "privacy.duckdb")
        self.stats: StatsStage | None = None
        self.gate: AuditGate | None = None
        self.latency = LatencyTracker()
        #: The input stage: ingest (raw source) or, in the trainer role, the redacted topic's reader.
        self.stage: IngestStage | RedactedStage | None = None
        #: Whether the broker answers (probed every second while running); /health reads it.
        self.monitor = BrokerMonitor(settings)
        self.consumer: BatchConsumer | None = None
        self.scheduler: RetrainScheduler | None = None
        self.publisher: SyntheticPublisher | None = None
        # Time series (issue 6): keyed state, a sequence model with its own registry, a sequence feed.
        self.sequence_state: EntitySequences | SlidingWindows | None = None
        self.sequence_registry = (
            ModelRegistry(config.state_dir / "models", f"{config.stream}.sequences")
            if config.sequence.enabled
            else None
        )
        self.sequence_scheduler: SequenceScheduler | None = None
        self.sequence_publisher: SequencePublisher | None = None
        self.started_at = 0.0
        self.first_synthetic_at: float | None = None
        #: Set once the source consumer has partitions assigned (the group join is done).
        self.consuming = asyncio.Event()
        #: Source partitions with unread records (or an unknown end) after the last poll: they hold
        #: the statistics' event-time watermark back (see processors/windows.py).
        self.lagging_partitions: set[tuple[str, int]] = set()
        self._log = get_logger("pipeline", stream=config.stream, role=role)

    def __repr__(self) -> str:
        return f"Pipeline(stream={self.config.stream!r}, role={self.role!r})"

    def _default_redactor(self) -> Redactor:
        # The redaction plan is detected on the configured sample file; the pseudonym key is
        # read here, at construction, from the configured environment variable.
        from synthstream.processors.pii.redactor import make_redactor, pseudonymizer_from_env

        redaction = self.config.redaction
        sample: list[dict[str, Any]] = []
        if redaction.enabled and self.config.source.sample_file is not None:
            frame = read_table(self.config.source.sample_file, nrows=redaction.sample_records)
            sample = records_from_frame(frame, self.schema)
        return make_redactor(
            redaction,
            self.config.fields,
            self.schema,
            sample,
            pseudonymizer=pseudonymizer_from_env(redaction, self.config.state_dir / "redaction"),
            cache_dir=self.config.state_dir / "redaction",
        )

    @property
    def ingests(self) -> bool:
        """Whether this role consumes the raw source topic (and runs the redactor): ``all`` and ``ingest`` only."""
        return self.role in ("all", "ingest")

    @property
    def reads_redacted(self) -> bool:
        """Whether this role consumes ``<stream>.redacted`` instead of the source (the trainer role)."""
        return self.role == "trainer"

    @property
    def consumes(self) -> bool:
        """Whether this role consumes a topic at all (the publisher role does not)."""
        return self.ingests or self.reads_redacted

    @property
    def input_topic(self) -> str | None:
        """The topic this role reads: the source, the redacted topic, or none."""
        if self.ingests:
            return self.config.source.topic
        if self.reads_redacted:
            return self.config.redacted_topic
        return None

    @property
    def trains(self) -> bool:
        """Whether this role retrains models."""
        return self.role in ("all", "trainer")

    @property
    def publishes(self) -> bool:
        """Whether this role publishes the synthetic feed."""
        return self.role in ("all", "publisher")

    def output_topics(self) -> list[str]:
        """Topics this pipeline writes to (created at start when missing)."""
        topics = self.config.topics
        out = [topics.deadletter, topics.models, topics.schemas]
        if self.config.tabular_enabled:
            out.append(self.config.synthetic_topic)
        if self.config.stats.enabled and self.role in ("all", "ingest"):
            out += [self.config.stats_topic, topics.budget]
        if self.redactor.redacts and self.ingests:
            out += [self.config.redacted_topic, topics.pii_findings]
        if self.config.audit.enabled and self.trains and self.config.tabular_enabled:
            out.append(topics.privacy_audit)
        if self.config.sequence.enabled and self.publishes:
            out.append(self.sequence_topic)
        if self.config.drift_enabled and self.trains:
            # Created up front: producing to a topic made after the producer started can fail on the
            # embedded broker (NotLeaderForPartition).
            out.append(topics.drift)
        return out

    def _encoder(self) -> Callable[[Sequence[dict[str, Any]]], list[bytes]]:
        return self._encoder_for(self.config.synthetic_topic)

    def _encoder_for(
        self, topic: str, schema: RecordSchema | None = None
    ) -> Callable[[Sequence[dict[str, Any]]], list[bytes]]:
        schema = schema or self.output_schema
        if self.config.publisher.format == "avro":
            serde = AvroRecordSerde(schema, self.store, subject=f"{topic}-value")
            return serde.encode_many
        json_serde = JsonRecordSerde(schema)
        return lambda rows: [json_serde.encode(r) for r in rows]

    async def publish_schemas(self, producer: BatchSender) -> None:
        """Publish every schema this pipeline registered on the schemas topic."""
        for schema_id in self.store.ids():
            await publish_schema(
                producer, self.config.topics.schemas, f"id-{schema_id}", schema_id, self.store.get(schema_id)
            )

    async def run(
        self,
        *,
        stop: asyncio.Event | None = None,
        until: Callable[[Pipeline], bool] | None = None,
    ) -> PipelineSummary:
        """Run until ``stop`` is set, ``until(self)`` holds, or the publisher reached its limit."""
        stop = stop or asyncio.Event()
        self.started_at = time.monotonic()
        # The trainer's input is created too, so it can start before the first ingest worker.
        inputs = [self.config.redacted_topic] if self.reads_redacted else []
        await ensure_pipeline_topics(self.settings, self.config, [*self.output_topics(), *inputs])
        executor = self._executor
        if self.trains and executor is None:
            executor = self._executor = training_executor()
        producer = Producer(self.settings, monitor=self.monitor)
        try:
            reader = SchemaTopicReader(self.settings, self.config.topics.schemas, self.store)
            await reader.refresh()
            await producer.start()
            self.build(producer, executor)
            await self.publish_schemas(producer)
            self.monitor.on_restored.append(lambda: self._recreate(producer))
            await self._run_tasks(stop, until, reader)
        except BaseExceptionGroup as group:
            # One clear error instead of a task group's tree: the first of our own errors, if any.
            ours = group.subgroup(lambda e: isinstance(e, SynthstreamError))
            if ours is not None:
                first: BaseException = ours
                while isinstance(first, BaseExceptionGroup):
                    first = first.exceptions[0]
                raise first from None
            raise
        finally:
            await self._shutdown(producer, executor)
            closing_log(self)  # the last line says what was published, and why nothing if nothing was
        return self.summary()

    async def _shutdown(self, producer: Producer, executor: Executor | None) -> None:
        """Wait for a running fit, flush the observers and the producer; bounded when the broker is gone."""
        if self.scheduler is not None:
            await self.scheduler.wait_idle()
        if self.sequence_scheduler is not None:
            await self.sequence_scheduler.wait_idle()
        # With the broker away a flush would wait for it for the full retry deadline: give up after a few s.
        # A fresh probe decides (the monitor's last answer may be stale after waiting for a fit).
        answering = self.monitor.connected or await self.monitor.probe()
        bound = None if answering else 5.0
        if producer.started:
            try:
                async with asyncio.timeout(bound):
                    if self.findings is not None:
                        await self.findings.tick(force=True)
                    for observer in self.observers:
                        await observer.close()
            except TimeoutError:
                self._log.warning("pipeline.flush_abandoned", reason="broker unavailable", timeout_s=bound)
        await producer.stop(timeout_s=bound)
        await self.monitor.close()
        if self._own_executor and executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def _recreate(self, producer: BatchSender) -> None:
        """After a broker outage: re-create missing output topics and re-publish schemas (memory-only brokers)."""
        await ensure_pipeline_topics(self.settings, self.config, self.output_topics())
        await self.publish_schemas(producer)

    def build(self, producer: BatchSender, executor: Executor | None) -> None:
        """Create the stages of this role, producing through ``producer`` (aiokafka or faust)."""
        deadletter_serde = EventSerde(DeadLetterEvent, self.store)
        lifecycle_serde = EventSerde(ModelLifecycleEvent, self.store)
        encode_many = self._encoder()
        src = self.config.source
        if self.reads_redacted:
            # The trainer role: the redacted topic, decoded with the redacted output schema.
            self.observers = self._build_observers(producer)
            self.stage = RedactedStage(
                decode=RecordValidator(
                    self.output_schema,
                    source_format=self.config.publisher.format,
                    store=self.store,
                    max_record_bytes=max(src.max_record_bytes, 16 * 1_048_576),
                    extra_fields="drop",
                ),
                buffer=self.buffer,
                producer=producer,
                deadletter_topic=self.config.topics.deadletter,
                deadletter_serde=deadletter_serde,
                stream=self.config.stream,
                latency=self.latency,
                observers=self.observers,
            )
        if self.ingests:
            validator = RecordValidator(
                self.schema,
                source_format=src.format,
                store=self.store,
                max_record_bytes=src.max_record_bytes,
                extra_fields=src.extra_fields,
            )
            self.observers = self._build_observers(producer)
            self.stage = IngestStage(
                validator=validator,
                redactor=self.redactor,
                buffer=self.buffer,
                producer=producer,
                deadletter_topic=self.config.topics.deadletter,
                deadletter_serde=deadletter_serde,
                stream=self.config.stream,
                latency=self.latency,
                redacted_topic=self.config.redacted_topic if self.redactor.redacts else None,
                encode_redacted=self._encoder_for(self.config.redacted_topic) if self.redactor.redacts else None,
                observers=self.observers,
            )
            if self.redactor.redacts:
                self.findings = FindingsReporter(
                    redactor=self.redactor,
                    producer=producer,
                    topic=self.config.topics.pii_findings,
                    serde=EventSerde(PiiFindingsEvent, self.store),
                    stream=self.config.stream,
                    window_s=self.config.redaction.findings_window_s,
                )
        if self.trains and self.config.tabular_enabled:
            assert executor is not None
            self.gate = self._audit_gate(producer, executor)
            self.scheduler = RetrainScheduler(
                config=self.config.training,
                buffer=self.buffer,
                registry=self.registry,
                schema=self.output_schema,
                executor=executor,
                producer=producer,
                models_topic=self.config.topics.models,
                lifecycle_serde=lifecycle_serde,
                stream=self.config.stream,
                gate=self.gate,
                ledger=self.ledger,
                stats=self.config.stats,
                # The first fit waits for our consumer to catch up with the topic (issue 17): an empty
                # poll with no partition lagging (the embedded broker's fetch high-water marks can lag
                # behind, so lag alone is not trusted). With another engine's consumer (faust) it is
                # unknown (None): min_records decides.
                caught_up=lambda: self._source_idle_seconds() > 0.0 if self.consumer is not None else None,
                target_field=self.config.audit.target_field,
            )
            for observer in self.observers:  # drift (issue 8): e.g. store each version's training profile
                hook = getattr(observer, "version_hook", None)
                if hook is not None:
                    self.scheduler.hooks.append(hook)
        self._build_sequences(producer, executor, lifecycle_serde)
        if not self.config.tabular_enabled:
            # A sequence-only config (issue 16): no tabular model, audit, feed or drift unless asked.
            self._log.info("pipeline.tabular_off", reason="sequence section only; set training.tabular to add it")
        elif self.publishes:
            self.publisher = SyntheticPublisher(
                registry=self.registry,
                producer=producer,
                topic=self.config.synthetic_topic,
                encode_many=encode_many,
                config=self.config.publisher,
                stream=self.config.stream,
            )

    @property
    def sequence_topic(self) -> str:
        """Topic of the synthetic sequence feed."""
        return self.config.sequence.topic or f"{self.config.stream}.sequences"

    def _build_sequences(
        self, producer: BatchSender, executor: Executor | None, lifecycle_serde: EventSerde[ModelLifecycleEvent]
    ) -> None:
        """The sequence model's scheduler (roles that train) and the sequence feed (roles that publish)."""
        cfg = self.config.sequence
        if not cfg.enabled or self.sequence_registry is None:
            return
        if self.trains and self.sequence_state is not None:
            assert executor is not None
            self.sequence_scheduler = SequenceScheduler(
                config=cfg,
                training=self.config.training,
                state=self.sequence_state,
                registry=self.sequence_registry,
                schema=self.output_schema,
                executor=executor,
                producer=producer,
                models_topic=self.config.topics.models,
                lifecycle_serde=lifecycle_serde,
                stream=self.config.stream,
                ledger=self.ledger,
                privacy=self.config.training.privacy,
                caught_up=lambda: self.stage is not None and self.stage.idle_seconds() > 0,
            )
        if self.publishes:
            assert cfg.time_field is not None  # required when the section is enabled
            self.sequence_publisher = SequencePublisher(
                registry=self.sequence_registry,
                producer=producer,
                topic=self.sequence_topic,
                encode_many=self._encoder_for(
                    self.sequence_topic, feed_schema(self.output_schema, cfg.publisher.id_field)
                ),
                config=cfg.publisher,
                stream=self.config.stream,
                time_field=cfg.time_field,
            )

    def _audit_gate(self, producer: BatchSender, executor: Executor) -> AuditGate | None:
        """The privacy/quality audit every new version must pass before it may publish (issue 7)."""
        if not self.config.audit.enabled:
            return None
        from synthstream.processors.auditor import warm_up_audit

        executor.submit(warm_up_audit)  # shares the training pool: fits and audits never overlap
        return AuditGate(
            config=self.config.audit,
            schema=self.output_schema,
            buffer=self.buffer,
            registry=self.registry,
            executor=executor,
            producer=producer,
            topic=self.config.topics.privacy_audit,
            serde=EventSerde(PrivacyAuditEvent, self.store),
            stream=self.config.stream,
            guarantee=lineage_guarantee,
            replaced_fields=self.replaced_fields(),
            public_values=dict(self.config.training.marginal.labels),
        )

    def replaced_fields(self) -> list[str]:
        """Fields whose PII values the redactor replaces (fakes, pseudonyms, masks, generalisations)."""
        plan = getattr(self.redactor, "plan", None)
        if plan is None:
            return []
        return [f.field for f in plan.fields if f.operator not in ("keep", "drop", "scan")]

    def _build_observers(self, producer: BatchSender) -> list[BatchObserver]:
        """The stages that consume redacted micro-batches in this role, in the order they run."""
        observers: list[BatchObserver] = []
        if self.config.stats.enabled and self.role in ("all", "ingest"):
            # Windowed DP statistics: one role per stream releases them (the trainer role does not).
            self.stats = StatsStage(
                config=self.config.stats,
                stream=self.config.stream,
                schema=self.output_schema,
                ledger=self.ledger,
                producer=producer,
                stats_topic=self.config.stats_topic,
                budget_topic=self.config.topics.budget,
                deadletter_topic=self.config.topics.deadletter,
                stats_serde=EventSerde(StatsEvent, self.store),
                budget_serde=EventSerde(BudgetEvent, self.store),
                deadletter_serde=EventSerde(DeadLetterEvent, self.store),
                idle_seconds=self._source_idle_seconds,
                lagging_partitions=lambda: self.lagging_partitions,
                min_label_count=self.config.training.min_category_count,
            )
            observers.append(self.stats)
        if self.config.drift_enabled and self.trains:
            # Drift monitors (issue 8) run where retrains happen (roles all/trainer): the scheduler is
            # built after the observers, so requests look it up when they happen; build() connects
            # the stage's version hook (training profiles) to the scheduler.
            from synthstream.connectors.sinks import AutoDecoder
            from synthstream.schemas.events import DriftEvent
            from synthstream.streams.drift import DriftStage, SyntheticTap

            def request_retrain(reason: str) -> None:
                if self.scheduler is not None:
                    self.scheduler.request(reason)

            drift = self.config.drift
            tap = (
                SyntheticTap(
                    self.settings,
                    self.config.synthetic_topic,
                    decode=AutoDecoder(self.store),
                    group_id=f"{self.config.group_id}-drift",
                )
                if drift.divergence
                else None
            )
            observers.append(
                DriftStage(
                    config=drift,
                    schema=self.output_schema,
                    producer=producer,
                    topic=self.config.topics.drift,
                    serde=EventSerde(DriftEvent, self.store),
                    stream=self.config.stream,
                    registry=self.registry,
                    request_retrain=request_retrain,
                    settings=self.settings,
                    tap=tap,
                )
            )
        if self.config.sequence.enabled and self.trains:
            # Time series (issue 6): bounded per-entity keyed state (or windows of one long series),
            # kept where retrains happen; the sequence model trains from its snapshot().
            from synthstream.processors.sequences import sequence_state_from_config

            self.sequence_state = sequence_state_from_config(self.config.sequence)
            observers.append(self.sequence_state)
        if self.config.metrics.enabled:
            # /metrics and /health (issue 8), served while the pipeline runs.
            from synthstream.streams.metrics import MetricsServer

            observers.append(MetricsServer(self.config.metrics, self, producer=producer))
        return observers

    def _source_idle_seconds(self) -> float:
        """Seconds the source consumer has been caught up (every poll empty); 0 while reading."""
        return self.stage.idle_seconds() if self.stage is not None else 0.0

    async def _run_tasks(
        self, stop: asyncio.Event, until: Callable[[Pipeline], bool] | None, reader: SchemaTopicReader
    ) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.monitor.run(stop), name="broker-monitor")
            if self.consumes:
                group.create_task(self._ingest_loop(stop, reader), name="ingest")
            if self.publisher is not None:
                group.create_task(self._publish(stop), name="publisher")
            if self.sequence_publisher is not None:
                group.create_task(self._publish_sequences(stop), name="sequence-publisher")
            group.create_task(self._watch(stop, until), name="watch")

    async def _publish(self, stop: asyncio.Event) -> None:
        assert self.publisher is not None
        await self.publisher.run(stop)
        if self.config.publisher.max_records is not None:
            self._feed_complete(stop)

    async def _publish_sequences(self, stop: asyncio.Event) -> None:
        assert self.sequence_publisher is not None
        await self.sequence_publisher.run(stop)
        if self.config.sequence.publisher.max_records is not None:
            self._feed_complete(stop)

    def _feed_complete(self, stop: asyncio.Event) -> None:
        """A feed reached its ``max_records``: the run ends once every feed of this role is complete."""
        feeds = [p for p in (self.publisher, self.sequence_publisher) if p is not None]
        if all(p.done.is_set() for p in feeds):
            self._log.info("pipeline.feeds_complete", feeds=len(feeds))
            stop.set()  # the configured feeds are complete: the run ends

    async def _watch(self, stop: asyncio.Event, until: Callable[[Pipeline], bool] | None) -> None:
        while not stop.is_set():
            if self.publisher is not None and self.publisher.published and self.first_synthetic_at is None:
                self.first_synthetic_at = time.monotonic()
            if until is not None and until(self):
                stop.set()
                break
            if self.scheduler is not None:
                self.scheduler.maybe_start()
            if self.sequence_scheduler is not None:
                self.sequence_scheduler.maybe_start()
            if self.findings is not None:
                await self.findings.tick()
            for observer in self.observers:
                await observer.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.05)

    async def _ingest_loop(self, stop: asyncio.Event, reader: SchemaTopicReader) -> None:
        assert self.stage is not None and self.input_topic is not None
        src = self.config.source
        group = self.config.group_id + ("-trainer" if self.reads_redacted else "")
        consumer = BatchConsumer(
            self.settings,
            [self.input_topic],
            group_id=group,
            assign=src.assign_partitions,
            max_records=src.batch_size,
            monitor=self.monitor,
        )
        self.consumer = consumer  # tests and /health look at its topics and assignment
        await consumer.start()
        outages_seen = self.monitor.outages
        next_recovery = 0.0
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                if consumer.assignment():
                    self.consuming.set()
                self.lagging_partitions = await consumer.lagging()
                # Caught up means an empty poll with nothing left unread in any assigned partition.
                self.stage.mark_idle(not batch and not self.lagging_partitions)
                # The broker came back: positions past a partition's end (it lost its data) go back.
                recover = not batch and self.monitor.outages != outages_seen and self.monitor.connected
                if recover and time.monotonic() >= next_recovery:
                    next_recovery = time.monotonic() + 1.0
                    try:
                        await consumer.recover_positions()
                        outages_seen = self.monitor.outages
                    except Exception as exc:  # e.g. the topic is not there yet: try again in a second
                        self._log.debug("consumer.recovery_deferred", error=type(exc).__name__)
                if not batch:
                    continue
                if self.has_unknown_schema_ids(batch):
                    await reader.refresh()
                await self.stage.handle(batch)
                await consumer.commit(batch, self.stage.commit_floors())
                if self.scheduler is not None:
                    self.scheduler.maybe_start()
        finally:
            await consumer.stop(timeout_s=None if self.monitor.connected or await self.monitor.probe() else 5.0)

    def has_unknown_schema_ids(self, batch: Sequence[SourceRecord]) -> bool:
        """Whether a batch holds Confluent-framed values whose schema this process has not loaded."""
        known = set(self.store.ids())
        for rec in batch:
            value = rec.value
            if (
                value is not None
                and len(value) >= 5
                and value[0] == 0
                and int.from_bytes(value[1:5], "big") not in known
            ):
                return True
        return False

    def status(self) -> RunStatus:
        """What the run is doing now, with its counts (the CLI's status line, /health's ``activity``)."""
        return run_status(self)

    def summary(self) -> PipelineSummary:
        """The run's counts so far."""
        counters = self.stage.counters if self.stage is not None else IngestCounters()
        first = None if self.first_synthetic_at is None else self.first_synthetic_at - self.started_at
        return PipelineSummary(
            stream=self.config.stream,
            role=self.role,
            counters=counters,
            model_versions=[v.version for v in self.registry.versions()],
            synthetic_published=self.publisher.published if self.publisher is not None else 0,
            seconds=time.monotonic() - self.started_at,
            latency=self.latency.quantiles(),
            first_synthetic_after_s=first,
            sequence_versions=[v.version for v in self.sequence_registry.versions()] if self.sequence_registry else [],
            sequences_published=self.sequence_publisher.published if self.sequence_publisher is not None else 0,
        )
