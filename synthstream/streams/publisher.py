"""The publisher: samples the promoted model and emits a rate-controlled synthetic feed.

Records carry the source schema (Avro with Confluent framing, or JSON) and headers that
mark them synthetic and name the model version. The publisher checks the registry before
every batch and hot-swaps to a newly promoted version between batches, so the feed never
pauses for a retrain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from synthstream.config import PublisherConfig
from synthstream.connectors.kafka import BatchSender, OutMessage
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
        self._seq = 0
        self._log = get_logger("publisher", stream=stream, topic=topic)

    def __repr__(self) -> str:
        return f"SyntheticPublisher(stream={self.stream!r}, topic={self.topic!r}, rate={self.config.rate})"

    def _swap_if_promoted(self) -> bool:
        current = self.registry.current()
        if current is None or current.version == self._version:
            return self._model is not None
        self._model = self.registry.load(current.version)
        previous, self._version = self._version, current.version
        self._seq = 0
        self.versions_used.append(current.version)
        self._log.info("publisher.model_swapped", previous=previous, version=current.version)
        return True

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
        self.done.set()
        self._log.info("publisher.stopped", published=self.published, versions=self.versions_used)

    def _messages(self, n: int) -> list[OutMessage]:
        assert self._model is not None and self._version is not None
        rows = self._model.sample(n)
        values = self.encode_many(rows)
        version = str(self._version).encode()
        headers = [(HEADER_SYNTHETIC, b"true"), (HEADER_MODEL_VERSION, version), (HEADER_STREAM, self.stream.encode())]
        prefix = f"{self.stream}:v{self._version}:"
        start = self._seq
        self._seq += n
        return [OutMessage(value=v, key=f"{prefix}{start + i}".encode(), headers=headers) for i, v in enumerate(values)]


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
