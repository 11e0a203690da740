"""End to end on the embedded broker: replay -> validate -> buffer -> retrain -> synthetic topic."""

from __future__ import annotations

import asyncio
from datetime import datetime

import orjson

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.connectors.replay import replay_file
from synthstream.connectors.schema_topic import SchemaTopicReader, publish_schema
from synthstream.connectors.sinks import AutoDecoder
from synthstream.demo import sample_path
from synthstream.schemas.events import DeadLetterEvent, EventSerde, ModelLifecycleEvent, PrivacyAuditEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import FieldType
from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore, JsonRecordSerde, frame
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.publisher import HEADER_MODEL_VERSION, HEADER_SYNTHETIC
from tests.helpers import FAST_AUDIT, pipeline_config, read_topic

PY_TYPES = {
    FieldType.LONG: int,
    FieldType.DOUBLE: float,
    FieldType.STRING: str,
    FieldType.BOOLEAN: bool,
    FieldType.TIMESTAMP: datetime,
}


def _done(expected_in: int):
    def check(p: Pipeline) -> bool:
        s = p.summary()
        return s.counters.records_in >= expected_in and s.synthetic_published >= p.config.publisher.max_records

    return check


async def test_replayed_sample_becomes_a_synthetic_feed(kafka, names, tmp_path):
    sample = sample_path()
    schema = infer_schema(read_table(sample), name="Adult")
    config = pipeline_config(names.prefix, tmp_path, sample, audit=FAST_AUDIT)  # the whole pipeline: gate on
    store = InMemorySchemaStore()
    serde = AvroRecordSerde(schema, store, subject=f"{config.source.topic}-value")
    await ensure_topics(kafka, [config.source.topic, config.topics.schemas])
    pipeline = Pipeline(config, kafka, schema, store=store)
    run = asyncio.create_task(pipeline.run(until=_done(5_000)))
    async with Producer(kafka) as producer:
        await publish_schema(
            producer, config.topics.schemas, serde.subject, serde.schema_id, store.get(serde.schema_id)
        )
        report = await replay_file(producer, config.source.topic, sample, schema, serde.encode, progress=False)
    assert report.records == 5_000
    summary = await asyncio.wait_for(run, timeout=180)

    assert summary.counters.records_in == 5_000
    assert summary.counters.processed == 5_000
    assert summary.counters.dead_letters == 0
    assert summary.synthetic_published >= 3_000
    assert len(summary.model_versions) >= 1

    # Read the feed back with a store that only knows what was published on the schemas topic.
    fresh_store = InMemorySchemaStore()
    await SchemaTopicReader(kafka, config.topics.schemas, fresh_store).refresh()
    records = await read_topic(kafka, config.synthetic_topic)
    assert len(records) == summary.synthetic_published
    decode = AutoDecoder(fresh_store)
    versions = set()
    for rec in records[:2_000]:
        row = decode(rec.value)
        assert set(row) == set(schema.field_names)
        for f in schema.fields:
            value = row[f.name]
            assert value is not None or f.nullable, f.name
            if value is not None:
                assert isinstance(value, PY_TYPES[f.type]), (f.name, type(value))
        headers = dict(rec.headers)
        assert headers[HEADER_SYNTHETIC] == b"true"
        versions.add(int(headers[HEADER_MODEL_VERSION]))
    assert versions <= set(summary.model_versions)

    # The gate was on: every version in the feed passed its audit first, and the verdict says so.
    audits = {
        e.model_version: e
        for e in (
            EventSerde(PrivacyAuditEvent, fresh_store).decode(r.value)
            for r in await read_topic(kafka, config.topics.privacy_audit)
        )
    }
    assert versions and versions <= set(audits)
    for version in versions:
        event = audits[version]
        assert event.verdict == "pass", (version, event.reasons)
        assert event.synthetic_rows == 1_000 and event.control_rows >= 200 and event.attacks_built > 0
    lifecycle = [
        (e.model_version, e.action)
        for e in (
            EventSerde(ModelLifecycleEvent, fresh_store).decode(r.value)
            for r in await read_topic(kafka, config.topics.models)
        )
    ]
    for version in versions:
        assert lifecycle.index((version, "trained")) < lifecycle.index((version, "promoted"))


