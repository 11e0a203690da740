"""Async Kafka clients over aiokafka: topic admin, a batching producer, a batch consumer.

The wrappers exist to keep one set of defaults (from :class:`KafkaSettings`) and to make
micro-batches the unit of work: the producer sends a batch and waits for all of it to be
acknowledged; the consumer yields batches and commits explicit offsets afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from synthstream.errors import SynthstreamError
from synthstream.settings import KafkaSettings

Headers = list[tuple[str, bytes]]

#: murmur2 of the key, the Java client's default partitioner for keyed records.
_MURMUR2 = DefaultPartitioner()


@dataclass(frozen=True)
class OutMessage:
    """One record to produce: value, optional key and headers, and an optional partition hint.

    ``partition`` (taken modulo the topic's partition count) pins the record, e.g. a redacted
    record to its source partition, so per-partition order carries over; without it a keyed
    record goes where the Java client would put it (murmur2 of the key).
    """

    value: bytes
    key: bytes | None = None
    headers: Headers = field(default_factory=list)
    partition: int | None = None


async def ensure_topics(
    settings: KafkaSettings, topics: Iterable[str], *, partitions: int = 1, replication_factor: int = 1
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    names = sorted(set(topics))
    if not names:
        return
    admin = AIOKafkaAdminClient(**settings.admin_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            new = [NewTopic(n, num_partitions=partitions, replication_factor=replication_factor) for n in missing]
            # Another worker may create them concurrently: the goal is met either way.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


class BatchSender(Protocol):
    """Anything that produces micro-batches and waits for their acknowledgements.

    :class:`Producer` is the aiokafka one; the faust app supplies one over faust topics,
    so the same stages run under either engine.
    """

    async def send_batch(self, topic: str, messages: Sequence[OutMessage]) -> None:
        """Produce ``messages`` to ``topic``; return once all are acknowledged."""
        ...

    async def send(self, topic: str, message: OutMessage) -> None:
        """Produce one record and wait for its acknowledgement."""
        ...


class Producer:
    """An aiokafka producer that sends micro-batches and waits for their acknowledgements."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._producer = AIOKafkaProducer(**settings.producer_kwargs())
        self._started = False

    async def start(self) -> Producer:
        """Connect to the cluster."""
        await self._producer.start()
        self._started = True
        return self

    @property
    def started(self) -> bool:
        """Whether the producer is connected."""
        return self._started

    async def stop(self) -> None:
        """Flush pending records and disconnect."""
        if self._started:
            self._started = False
            await self._producer.stop()

    async def __aenter__(self) -> Producer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def send_batch(self, topic: str, messages: Sequence[OutMessage]) -> None:
        """Produce ``messages`` to ``topic`` and return once the broker acknowledged all of them.

        Records are appended to aiokafka record batches, one future per batch rather than per
        record (the per-record futures and pure-Python murmur2 were a third of the ingest CPU with
        redaction on). Partition: the message's hint, else murmur2 of its key, else one random
        partition for the keyless records of the call (like Kafka's sticky partitioner).
        Order within a partition is kept.
        """
        if not messages:
            return
        producer = self._producer
        partitions = sorted(await producer.partitions_for(topic))
        sticky = random.choice(partitions)
        groups: dict[int, list[OutMessage]] = {}
        for m in messages:
            if m.partition is not None:
                partition = partitions[m.partition % len(partitions)]
            elif m.key is not None:
                partition = _MURMUR2(m.key, partitions, partitions)
            else:
                partition = sticky
            groups.setdefault(partition, []).append(m)
        futures = []
        for partition, group in groups.items():
            batch = producer.create_batch()
            for m in group:
                if batch.append(key=m.key, value=m.value, timestamp=None, headers=m.headers) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=m.key, value=m.value, timestamp=None, headers=m.headers) is None:
                        raise SynthstreamError(f"a record of {len(m.value)} bytes does not fit an empty batch")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)

    async def send(self, topic: str, message: OutMessage) -> None:
        """Produce one record and wait for its acknowledgement."""
        await self.send_batch(topic, [message])


