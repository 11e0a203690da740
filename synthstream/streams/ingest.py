"""The ingest stage: source micro-batch -> validate -> redact -> buffer and observers, bad -> dead letters.

Per batch: every record is validated; rejected ones become dead-letter events carrying
topic/partition/offset and the reason (never the payload); valid ones pass the redactor
into the training buffer and to every :class:`BatchObserver` (windowed DP statistics,
drift monitors, sequence state), which only ever see redacted records. The caller commits
offsets only after :meth:`IngestStage.handle` returns, i.e. after the dead letters, the
redacted records and the observers' outputs are acknowledged (at-least-once).
Counts are conserved: records in = processed + dead letters.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.errors import RecordRejected
from synthstream.log import get_logger
from synthstream.processors.buffer import TrainingBuffer
from synthstream.processors.redactor import Redactor
from synthstream.schemas.events import DeadLetterEvent, EventSerde, stable_event_id

Record = dict[str, Any]


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


@runtime_checkable
class BatchObserver(Protocol):
    """A downstream stage fed every redacted micro-batch, with timers and a clean shutdown.

    ``observe`` gets the redacted records and their source coordinates (same order, same
    length) before the batch's offsets are committed, so whatever it produces is covered by
    at-least-once delivery. ``tick`` is called about every 50 ms for processing-time timers;
    ``close`` once at shutdown, to flush what is pending.
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
class HoldsOffsets(Protocol):
    """An observer whose state would be lost in a crash: it names the offsets that must be re-read."""

    def commit_floors(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition), the lowest offset still needed after a crash (absent = none)."""
        ...


@dataclass
class IngestCounters:
    """Running totals of the ingest stage."""

    records_in: int = 0
    processed: int = 0
    dead_letters: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def conserved(self) -> bool:
        """Whether every record in is accounted for."""
        return self.records_in == self.processed + self.dead_letters


class LatencyTracker:
    """Source-to-buffer latency (record timestamp to buffer append), bounded memory."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._samples: list[float] = []
        self._next = 0

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


class IngestStage:
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
        self._idle_since: float | None = None
        self._log = get_logger("ingest", stream=stream)

    def __repr__(self) -> str:
        return f"IngestStage(stream={self.stream!r}, deadletter_topic={self.deadletter_topic!r})"

    async def handle(self, batch: Sequence[SourceRecord]) -> int:
        """Process one micro-batch; return the number of valid records buffered."""
        valid: list[Record] = []
        sources: list[SourceRecord] = []
        dead: list[OutMessage] = []
        validate = self.validator
        for rec in batch:
            try:
                valid.append(validate(rec.value))
                sources.append(rec)
            except RecordRejected as rejected:
                dead.append(self._dead_letter(rec, rejected))
        redacted = self.redactor.process(valid)
        if dead:
            await self.producer.send_batch(self.deadletter_topic, dead)
        if self.redacted_topic is not None and self.encode_redacted is not None and redacted:
            values = self.encode_redacted(redacted)
            keys = [stable_event_id(r.topic, r.partition, r.offset).encode() for r in sources]
            # Each redacted record keeps its source partition: per-partition order carries over.
            messages = [
                OutMessage(value=v, key=k, partition=r.partition) for v, k, r in zip(values, keys, sources, strict=True)
            ]
            await self.producer.send_batch(self.redacted_topic, messages)
        self.buffer.extend(redacted)
        for observer in self.observers:
            await observer.observe(redacted, sources)
        timestamps = [r.timestamp for r in sources]
        self._observe_latency(timestamps)
        self.counters.records_in += len(batch)
        self.counters.processed += len(valid)
        self.counters.dead_letters += len(dead)
        return len(valid)

    def commit_floors(self) -> dict[tuple[str, int], int]:
        """The lowest offsets any observer still needs re-read after a crash (the commit stops there)."""
        floors: dict[tuple[str, int], int] = {}
        for observer in self.observers:
            if isinstance(observer, HoldsOffsets):
                for key, offset in observer.commit_floors().items():
                    floors[key] = min(floors.get(key, offset), offset)
        return floors

    def mark_idle(self, idle: bool) -> None:
        """Tell the stage whether the last poll of the source came back empty (the consumer is caught up)."""
        if not idle:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = time.monotonic()

    def idle_seconds(self) -> float:
        """How long every poll of the source has come back empty (0 while records are flowing)."""
        return 0.0 if self._idle_since is None else time.monotonic() - self._idle_since

    def _dead_letter(self, rec: SourceRecord, rejected: RecordRejected) -> OutMessage:
        self.counters.by_reason[rejected.reason] += 1
        self._log.warning(
            "record.dead_lettered",
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            reason=rejected.reason,
            detail=rejected.detail,
        )
        event = DeadLetterEvent(
            event_id=stable_event_id(rec.topic, rec.partition, rec.offset),
            source_topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            reason=rejected.reason,
            detail=rejected.detail,
            payload_bytes=len(rec.value) if rec.value is not None else 0,
            stage="validate",
            occurred_at=datetime.now(UTC),
        )
        return OutMessage(value=self.deadletter_serde.encode(event), key=event.event_id.encode())

    def _observe_latency(self, timestamps: Sequence[int]) -> None:
        if self.latency is None or not timestamps:
            return
        now_ms = time.time() * 1000.0
        for ts in timestamps:
            self.latency.add(max(0.0, now_ms - ts) / 1000.0)
