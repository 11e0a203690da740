"""The retrain scheduler: every N records, T seconds or on request, fit a new version off the event loop.

Triggers are checked after each ingested batch and by a timer; :meth:`RetrainScheduler.request`
lets another stage (a drift policy) ask for a retrain. At most one fit runs at a time, in a
worker process, so ingest keeps flowing while a model trains. Each fitted model is registered
with its lineage and announced on the models topic (``trained``); then every
:class:`VersionHook` runs (e.g. storing a training profile), and the :class:`PromotionGate`,
when one is configured, decides: ``promoted``, or ``rejected`` with its reasons while the
previous version keeps publishing. Without a gate a version is promoted straight away.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from synthstream.config import TrainingConfig
from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.log import get_logger
from synthstream.models.base import Generator
from synthstream.models.registry import Lineage, ModelRegistry, ModelVersion
from synthstream.models.training import fit_generator, warm_up
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent, stable_event_id
from synthstream.schemas.record import RecordSchema

Record = dict[str, Any]


@dataclass(frozen=True)
class GateDecision:
    """A promotion gate's verdict on one version: promote or not, and why."""

    promote: bool
    reasons: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)


class PromotionGate(Protocol):
    """Decides whether a freshly trained version may publish (e.g. the privacy/quality audit)."""

    async def evaluate(self, version: ModelVersion, model: Generator, training: Sequence[Record]) -> GateDecision:
        """Judge ``version`` (fitted as ``model`` on ``training``) without blocking the event loop."""
        ...


class VersionHook(Protocol):
    """Runs after a version is registered and before it is judged (e.g. stores its training profile)."""

    async def __call__(self, version: ModelVersion, model: Generator, training: Sequence[Record]) -> None:
        """Do the hook's work for ``version``; exceptions are logged and do not stop promotion."""
        ...


def training_executor() -> ProcessPoolExecutor:
    """Start a one-worker process pool (spawn: safe next to asyncio and threads), warming it up.

    Spawning and importing numpy/pandas takes ~1-2 s; the warm-up runs while the pipeline
    connects to Kafka, so the first fit does not wait for it.
    """
    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    executor.submit(warm_up)
    return executor


