"""The sequence publisher through the real broker: per-entity order, event-time monotonicity, headers, keys."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from synthstream.config import SequencePublisherConfig
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.models.registry import Lineage, ModelRegistry
from synthstream.models.sequence import SequenceGenerator
from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore
from synthstream.streams.publisher import HEADER_MODEL_VERSION, HEADER_STREAM, HEADER_SYNTHETIC
from synthstream.streams.sequence_publisher import HEADER_ENTITY, HEADER_EVENT_TIME, SequencePublisher
from tests.helpers import read_topic
from tests.test_sequence_model import SCHEMA, SMALL, _records

START = datetime(2031, 3, 3, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def model() -> SequenceGenerator:
    options = {**SMALL, "threads": 1}  # small model on a shared 2-core machine: one torch thread is fastest
    generator = SequenceGenerator(entity_field="card", time_field="ts", static_fields=["tier"], epochs=3, **options)
    return generator.fit(_records(), SCHEMA)


def _registry(tmp_path: Path, model: SequenceGenerator) -> ModelRegistry:
    registry = ModelRegistry(tmp_path, "txn.sequences")
    lineage = Lineage(rows=1, schema_fingerprint=SCHEMA.fingerprint(), seed=0, fit_seconds=0.1)
    registry.promote(registry.register(model, lineage=lineage).version)
    return registry


async def _publish(
    kafka: Any, topic: str, registry: ModelRegistry, config: SequencePublisherConfig
) -> tuple[SequencePublisher, AvroRecordSerde, list[Any]]:
    store = InMemorySchemaStore()
    serde = AvroRecordSerde(SCHEMA, store, subject=f"{topic}-value")
    await ensure_topics(kafka, [topic])
    async with Producer(kafka) as producer:
        publisher = SequencePublisher(
            registry=registry,
            producer=producer,
            topic=topic,
            encode_many=serde.encode_many,
            config=config,
            stream="txn",
            time_field="ts",
            start=START,
        )
        await asyncio.wait_for(publisher.run(asyncio.Event()), timeout=120)
    return publisher, serde, await read_topic(kafka, topic)


async def test_published_sequences_keep_entity_order_and_event_time_monotonicity(
    kafka: Any, names: Any, tmp_path: Path, model: SequenceGenerator
) -> None:
    topic = names.topic("sequences")
    config = SequencePublisherConfig(
        speedup=0, entities_per_sample=8, batch_size=97, max_records=1_200, key_by="sequence"
    )
    publisher, serde, records = await _publish(kafka, topic, _registry(tmp_path, model), config)
    assert publisher.published == len(records) == 1_200
    assert publisher.entities_started >= 1_200 // 40
    values = [serde.decode(r.value) for r in records]
    stamps = [v["ts"] for v in values]
    assert stamps[0] == START
    assert all(a <= b for a, b in itertools.pairwise(stamps))  # event time never goes back
    by_entity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec, value in zip(records, values, strict=True):
        headers = dict(rec.headers)
        assert headers[HEADER_SYNTHETIC] == b"true" and headers[HEADER_MODEL_VERSION] == b"1"
        assert headers[HEADER_STREAM] == b"txn"
        assert int(headers[HEADER_EVENT_TIME]) == int(value["ts"].timestamp() * 1000)
        entity = headers[HEADER_ENTITY].decode()
        assert value["card"] == entity
        by_entity[entity].append(value)
    assert [r.key for r in records[:3]] == [b"txn:v1:0", b"txn:v1:1", b"txn:v1:2"]
    entities = [dict(r.headers)[HEADER_ENTITY] for r in records]
    switches = sum(1 for a, b in itertools.pairwise(entities) if a != b)
    assert switches > 2 * len(by_entity)  # entities overlap in time: the feed interleaves them
    for events in by_entity.values():
        times = [e["ts"] for e in events]
        assert times == sorted(times)
        assert len({e["tier"] for e in events}) == 1


async def test_entity_keys_and_paced_event_time(
    kafka: Any, names: Any, tmp_path: Path, model: SequenceGenerator
) -> None:
    topic = names.topic("sequences-keyed")
    # 3600x: one hour of event time per wall second; 150 events of ~45-minute gaps take a few seconds
    config = SequencePublisherConfig(
        speedup=36_000, entities_per_sample=4, batch_size=50, max_records=150, key_by="entity"
    )
    publisher, serde, records = await _publish(kafka, topic, _registry(tmp_path, model), config)
    assert len(records) == 150
    for rec in records:
        headers = dict(rec.headers)
        assert rec.key == f"txn:v1:{headers[HEADER_ENTITY].decode()}".encode()
    stamps = [serde.decode(r.value)["ts"] for r in records]
    assert all(a <= b for a, b in itertools.pairwise(stamps))
    assert "speedup=36000" in repr(publisher)
