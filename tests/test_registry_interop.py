"""Confluent's own clients through synthstream and its embedded Schema Registry.

confluent-kafka's ``AvroSerializer`` (with its ``SchemaRegistryClient``) produces the source,
including a compatible new schema version mid-stream; a full :class:`Pipeline` decodes it by the
registry's ids; ``AvroDeserializer`` reads ``.synthetic``, ``.redacted`` and the event topics
back, under ``<topic>-value`` subjects, with no custom framing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import Producer as RdProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import ensure_topics
from synthstream.connectors.platform_config import SchemaRegistryConfig
from synthstream.connectors.registry import RegistrySchemaStore, schema_store_for, subject_for
from synthstream.demo import sample_path
from synthstream.processors.validator import RecordValidator
from synthstream.schemas.events import ModelLifecycleEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import FieldType, RecordSchema
from synthstream.schemas.serde import AvroRecordSerde, sanitise_avro_name
from synthstream.streams.pipeline import Pipeline
from tests.helpers import pipeline_config
from tests.registry_fixture import registry  # noqa: F401 - a fixture

_AVRO = {FieldType.LONG: "long", FieldType.DOUBLE: "double", FieldType.STRING: "string", FieldType.BOOLEAN: "boolean"}


@pytest.fixture
def sr(registry) -> Iterator[SchemaRegistryClient]:  # noqa: F811 - the imported fixture
    with SchemaRegistryClient({"url": registry.url}) as client:
        yield client


def _outside_schema(schema: RecordSchema, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """How a Kafka team would write the source's Avro schema by hand (no synthstream attributes)."""
    fields = []
    for f in schema.fields:
        avro_type: Any = _AVRO.get(f.type, {"type": "long", "logicalType": "timestamp-millis"})
        fields.append(
            {"name": f.name, "type": ["null", avro_type], "default": None}
            if f.nullable
            else {
                "name": f.name,
                "type": avro_type,
            }
        )
    return {"type": "record", "name": "Person", "namespace": "com.example.census", "fields": fields + (extra or [])}


def _adult(tmp_path, rows: int) -> tuple[RecordSchema, list[dict[str, Any]], Any]:
    """Adult with Avro-valid column names (as an Avro producer must name them), saved as the sample."""
    frame_ = read_table(sample_path(), nrows=rows)
    frame_.columns = [sanitise_avro_name(c) for c in frame_.columns]
    path = tmp_path / "adult.csv"
    frame_.to_csv(path, index=False)
    schema = infer_schema(frame_, name="Adult")
    return schema, records_from_frame(frame_, schema), path


