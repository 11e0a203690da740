"""The promotion gate: audit each new model version off the event loop, publish the audit, decide.

:class:`AuditGate` implements :class:`~synthstream.streams.trainer.PromotionGate`. For each
version the retrain scheduler registers, it takes the training buffer's control set, runs
the :class:`~synthstream.processors.auditor.Auditor` (sampling, anonymeter attacks,
distances, quality) in a worker process, so ingest and the synthetic feed keep running;
then it publishes a :class:`~synthstream.schemas.events.PrivacyAuditEvent` on the
privacy-audit topic, stores the full audit as the version's ``audit.json`` in the registry
(what ``synthstream report`` renders) and returns the verdict. On ``fail`` the scheduler
announces ``rejected`` on the models topic and the previously promoted version keeps
publishing.

Fail closed: an audit that crashes, a guarantee that cannot be read, or anything else
unexpected in the gate rejects the version (never passes it), with an ``audit.rejected``
warning naming the reasons and, while the producer works, a failing event on the
privacy-audit topic.

The formal guarantee comes from the caller (the privacy ledger): a fixed
:class:`~synthstream.schemas.events.PrivacyGuarantee`, or a function of the version.
Without one, the event says "empirical protection only".
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

from synthstream.config import AuditConfig
from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.log import get_logger
from synthstream.models.base import Generator
from synthstream.models.registry import ModelRegistry, ModelVersion
from synthstream.processors.auditor import Auditor, AuditRecord, AuditReport, warm_up_audit
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.events import EventSerde, PrivacyAuditEvent, PrivacyGuarantee, stable_event_id
from synthstream.schemas.record import RecordSchema
from synthstream.streams.trainer import GateDecision

__all__ = ["AUDIT_ARTIFACT", "EMPIRICAL_ONLY", "AuditGate", "GuaranteeSource", "audit_event", "audit_executor"]

Record = dict[str, Any]

#: Name of the stored audit among a version's side artifacts.
AUDIT_ARTIFACT = "audit.json"
#: The guarantee of a model nothing formal is known about.
EMPIRICAL_ONLY = PrivacyGuarantee(kind="empirical_only")

#: Where a version's formal guarantee comes from (e.g. the privacy ledger), called off the event loop.
GuaranteeSource = Callable[[ModelVersion], PrivacyGuarantee]


def audit_executor() -> ProcessPoolExecutor:
    """A one-worker spawn process pool for audits, warmed up (imports, numba kernels) in the background.

    The pipeline can instead share its training executor (fits and audits of one stream
    never overlap) and submit :func:`~synthstream.processors.auditor.warm_up_audit` to it.
    """
    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    executor.submit(warm_up_audit)
    return executor


class AuditGate:
    """Audits every new version in ``executor`` and lets only passing versions be promoted."""

    def __init__(
        self,
        *,
        config: AuditConfig,
        schema: RecordSchema,
        buffer: TrainingBuffer,
        registry: ModelRegistry,
        executor: Executor,
        producer: BatchSender,
        topic: str,
        serde: EventSerde[PrivacyAuditEvent],
        stream: str,
        guarantee: PrivacyGuarantee | GuaranteeSource | None = None,
        replaced_fields: Sequence[str] = (),
        public_values: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        self.config = config
        # Checks the configured field names against the schema now. ``replaced_fields``: fields the
        # redactor faked or pseudonymised, whose training values are not real (see evaluation/leaks.py).
        # ``public_values``: the declared code book (training.marginal.labels), not rare training values.
        self.auditor = Auditor(schema, config, replaced_fields=replaced_fields, public_values=public_values)
        self.buffer = buffer
        self.registry = registry
        self.executor = executor
        self.producer = producer
        self.topic = topic
        self.serde = serde
        self.stream = stream
        self.guarantee = guarantee
        self.audits = 0
        self.rejections = 0
        self._stage = "starting"
        self._log = get_logger("audit", stream=stream, topic=topic)

    def __repr__(self) -> str:
        return f"AuditGate(stream={self.stream!r}, topic={self.topic!r}, enabled={self.config.enabled})"

    @property
    def ready(self) -> bool:
        """Whether the control set is large enough to audit (before that, every audit fails closed).

        A scheduler can hold the first fit until this holds instead of training a version
        that is certain to be rejected.
        """
        return not self.config.enabled or self.buffer.holdout_size >= self.config.min_holdout

    async def evaluate(self, version: ModelVersion, model: Generator, training: Sequence[Record]) -> GateDecision:
        """Audit ``version`` in the worker, publish and store the audit, and return the verdict.

        Fail closed: whatever goes wrong here (the audit, the guarantee lookup, the event, the
        stored artifact) rejects the version with a reason naming the stage and the exception
        type, a warning log line and, where the producer still works, an event.
        """
        if not self.config.enabled:
            return GateDecision(promote=True, reasons=("audit disabled",))
        try:
            return await self._evaluate(version, model, training)
        except Exception as exc:  # anything unexpected in the gate: reject, never pass
            reason = f"the audit gate failed while {self._stage} ({type(exc).__name__}): failing closed"
            self._log.error("audit.gate_failed", version=version.version, stage=self._stage, error=type(exc).__name__)
            self.audits += 1
            self.rejections += 1
            await self._publish_failure(version, reason, training=len(training))
            self._log.warning("audit.rejected", version=version.version, reasons=[reason])
            return GateDecision(promote=False, reasons=(reason,))

    async def _evaluate(self, version: ModelVersion, model: Generator, training: Sequence[Record]) -> GateDecision:
        self._stage = "reading the control set"
        control = self.buffer.holdout()
        seed = self.config.seed + version.version
        failures: list[str] = []
        self._stage = "auditing"
        try:
            guarantee = await self._guarantee_of(version)
        except Exception as exc:  # the ledger could not say what the version guarantees: fail closed
            self._log.error("audit.guarantee_failed", version=version.version, error=type(exc).__name__)
            failures.append(f"the privacy guarantee could not be read ({type(exc).__name__}): failing closed")
            guarantee = EMPIRICAL_ONLY
        self._log.info("audit.started", version=version.version, training=len(training), control=len(control))
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            report = await loop.run_in_executor(
                self.executor, functools.partial(self.auditor, seed=seed), model, list(training), control
            )
            if not isinstance(report, AuditReport):
                raise TypeError("the audit worker returned no AuditReport")
        except Exception as exc:  # the audit crashed: fail closed, say why (the type only)
            self._log.error("audit.failed", version=version.version, error=type(exc).__name__)
            report = _failed_report(self.auditor, exc, training=len(training), control=len(control), seed=seed)
        if failures:
            report = report.model_copy(
                update={
                    "verdict": "fail",
                    "reasons": [*failures, *(r for r in report.reasons if report.verdict == "fail")],
                }
            )
        seconds = time.monotonic() - started
        self._stage = "storing the audit"
        event_id = stable_event_id(self.stream, version.version, "audit")
        record = AuditRecord(
            stream=self.stream,
            model_version=version.version,
            generator=version.generator,
            audited_at=datetime.now(UTC),
            audit_seconds=seconds,
            event_id=event_id,
            guarantee=guarantee,
            lineage=version.lineage,
            report=report,
        )
        payload = record.model_dump_json(indent=2).encode()
        await asyncio.to_thread(self.registry.save_extra, version.version, AUDIT_ARTIFACT, payload)
        self._stage = "publishing the audit event"
        await self.producer.send(
            self.topic, OutMessage(value=self.serde.encode(audit_event(record)), key=self.stream.encode())
        )
        self.audits += 1
        passed = report.verdict == "pass"
        self.rejections += int(not passed)
        self._log.info(
            "audit.finished",
            version=version.version,
            verdict=report.verdict,
            seconds=round(seconds, 2),
            attacks_built=report.attacks_built,
            attacks_requested=report.attacks_requested,
            leaks=sum(1 for f in report.leaks or () if f.leak),
        )
        if not passed:
            self._log.warning("audit.rejected", version=version.version, reasons=list(report.reasons))
        return GateDecision(promote=passed, reasons=() if passed else tuple(report.reasons), metrics=report.metrics())

    async def _publish_failure(self, version: ModelVersion, reason: str, *, training: int) -> None:
        """Best effort: the failing-closed event of a gate that crashed (a failure to send is logged)."""
        try:
            seed = self.config.seed + version.version
            report = _failed_report(self.auditor, None, training=training, control=0, seed=seed, reason=reason)
            record = AuditRecord(
                stream=self.stream,
                model_version=version.version,
                generator=version.generator,
                audited_at=datetime.now(UTC),
                audit_seconds=0.0,
                event_id=stable_event_id(self.stream, version.version, "audit", "gate_failed"),
                guarantee=EMPIRICAL_ONLY,
                lineage=version.lineage,
                report=report,
            )
            await self.producer.send(
                self.topic, OutMessage(value=self.serde.encode(audit_event(record)), key=self.stream.encode())
            )
        except Exception as exc:  # the version stays rejected; say that its event is missing
            self._log.error("audit.event_failed", version=version.version, error=type(exc).__name__)

    async def _guarantee_of(self, version: ModelVersion) -> PrivacyGuarantee:
        source = self.guarantee
        if source is None:
            return EMPIRICAL_ONLY
        if isinstance(source, PrivacyGuarantee):
            return source
        return await asyncio.to_thread(source, version)


def audit_event(record: AuditRecord) -> PrivacyAuditEvent:
    """The privacy-audit event of a stored audit."""
    report = record.report
    return PrivacyAuditEvent(
        event_id=record.event_id,
        occurred_at=record.audited_at,
        stream=record.stream,
        model_version=record.model_version,
        generator=record.generator,
        guarantee=record.guarantee,
        risks=report.risks,
        quality=report.quality,
        verdict=report.verdict,
        attacks=report.attacks,
        attacks_requested=report.attacks_requested,
        attacks_built=report.attacks_built,
        reasons=report.reasons,
        training_rows=report.training_rows,
        control_rows=report.control_rows,
        synthetic_rows=report.synthetic_rows,
        leaks=report.leaks,
    )


def _failed_report(
    auditor: Auditor, exc: Exception | None, *, training: int, control: int, seed: int, reason: str | None = None
) -> AuditReport:
    return AuditReport(
        verdict="fail",
        reasons=[reason or f"the audit could not run ({type(exc).__name__}): failing closed"],
        attacks=[],
        attacks_requested=0,
        attacks_built=0,
        risks={},
        quality={},
        training_rows=training,
        control_rows=control,
        attack_rows=0,
        synthetic_rows=0,
        seed=seed,
        thresholds=auditor.thresholds(),
    )
