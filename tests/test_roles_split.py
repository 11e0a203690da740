"""Split roles on the embedded broker: only ingest reads the raw source; the trainer reads ``.redacted``.

Two :class:`Pipeline` objects in one event loop, ``role="ingest"`` and ``role="trainer"`` (the
docker-compose layout), each with its own state directory. Before the fix the trainer also
consumed the source topic, redacted again and published every redacted record and dead letter
a second time; these tests fail on that.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.demo import sample_path
from synthstream.errors import ConfigError
from synthstream.schemas.events import DeadLetterEvent, EventSerde, stable_event_id
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.pipeline import Pipeline
from tests.helpers import pipeline_config, read_topic

VALID = 900
BAD = [b'{"age": 3', b"\xff\xfe\x00not json", b"[]"]


def _configs(prefix: str, tmp_path, **extra):
    sample = sample_path()
    sections = {
        "redaction": {"enabled": True, "ephemeral_key": True},
        "topics": {"redacted": f"{prefix}.redacted"},
        "training": {"min_records": 300, "every_records": 100_000, "every_seconds": 600},
        "source": {"assign_partitions": True},
        **extra,
    }
    ingest = pipeline_config(prefix, tmp_path / "ingest", sample, **sections)
    trainer = pipeline_config(prefix, tmp_path / "trainer", sample, **sections)
    return sample, ingest, trainer


async def test_trainer_consumes_only_the_redacted_topic_and_nothing_is_published_twice(kafka, names, tmp_path):
    sample, ingest_config, trainer_config = _configs(names.prefix, tmp_path)
    frame = read_table(sample, nrows=VALID)
    schema = infer_schema(read_table(sample), name="Adult")
    rows = records_from_frame(frame, schema)
    encode = JsonRecordSerde(schema).encode
    # Valid records with three bad ones among them (offsets 300, 301, 302 of the source).
    values = [encode(r) for r in rows[:300]] + BAD + [encode(r) for r in rows[300:]]
    await ensure_topics(kafka, [ingest_config.source.topic])

    ingest = Pipeline(ingest_config, kafka, schema, role="ingest", store=InMemorySchemaStore())
    trainer = Pipeline(trainer_config, kafka, schema, role="trainer", store=InMemorySchemaStore())
    assert not trainer.ingests and trainer.reads_redacted
    assert ingest_config.redacted_topic not in trainer.output_topics()

    def ingest_done(p: Pipeline) -> bool:
        return p.summary().counters.records_in >= len(values)

    def trainer_done(p: Pipeline) -> bool:
        s = p.summary()
        return s.counters.records_in >= VALID and len(s.model_versions) >= 1

    runs = asyncio.gather(ingest.run(until=ingest_done), trainer.run(until=trainer_done))
    async with Producer(kafka) as producer:
        await producer.send_batch(ingest_config.source.topic, [OutMessage(value=v) for v in values])
    ingest_summary, trainer_summary = await asyncio.wait_for(runs, timeout=240)

    # The trainer read the redacted topic, never the source.
    assert trainer.consumer is not None and trainer.consumer.topics == [ingest_config.redacted_topic]
    assert ingest.consumer is not None and ingest.consumer.topics == [ingest_config.source.topic]
    assert trainer_summary.counters.records_in == VALID
    assert trainer_summary.counters.dead_letters == 0
    assert len(trainer_summary.model_versions) >= 1  # it trained from what it read
    assert ingest_summary.counters.records_in == len(values)
    assert ingest_summary.counters.dead_letters == len(BAD)

    # Exactly one redacted message per valid source record, keyed by the source coordinates.
    redacted = await read_topic(kafka, ingest_config.redacted_topic)
    keys = Counter(r.key for r in redacted)
    assert len(redacted) == VALID, f"{len(redacted)} redacted messages for {VALID} valid records"
    assert max(keys.values()) == 1
    valid_offsets = [o for o in range(len(values)) if o not in (300, 301, 302)]
    expected = {stable_event_id(ingest_config.source.topic, 0, o).encode() for o in valid_offsets}
    assert set(keys) == expected

    # Each bad record dead-lettered once, by the ingest role, from the source topic.
    dead = await read_topic(kafka, ingest_config.topics.deadletter)
    events = [EventSerde(DeadLetterEvent, InMemorySchemaStore()).decode(r.value) for r in dead]
    assert sorted(e.offset for e in events) == [300, 301, 302]
    assert {e.source_topic for e in events} == {ingest_config.source.topic}
    # The trainer produced no redaction outputs of its own.
    assert trainer.findings is None and trainer.stats is None


async def test_trainer_refuses_to_start_without_redaction(kafka, names, tmp_path):
    _, _, trainer_config = _configs(names.prefix, tmp_path, redaction={"enabled": False})
    schema = infer_schema(read_table(sample_path(), nrows=200), name="Adult")
    with pytest.raises(ConfigError) as info:
        Pipeline(trainer_config, kafka, schema, role="trainer")
    assert trainer_config.redacted_topic in str(info.value)
    assert "role 'all'" in str(info.value)