def _consume(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[Any]:
    """Read ``topic`` from the beginning with librdkafka, partitions assigned (no group join to wait for)."""
    consumer = RdConsumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    out: list[Any] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
    finally:
        consumer.close()
    return out


def test_subject_name_strategies():
    avro = {"type": "record", "name": "Payment", "namespace": "com.example", "fields": []}
    assert subject_for("payments-value", avro, "topic") == "payments-value"
    assert subject_for("payments-value", avro, "record") == "com.example.Payment"
    assert subject_for("payments-value", avro, "topic_record") == "payments-com.example.Payment"


def test_a_new_source_version_is_followed_without_restart(sr, names, tmp_path):
    schema, records, _ = _adult(tmp_path, 50)
    topic = names.topic("source")
    ctx = SerializationContext(topic, MessageField.VALUE)
    v1 = AvroSerializer(sr, json.dumps(_outside_schema(schema)))
    extra = [{"name": "channel", "type": "string", "default": "web"}]
    v2 = AvroSerializer(sr, json.dumps(_outside_schema(schema, extra)))
    store = RegistrySchemaStore(sr)
    validate = RecordValidator(schema, source_format="avro", store=store)
    first = validate(v1(records[0], ctx))
    assert first == records[0]
    fetched_before = store.known_ids()
    # The producer moves to v2 (BACKWARD compatible: a field with a default) mid-stream.
    second = validate(v2({**records[1], "channel": "app"}, ctx))
    assert second == records[1]
    assert len(store.known_ids()) == len(fetched_before) + 1
    assert sr.get_versions(f"{topic}-value") == [1, 2]
    # Every id is fetched once: decoding more records makes no further registry call.
    calls = []
    original = sr.get_schema
    sr.get_schema = lambda *a, **k: calls.append(a) or original(*a, **k)
    for record in records[2:20]:
        assert validate(v2({**record, "channel": "app"}, ctx)) == record
    assert calls == []


def test_output_schemas_are_standard_avro_under_topic_subjects(sr, names):
    schema = RecordSchema.model_validate(
        {
            "name": "Tx",
            "fields": [
                {"name": "amount-eur", "type": "double", "role": "numeric"},
                {"name": "city", "type": "string", "role": "categorical", "nullable": True},
            ],
        }
    )
    store = RegistrySchemaStore(sr, compatibility="FULL")
    topic = names.topic("synthetic")
    serde = AvroRecordSerde(schema, store, subject=f"{topic}-value")
    registered = json.loads(sr.get_latest_version(f"{topic}-value").schema.schema_str)
    assert registered["fields"][0]["name"] == "amount_eur"
    for field in registered["fields"]:
        assert set(field) <= {"name", "type", "default", "doc"}, field
    assert sr.get_compatibility(f"{topic}-value") == "FULL"
    # Our decoder restores the original keys from the registry's copy (another process, no cache).
    with SchemaRegistryClient({"url": sr._rest_client.base_urls[0]}) as other:
        record = {"amount-eur": 1.5, "city": None}
        assert RegistrySchemaStore(other).get(serde.schema_id) == store.get(serde.schema_id)
        deserialize = AvroDeserializer(other)
        assert deserialize(serde.encode(record), SerializationContext(topic, MessageField.VALUE)) == {
            "amount_eur": 1.5,
            "city": None,
        }


async def test_confluent_clients_in_and_out_of_a_full_pipeline(kafka, sr, registry, names, tmp_path):  # noqa: F811
    schema, records, sample = _adult(tmp_path, 1_000)
    config = pipeline_config(
        names.prefix,
        tmp_path / "state",
        sample,
        source={"format": "avro"},
        training={"min_records": 300},
        publisher={"max_records": 1_000},
        topics={"pii_findings": names.topic("pii-findings"), "redacted": names.topic("redacted")},
        redaction={"findings_window_s": 0.5},
    )
    await ensure_topics(kafka, [config.source.topic])

    # Confluent's serializer registers the source schema (v1, then a compatible v2) and frames records.
    ctx = SerializationContext(config.source.topic, MessageField.VALUE)
    v1 = AvroSerializer(sr, json.dumps(_outside_schema(schema)))
    extra = [{"name": "channel", "type": "string", "default": "web"}]
    v2 = AvroSerializer(sr, json.dumps(_outside_schema(schema, extra)))
    producer = RdProducer({"bootstrap.servers": kafka.bootstrap_servers, "enable.idempotence": False})
    for i, record in enumerate(records):
        producer.produce(config.source.topic, v1(record, ctx) if i < 500 else v2({**record, "channel": "app"}, ctx))
    assert producer.flush(30) == 0

    store = schema_store_for(config, SchemaRegistryConfig(url=registry.url))
    pipeline = Pipeline(config, kafka, schema, store=store)

    def done(p: Pipeline) -> bool:
        s = p.summary()
        return s.counters.records_in >= 1_000 and s.synthetic_published >= 1_000

    summary = await asyncio.wait_for(pipeline.run(until=done), timeout=150)
    assert summary.counters.processed == 1_000
    assert summary.counters.dead_letters == 0

    subjects = set(sr.get_subjects())
    for topic in (config.synthetic_topic, config.redacted_topic, config.topics.models, config.topics.pii_findings):
        assert f"{topic}-value" in subjects, topic

    # Confluent's deserializer, knowing nothing but the registry, reads every output.
    loop = asyncio.get_running_loop()
    deserialize = AvroDeserializer(sr)
    expected_keys = {f.name for f in pipeline.output_schema.fields}
    for topic, n in ((config.synthetic_topic, 1_000), (config.redacted_topic, 1_000)):
        msgs = await loop.run_in_executor(None, _consume, kafka.bootstrap_servers, topic, n)
        assert len(msgs) == n
        for msg in msgs[:300]:
            value = deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE))
            assert set(value) == expected_keys
    # An event topic: the model lifecycle (trained, promoted) as Confluent clients see it.
    msgs = await loop.run_in_executor(None, _consume, kafka.bootstrap_servers, config.topics.models, 1)
    assert msgs
    for msg in msgs:
        event = deserialize(msg.value(), SerializationContext(config.topics.models, MessageField.VALUE))
        ModelLifecycleEvent.model_validate(event)
    store.close()
