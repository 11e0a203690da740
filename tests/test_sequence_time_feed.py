"""The sequence feed of a yearly integer panel through the real broker: calendar-true and bounded in time.

Default ``publisher.start`` (None): the feed runs over the training data's own span, pass after
pass, instead of from wall-clock now; with ``speedup: 0`` event time must not run away (the
issue saw the year 2192 within minutes). Every record keeps an int ``year`` inside the observed
years and fits the Avro schema; the event-time header is the year's 1 January.
"""

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
from synthstream.streams.sequence_publisher import HEADER_ENTITY, HEADER_EVENT_TIME, SequencePublisher
from tests.helpers import read_topic
from tests.test_sequence_time_model import PANEL, TINY, _panel


@pytest.fixture(scope="module")
def model() -> SequenceGenerator:
    generator = SequenceGenerator(entity_field="person", time_field="year", epochs=4, seed=5, **TINY)
    return generator.fit(_panel(n_people=120, seed=1), PANEL)


def _registry(tmp_path: Path, model: SequenceGenerator) -> ModelRegistry:
    registry = ModelRegistry(tmp_path, "panel.sequences")
    lineage = Lineage(rows=1, schema_fingerprint=PANEL.fingerprint(), seed=0, fit_seconds=0.1)
    registry.promote(registry.register(model, lineage=lineage).version)
    return registry


async def test_an_unpaced_panel_feed_stays_in_the_observed_years_pass_after_pass(
    kafka: Any, names: Any, tmp_path: Path, model: SequenceGenerator
) -> None:
    topic = names.topic("panel")
    serde = AvroRecordSerde(PANEL, InMemorySchemaStore(), subject=f"{topic}-value")
    config = SequencePublisherConfig(
        speedup=0, entities_per_sample=32, batch_size=100, max_records=1_000, key_by="entity", id_field=None
    )
    await ensure_topics(kafka, [topic])
    async with Producer(kafka) as producer:
        publisher = SequencePublisher(
            registry=_registry(tmp_path, model),
            producer=producer,
            topic=topic,
            encode_many=serde.encode_many,
            config=config,
            stream="panel",
            time_field="year",
        )
        await asyncio.wait_for(publisher.run(asyncio.Event()), timeout=120)
    records = await read_topic(kafka, topic)
    assert publisher.published == len(records) == 1_000
    assert publisher.passes >= 2  # one pass is one population the size of the data (~350 rows here)
    values = [serde.decode(r.value) for r in records]
    years = [v["year"] for v in values]
    assert all(type(y) is int and 1990 <= y <= 2000 for y in years)  # bounded: no 1970, no 2192
    by_entity: dict[bytes, list[dict[str, Any]]] = defaultdict(list)
    for rec, value in zip(records, values, strict=True):
        headers = dict(rec.headers)
        stamp = datetime.fromtimestamp(int(headers[HEADER_EVENT_TIME]) / 1000, tz=UTC)
        assert (stamp.year, stamp.month, stamp.day, stamp.hour) == (value["year"], 1, 1, 0)  # on the yearly grid
        by_entity[headers[HEADER_ENTITY]].append(value)
    for events in by_entity.values():
        ys = [e["year"] for e in events]
        assert all(b > a for a, b in itertools.pairwise(ys))
        assert all(b["age"] - a["age"] == b["year"] - a["year"] for a, b in itertools.pairwise(events))
    assert years[0] == 1990  # the feed starts where the data starts, not at wall-clock now


async def test_a_feed_from_a_start_is_bounded_by_its_end(
    kafka: Any, names: Any, tmp_path: Path, model: SequenceGenerator
) -> None:
    topic = names.topic("panel-range")
    serde = AvroRecordSerde(PANEL, InMemorySchemaStore(), subject=f"{topic}-value")
    start, end = datetime(2030, 1, 1, tzinfo=UTC), datetime(2032, 6, 30, tzinfo=UTC)
    config = SequencePublisherConfig(
        speedup=0, entities_per_sample=16, batch_size=50, max_records=400, id_field=None, start=start, end=end
    )
    await ensure_topics(kafka, [topic])
    async with Producer(kafka) as producer:
        publisher = SequencePublisher(
            registry=_registry(tmp_path, model),
            producer=producer,
            topic=topic,
            encode_many=serde.encode_many,
            config=config,
            stream="panel",
            time_field="year",
        )
        await asyncio.wait_for(publisher.run(asyncio.Event()), timeout=120)
    years = [serde.decode(r.value)["year"] for r in await read_topic(kafka, topic)]
    assert len(years) == 400 and publisher.passes >= 2
    assert set(years) <= {2030, 2031, 2032}  # unpaced, yet event time never passes the end
