"""The run says what it is doing: after a rejected first version it logs why and what comes next.

Before the fix, a run whose gate rejected version 1 went quiet: nothing published, nothing said.
Here a pipeline on the embedded broker trains version 1, a promotion gate rejects it, and the
test checks the warning (with the next-fit condition), the ``rejected`` lifecycle event on the
models topic, and the status line / ``/health`` activity.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import structlog

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import BatchSender, OutMessage, Producer, ensure_topics
from synthstream.demo import sample_path
from synthstream.models.base import Generator
from synthstream.models.registry import ModelVersion
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.trainer import GateDecision
from tests.helpers import pipeline_config, read_topic

REASON = "singling_out_risk 0.31 > ceiling 0.10"


class RejectEverything:
    """A promotion gate whose verdict is always "fail" (the audit's verdict is tested elsewhere)."""

    ready = True

    async def evaluate(
        self, version: ModelVersion, model: Generator, training: Sequence[dict[str, Any]]
    ) -> GateDecision:
        return GateDecision(promote=False, reasons=(REASON,))


class GatedPipeline(Pipeline):
    """The pipeline with :class:`RejectEverything` as its promotion gate."""

    def _audit_gate(self, producer: BatchSender, executor: Executor) -> Any:
        return RejectEverything()


async def test_a_rejected_first_version_is_said_plainly_and_shown_in_the_status(kafka, names, tmp_path):
    sample = sample_path()
    config = pipeline_config(
        names.prefix,
        tmp_path,
        sample,
        training={"min_records": 300, "every_records": 2_000, "every_seconds": 600},
        redaction={"enabled": False},
        drift={"enabled": False},
    )
    frame = read_table(sample, nrows=600)
    schema = infer_schema(frame, name="Adult")
    encode = JsonRecordSerde(schema).encode
    await ensure_topics(kafka, [config.source.topic])
    pipeline = GatedPipeline(config, kafka, schema, store=InMemorySchemaStore())
    assert pipeline.status().activity.startswith(("waiting", "joining"))  # before the run: nothing yet

    def rejected(p: Pipeline) -> bool:
        return p.scheduler is not None and p.scheduler.versions_rejected >= 1

    with structlog.testing.capture_logs() as logs:
        run = asyncio.create_task(pipeline.run(until=rejected))
        async with Producer(kafka) as producer:
            rows = records_from_frame(frame, schema)
            await producer.send_batch(config.source.topic, [OutMessage(value=encode(r)) for r in rows])
        summary = await asyncio.wait_for(run, timeout=180)
    assert summary.synthetic_published == 0

    warning = [e for e in logs if e["event"] == "training.rejected"]
    assert len(warning) == 1 and warning[0]["log_level"] == "warning"
    message = warning[0]["message"]
    assert "version 1 rejected" in message and "nothing is published yet" in message
    assert re.search(r"the next fit comes after \d+ more records or in \d+ s", message), message

    status = pipeline.status()
    assert status.activity.startswith(f"waiting: version 1 rejected ({REASON}), retrying after")
    line = status.line()
    assert "in 600" in line and "published 0" in line and "versions 1 (none live)" in line

    events = [
        EventSerde(ModelLifecycleEvent, InMemorySchemaStore()).decode(r.value)
        for r in await read_topic(kafka, config.topics.models)
    ]
    rejections = [e for e in events if e.action == "rejected"]
    assert [(e.model_version, e.reason) for e in rejections] == [(1, REASON)]
