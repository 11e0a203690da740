"""Async Kafka clients over aiokafka: topic admin, a batching producer, a batch consumer.

The wrappers exist to keep one set of defaults (from :class:`KafkaSettings`) and to make
micro-batches the unit of work: the producer sends a batch and waits for all of it to be
acknowledged; the consumer yields batches and commits explicit offsets afterwards.

Broker loss: a client that cannot connect at start raises
:class:`~synthstream.errors.BrokerUnavailableError` naming the bootstrap servers (one line,
no traceback at the CLI). While running, sends and commits that fail for a transient reason
(connection lost, timeout, leader moving) are retried with exponential backoff until
``settings.unavailable_timeout_s`` has passed, so a stage blocks while the broker is away
and resumes when it returns (records may be produced twice: at-least-once, stable ids).
:class:`BrokerMonitor` probes the cluster with a metadata request every second and notes
every successful round trip, so health turns ``degraded`` within seconds of a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
    UnknownError,
)
from aiokafka.partitioner import DefaultPartitioner

from synthstream.errors import BrokerUnavailableError, SynthstreamError
from synthstream.log import get_logger
from synthstream.settings import KafkaSettings

Headers = list[tuple[str, bytes]]

#: murmur2 of the key, the Java client's default partitioner for keyed records.
_MURMUR2 = DefaultPartitioner()


_log = get_logger("kafka")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means "the broker is not answering right now" (retry), not a bad request."""
    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError)):
        return True
    if isinstance(exc, UnknownError):
        # Error -1, "unexpected server error": what a broker answers while it is still starting (seen on
        # the embedded broker right after a restart). Retried like the others, bounded by the same deadline.
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    return isinstance(exc, (OSError, TimeoutError))


def unreachable(settings: KafkaSettings, exc: BaseException | None = None) -> BrokerUnavailableError:
    """The one-line error for "no Kafka at these bootstrap servers" (no client internals, no traceback)."""
    reason = ""
    if exc is not None and not isinstance(exc, KafkaConnectionError):
        reason = f" ({type(exc).__name__})"
    return BrokerUnavailableError(
        f"cannot reach Kafka at {settings.bootstrap_servers}{reason}: no broker answered; "
        "check --bootstrap-servers (or SYNTHSTREAM_KAFKA_BOOTSTRAP_SERVERS) and that the broker is running"
    )


async def connect(settings: KafkaSettings, start: Callable[[], Awaitable[object]]) -> None:
    """Run a client's ``start`` and turn "cannot connect" into :class:`BrokerUnavailableError`.

    aiokafka's own "Unable connect to ..." line is held back while connecting: the error raised
    here says the same once, with the bootstrap servers and what to check.
    """
    library = logging.getLogger("aiokafka")
    level = library.level
    library.setLevel(logging.CRITICAL)
    try:
        await start()
    except (KafkaConnectionError, KafkaTimeoutError, OSError, TimeoutError) as exc:
        raise unreachable(settings, exc) from None
    finally:
        library.setLevel(level)


