"""The ingest stage: source micro-batch -> validate -> redact -> encode -> buffer and observers.

Per batch: every record is validated; rejected ones become dead-letter events carrying
topic/partition/offset and the reason (never the payload); valid ones pass the redactor,
are encoded for ``<stream>.redacted``, go into the training buffer and to every
:class:`BatchObserver` (windowed DP statistics, drift monitors, sequence state), which only
ever see redacted records. The caller commits offsets only after :meth:`IngestStage.handle`
returns, i.e. after the dead letters, the redacted records and the observers' outputs are
acknowledged (at-least-once).

Per-record failure isolation. Every stage runs on the whole batch first (the fast path);
when it raises, the batch is run again record by record and only the records that still
raise are dead-lettered, with reason ``<stage>_failed`` (``validate_failed``,
``redact_failed``, ``encode_failed``, ``observe_failed``) and the exception's type, never its
message (it can quote the value). A record that fails to redact or encode goes no further;
one an observer cannot take is dead-lettered for that observer only. Infrastructure failures
(:func:`is_systemic`: the broker, the disk, the ledger, a refused configuration) are not a
record's fault: they propagate, the batch is not committed and is read again.

Counts are conserved: ``records_in = processed + dead_letters``, each source record counted
once. ``dead_letters`` counts distinct records with a dead-letter event (from any stage,
observers included: they report theirs through :meth:`IngestStage.report`, the one
dead-letter path). ``processed`` counts the others: records every stage took. A valid record
that an observer dead-letters later (the stats stage finds it late when its window closes)
moves from ``processed`` to ``dead_letters``; it stays in ``<stream>.redacted`` and the
buffer, which had taken it.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.errors import BrokerError, ConfigError, RecordRejected, StateDirError
from synthstream.log import get_logger
from synthstream.privacy.ledger import LedgerError
from synthstream.processors.buffer import TrainingBuffer
from synthstream.processors.redactor import Redactor
from synthstream.schemas.events import DeadLetterEvent, EventSerde, stable_event_id

Record = dict[str, Any]
#: Most dead-lettered record coordinates remembered, so a record is counted once.
_DEAD_KEYS_KEPT = 100_000


class SourceRecord(Protocol):
    """What the ingest stage needs of a consumed record (aiokafka's ConsumerRecord or faust's)."""

    @property
    def topic(self) -> str:
        """Source topic."""
        ...

    @property
    def partition(self) -> int:
        """Source partition."""
        ...

    @property
    def offset(self) -> int:
        """Offset in the partition."""
        ...

    @property
    def timestamp(self) -> int:
        """Record timestamp in milliseconds since the epoch."""
        ...

    @property
    def value(self) -> bytes | None:
        """Raw value (None for a tombstone)."""
        ...


@dataclass(frozen=True)
class Rejection:
    """One source record for the dead-letter topic: where it came from, why, and which stage said so.

    ``detail`` names fields, types and rules; never a value.
    """

    source: SourceRecord
    reason: str
    detail: str
    stage: str


#: Where a stage reports its dead letters: :meth:`IngestStage.report` (awaited: acknowledged on return).
DeadLetterSink = Callable[[Sequence[Rejection]], Awaitable[None]]


@runtime_checkable
class BatchObserver(Protocol):
    """A downstream stage fed every redacted micro-batch, with timers and a clean shutdown.

    ``observe`` gets the redacted records and their source coordinates (same order, same
    length) before the batch's offsets are committed, so whatever it produces is covered by
    at-least-once delivery. ``tick`` is called about every 50 ms for processing-time timers;
    ``close`` once at shutdown, to flush what is pending.

    ``observe`` must be all-or-nothing: when it raises, it has kept nothing of the batch, so
    the ingest stage can feed it the records one by one and dead-letter only those that still
    raise (see the module docstring). An observer that dead-letters records itself implements
    :class:`ReportsDeadLetters` and reports them; it never produces to the dead-letter topic
    on its own, or the counts would miss them.
    """

    async def observe(self, records: Sequence[Record], sources: Sequence[SourceRecord]) -> None:
        """Take one redacted micro-batch."""
        ...

    async def tick(self) -> None:
        """Run due timers (windows closing, reports)."""
        ...

    async def close(self) -> None:
        """Flush pending outputs at shutdown."""
        ...


@runtime_checkable
class ReportsDeadLetters(Protocol):
    """An observer that dead-letters records (late, in the future...): it is given the stage's sink.

    The ingest stage binds its :meth:`IngestStage.report` at construction; the observer
    awaits it with its rejections, from ``observe``, ``tick`` or ``close`` alike.
    """

    def bind_dead_letters(self, sink: DeadLetterSink) -> None:
        """Route this observer's dead letters to ``sink``."""
        ...