async def test_bad_inputs_are_dead_lettered_while_valid_records_flow(kafka, names, tmp_path):
    sample = sample_path()
    frame_ = read_table(sample, nrows=400)
    schema = infer_schema(frame_, name="Adult")
    config = pipeline_config(
        names.prefix,
        tmp_path,
        sample,
        source={"max_record_bytes": 4_096, "extra_fields": "drop"},
        training={"min_records": 100},
        publisher={"max_records": 500},
    )
    store = InMemorySchemaStore()
    json_serde = JsonRecordSerde(schema)
    avro_serde = AvroRecordSerde(schema, store, subject="x")
    canonical = records_from_frame(frame_, schema)
    good = [json_serde.encode(r) for r in canonical]
    valid_record = orjson.loads(good[0])
    wrong_type = dict(valid_record, age="thirty")
    missing = {k: v for k, v in valid_record.items() if k != "income"}
    null_required = dict(valid_record, age=None)
    bad = {
        "malformed_json": b'{"age": 3',
        "schema_violation": orjson.dumps(wrong_type),
        "oversized": orjson.dumps(dict(valid_record, income="x" * 5_000)),
        "not_utf8": b"\xff\xfe\x00garbage",
        "unknown_schema_id": frame(123_456_789, b"\x00"),
    }
    extra_bad = [orjson.dumps(missing), orjson.dumps(null_required)]
    # Interleave: good records before, between and after the bad ones.
    # Offsets: good 0-99, bad 100-104, good 105-204, extra bad 205-206, good, one valid Avro record last.
    values = (
        good[:100] + list(bad.values()) + good[100:200] + extra_bad + good[200:] + [avro_serde.encode(canonical[0])]
    )
    await ensure_topics(kafka, [config.source.topic])
    pipeline = Pipeline(config, kafka, schema, store=store)
    expected_in = len(values)
    run = asyncio.create_task(pipeline.run(until=_done(expected_in)))
    async with Producer(kafka) as producer:
        await producer.send_batch(config.source.topic, [OutMessage(value=v) for v in values])
    summary = await asyncio.wait_for(run, timeout=120)

    c = summary.counters
    assert c.records_in == expected_in
    assert c.processed == len(good) + 1
    assert c.dead_letters == len(bad) + len(extra_bad)
    assert c.conserved

    dead = await read_topic(kafka, config.topics.deadletter)
    events = [EventSerde(DeadLetterEvent, store).decode(r.value) for r in dead]
    by_offset = {e.offset: e for e in events}
    assert len(by_offset) == len(events) == c.dead_letters
    for i, reason in enumerate(bad):
        event = by_offset[100 + i]
        assert event.reason == reason
        assert event.source_topic == config.source.topic
        assert event.partition == 0
    assert by_offset[205].reason == "schema_violation" and "income" in by_offset[205].detail
    assert by_offset[206].reason == "schema_violation" and "age" in by_offset[206].detail
    # No payload or value leaks into the dead-letter topic.
    for r in dead:
        assert b"thirty" not in r.value and b"xxxxxxxx" not in r.value


async def test_publisher_hot_swaps_to_new_versions(kafka, names, tmp_path):
    sample = sample_path()
    schema = infer_schema(read_table(sample), name="Adult")
    config = pipeline_config(
        names.prefix,
        tmp_path,
        sample,
        # A replay paced at 1,000/s never pauses: the first fit comes at first_fit_records (issue 17).
        training={"every_records": 1_000, "min_records": 300, "first_fit_records": 300},
        publisher={"rate": 2_000, "max_records": 8_000, "batch_size": 200},
    )
    store = InMemorySchemaStore()
    serde = JsonRecordSerde(schema)
    await ensure_topics(kafka, [config.source.topic])
    pipeline = Pipeline(config, kafka, schema, store=store)
    run = asyncio.create_task(pipeline.run(until=_done(5_000)))
    async with Producer(kafka) as producer:
        await replay_file(producer, config.source.topic, sample, schema, serde.encode, rate=1_000, progress=False)
    summary = await asyncio.wait_for(run, timeout=180)
    assert len(summary.model_versions) >= 2
    records = await read_topic(kafka, config.synthetic_topic)
    assert len(records) == summary.synthetic_published == 8_000
    seen_versions = [int(dict(r.headers)[HEADER_MODEL_VERSION]) for r in records]
    assert len(set(seen_versions)) >= 2, "the feed never switched to a newer model version"
    assert seen_versions == sorted(seen_versions), "versions must only move forward in the feed"
    keys = [r.key for r in records]
    assert len(set(keys)) == len(keys), "synthetic record keys must be unique"
