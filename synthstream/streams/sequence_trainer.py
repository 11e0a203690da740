"""Retrains the sequence generator from the keyed state (issue 6 wiring): same triggers as the tabular model.

Every ``training.every_records`` newly accepted events or ``training.every_seconds`` (once at
least ``sequence.min_sequences`` sequences are held), the keyed state's snapshot is fitted in
the training executor (off the event loop), warm-starting from the promoted sequence version.
A DP-SGD fit's spend (unit: the entity) is charged to the privacy ledger under a stable key
*before* the version is promoted, and a fit over the model budget is refused. Versions live in
their own registry (``<stream>.sequences``), so they never mix with tabular versions, and are
announced on the models topic like any other version.

The first fit waits for the backlog (issue 16): a replayed panel read in part gave a first
version fitted on 510 of 6,127 persons, and a feed with ``max_records`` ended on it. So the
first fit needs ``sequence.min_sequences`` sequences *and* either the source caught up (an
empty poll with nothing left unread), ``first_fit_sequences`` sequences held (default: the
keyed state is full) or ``training.first_fit_max_wait_s`` passed since the first sequence
(a stream always read behind its end), and logs which of them let it start. Later fits
follow the triggers.

The privacy/quality audit gate covers tables only; sequence versions are promoted once fitted
(and charged, when DP). The discriminative and predictive metrics of
:mod:`synthstream.evaluation.timeseries` are the place to gate them on next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from synthstream.config import ModelPrivacyConfig, SequenceConfig, TrainingConfig
from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.errors import SynthstreamError
from synthstream.log import get_logger
from synthstream.models.base import Generator
from synthstream.models.registry import Lineage, ModelRegistry, ModelVersion
from synthstream.models.sequence import SequenceGenerator, fit_sequence_model
from synthstream.privacy.accounting import Spend
from synthstream.privacy.ledger import BudgetExceeded, PrivacyLedger, Release
from synthstream.processors.sequences import EntitySequences, SlidingWindows
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent, stable_event_id
from synthstream.schemas.record import RecordSchema
from synthstream.streams.trainer import BackgroundFits, trigger_fired

__all__ = ["SequenceScheduler"]


class SequenceScheduler(BackgroundFits):
    """Decides when to refit the sequence model, fits it in ``executor``, charges DP spend, promotes."""

    _task_name = "sequence-retrain"

    def __init__(
        self,
        *,
        config: SequenceConfig,
        training: TrainingConfig,
        state: EntitySequences | SlidingWindows,
        registry: ModelRegistry,
        schema: RecordSchema,
        executor: Executor,
        producer: BatchSender,
        models_topic: str,
        lifecycle_serde: EventSerde[ModelLifecycleEvent],
        stream: str,
        ledger: PrivacyLedger,
        privacy: ModelPrivacyConfig | None = None,
        caught_up: Callable[[], bool] | None = None,
    ) -> None:
        if not config.enabled:
            raise ValueError("the sequence section is not enabled")
        #: Whether the source is read to its end (None: no backlog to wait for, e.g. a test's state).
        self.caught_up = caught_up
        #: Why the first fit started (``caught_up``, ``sequences`` or ``max_wait``), once it did.
        self.first_fit_reason: str | None = None
        self._first_seen_at: float | None = None  # monotonic time the state first held a sequence
        self.config = config
        self.training = training
        self.state = state
        self.registry = registry
        self.schema = schema
        self.executor = executor
        self.producer = producer
        self.models_topic = models_topic
        self.lifecycle_serde = lifecycle_serde
        self.stream = stream
        self.ledger = ledger
        self.privacy = privacy
        self.versions_trained = 0
        self.fits_failed = 0
        #: Why DP sequence training stopped for good (its budget is spent), or None.
        self.exhausted: str | None = None
        self._accepted_at_last_fit = 0
        self._last_fit_at = time.monotonic()
        self._task = None
        self._log = get_logger("sequence_trainer", stream=stream)

    def __repr__(self) -> str:
        return f"SequenceScheduler(stream={self.stream!r}, registry={self.registry.stream!r})"

    def due(self) -> bool:
        """Whether a trigger fired and enough sequences are held."""
        if self.busy or self.exhausted is not None:
            return False
        if len(self.state) < self.config.min_sequences:
            return False
        if self.versions_trained == 0 and self.first_fit_reason is None and not self._backlog_read():
            return False
        return trigger_fired(
            self.state.counters.accepted - self._accepted_at_last_fit,
            self.versions_trained,
            self._last_fit_at,
            self.training.every_records,
            self.training.every_seconds,
        )

    def first_fit_target(self) -> int:
        """Sequences that let the first fit start before the source is caught up."""
        if self.config.first_fit_sequences is not None:
            return self.config.first_fit_sequences
        return self.config.max_windows if self.config.mode == "windows" else self.config.max_entities

    def _backlog_read(self) -> bool:
        """Whether the first fit may start: the source caught up, or enough sequences held (logged once)."""
        held, target = len(self.state), self.first_fit_target()
        now = time.monotonic()
        if self._first_seen_at is None:
            self._first_seen_at = now
        # The tabular first fit's wait bound (training.first_fit_max_wait_s) holds here too: a stream
        # that is always read behind its end is never caught up.
        max_wait = getattr(self.training, "first_fit_max_wait_s", None)
        if self.caught_up is None or self.caught_up():
            reason = "caught_up"
        elif held >= target:
            reason = "sequences"
        elif max_wait is not None and now - self._first_seen_at >= max_wait:
            reason = "max_wait"
        else:
            return False
        self.first_fit_reason = reason
        self._log.info(
            "sequence.first_fit_ready",
            reason=reason,
            sequences=held,
            min_sequences=self.config.min_sequences,
            first_fit_sequences=target,
            events_accepted=self.state.counters.accepted,
        )
        return True

    async def retrain(self) -> ModelVersion | None:
        """Fit one version from the keyed state's snapshot, charge its DP spend, register and promote it."""
        sequences = self.state.snapshot(min_events=self.config.min_events)
        self._accepted_at_last_fit = self.state.counters.accepted
        self._last_fit_at = time.monotonic()
        if len(sequences) < self.config.min_sequences:
            return None
        seed = self.training.seed + self.versions_trained + 1
        previous = await self._promoted_model()
        events = sum(len(s) for s in sequences)
        self._log.info("sequence.training_started", sequences=len(sequences), events=events, seed=seed)
        loop = asyncio.get_running_loop()
        try:
            model, fit_seconds = await loop.run_in_executor(
                self.executor,
                partial(fit_sequence_model, self.config, sequences, self.schema, seed=seed, previous=previous),
            )
        except Exception as exc:
            self.fits_failed += 1
            self._log.error("sequence.training_failed", error=type(exc).__name__)
            return None
        key = f"sequence:seed{seed}:accepted{self._accepted_at_last_fit}"
        guarantee = None
        if model.dp_spend_ is not None:
            try:
                guarantee = await asyncio.to_thread(self._charge, model, key)
            except BudgetExceeded as exc:
                self.exhausted = exc.detail
                self._log.warning("sequence.budget_exhausted", reason=exc.detail)
                return None
        lineage = Lineage(
            rows=events,
            schema_fingerprint=self.schema.fingerprint(),
            seed=seed,
            config=model.config(),
            source_offsets={"events_accepted": self._accepted_at_last_fit, "sequences": len(sequences)},
            fit_seconds=fit_seconds,
            metrics={},
            guarantee=guarantee,
        )
        # The registry holds any fitted generator; the sequence model's `name` is a class attribute.
        version = await asyncio.to_thread(self.registry.register, cast("Generator", model), lineage=lineage)
        await self._announce(version, "trained")
        version = await asyncio.to_thread(self.registry.promote, version.version)
        await self._announce(version, "promoted")
        self.versions_trained += 1
        self._log.info("sequence.training_finished", version=version.version, fit_seconds=round(fit_seconds, 2))
        return version

    async def _promoted_model(self) -> SequenceGenerator | None:
        current = await asyncio.to_thread(self.registry.current)
        if current is None:
            return None
        try:
            model = await asyncio.to_thread(self.registry.load, current.version)
        except SynthstreamError:
            return None
        return model if isinstance(model, SequenceGenerator) else None

    def _charge(self, model: SequenceGenerator, key: str) -> dict[str, Any]:
        """Record the fit's DP-SGD spend (ε, δ as opacus' accountant states it) before promotion."""
        spend = model.dp_spend_
        assert spend is not None
        budget = None
        if self.privacy is not None:
            budget = Spend(epsilon=self.privacy.epsilon, delta=self.privacy.delta)
        total = self.ledger.charge(
            stream=self.stream,
            scope=spend.scope,
            unit=f"entity:{self.config.entity_field}" if self.config.entity_field else "window",
            releases=[
                Release(
                    f"dpsgd:sigma={spend.noise_multiplier:.4g}:q={spend.sample_rate:.4g}:steps={spend.steps}",
                    "dpsgd",
                    Spend(epsilon=spend.epsilon, delta=spend.delta),
                    spend.max_grad_norm,
                    spend.noise_multiplier,
                )
            ],
            budget=budget,
            key=key,
        )
        return {"epsilon": total.epsilon, "delta": total.delta, "mechanism": "dpsgd", "scope": spend.scope}

    async def _announce(self, version: ModelVersion, action: str) -> None:
        lineage = version.lineage
        event = ModelLifecycleEvent(
            event_id=stable_event_id(self.registry.stream, version.version, action),
            stream=self.stream,
            model_version=version.version,
            generator=version.generator,
            action=action,  # type: ignore[arg-type]  # Literal checked by pydantic at run time
            rows=lineage.rows,
            seed=lineage.seed,
            fit_seconds=lineage.fit_seconds,
            metrics=dict(lineage.metrics),
            reason=None,
            occurred_at=datetime.now(UTC),
        )
        await self.producer.send(
            self.models_topic, OutMessage(value=self.lifecycle_serde.encode(event), key=self.stream.encode())
        )