#: Exceptions that are no record's fault: they propagate instead of dead-lettering records.
_SYSTEMIC_TYPES: tuple[type[BaseException], ...] = (
    OSError,  # disk full, read-only state dir, connections (ConnectionError, TimeoutError)
    MemoryError,
    BrokerError,
    ConfigError,
    StateDirError,
    LedgerError,  # the privacy ledger cannot be read or written: fail closed, never skip records
)
_SYSTEMIC_MODULES = frozenset({"aiokafka", "kafka", "duckdb"})


def is_systemic(exc: BaseException) -> bool:
    """Whether ``exc`` is an infrastructure failure (broker, disk, ledger, configuration).

    Such a failure would hit every record alike: dead-lettering them one by one would empty
    the stream into the dead-letter topic. It propagates instead, and the uncommitted batch
    is read again once the cause is fixed.
    """
    if isinstance(exc, _SYSTEMIC_TYPES):
        return True
    return type(exc).__module__.partition(".")[0] in _SYSTEMIC_MODULES


def _key(rec: SourceRecord) -> tuple[str, int, int]:
    return (rec.topic, rec.partition, rec.offset)


@runtime_checkable
class HoldsOffsets(Protocol):
    """An observer whose state would be lost in a crash: it names the offsets that must be re-read."""

    def commit_floors(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition), the lowest offset still needed after a crash (absent = none)."""
        ...


@dataclass
class IngestCounters:
    """Running totals of the ingest stage (see the module docstring for what each counts)."""

    records_in: int = 0
    processed: int = 0
    dead_letters: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def conserved(self) -> bool:
        """Whether every record in is accounted for."""
        return self.records_in == self.processed + self.dead_letters


class LatencyTracker:
    """Source-to-buffer latency, bounded memory.

    Measured from the record's timestamp, or from the moment this process started consuming
    when the record was already waiting (a replay or a backlog): a record produced an hour
    before the service started is not an hour late, only as late as we were in reading it.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._samples: list[float] = []
        self._next = 0
        self.started_ms = time.time() * 1000.0

    def add_records(self, timestamps_ms: Sequence[int | float]) -> None:
        """Record the latency of records that have just reached the buffer."""
        now_ms = time.time() * 1000.0
        for ts in timestamps_ms:
            self.add(max(0.0, now_ms - max(float(ts), self.started_ms)) / 1000.0)

    def add(self, seconds: float) -> None:
        """Record one latency sample (a ring once full)."""
        if len(self._samples) < self.capacity:
            self._samples.append(seconds)
        else:
            self._samples[self._next] = seconds
            self._next = (self._next + 1) % self.capacity

    def quantiles(self) -> dict[str, float]:
        """p50/p99/max in milliseconds over the retained samples."""
        if not self._samples:
            return {}
        ordered = sorted(self._samples)

        def q(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000.0

        return {"p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": ordered[-1] * 1000.0, "samples": float(len(ordered))}

    def reset(self) -> None:
        """Forget all samples."""
        self._samples.clear()
        self._next = 0


class ConsumingStage:
    """What every stage that consumes a topic and feeds observers shares: commit floors and idleness.

    Subclasses set ``observers`` and call ``super().__init__()``.
    """

    observers: list[BatchObserver]

    def __init__(self) -> None:
        self._idle_since: float | None = None

    def commit_floors(self) -> dict[tuple[str, int], int]:
        """The lowest offsets any observer still needs re-read after a crash (the commit stops there)."""
        floors: dict[tuple[str, int], int] = {}
        for observer in self.observers:
            if isinstance(observer, HoldsOffsets):
                for key, offset in observer.commit_floors().items():
                    floors[key] = min(floors.get(key, offset), offset)
        return floors

    def mark_idle(self, idle: bool) -> None:
        """Tell the stage whether the last poll came back empty with nothing left unread (caught up)."""
        if not idle:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = time.monotonic()

    def idle_seconds(self) -> float:
        """How long every poll has come back empty (0 while records are flowing)."""
        return 0.0 if self._idle_since is None else time.monotonic() - self._idle_since


class IngestStage(ConsumingStage):
    """Validates, redacts and buffers one micro-batch; dead-letters what cannot be processed."""

    def __init__(
        self,
        *,
        validator: Callable[[bytes | None], Record],
        redactor: Redactor,
        buffer: TrainingBuffer,
        producer: BatchSender,
        deadletter_topic: str,
        deadletter_serde: EventSerde[DeadLetterEvent],
        stream: str,
        latency: LatencyTracker | None = None,
        redacted_topic: str | None = None,
        encode_redacted: Callable[[Sequence[Record]], list[bytes]] | None = None,
        observers: Sequence[BatchObserver] = (),
    ) -> None:
        if (redacted_topic is None) != (encode_redacted is None):
            raise ValueError("redacted_topic and encode_redacted go together")
        if redacted_topic is not None and not redactor.redacts:
            raise ValueError("a redacted topic needs a redactor that redacts; the pass-through hook does not")
        self.validator = validator
        self.redactor = redactor
        self.buffer = buffer
        self.producer = producer
        self.deadletter_topic = deadletter_topic
        self.deadletter_serde = deadletter_serde
        self.stream = stream
        self.latency = latency
        self.redacted_topic = redacted_topic
        self.encode_redacted = encode_redacted
        self.observers: list[BatchObserver] = list(observers)
        self.counters = IngestCounters()
        super().__init__()
        self._log = get_logger("ingest", stream=stream)
        # The batch in hand (records not yet counted) and the records already dead-lettered
        # (bounded memory): a record is counted once, whichever stages reject it.
        self._batch: Sequence[SourceRecord] | None = None
        self._open: set[tuple[str, int, int]] | None = None
        self._batch_dead: set[tuple[str, int, int]] = set()
        self._dead_keys: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        for observer in self.observers:
            if isinstance(observer, ReportsDeadLetters):
                observer.bind_dead_letters(self.report)

    def __repr__(self) -> str:
        return f"IngestStage(stream={self.stream!r}, deadletter_topic={self.deadletter_topic!r})"

    async def handle(self, batch: Sequence[SourceRecord]) -> int:
        """Process one micro-batch; return the number of records every stage took so far.

        Raises only on infrastructure failures (:func:`is_systemic`); a record that breaks a
        stage is dead-lettered and the batch goes on.
        """
        self._batch, self._open, self._batch_dead = batch, None, set()
        # Counted in on arrival: while the batch is in hand, in = processed + dead + in flight.
        self.counters.records_in += len(batch)
        done = False
        try:
            rejections: list[Rejection] = []
            valid, sources = self._validate(batch, rejections)
            redacted, sources = self._redact(valid, sources, rejections)
            values, redacted, sources = self._encode(redacted, sources, rejections)
            if rejections:
                await self.report(rejections)
            if self.redacted_topic is not None and redacted:
                keys = [stable_event_id(r.topic, r.partition, r.offset).encode() for r in sources]
                # Each redacted record keeps its source partition: per-partition order carries over.
                messages = [
                    OutMessage(value=v, key=k, partition=r.partition)
                    for v, k, r in zip(values, keys, sources, strict=True)
                ]
                await self.producer.send_batch(self.redacted_topic, messages)
            self.buffer.extend(redacted)
            for observer in self.observers:
                await self._observe(observer, redacted, sources)
            self._observe_latency([r.timestamp for r in sources])
            done = True
        finally:
            # On an infrastructure failure only the records already dead-lettered stay counted;
            # the others are read again (the batch is not committed) and counted then.
            taken = len(batch) - len(self._batch_dead)
            if done:
                self.counters.processed += taken
            else:
                self.counters.records_in -= taken
            self._batch, self._open, self._batch_dead = None, None, set()
        return taken if done else 0

    async def report(self, rejections: Sequence[Rejection]) -> None:
        """Dead-letter ``rejections`` (any stage, any time) and count each source record once.

        A record of the batch in hand is counted as a dead letter instead of processed (once,
        however many stages reject it); a record of an earlier batch (already counted
        processed) moves from processed to dead letters, unless it was dead-lettered before.
        Returns once the events are acknowledged.
        """
        messages: list[OutMessage] = []
        for rejection in rejections:
            key = _key(rejection.source)
            if self._in_batch(key):
                if key in self._batch_dead:
                    continue
                self._batch_dead.add(key)
            elif key in self._dead_keys:
                continue
            else:
                self.counters.processed -= 1
            self._remember_dead(key)
            self.counters.dead_letters += 1
            messages.append(self._dead_letter(rejection))
        if messages:
            await self.producer.send_batch(self.deadletter_topic, messages)

    # -- the stages, batch first, record by record on failure ---------------------------------

    def _validate(
        self, batch: Sequence[SourceRecord], rejections: list[Rejection]
    ) -> tuple[list[Record], list[SourceRecord]]:
        valid: list[Record] = []
        sources: list[SourceRecord] = []
        validate = self.validator
        for rec in batch:
            try:
                valid.append(validate(rec.value))
                sources.append(rec)
            except RecordRejected as rejected:
                rejections.append(Rejection(rec, rejected.reason, rejected.detail, "validate"))
            except Exception as exc:  # a validator bug on one value must not stop the stream
                if is_systemic(exc):
                    raise
                rejections.append(self._failure(rec, "validate", exc))
        return valid, sources

    def _redact(
        self, valid: list[Record], sources: list[SourceRecord], rejections: list[Rejection]
    ) -> tuple[list[Record], list[SourceRecord]]:
        try:
            return self.redactor.process(valid), sources
        except Exception as exc:
            if is_systemic(exc):
                raise
        redacted: list[Record] = []
        kept: list[SourceRecord] = []
        for record, src in zip(valid, sources, strict=True):
            try:
                redacted.extend(self.redactor.process([record]))
                kept.append(src)
            except RecordRejected as rejected:
                rejections.append(Rejection(src, rejected.reason, rejected.detail, "redact"))
            except Exception as exc:
                if is_systemic(exc):
                    raise
                rejections.append(self._failure(src, "redact", exc))
        return redacted, kept

    def _encode(
        self, redacted: list[Record], sources: list[SourceRecord], rejections: list[Rejection]
    ) -> tuple[list[bytes], list[Record], list[SourceRecord]]:
        encode = self.encode_redacted
        if encode is None or not redacted:
            return [], redacted, sources
        try:
            return encode(redacted), redacted, sources
        except Exception as exc:
            if is_systemic(exc):
                raise
        values: list[bytes] = []
        kept: list[Record] = []
        kept_sources: list[SourceRecord] = []
        for record, src in zip(redacted, sources, strict=True):
            try:
                values.extend(encode([record]))
                kept.append(record)
                kept_sources.append(src)
            except Exception as exc:
                if is_systemic(exc):
                    raise
                rejections.append(self._failure(src, "encode", exc))
        return values, kept, kept_sources

    async def _observe(self, observer: BatchObserver, records: list[Record], sources: list[SourceRecord]) -> None:
        if not records:
            await observer.observe(records, sources)
            return
        try:
            await observer.observe(records, sources)
            return
        except Exception as exc:
            if is_systemic(exc):
                raise
        stage = _observer_name(observer)
        failed: list[Rejection] = []
        for record, src in zip(records, sources, strict=True):
            try:
                await observer.observe([record], [src])
            except Exception as exc:
                if is_systemic(exc):
                    raise
                failed.append(self._failure(src, stage, exc))
        if failed:
            await self.report(failed)

    def _failure(self, rec: SourceRecord, stage: str, exc: BaseException) -> Rejection:
        """The rejection of a record ``stage`` raised on: reason ``<stage>_failed``, the exception type only."""
        rejected = RecordRejected.from_exception(stage, exc)
        return Rejection(rec, rejected.reason, rejected.detail, stage)

    def _in_batch(self, key: tuple[str, int, int]) -> bool:
        if self._batch is None:
            return False
        if self._open is None:  # built on the first rejection of a batch: the fast path never pays
            self._open = {_key(r) for r in self._batch}
        return key in self._open

    def _remember_dead(self, key: tuple[str, int, int]) -> None:
        self._dead_keys[key] = None
        if len(self._dead_keys) > _DEAD_KEYS_KEPT:
            self._dead_keys.popitem(last=False)

    def _dead_letter(self, rejection: Rejection) -> OutMessage:
        rec = rejection.source
        self.counters.by_reason[rejection.reason] += 1
        self._log.warning(
            "record.dead_lettered",
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            stage=rejection.stage,
            reason=rejection.reason,
            detail=rejection.detail,
        )
        # The validator's events keep their historical id; other stages' ids name the stage.
        parts: tuple[object, ...] = (rec.topic, rec.partition, rec.offset)
        if rejection.stage != "validate":
            parts += (rejection.stage,)
        event = DeadLetterEvent(
            event_id=stable_event_id(*parts),
            source_topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            reason=rejection.reason,
            detail=rejection.detail,
            payload_bytes=len(rec.value) if rec.value is not None else 0,
            stage=rejection.stage,
            occurred_at=datetime.now(UTC),
        )
        return OutMessage(value=self.deadletter_serde.encode(event), key=event.event_id.encode())

    def _observe_latency(self, timestamps: Sequence[int]) -> None:
        if self.latency is not None:
            self.latency.add_records(timestamps)


def _observer_name(observer: BatchObserver) -> str:
    """The stage name of an observer in dead-letter events: its ``stage_name``, else its class name."""
    name = getattr(observer, "stage_name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(observer).__name__
    return cls.removesuffix("Stage").lower() or "observer"
