"""Issue 17 item 2: the first fit waits for enough data (the backlog, a record count or a time limit).

Before, with ``min_records`` met by the first consumed micro-batch, the first version was
fitted on that batch alone and the whole feed came from it. Now the first fit waits until
the consumer has caught up with the topic (or ``first_fit_records`` / ``first_fit_max_wait_s``
for a stream that never pauses), and ``min_records`` counts records seen, the audit's
control share included.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from synthstream.config import TrainingConfig
from synthstream.connectors.files import read_table
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.connectors.replay import replay_file
from synthstream.connectors.schema_topic import publish_schema
from synthstream.models.registry import ModelRegistry
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore
from synthstream.settings import KafkaSettings
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.trainer import RetrainScheduler
from tests.helpers import ADULT_CSV, adult_schema, pipeline_config

ROWS = 2_000


def _small_adult(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    frame = pd.read_csv(ADULT_CSV, skipinitialspace=True).head(ROWS)
    path = tmp_path / "adult_2k.csv"
    frame.to_csv(path, index=False)
    return path, frame


async def test_the_first_fit_waits_until_the_backlog_is_read(kafka: KafkaSettings, names, tmp_path: Path) -> None:
    sample, _ = _small_adult(tmp_path)
    schema = infer_schema(read_table(sample), name="Adult")
    config = pipeline_config(
        names.prefix,
        tmp_path,
        sample,
        source={"batch_size": 250},  # the old rule fired on the second 250-record batch
        training={"min_records": 300, "every_records": 100_000, "every_seconds": None},
        publisher={"max_records": 500},
    )
    store = InMemorySchemaStore()
    serde = AvroRecordSerde(schema, store, subject=f"{config.source.topic}-value")
    await ensure_topics(kafka, [config.source.topic, config.topics.schemas])
    async with Producer(kafka) as producer:
        await publish_schema(
            producer, config.topics.schemas, serde.subject, serde.schema_id, store.get(serde.schema_id)
        )
        report = await replay_file(producer, config.source.topic, sample, schema, serde.encode, progress=False)
    assert report.records == ROWS

    pipeline = Pipeline(config, kafka, schema, store=store)
    summary = await asyncio.wait_for(pipeline.run(), timeout=180)
    assert summary.synthetic_published >= 500

    first = pipeline.registry.get(1)
    # The whole backlog, not its first micro-batch (the audit is off here: no control share).
    assert first.lineage.rows == ROWS, first.lineage.rows
    assert first.lineage.source_offsets["records_seen"] == ROWS


def _scheduler(
    producer: Producer,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
    buffer: TrainingBuffer,
    config: TrainingConfig,
    caught_up: list[bool],
) -> RetrainScheduler:
    """A scheduler over ``buffer`` whose consumer is caught up when ``caught_up[0]`` (its triggers only)."""
    store = InMemorySchemaStore()
    return RetrainScheduler(
        config=config,
        buffer=buffer,
        registry=ModelRegistry(tmp_path, "s"),
        schema=adult_schema(pd.read_csv(ADULT_CSV, skipinitialspace=True, nrows=50)),
        executor=executor,
        producer=producer,
        models_topic="unused",
        lifecycle_serde=EventSerde(ModelLifecycleEvent, store),
        stream="s",
        caught_up=lambda: caught_up[0],
    )


def _records(n: int) -> list[dict]:
    frame = pd.read_csv(ADULT_CSV, skipinitialspace=True, nrows=n)
    return frame.to_dict("records")


async def test_an_endless_stream_gets_its_first_fit_at_first_fit_records(kafka: KafkaSettings, tmp_path: Path) -> None:
    caught_up = [False]  # never caught up: read always behind
    config = TrainingConfig(min_records=300, first_fit_records=800, first_fit_max_wait_s=None)
    buffer = TrainingBuffer(10_000, holdout_share=0.5, seed=1)
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = _scheduler(producer, executor, tmp_path, buffer, config, caught_up)
            rows = _records(900)
            buffer.extend(rows[:600])
            assert not scheduler.due()
            assert "first fit when the consumer has caught up or at 800 records seen" in scheduler.first_fit_hint()
            buffer.extend(rows[600:])
            assert scheduler.due() and scheduler._trigger == "first_fit_records"


async def test_min_records_counts_records_seen_and_caught_up_fires_the_first_fit(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    caught_up = [False]
    config = TrainingConfig(min_records=300, first_fit_max_wait_s=None)
    buffer = TrainingBuffer(10_000, holdout_share=0.5, seed=1)
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = _scheduler(producer, executor, tmp_path, buffer, config, caught_up)
            buffer.extend(_records(320))
            # About half went to the control set: the buffer holds < 300, yet 320 records were seen.
            assert len(buffer) < 300 <= buffer.total_seen
            assert not scheduler.due()  # still reading the backlog
            caught_up[0] = True
            assert scheduler.due() and scheduler._trigger == "caught_up"


async def test_the_first_fit_comes_after_max_wait_on_a_stream_that_never_pauses(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    caught_up = [False]
    config = TrainingConfig(min_records=300, first_fit_max_wait_s=0.2)
    buffer = TrainingBuffer(10_000, seed=1)
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = _scheduler(producer, executor, tmp_path, buffer, config, caught_up)
            buffer.extend(_records(400))
            assert not scheduler.due()  # starts the clock at the first record seen
            deadline = time.monotonic() + 10.0
            while not scheduler.due():  # a condition with a deadline, polled
                assert time.monotonic() < deadline, "max_wait never fired"
                await asyncio.sleep(0.01)
            assert scheduler._trigger == "max_wait"


async def test_a_first_fit_waiting_for_the_audits_control_set_says_so(kafka: KafkaSettings, tmp_path: Path) -> None:
    from synthstream.config import AuditConfig
    from synthstream.schemas.events import PrivacyAuditEvent
    from synthstream.streams.audit import AuditGate

    caught_up = [True]
    config = TrainingConfig(min_records=100, first_fit_max_wait_s=None)
    buffer = TrainingBuffer(10_000, holdout_share=0.2, seed=1)
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = _scheduler(producer, executor, tmp_path, buffer, config, caught_up)
            scheduler.gate = AuditGate(
                config=AuditConfig(min_holdout=200),
                schema=scheduler.schema,
                buffer=buffer,
                registry=scheduler.registry,
                executor=executor,
                producer=producer,
                topic="unused",
                serde=EventSerde(PrivacyAuditEvent, InMemorySchemaStore()),
                stream="s",
            )
            buffer.extend(_records(344))  # a 344-row table: ~69 control records, never 200
            assert not scheduler.due()
            hint = scheduler.first_fit_hint()
            assert hint.startswith(f"waiting for the audit's control set: {buffer.holdout_size} of 200"), hint
            assert "audit.min_holdout" in hint
