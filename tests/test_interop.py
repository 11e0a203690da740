"""A client that is not ours (librdkafka via confluent-kafka) reads our feed and feeds our pipeline."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import time
from typing import Any

import fastavro
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import Producer as RdProducer

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import ensure_topics
from synthstream.demo import sample_path
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.publisher import HEADER_MODEL_VERSION, HEADER_SYNTHETIC
from tests.helpers import pipeline_config


def _rd_consume_all(
    bootstrap: str, topic: str, group: str, expected: int, timeout_s: float = 60.0, until: Any = None
) -> list:
    """Up to ``expected`` messages, or until ``until(messages)`` holds, or the timeout."""
    consumer = RdConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        out = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
            if until is not None and until(out):
                break
        return out
    finally:
        consumer.close()


async def test_librdkafka_produces_source_and_consumes_synthetic_avro(kafka, names, tmp_path):
    sample = sample_path()
    frame_ = read_table(sample, nrows=1_000)
    schema = infer_schema(frame_, name="Adult")
    config = pipeline_config(
        names.prefix, tmp_path, sample, training={"min_records": 300}, publisher={"max_records": 1_000}
    )
    await ensure_topics(kafka, [config.source.topic])

    # librdkafka produces the source records as plain JSON.
    serde = JsonRecordSerde(schema)
    producer = RdProducer({"bootstrap.servers": kafka.bootstrap_servers, "enable.idempotence": False})
    for record in records_from_frame(frame_, schema):
        producer.produce(config.source.topic, serde.encode(record))
    assert producer.flush(30) == 0

    pipeline = Pipeline(config, kafka, schema, store=InMemorySchemaStore())

    def done(p: Pipeline) -> bool:
        s = p.summary()
        return s.counters.records_in >= 1_000 and s.synthetic_published >= 1_000

    summary = await asyncio.wait_for(pipeline.run(until=done), timeout=120)
    assert summary.counters.processed == 1_000
    assert summary.counters.dead_letters == 0

    # librdkafka reads the synthetic topic and the schemas topic (every schema the pipeline uses, in
    # any order) and decodes with fastavro alone.
    loop = asyncio.get_running_loop()
    synth = await loop.run_in_executor(
        None, _rd_consume_all, kafka.bootstrap_servers, config.synthetic_topic, names.group("synth"), 1_000, 60.0
    )
    assert len(synth) == 1_000
    needed = {int.from_bytes(m.value()[1:5], "big") for m in synth[:200]}

    def has_needed(msgs: list) -> bool:
        return needed <= {json.loads(m.value())["id"] for m in msgs}

    schema_msgs = await loop.run_in_executor(
        None,
        functools.partial(
            _rd_consume_all,
            kafka.bootstrap_servers,
            config.topics.schemas,
            names.group("schemas"),
            10_000,
            30.0,
            until=has_needed,
        ),
    )
    schemas = {}
    for msg in schema_msgs:
        doc = json.loads(msg.value())
        schemas[doc["id"]] = fastavro.parse_schema(doc["schema"])
    for msg in synth[:200]:
        value = msg.value()
        assert value[0] == 0
        schema_id = int.from_bytes(value[1:5], "big")
        record = fastavro.schemaless_reader(io.BytesIO(value[5:]), schemas[schema_id])
        assert len(record) == len(schema.fields)
        headers = dict(msg.headers())
        assert headers[HEADER_SYNTHETIC] == b"true"
        assert int(headers[HEADER_MODEL_VERSION]) in summary.model_versions