class BatchConsumer:
    """An aiokafka consumer that yields micro-batches and commits explicit offsets.

    ``group_id`` with ``assign=False`` joins a consumer group (partitions balanced across
    workers). ``assign=True`` takes every partition of the topics directly, skipping the
    group join; offsets are still committed to ``group_id`` when one is given.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        *,
        group_id: str | None,
        assign: bool = False,
        max_records: int = 2_000,
    ) -> None:
        if not topics:
            raise ValueError("at least one topic is required")
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.topics = list(topics)
        self.group_id = group_id
        self.assign = assign
        self.max_records = max_records
        self._consumer = AIOKafkaConsumer(**settings.consumer_kwargs(group_id))
        self._started = False

    async def start(self) -> BatchConsumer:
        """Connect and subscribe (group) or assign (manual)."""
        await self._consumer.start()
        self._started = True
        if self.assign:
            partitions: list[TopicPartition] = []
            for topic in self.topics:
                ids = await self._partitions_for(topic)
                partitions.extend(TopicPartition(topic, p) for p in sorted(ids))
            self._consumer.assign(partitions)
        else:
            self._consumer.subscribe(self.topics)
        return self

    async def _partitions_for(self, topic: str, timeout_s: float = 10.0) -> set[int]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            ids = self._consumer.partitions_for_topic(topic)
            if ids:
                return set(ids)
            if asyncio.get_running_loop().time() > deadline:
                raise SynthstreamError(f"topic {topic!r} has no partitions (does it exist?)")
            await self._consumer._client.force_metadata_update()  # aiokafka has no public refresh
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Leave the group and disconnect."""
        if self._started:
            self._started = False
            await self._consumer.stop()

    async def __aenter__(self) -> BatchConsumer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def getmany(self, timeout_ms: int = 100) -> list[ConsumerRecord[bytes, bytes]]:
        """Return the next micro-batch (possibly empty), across all assigned partitions."""
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_records)
        records: list[ConsumerRecord[bytes, bytes]] = []
        for part in batches.values():
            records.extend(part)
        return records

    async def batches(self, timeout_ms: int = 100) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
        """Yield non-empty micro-batches forever."""
        while True:
            batch = await self.getmany(timeout_ms)
            if batch:
                yield batch

    async def commit(
        self,
        records: Sequence[ConsumerRecord[bytes, bytes]],
        floors: Mapping[tuple[str, int], int] | None = None,
    ) -> None:
        """Commit the offsets after ``records`` (call once their outputs are produced).

        ``floors`` holds, per (topic, partition), the lowest offset a stage still needs re-read
        after a crash (records counted in a window that is not released yet): the commit never
        goes past it, so a restart re-reads those records instead of losing them.
        """
        if self.group_id is None or not records:
            return
        offsets: dict[TopicPartition, int] = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            offsets[tp] = max(offsets.get(tp, 0), rec.offset + 1)
        for (topic, partition), floor in (floors or {}).items():
            tp = TopicPartition(topic, partition)
            if tp in offsets:
                offsets[tp] = min(offsets[tp], floor)
        await self._consumer.commit(offsets)

    async def position(self, tp: TopicPartition) -> int:
        """Offset of the next record this consumer will read from ``tp``."""
        return int(await self._consumer.position(tp))

    def assignment(self) -> set[TopicPartition]:
        """Partitions currently assigned to this consumer."""
        return set(self._consumer.assignment())


async def read_to_end(
    settings: KafkaSettings,
    topic: str,
    *,
    start: dict[int, int] | None = None,
    max_records: int = 5_000,
    ends_out: dict[int, int] | None = None,
) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """Yield batches of ``topic`` from ``start`` offsets (default: the beginning) to its current end.

    The high-water marks are taken once, when reading starts, so this terminates on a live
    topic. No consumer group is joined. ``ends_out``, when given, receives the end offset
    reached per partition (so a caller can resume from there later). A topic that does not
    exist yields nothing.
    """
    consumer = AIOKafkaConsumer(**settings.consumer_kwargs(None))
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()  # aiokafka has no public refresh
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, (start or {}).get(tp.partition, 0))
        corrected: set[TopicPartition] = set()
        while await _behind(consumer, tps, ends):
            batches = await consumer.getmany(timeout_ms=500, max_records=max_records)
            _correct_ends(consumer, tps, ends, corrected)
            out = [rec for tp, recs in batches.items() for rec in recs if rec.offset < ends[tp]]
            if out:
                yield out
        if ends_out is not None:
            ends_out.update({tp.partition: ends[tp] for tp in tps})
    finally:
        await consumer.stop()


def _correct_ends(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    ends: dict[TopicPartition, int],
    corrected: set[TopicPartition],
) -> None:
    # The embedded broker (Tansu 0.6) answers ListOffsets(latest) with the base offset of the
    # last record batch + 1, short of the true end when that batch holds several records.
    # The high watermark in fetch responses is right, so the first one seen per partition
    # replaces the listed end (once, so reading still stops on a live topic).
    for tp in tps:
        if tp in corrected:
            continue
        highwater = consumer.highwater(tp)
        if highwater is not None:
            ends[tp] = max(ends[tp], highwater)
            corrected.add(tp)


async def _behind(consumer: AIOKafkaConsumer, tps: list[TopicPartition], ends: dict[TopicPartition, int]) -> bool:
    for tp in tps:
        if await consumer.position(tp) < ends[tp]:
            return True
    return False
