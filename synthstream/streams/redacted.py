"""The trainer role's input: ``<stream>.redacted`` decoded into the training buffer and observers.

Only the ingest role reads the raw source topic and runs the redactor (DESIGN: "the redactor
is the only stage that ever sees raw values"). A separate trainer worker — often a GPU node —
consumes what ingest published on the redacted topic instead, decodes it with the redacted
output schema (Confluent Avro via the schemas topic, or JSON, as ``publisher.format`` says),
and feeds the training buffer and its observers (drift monitors, sequence state, metrics).
It never produces redacted records, source dead letters or DP statistics, so no output is
published twice by two roles.

A redacted record this worker cannot decode (a schema it does not know, a corrupted value)
is dead-lettered with the *redacted* topic's coordinates and ``stage="decode_redacted"``;
its source record was already accounted for by ingest. Counts are conserved here too:
records in = processed + dead letters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.errors import RecordRejected
from synthstream.log import get_logger
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.events import DeadLetterEvent, EventSerde, stable_event_id
from synthstream.streams.ingest import BatchObserver, ConsumingStage, IngestCounters, LatencyTracker, SourceRecord

__all__ = ["RedactedStage"]

Record = dict[str, Any]


class RedactedStage(ConsumingStage):
    """Decodes micro-batches of the redacted topic and hands them to the buffer and the observers."""

    def __init__(
        self,
        *,
        decode: Callable[[bytes | None], Record],
        buffer: TrainingBuffer,
        producer: BatchSender,
        deadletter_topic: str,
        deadletter_serde: EventSerde[DeadLetterEvent],
        stream: str,
        latency: LatencyTracker | None = None,
        observers: Sequence[BatchObserver] = (),
    ) -> None:
        self.decode = decode
        self.buffer = buffer
        self.producer = producer
        self.deadletter_topic = deadletter_topic
        self.deadletter_serde = deadletter_serde
        self.stream = stream
        self.latency = latency
        self.observers: list[BatchObserver] = list(observers)
        self.counters = IngestCounters()
        super().__init__()
        self._log = get_logger("redacted-input", stream=stream)

    def __repr__(self) -> str:
        return f"RedactedStage(stream={self.stream!r}, deadletter_topic={self.deadletter_topic!r})"

    async def handle(self, batch: Sequence[SourceRecord]) -> int:
        """Decode one micro-batch, buffer it and feed the observers; return the number decoded."""
        records: list[Record] = []
        sources: list[SourceRecord] = []
        dead: list[OutMessage] = []
        decode = self.decode
        for rec in batch:
            try:
                records.append(decode(rec.value))
                sources.append(rec)
            except RecordRejected as rejected:
                dead.append(self._dead_letter(rec, rejected))
        if dead:
            await self.producer.send_batch(self.deadletter_topic, dead)
        self.buffer.extend(records)
        for observer in self.observers:
            await observer.observe(records, sources)
        if self.latency is not None:
            self.latency.add_records([r.timestamp for r in sources])
        self.counters.records_in += len(batch)
        self.counters.processed += len(records)
        self.counters.dead_letters += len(dead)
        return len(records)

    def _dead_letter(self, rec: SourceRecord, rejected: RecordRejected) -> OutMessage:
        self.counters.by_reason[rejected.reason] += 1
        self._log.warning(
            "redacted.undecodable",
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
            stage="decode_redacted",
            occurred_at=datetime.now(UTC),
        )
        return OutMessage(value=self.deadletter_serde.encode(event), key=event.event_id.encode())