class RetrainScheduler:
    """Decides when to retrain, runs the fit in ``executor``, registers and promotes."""

    def __init__(
        self,
        *,
        config: TrainingConfig,
        buffer: TrainingBuffer,
        registry: ModelRegistry,
        schema: RecordSchema,
        executor: Executor,
        producer: BatchSender,
        models_topic: str,
        lifecycle_serde: EventSerde[ModelLifecycleEvent],
        stream: str,
        hooks: Sequence[VersionHook] = (),
        gate: PromotionGate | None = None,
    ) -> None:
        self.config = config
        self.buffer = buffer
        self.registry = registry
        self.schema = schema
        self.executor = executor
        self.producer = producer
        self.models_topic = models_topic
        self.lifecycle_serde = lifecycle_serde
        self.stream = stream
        self.hooks: list[VersionHook] = list(hooks)
        self.gate = gate
        self.versions_trained = 0
        self.versions_rejected = 0
        self._requested: str | None = None
        self._seen_at_last_fit = 0
        self._last_fit_at = time.monotonic()
        self._task: asyncio.Task[ModelVersion | None] | None = None
        self._log = get_logger("trainer", stream=stream)

    def __repr__(self) -> str:
        return f"RetrainScheduler(stream={self.stream!r}, generator={self.config.generator!r})"

    @property
    def busy(self) -> bool:
        """Whether a fit is running."""
        return self._task is not None and not self._task.done()

    def due(self) -> bool:
        """Whether a trigger fired and there is enough data to train."""
        if self.busy or len(self.buffer) < self.config.min_records:
            return False
        if self.gate is not None and not getattr(self.gate, "ready", True):
            return False  # the gate cannot judge a version yet (e.g. the audit's control set is too small)
        if self._requested is not None:
            return True
        new_records = self.buffer.total_seen - self._seen_at_last_fit
        if new_records <= 0:
            return False
        if self.versions_trained == 0:
            return True
        by_count = self.config.every_records is not None and new_records >= self.config.every_records
        by_time = (
            self.config.every_seconds is not None and time.monotonic() - self._last_fit_at >= self.config.every_seconds
        )
        return by_count or by_time

    def request(self, reason: str) -> None:
        """Ask for a retrain as soon as enough data is buffered (e.g. after a drift event)."""
        self._requested = reason
        self._log.info("training.requested", reason=reason)

    def maybe_start(self) -> bool:
        """Start a fit in the background if one is due; return whether it started."""
        if not self.due():
            return False
        self._task = asyncio.create_task(self.retrain(), name=f"retrain-{self.stream}")
        return True

    async def wait_idle(self) -> None:
        """Wait for a running fit to finish (its errors are logged, not raised)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def retrain(self) -> ModelVersion | None:
        """Fit, register, announce and promote one new version from the buffer's snapshot."""
        records = self.buffer.snapshot()
        seen = self.buffer.total_seen
        requested, self._requested = self._requested, None
        self._seen_at_last_fit = seen
        self._last_fit_at = time.monotonic()
        seed = self.config.seed + self.versions_trained + 1
        self._log.info(
            "training.started", rows=len(records), generator=self.config.generator, seed=seed, requested=requested
        )
        loop = asyncio.get_running_loop()
        try:
            model, fit_seconds = await loop.run_in_executor(
                self.executor, fit_generator, self.config.generator, records, self.schema, seed
            )
        except Exception as exc:
            self._log.error("training.failed", error=type(exc).__name__, message=str(exc))
            return None
        lineage = Lineage(
            rows=len(records),
            schema_fingerprint=self.schema.fingerprint(),
            seed=seed,
            config=self.config.model_dump(mode="json"),
            source_offsets={"records_seen": seen},
            fit_seconds=fit_seconds,
            metrics={},
        )
        version = await asyncio.to_thread(self.registry.register, model, lineage=lineage)
        await self._announce(version, "trained")
        self.versions_trained += 1
        for hook in self.hooks:
            try:
                await hook(version, model, records)
            except Exception as exc:
                self._log.error("training.hook_failed", hook=repr(hook), error=type(exc).__name__)
        if self.gate is not None:
            decision = await self.gate.evaluate(version, model, records)
            if not decision.promote:
                reason = "; ".join(decision.reasons) or "rejected by the promotion gate"
                version = await asyncio.to_thread(self.registry.reject, version.version, reason)
                self.versions_rejected += 1
                await self._announce(version, "rejected", reason=reason, metrics=decision.metrics)
                self._log.warning("training.rejected", version=version.version, reasons=list(decision.reasons))
                return version
        version = await asyncio.to_thread(self.registry.promote, version.version)
        await self._announce(version, "promoted")
        self._log.info(
            "training.finished", version=version.version, rows=len(records), fit_seconds=round(fit_seconds, 3)
        )
        return version

    async def _announce(
        self,
        version: ModelVersion,
        action: str,
        *,
        reason: str | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        lineage = version.lineage
        event = ModelLifecycleEvent(
            event_id=stable_event_id(self.stream, version.version, action),
            stream=self.stream,
            model_version=version.version,
            generator=version.generator,
            action=action,  # type: ignore[arg-type]  # Literal checked by pydantic at run time
            rows=lineage.rows,
            seed=lineage.seed,
            fit_seconds=lineage.fit_seconds,
            metrics={**lineage.metrics, **(metrics or {})},
            reason=reason,
            occurred_at=datetime.now(UTC),
        )
        await self.producer.send(
            self.models_topic, OutMessage(value=self.lifecycle_serde.encode(event), key=self.stream.encode())
        )
