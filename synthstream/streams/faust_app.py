"""The same pipeline as a faust-streaming worker, for teams that deploy faust apps.

Runs the very stages of :class:`~synthstream.streams.pipeline.Pipeline` (validator,
redaction hook, buffer, retrain scheduler, publisher) inside a faust ``App``: an agent takes
micro-batches of source events (``take_events``), a timer checks the retrain triggers, and a
task runs the publisher. Outputs go through faust's producer.

The aiokafka engine stays the default (see pipeline.py for the measured reasons): faust fixes
its fetch wait at 1.5 s, so latency is ~1 s here, and it relies on its own offset handling.
Use ``synthstream run --engine faust`` when faust's deployment model matters more.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.types import EventT, StreamT

from synthstream.config import PipelineConfig
from synthstream.connectors.kafka import OutMessage
from synthstream.connectors.schema_topic import SchemaTopicReader
from synthstream.log import get_logger
from synthstream.processors.redactor import Redactor
from synthstream.schemas.record import RecordSchema
from synthstream.schemas.serde import SchemaStore
from synthstream.settings import KafkaSettings
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.trainer import training_executor


@dataclass(frozen=True)
class FaustSourceRecord:
    """A faust event seen as the ingest stage's :class:`SourceRecord` (timestamp in ms)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes | None

    @classmethod
    def from_event(cls, event: EventT[Any]) -> FaustSourceRecord:
        """Copy the coordinates and raw value of a faust event."""
        msg = event.message
        return cls(msg.topic, msg.partition, msg.offset, int(msg.timestamp * 1000), msg.value)


class FaustSender:
    """Produces micro-batches through the faust app's producer and waits for their acks."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._topics: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"FaustSender(app={self.app.conf.id!r})"

    def _topic(self, name: str) -> Any:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = self.app.topic(name, key_serializer="raw", value_serializer="raw")
        return topic

    async def send_batch(self, topic: str, messages: Sequence[OutMessage]) -> None:
        """Produce ``messages`` to ``topic`` and wait until the broker acknowledged them."""
        target = self._topic(topic)
        futures = [await target.send(key=m.key, value=m.value, headers=m.headers) for m in messages]
        await asyncio.gather(*futures)

    async def send(self, topic: str, message: OutMessage) -> None:
        """Produce one record and wait for its acknowledgement."""
        await self.send_batch(topic, [message])


def faust_app_for(config: PipelineConfig, settings: KafkaSettings) -> faust.App:
    """A faust App configured from our Kafka settings (same timeouts, TLS/SASL, no web server)."""
    credentials: Any = None
    if settings.security_protocol.startswith("SASL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        credentials = faust.SASLCredentials(
            username=settings.sasl_username,
            password=password,
            mechanism=settings.sasl_mechanism,
            ssl_context=settings.ssl_context() if settings.security_protocol == "SASL_SSL" else None,
        )
    elif settings.security_protocol == "SSL":
        credentials = settings.ssl_context()
    return faust.App(
        f"synthstream-{config.stream}",
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=credentials,
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_rebalance_timeout=settings.rebalance_timeout_ms / 1000,
        broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
        topic_partitions=1,
        web_enabled=False,
        datadir=str(config.state_dir / "faust"),
    )


class FaustPipeline:
    """A faust worker running one pipeline (all roles in one process)."""

    def __init__(
        self,
        config: PipelineConfig,
        settings: KafkaSettings,
        schema: RecordSchema,
        *,
        store: SchemaStore | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.config = config
        self.pipeline = Pipeline(config, settings, schema, role="all", store=store, redactor=redactor)
        self.app = faust_app_for(config, settings)
        self.sender = FaustSender(self.app)
        self.reader = SchemaTopicReader(settings, config.topics.schemas, self.pipeline.store)
        self.executor: Executor | None = None
        self.stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._log = get_logger("faust", stream=config.stream)
        source = self.app.topic(config.source.topic, key_serializer="raw", value_serializer="raw")
        self.app.agent(source, name=f"{config.stream}-ingest")(self._ingest)
        self.app.timer(0.25, name=f"{config.stream}-retrain")(self._retrain_tick)
        self.app.task(self._start)

    def __repr__(self) -> str:
        return f"FaustPipeline(stream={self.config.stream!r})"

    async def _start(self) -> None:
        self.executor = training_executor()
        await self.reader.refresh()
        self.pipeline.build(self.sender, self.executor)
        await self.pipeline.publish_schemas(self.sender)
        self._ready.set()
        assert self.pipeline.publisher is not None
        await self.pipeline.publisher.run(self.stop)
        if self.config.publisher.max_records is not None:
            await self._finish()

    async def _finish(self) -> None:
        """The configured feed is complete: log the summary and stop the worker as SIGTERM would."""
        if self.pipeline.scheduler is not None:
            await self.pipeline.scheduler.wait_idle()
        if self.pipeline.findings is not None:
            await self.pipeline.findings.tick(force=True)
        for observer in self.pipeline.observers:
            await observer.close()
        summary = self.pipeline.summary()
        self._log.info(
            "pipeline.finished",
            records_in=summary.counters.records_in,
            processed=summary.counters.processed,
            dead_letters=summary.counters.dead_letters,
            synthetic_published=summary.synthetic_published,
            model_versions=summary.model_versions,
        )
        os.kill(os.getpid(), signal.SIGTERM)

    async def _ingest(self, stream: StreamT[Any]) -> None:
        await self._ready.wait()
        assert self.pipeline.stage is not None
        size = self.config.source.batch_size
        # faust hands agents a concrete Stream; take_events is not part of the StreamT interface
        async for events in cast("faust.Stream[Any]", stream).take_events(size, within=0.05):
            batch = [FaustSourceRecord.from_event(e) for e in events]
            if self.pipeline.has_unknown_schema_ids(batch):
                await self.reader.refresh()
            await self.pipeline.stage.handle(batch)

    async def _retrain_tick(self) -> None:
        if not self._ready.is_set():
            return
        if self.pipeline.scheduler is not None:
            self.pipeline.scheduler.maybe_start()
        if self.pipeline.findings is not None:
            await self.pipeline.findings.tick()
        for observer in self.pipeline.observers:
            await observer.tick()

    def run(self) -> None:
        """Run the faust worker in the foreground until SIGTERM/SIGINT or the feed is complete."""
        worker = faust.Worker(self.app, loglevel="warn", quiet=True)
        try:
            worker.execute_from_commandline()
        finally:
            if self.executor is not None:
                self.executor.shutdown(wait=True, cancel_futures=True)
