"""After a neural version is rejected for a privacy risk, the same records are refitted with fewer passes.

On a small table the neural model's passes over the data decide how close it sits to its
training rows (palmerpenguins: linkability 0.325 at 100 passes, under the 0.10 ceiling at 30).
Here a promotion gate stands in for the audit's verdict (the audit's measurements are tested
elsewhere): it rejects a neural model trained for more than 12 passes for a linkability risk and
every copula for a quality floor. The scheduler must go v1/v2 (the validation's choice and its
runner-up, both rejected), then refit neural at once on the same records with a third of the
passes, and publish that version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import structlog

from synthstream.connectors.kafka import BatchSender
from synthstream.models.base import Generator
from synthstream.models.registry import ModelVersion
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent
from synthstream.settings import KafkaSettings
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.trainer import GateDecision
from tests.helpers import pipeline_config, read_topic
from tests.test_audit_small_table import _replay, _schema, _table

PASSES = 30


class PassesGate:
    """Rejects a neural model of more than 12 passes (privacy) and every copula (quality)."""

    ready = True

    async def evaluate(
        self, version: ModelVersion, model: Generator, training: Sequence[dict[str, Any]]
    ) -> GateDecision:
        passes = len(getattr(model, "history_", []))
        if version.generator == "neural" and passes <= 12:
            return GateDecision(promote=True, reasons=())
        if version.generator == "neural":
            return GateDecision(promote=False, reasons=(f"linkability risk 0.300 > ceiling 0.100 ({passes} passes)",))
        return GateDecision(promote=False, reasons=("pair_trends 0.600 < floor 0.700",))


class GatedPipeline(Pipeline):
    def _audit_gate(self, producer: BatchSender, executor: Executor) -> Any:
        return PassesGate()


async def test_a_privacy_rejection_of_the_neural_model_is_retried_smoother_on_the_same_records(
    kafka: KafkaSettings, names: Any, tmp_path: Path
) -> None:
    sample, frame = _table(tmp_path, rows=1_500)
    config = pipeline_config(
        names.prefix,
        tmp_path,
        sample,
        audit={"enabled": False},
        training={
            "generator": "auto",
            "every_records": 100_000,
            "every_seconds": None,
            "neural": {"epochs": PASSES, "min_steps": 0, "device": "cpu"},
        },
        publisher={"max_records": 200},
        drift={"enabled": False},
    )
    store = await _replay(kafka, config, sample, frame)
    pipeline = GatedPipeline(config, kafka, _schema(sample), store=store)
    with structlog.testing.capture_logs() as logs:
        summary = await asyncio.wait_for(pipeline.run(until=lambda p: p.summary().synthetic_published >= 200), 240)
    assert summary.synthetic_published >= 200
    versions = pipeline.registry.versions()
    story = [(v.version, v.generator, v.status) for v in versions]
    assert [g for _, g, _ in story[:2]] in (["neural", "gaussian_copula"], ["gaussian_copula", "neural"]), story
    assert story[2][1:] == ("neural", "promoted") and all(s == "rejected" for _, _, s in story[:2]), story
    third = pipeline.registry.load(3)
    assert len(third.history_) == PASSES // 3  # a third of the rejected fit's passes
    assert versions[2].lineage.records_range == versions[0].lineage.records_range  # the same records
    hints = [e["retry"] for e in logs if e["event"] == "training.rejected"]
    assert hints[-1] == f"now with neural at most {PASSES // 3} passes over the data", hints
    events = [
        EventSerde(ModelLifecycleEvent, store).decode(r.value) for r in await read_topic(kafka, config.topics.models)
    ]
    [retry] = [e for e in events if e.action == "retry" and e.model_version == 2]
    assert retry.generator == "neural" and "rejected for a privacy risk" in (retry.reason or "")