async def ensure_reachable(settings: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Fail fast, with one clear :class:`BrokerUnavailableError`, when no broker answers a metadata request."""
    client = AIOKafkaClient(**settings.admin_kwargs())
    try:
        await connect(settings, lambda: asyncio.wait_for(client.bootstrap(), timeout_s))
    finally:
        with contextlib.suppress(Exception):
            await client.close()


class Backoff:
    """Exponential backoff delays: ``initial``, doubled each try, capped at ``maximum`` seconds."""

    def __init__(self, initial: float = 0.2, maximum: float = 5.0) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("need 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.tries = 0

    def __repr__(self) -> str:
        return f"Backoff(initial={self.initial}, maximum={self.maximum})"

    def next_delay(self) -> float:
        """The delay before the next try."""
        delay = min(self.maximum, self.initial * (2.0**self.tries))
        self.tries += 1
        return delay


async def retry_transient(
    settings: KafkaSettings, what: str, call: Callable[[], Awaitable[None]], *, monitor: BrokerMonitor | None = None
) -> None:
    """Run ``call``; on a transient broker error retry with backoff until ``settings.unavailable_timeout_s``.

    One warning when the retries start and one info line when the call goes through again, so a
    lost broker is a handful of log lines, not one per retry. Past the deadline it raises
    :class:`BrokerUnavailableError` naming the bootstrap servers.
    """
    backoff = Backoff()
    failing_since: float | None = None
    while True:
        try:
            await call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
                _log.warning("broker.retrying", operation=what, error=type(exc).__name__)
            waited = now - failing_since
            if waited >= settings.unavailable_timeout_s:
                raise BrokerUnavailableError(
                    f"lost Kafka at {settings.bootstrap_servers}: {what} failed for {waited:.0f} s "
                    f"(limit unavailable_timeout_s={settings.unavailable_timeout_s:g}); giving up"
                ) from None
            await asyncio.sleep(backoff.next_delay())
            continue
        if monitor is not None:
            monitor.mark_ok()
        if failing_since is not None:
            _log.info("broker.retry_succeeded", operation=what, after_s=round(time.monotonic() - failing_since, 2))
        return


class BrokerMonitor:
    """Knows whether the broker answers: a metadata probe every ``interval_s`` plus every client success.

    ``connected`` is True while the last successful round trip (probe, acknowledged produce,
    commit) is at most ``stale_after_s`` old, so /health turns ``degraded`` within a few seconds
    of a loss whatever the client libraries believe. :meth:`run` logs ``broker.lost`` and
    ``broker.restored`` once per outage, calls ``on_restored`` callbacks (e.g. re-create topics
    a memory-only broker forgot) and raises :class:`BrokerUnavailableError` once the broker has
    been away for ``settings.unavailable_timeout_s``.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        interval_s: float = 1.0,
        probe_timeout_s: float = 2.0,
        stale_after_s: float = 3.0,
    ) -> None:
        if interval_s <= 0 or probe_timeout_s <= 0 or stale_after_s <= 0:
            raise ValueError("interval_s, probe_timeout_s and stale_after_s must be positive")
        self.settings = settings
        self.interval_s = interval_s
        self.probe_timeout_s = probe_timeout_s
        self.stale_after_s = stale_after_s
        self.on_restored: list[Callable[[], Awaitable[None]]] = []
        self.last_ok = time.monotonic()
        #: Start of the first of the failed round trips since the last success (None: answering).
        self.failing_since: float | None = None
        self.failures = 0
        self.outages = 0
        self.lost_at: float | None = None
        #: Whether :meth:`run` has started (before, nothing is claimed) and whether it is probing now.
        self.started = False
        self.running = False
        self._client: AIOKafkaClient | None = None

    def __repr__(self) -> str:
        return f"BrokerMonitor(bootstrap_servers={self.settings.bootstrap_servers!r}, interval_s={self.interval_s})"

    @property
    def connected(self) -> bool:
        """Whether the broker answers: no probe has been failing for ``stale_after_s`` (True before :meth:`run`).

        Judged on failed round trips, not on time since the last success: a busy event loop (a
        long redaction batch, a loaded machine) delays the probes but is not a lost broker.
        """
        failing = self.failing_since
        return (
            not self.started
            or failing is None
            or self.failures < 2  # one timed-out probe may be a stalled loop, two in a row are not
            or time.monotonic() - failing < self.stale_after_s
        )

    def unavailable_for(self) -> float:
        """Seconds the broker has failed to answer while :meth:`run` probes (beyond ``stale_after_s``); else 0."""
        if not self.running or self.connected or self.failing_since is None:
            return 0.0
        return time.monotonic() - self.failing_since

    def mark_ok(self) -> None:
        """Note a successful round trip (a probe, an acknowledged produce, a commit)."""
        self.last_ok = time.monotonic()
        self.failing_since = None
        self.failures = 0

    def mark_failed(self, since: float) -> None:
        """Note a failed round trip that started at ``since`` (monotonic); the first failure of a run counts."""
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = since

    async def probe(self) -> bool:
        """One metadata round trip to the cluster; whether it answered within ``probe_timeout_s``."""
        try:
            if self._client is None:
                client = AIOKafkaClient(
                    **self.settings.admin_kwargs(), request_timeout_ms=int(self.probe_timeout_s * 1000)
                )
                await asyncio.wait_for(client.bootstrap(), self.probe_timeout_s)
                self._client = client
                return True
            await asyncio.wait_for(self._client.fetch_all_metadata(), self.probe_timeout_s)
            return True
        except Exception:
            await self._drop_client()
            return False

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), self.probe_timeout_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Probe until ``stop``; announce losses and returns; give up after ``unavailable_timeout_s``."""
        self.mark_ok()
        self.started = self.running = True
        try:
            while not stop.is_set():
                started = time.monotonic()
                if await self.probe():
                    self.mark_ok()
                else:
                    self.mark_failed(started)
                await self._transition()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
        finally:
            self.running = False
            await self._drop_client()

    async def close(self) -> None:
        """Close the probe's client (after a last :meth:`probe` outside :meth:`run`)."""
        await self._drop_client()

    async def _transition(self) -> None:
        now = time.monotonic()
        if not self.connected and self.lost_at is None:
            self.lost_at = self.failing_since if self.failing_since is not None else now
            self.outages += 1
            _log.warning(
                "broker.lost",
                bootstrap_servers=self.settings.bootstrap_servers,
                silent_s=round(now - self.last_ok, 1),
                give_up_after_s=self.settings.unavailable_timeout_s,
            )
        elif self.connected and self.lost_at is not None:
            away = now - self.lost_at
            self.lost_at = None
            _log.info("broker.restored", bootstrap_servers=self.settings.bootstrap_servers, away_s=round(away, 1))
            for callback in self.on_restored:
                try:
                    await callback()
                except Exception as exc:
                    _log.warning("broker.restore_hook_failed", error=type(exc).__name__)
        if self.lost_at is not None and now - self.lost_at >= self.settings.unavailable_timeout_s:
            raise BrokerUnavailableError(
                f"lost Kafka at {self.settings.bootstrap_servers}: no answer for {now - self.lost_at:.0f} s "
                f"(limit unavailable_timeout_s={self.settings.unavailable_timeout_s:g}); giving up"
            )


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
    await connect(settings, admin.start)
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

    def __init__(self, settings: KafkaSettings, *, monitor: BrokerMonitor | None = None) -> None:
        self.settings = settings
        #: Told about every acknowledged batch (a successful round trip), when given.
        self.monitor = monitor
        self._producer = AIOKafkaProducer(**settings.producer_kwargs())
        self._started = False

    async def start(self) -> Producer:
        """Connect to the cluster (:class:`BrokerUnavailableError` when no broker answers)."""
        try:
            await connect(self.settings, self._producer.start)
        except BrokerUnavailableError:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            raise
        self._started = True
        return self

    @property
    def started(self) -> bool:
        """Whether the producer is connected."""
        return self._started

    async def stop(self, timeout_s: float | None = None) -> None:
        """Flush pending records and disconnect (give up flushing after ``timeout_s`` when given)."""
        if self._started:
            self._started = False
            if timeout_s is None:
                await self._producer.stop()
                return
            try:
                await asyncio.wait_for(self._producer.stop(), timeout_s)
            except TimeoutError:
                _log.warning("producer.stop_timed_out", timeout_s=timeout_s)

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
        Order within a partition is kept. A transient broker failure is retried with backoff
        (:func:`retry_transient`) until ``settings.unavailable_timeout_s``.
        """
        if not messages:
            return
        await retry_transient(
            self.settings, f"produce to {topic}", lambda: self._send_once(topic, messages), monitor=self.monitor
        )

    async def _send_once(self, topic: str, messages: Sequence[OutMessage]) -> None:
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
        monitor: BrokerMonitor | None = None,
    ) -> None:
        if not topics:
            raise ValueError("at least one topic is required")
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.topics = list(topics)
        self.group_id = group_id
        self.assign = assign
        self.max_records = max_records
        self.settings = settings
        self.monitor = monitor
        self._consumer = AIOKafkaConsumer(**settings.consumer_kwargs(group_id))
        self._started = False

    async def start(self) -> BatchConsumer:
        """Connect and subscribe (group) or assign (manual); :class:`BrokerUnavailableError` when unreachable."""
        try:
            await connect(self.settings, self._consumer.start)
        except BrokerUnavailableError:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            raise
        self._started = True
        if self.assign:
            partitions: list[TopicPartition] = []
            try:
                for topic in self.topics:
                    ids = await self._partitions_for(topic)
                    partitions.extend(TopicPartition(topic, p) for p in sorted(ids))
            except BaseException:
                await self.stop()  # not left unclosed when a topic is missing
                raise
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

    async def stop(self, timeout_s: float | None = None) -> None:
        """Leave the group and disconnect (give up after ``timeout_s`` when given, e.g. the broker is gone)."""
        if self._started:
            self._started = False
            if timeout_s is None:
                await self._consumer.stop()
                return
            try:
                await asyncio.wait_for(self._consumer.stop(), timeout_s)
            except TimeoutError:
                _log.warning("consumer.stop_timed_out", timeout_s=timeout_s)

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

    async def lagging(self) -> set[tuple[str, int]]:
        """Assigned partitions that still hold unread records, or whose end is not known yet.

        The end is the high-water mark of the last fetch response for the partition (no extra
        request); a partition no fetch has answered yet counts as lagging. Event-time windows
        use this so a partition read behind the others holds the watermark back.
        """
        out: set[tuple[str, int]] = set()
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            if end is None or await self._consumer.position(tp) < end:
                out.add((tp.topic, tp.partition))
        return out

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

        A transient broker failure is retried with backoff; a commit the group no longer
        accepts (it rebalanced while the broker was away) is skipped with a warning: those
        records are delivered again (at-least-once), never lost.
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

        async def commit_once() -> None:
            try:
                await self._consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                _log.warning("consumer.commit_skipped", error=type(exc).__name__, partitions=len(offsets))

        await retry_transient(self.settings, "commit offsets", commit_once, monitor=self.monitor)

    async def recover_positions(self) -> int:
        """After a broker outage: move positions that lie beyond a partition's end back; return how many moved.

        A broker that came back without its data (the memory-only embedded broker, an unclean
        failover) ends its partitions before our positions, and fetching there would wait
        forever. Such a position goes back to the group's committed offset when the broker still
        has one within the log, else to the beginning (at-least-once: nothing is skipped).
        Positions inside the log are left alone, so a real Kafka outage re-reads nothing.
        """
        consumer = self._consumer
        assigned = list(consumer.assignment())
        if not assigned:
            return 0
        ends = await consumer.end_offsets(assigned)
        moved = 0
        for tp in assigned:
            position = await consumer.position(tp)
            end = ends.get(tp, 0)
            if position <= end:
                continue
            committed = await consumer.committed(tp) if self.group_id is not None else None
            if committed is not None and committed <= end:
                consumer.seek(tp, committed)
            else:
                await consumer.seek_to_beginning(tp)
            moved += 1
            _log.warning(
                "consumer.position_reset",
                topic=tp.topic,
                partition=tp.partition,
                position=position,
                log_end=end,
                to="committed" if committed is not None and committed <= end else "beginning",
            )
        return moved

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
    try:
        await connect(settings, consumer.start)
    except BrokerUnavailableError:
        with contextlib.suppress(Exception):
            await consumer.stop()
        raise
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
