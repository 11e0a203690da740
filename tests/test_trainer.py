"""The retrain scheduler: count and time triggers, fits off the event loop, lifecycle events."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from synthstream.config import TrainingConfig
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.demo import sample_path
from synthstream.models.registry import ModelRegistry
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore
from synthstream.streams.trainer import RetrainScheduler, training_executor
from tests.helpers import read_topic


def _records():
    frame = read_table(sample_path(), nrows=2_000)
    schema = infer_schema(frame, name="Adult")
    return schema, records_from_frame(frame, schema)


async def test_count_and_time_triggers(kafka, names, tmp_path):
    schema, records = _records()
    topic = names.topic("models")
    await ensure_topics(kafka, [topic])
    store = InMemorySchemaStore()
    buffer = TrainingBuffer(5_000)
    registry = ModelRegistry(tmp_path, "s")
    config = TrainingConfig(every_records=500, every_seconds=0.3, min_records=200, seed=7)
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = RetrainScheduler(
                config=config,
                buffer=buffer,
                registry=registry,
                schema=schema,
                executor=executor,
                producer=producer,
                models_topic=topic,
                lifecycle_serde=EventSerde(ModelLifecycleEvent, store),
                stream="s",
            )
            assert not scheduler.due()  # empty buffer
            buffer.extend(records[:100])
            assert not scheduler.due()  # below min_records
            buffer.extend(records[100:300])
            assert scheduler.due()  # first version as soon as there is enough data
            v1 = await scheduler.retrain()
            assert v1 is not None and v1.version == 1 and v1.lineage.rows == 300 and v1.lineage.seed == 8
            buffer.extend(records[300:400])
            assert not scheduler.due()  # 100 new records, 500 needed, time not up
            buffer.extend(records[400:800])
            assert scheduler.due()  # count trigger
            await scheduler.retrain()
            buffer.extend(records[800:810])
            assert not scheduler.due()
            await asyncio.sleep(0.35)
            assert scheduler.due()  # time trigger with new records
            assert scheduler.maybe_start()
            assert not scheduler.maybe_start()  # one fit at a time
            await scheduler.wait_idle()
    assert [v.version for v in registry.versions()] == [1, 2, 3]
    assert registry.current().version == 3
    events = [EventSerde(ModelLifecycleEvent, store).decode(r.value) for r in await read_topic(kafka, topic)]
    assert [(e.model_version, e.action) for e in events] == [
        (1, "trained"),
        (1, "promoted"),
        (2, "trained"),
        (2, "promoted"),
        (3, "trained"),
        (3, "promoted"),
    ]


async def test_fit_runs_in_a_worker_process_while_the_loop_keeps_running(kafka, names, tmp_path):
    schema, records = _records()
    topic = names.topic("models")
    await ensure_topics(kafka, [topic])
    buffer = TrainingBuffer(5_000)
    buffer.extend(records)
    executor = training_executor()
    try:
        async with Producer(kafka) as producer:
            scheduler = RetrainScheduler(
                config=TrainingConfig(min_records=100),
                buffer=buffer,
                registry=ModelRegistry(tmp_path, "p"),
                schema=schema,
                executor=executor,
                producer=producer,
                models_topic=topic,
                lifecycle_serde=EventSerde(ModelLifecycleEvent, InMemorySchemaStore()),
                stream="p",
            )
            ticks = 0
            assert scheduler.maybe_start()
            while scheduler.busy:
                await asyncio.sleep(0.01)
                ticks += 1
            await scheduler.wait_idle()
    finally:
        executor.shutdown()
    assert ticks > 5, "the event loop was blocked while the model trained"
    assert ModelRegistry(tmp_path, "p").current().lineage.rows == 2_000
