"""The publisher: samples the promoted model and emits a rate-controlled synthetic feed.

Records carry the source schema (Avro with Confluent framing, or JSON) and headers that
mark them synthetic and name the model version. The publisher checks the registry before
every batch and hot-swaps to a newly promoted version between batches, so the feed never
pauses for a retrain: the new version is unpickled in a thread while the current one keeps
publishing, and takes over at the next batch boundary once it is loaded (a neural model's
weights take tens of milliseconds to load; a batch is never split between two versions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from synthstream.config import PublisherConfig
from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.connectors.key_sequence import KeySequence
from synthstream.connectors.replay import Pacer
from synthstream.log import get_logger
from synthstream.models.base import Generator
from synthstream.models.registry import ModelRegistry

HEADER_SYNTHETIC = "synthstream-synthetic"
HEADER_MODEL_VERSION = "synthstream-model-version"
HEADER_STREAM = "synthstream-stream"

BatchEncoder = Callable[[Sequence[dict[str, Any]]], list[bytes]]


class SyntheticPublisher:
    """Publishes synthetic records from the registry's promoted model at ``config.rate``."""

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        producer: BatchSender,
        topic: str,
        encode_many: BatchEncoder,
        config: PublisherConfig,
        stream: str,
        poll_interval_s: float = 0.1,
        keys: KeySequence | None = None,
    ) -> None:
        self.registry = registry
        self.producer = producer
        self.topic = topic
        self.encode_many = encode_many
        self.config = config
        self.stream = stream
        self.poll_interval_s = poll_interval_s
        self.published = 0
        self.versions_used: list[int] = []
        self.done = asyncio.Event()
        self._model: Generator | None = None
        self._version: int | None = None
        #: Record keys ``<stream>:v<version>:<instance>:<seq>``, unique across restarts and replicas;
        #: by default reserved in the stream's model folder (shared by the replicas of a state directory).
        self.keys = keys or KeySequence(registry.path / "publisher-keys", "synthetic")
        self._loading: tuple[int, asyncio.Task[Generator]] | None = None
        self._log = get_logger("publisher", stream=stream, topic=topic)

    def __repr__(self) -> str:
        return f"SyntheticPublisher(stream={self.stream!r}, topic={self.topic!r}, rate={self.config.rate})"

    def _swap_if_promoted(self) -> bool:
        current = self.registry.current()
        if current is None or current.version == self._version:
            return self._model is not None
        if self._model is None:  # nothing to publish with yet: load in place
            self._use(current.version, self.registry.load(current.version))
            return True
        loading = self._loading
        if loading is None or loading[0] != current.version:
            if loading is not None:
                loading[1].cancel()
            task = asyncio.ensure_future(asyncio.to_thread(self.registry.load, current.version))
            self._loading = (current.version, task)
            return True
        if loading[1].done():
            self._loading = None
            if loading[1].cancelled() or loading[1].exception() is not None:
                self._log.error("publisher.load_failed", version=current.version)
                return True
            self._use(current.version, loading[1].result())
        return True

    def _use(self, version: int, model: Generator) -> None:
        previous, self._model, self._version = self._version, model, version
        self.versions_used.append(version)
        self._log.info("publisher.model_swapped", previous=previous, version=version)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set or ``config.max_records`` were published."""
        while not stop.is_set() and not self._swap_if_promoted():
            await _sleep_or_stop(stop, self.poll_interval_s)
        pacer = Pacer(self.config.rate or None)
        batch_size = pacer.batch_size(self.config.batch_size)
        limit = self.config.max_records
        while not stop.is_set():
            self._swap_if_promoted()
            n = batch_size if limit is None else min(batch_size, limit - self.published)
            if n <= 0:
                break
            await pacer.wait(self.published)
            await self.producer.send_batch(self.topic, self._messages(n))
            self.published += n
        if self._loading is not None:
            self._loading[1].cancel()
            self._loading = None
        self.done.set()
        self._log.info("publisher.stopped", published=self.published, versions=self.versions_used)

    def _messages(self, n: int) -> list[OutMessage]:
        assert self._model is not None and self._version is not None
        rows = self._model.sample(n)
        values = self.encode_many(rows)
        version = str(self._version).encode()
        headers = [(HEADER_SYNTHETIC, b"true"), (HEADER_MODEL_VERSION, version), (HEADER_STREAM, self.stream.encode())]
        prefix = self.keys.prefix(self.stream, self._version)
        start = self.keys.take(len(values), scope=f"v{self._version}")
        return [OutMessage(value=v, key=f"{prefix}{start + i}".encode(), headers=headers) for i, v in enumerate(values)]


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
