"""Publishes per-window PII findings: counts per field x entity type x operator, never values."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.schemas.events import EventSerde, PiiFinding, PiiFindingsEvent, stable_event_id


class FindingsReporter:
    """Every ``window_s`` seconds (processing time), turns the redactor's counts into one event."""

    def __init__(
        self,
        *,
        redactor: object,
        producer: BatchSender,
        topic: str,
        serde: EventSerde[PiiFindingsEvent],
        stream: str,
        window_s: float,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.redactor = redactor
        self.producer = producer
        self.topic = topic
        self.serde = serde
        self.stream = stream
        self.window_s = window_s
        self.events_published = 0
        self._window_start = datetime.now(UTC)
        self._due = time.monotonic() + window_s

    def __repr__(self) -> str:
        return f"FindingsReporter(stream={self.stream!r}, topic={self.topic!r}, window_s={self.window_s})"

    async def tick(self, *, force: bool = False) -> bool:
        """Publish the window's counts when it is over (or ``force``); return whether it did."""
        if not force and time.monotonic() < self._due:
            return False
        drain = getattr(self.redactor, "drain_findings", None)
        counts = drain() if drain is not None else []
        end = datetime.now(UTC)
        start, self._window_start = self._window_start, end
        self._due = time.monotonic() + self.window_s
        if not counts:
            return False
        event = PiiFindingsEvent(
            event_id=stable_event_id(self.stream, start.isoformat()),
            occurred_at=end,
            stream=self.stream,
            window_start=start,
            window_end=end,
            findings=[PiiFinding(field=f, entity_type=e, operator=o, count=n) for f, e, o, n in counts],
        )
        await self.producer.send(self.topic, OutMessage(value=self.serde.encode(event), key=self.stream.encode()))
        self.events_published += 1
        return True
