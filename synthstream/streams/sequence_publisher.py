"""The sequence publisher: synthetic entities emitting their events in event time, like a live stream.

Entities come from the promoted :class:`~synthstream.models.sequence.SequenceGenerator`
in batches, each starting one learned arrival gap after the previous one, and each with
its own sampled events and inter-arrival times. A heap over the entities' next event times
interleaves them: events leave in non-decreasing event time across the whole feed, and
every entity's events leave in its own order. A new batch of entities is sampled before
the feed's clock reaches the last sampled start, so no entity can start "in the past".

Pacing: an event at event time ``t`` is due at wall time ``t0_wall + (t - origin) /
speedup``; ``speedup = 0`` publishes as fast as possible. Records carry the stream's
schema encoding and the same headers as the tabular feed
(:data:`~synthstream.streams.publisher.HEADER_SYNTHETIC`, model version, stream), plus the
synthetic entity id and the event time (epoch ms) as headers. Sequences can be told apart
three ways (issue 16): the key ``<stream>:v<N>:<entity>`` (``key_by="entity"``, the default:
Kafka's partitioner also keeps each entity on one partition, so per-entity order holds on
multi-partition topics; ``key_by="sequence"`` gives ``<stream>:v<N>:<seq>`` as the tabular
feed), the ``synthstream-entity`` header, and the ``id_field`` written into every record (a
string field the feed's schema gains, :func:`feed_schema`; default ``synthetic_entity``).
The entity field itself is no id when it is a static attribute (an airport shared by many
synthetic series), and windows mode has no entity field at all: hence a field of its own.

A newly promoted version is picked up between batches: entities already started finish
with the version that generated them (their records say so); new entities come from the
new version.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from synthstream.config import SequencePublisherConfig
from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.errors import ConfigError, ModelError
from synthstream.log import get_logger
from synthstream.models.registry import ModelRegistry
from synthstream.models.sequence import SequenceGenerator, SyntheticSequence
from synthstream.processors.sequences import event_time_us
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from synthstream.streams.publisher import HEADER_MODEL_VERSION, HEADER_STREAM, HEADER_SYNTHETIC

__all__ = ["HEADER_ENTITY", "HEADER_EVENT_TIME", "SequencePublisher", "feed_schema"]

HEADER_ENTITY = "synthstream-entity"
HEADER_EVENT_TIME = "synthstream-event-time"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

BatchEncoder = Callable[[Sequence[dict[str, Any]]], list[bytes]]


def feed_schema(schema: RecordSchema, id_field: str | None) -> RecordSchema:
    """The sequence feed's record schema: ``schema`` plus the id field (a string identifier), if any.

    A ConfigError names the field when ``id_field`` is already a field of ``schema`` (its values
    would be overwritten by synthetic ids, or mistaken for them).
    """
    if id_field is None:
        return schema
    if id_field in schema.field_names:
        raise ConfigError(
            [
                f"sequence.publisher.id_field {id_field!r} is already a field of the stream; "
                "choose another name (or null for no id field)"
            ],
            "pipeline config",
        )
    extra = FieldSpec(
        name=id_field,
        type=FieldType.STRING,
        role=FieldRole.IDENTIFIER,
        doc="synthetic entity (sequence) id: the events of one synthetic sequence share it",
    )
    return schema.model_copy(update={"fields": (*schema.fields, extra)})


@dataclass
class _Active:
    """An entity being published: its events, their times (µs) and the version that made it."""

    entity: SyntheticSequence
    times: list[int]
    version: int
    next: int = 0


class SequencePublisher:
    """Publishes synthetic entity sequences from the registry's promoted sequence model."""

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        producer: BatchSender,
        topic: str,
        encode_many: BatchEncoder,
        config: SequencePublisherConfig,
        stream: str,
        time_field: str,
        start: datetime | None = None,
        poll_interval_s: float = 0.1,
    ) -> None:
        if not time_field:
            raise ValueError("time_field must be a field name")
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be positive")
        self.registry = registry
        self.producer = producer
        self.topic = topic
        self.encode_many = encode_many
        self.config = config
        self.stream = stream
        self.time_field = time_field
        self.start = start if start is not None else config.start
        self.poll_interval_s = poll_interval_s
        self.published = 0
        self.entities_started = 0
        self.versions_used: list[int] = []
        self.done = asyncio.Event()
        self._model: SequenceGenerator | None = None
        self._version: int | None = None
        self._seq: dict[int, int] = {}
        self._heap: list[tuple[int, int, int]] = []  # (event time µs, admission order, slot)
        self._active: dict[int, _Active] = {}
        self._admitted = 0
        self._last_start: int | None = None
        self._origin: int | None = None
        self._wall0 = time.monotonic()
        self._pass_end: int | None = None  # no event after this (µs); None = the arrival process runs on
        self._pass_starts: list[datetime] = []  # starts of this pass not yet sampled (default: the data's span)
        self.passes = 0
        self._log = get_logger("sequence_publisher", stream=stream, topic=topic)

    def __repr__(self) -> str:
        return (
            f"SequencePublisher(stream={self.stream!r}, topic={self.topic!r}, speedup={self.config.speedup}, "
            f"key_by={self.config.key_by!r})"
        )

    @property
    def active_entities(self) -> int:
        """Entities started and not finished."""
        return len(self._active)

    def _swap_if_promoted(self) -> bool:
        current = self.registry.current()
        if current is None or current.version == self._version:
            return self._model is not None
        model = self.registry.load(current.version)
        if not isinstance(model, SequenceGenerator):
            raise ModelError(f"version {current.version} of {self.registry.stream!r} is not a sequence model")
        previous, self._model, self._version = self._version, model, current.version
        self._seq.setdefault(current.version, 0)
        self.versions_used.append(current.version)
        self._log.info(
            "sequence_publisher.model_swapped",
            previous=previous,
            version=current.version,
            trained_on_sequences=current.lineage.source_offsets.get("sequences"),
            published=self.published,
            max_records=self.config.max_records,
        )
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set or ``config.max_records`` were published."""
        while not stop.is_set() and not self._swap_if_promoted():
            await _sleep_or_stop(stop, self.poll_interval_s)
        self._wall0 = time.monotonic()
        limit = self.config.max_records
        speedup = self.config.speedup
        while not stop.is_set():
            self._swap_if_promoted()
            n = self.config.batch_size if limit is None else min(self.config.batch_size, limit - self.published)
            if n <= 0:
                break
            await self._refill()
            assert self._origin is not None
            if speedup > 0:
                due = self._wall0 + (self._heap[0][0] - self._origin) / 1e6 / speedup
                delay = due - time.monotonic()
                if delay > 0:
                    await _sleep_or_stop(stop, min(delay, self.poll_interval_s))
                    continue
                now_event = self._origin + (time.monotonic() - self._wall0) * speedup * 1e6
                messages = self._take(n, until_us=now_event)
            else:
                messages = self._take(n, until_us=None)
            await self.producer.send_batch(self.topic, messages)
            self.published += len(messages)
        self.done.set()
        self._log.info(
            "sequence_publisher.stopped",
            published=self.published,
            entities=self.entities_started,
            versions=self.versions_used,
        )

    async def _refill(self) -> None:
        """Sample entities until the last sampled start lies beyond the next event to publish.

        Sampling runs in a worker thread so the event loop keeps serving other stages.
        """
        model, version = self._model, self._version
        assert model is not None and version is not None
        stalled = 0
        while not self._heap or self._last_start is None or self._last_start <= self._heap[0][0]:
            count = self.config.entities_per_sample
            if self._pass_end is not None and self._last_start is not None and self._last_start > self._pass_end:
                if self._heap:
                    return  # every entity of this pass has started; drain it
                self._last_start = None  # a fresh pass over the same time range
            if self._last_start is None:
                batch = await self._begin_pass(model, count)
            elif self.start is None:
                chunk, self._pass_starts = self._pass_starts[:count], self._pass_starts[count:]
                end = _EPOCH + timedelta(microseconds=self._pass_end or 0)
                batch = await asyncio.to_thread(model.sample_sequences, len(chunk), starts=chunk, until=end)
            else:
                after = _EPOCH + timedelta(microseconds=self._last_start)
                until = None if self._pass_end is None else _EPOCH + timedelta(microseconds=self._pass_end)
                batch = await asyncio.to_thread(model.sample_sequences, count, after=after, until=until)
            previous = self._last_start
            for entity in batch:
                self._admit(entity, version)
            if self.start is None and not self._pass_starts and self._pass_end is not None:
                self._last_start = self._pass_end + 1  # the whole pass is admitted
            stalled = stalled + 1 if self._last_start == previous and self.start is not None else 0
            if stalled > 100:
                raise ModelError("the model's arrival process does not advance (every gap between starts is 0)")

    async def _begin_pass(self, model: SequenceGenerator, count: int) -> list[SyntheticSequence]:
        """Start a pass: event time restarts at the data's first time (or ``start``), so it never runs away.

        Default (no ``start``): the pass is one synthetic population as large as the training
        data, its entities' starts drawn from the learned start distribution inside the observed
        span, events cut at the span's end. With ``start``: the learned arrival process from
        ``start``, cut at ``end`` when set (then the next pass begins at ``start`` again).
        """
        self.passes += 1
        self._wall0 = time.monotonic()
        if self.start is None:
            lo, hi = model.time_span
            self._origin, self._pass_end = event_time_us(lo), event_time_us(hi)
            population = max(model.n_entities_, count)
            self._pass_starts = await asyncio.to_thread(model.sample_start_times, population)
            chunk, self._pass_starts = self._pass_starts[:count], self._pass_starts[count:]
            return await asyncio.to_thread(model.sample_sequences, len(chunk), starts=chunk, until=hi)
        self._origin = event_time_us(self.start)
        self._pass_end = event_time_us(self.config.end) if self.config.end is not None else None
        until = self.config.end
        return await asyncio.to_thread(model.sample_sequences, count, start=self.start, until=until)

    def _admit(self, entity: SyntheticSequence, version: int) -> None:
        times: list[int | None] = list(entity.times_us) or [
            event_time_us(e.get(self.time_field)) for e in entity.events
        ]
        start = event_time_us(entity.start)
        assert start is not None
        self._last_start = start if self._last_start is None else max(self._last_start, start)
        if not entity.events or any(t is None for t in times):
            return
        slot = self._admitted
        self._admitted += 1
        self.entities_started += 1
        self._active[slot] = _Active(entity, [int(t) for t in times if t is not None], version)
        heapq.heappush(self._heap, (self._active[slot].times[0], slot, slot))

    def _take(self, n: int, *, until_us: float | None) -> list[OutMessage]:
        """Pop up to ``n`` due events in event-time order and build their messages."""
        rows: list[dict[str, Any]] = []
        meta: list[tuple[int, str, int]] = []  # version, entity id, event time µs
        while len(rows) < n and self._heap:
            stamp, order, slot = self._heap[0]
            if until_us is not None and stamp > until_us:
                break
            if self._last_start is not None and self._last_start <= stamp:
                break  # entities starting before this event are not sampled yet: refill first
            heapq.heappop(self._heap)
            active = self._active[slot]
            row = active.entity.events[active.next]
            if self.config.id_field is not None:
                row = {**row, self.config.id_field: active.entity.entity_id}
            rows.append(row)
            meta.append((active.version, active.entity.entity_id, stamp))
            active.next += 1
            if active.next < len(active.times):
                heapq.heappush(self._heap, (active.times[active.next], order, slot))
            else:
                del self._active[slot]
        values = self.encode_many(rows) if rows else []
        messages = []
        for value, (version, entity_id, stamp) in zip(values, meta, strict=True):
            seq = self._seq.get(version, 0)
            self._seq[version] = seq + 1
            suffix = entity_id if self.config.key_by == "entity" else str(seq)
            headers = [
                (HEADER_SYNTHETIC, b"true"),
                (HEADER_MODEL_VERSION, str(version).encode()),
                (HEADER_STREAM, self.stream.encode()),
                (HEADER_ENTITY, entity_id.encode()),
                (HEADER_EVENT_TIME, str(stamp // 1000).encode()),
            ]
            key = f"{self.stream}:v{version}:{suffix}".encode()
            messages.append(OutMessage(value=value, key=key, headers=headers))
        return messages


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
