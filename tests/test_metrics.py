"""The metrics and health endpoints, scraped over HTTP from a running pipeline, against what it reports."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
from prometheus_client.parser import text_string_to_metric_families

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.schemas.events import DeadLetterEvent, DriftEvent, EventSerde, PiiFindingsEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.drift import DriftStage
from synthstream.streams.metrics import MetricsServer
from synthstream.streams.pipeline import Pipeline
from tests.helpers import ADULT_CSV, TRANSACTIONS_CSV, http_get, pipeline_config, read_topic

RECORDS = 3_000
BAD = [b'{"amt": 1', b"\xff\xfe not json", b"[1, 2, 3]"]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "stream")))] = s.value
    return out


def _of(samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def test_scraped_metrics_match_the_pipeline_counts(kafka, names, tmp_path):
    sample = TRANSACTIONS_CSV
    frame = read_table(sample, nrows=RECORDS)
    schema = infer_schema(frame, name="Tx")
    config = pipeline_config(
        names.prefix,
        tmp_path,
        sample,
        redaction={"ephemeral_key": True},
        training={"every_records": 1_000_000, "every_seconds": 3_600, "min_records": 1_000},
        publisher={"rate": 1_000, "max_records": None},
        topics={"drift": names.topic("drift"), "pii_findings": names.topic("pii")},
        drift={"window_records": 500, "divergence": False},
        metrics={"enabled": True, "port": 0},
    )
    serde = JsonRecordSerde(schema)
    values = [serde.encode(r) for r in records_from_frame(frame, schema)]
    values = values[:1_000] + BAD + values[1_000:]
    store = InMemorySchemaStore()
    await ensure_topics(kafka, [config.source.topic, config.topics.drift, config.topics.pii_findings])
    pipeline = Pipeline(config, kafka, schema, store=store)
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop=stop))
    async with Producer(kafka) as producer:
        await producer.send_batch(config.source.topic, [OutMessage(value=v) for v in values])
    for _ in range(600):
        await asyncio.sleep(0.1)
        s = pipeline.summary()
        drift = [o for o in pipeline.observers if isinstance(o, DriftStage)]
        if s.counters.records_in == len(values) and s.synthetic_published >= 1_000 and drift[0].windows_evaluated == 6:
            break
    (server,) = [o for o in pipeline.observers if isinstance(o, MetricsServer)]
    assert server.port is not None and server.port != config.metrics.port  # 0 picked a free port

    before = pipeline.summary()
    status, body = await http_get(server.port, "/metrics")
    after = pipeline.summary()
    health_status, health_body = await http_get(server.port, "/health")
    missing, _ = await http_get(server.port, "/nope")
    stop.set()
    summary = await asyncio.wait_for(run, timeout=60)

    assert status == 200 and health_status == 200 and missing == 404
    samples = _samples(body.decode())
    c = before.counters
    assert c == after.counters == summary.counters  # ingest was over: the counts stood still
    assert samples[("synthstream_records_in_total", ())] == c.records_in == len(values)
    out = _of(samples, "synthstream_records_out_total")
    assert out[(("output", "processed"),)] == c.processed == RECORDS
    assert out[(("output", "dead_letter"),)] == c.dead_letters == len(BAD)
    assert {dict(k)["reason"]: v for k, v in _of(samples, "synthstream_dead_letters_total").items()} == dict(
        c.by_reason
    )
    published = samples[("synthstream_synthetic_records_published_total", ())]
    assert before.synthetic_published <= published <= after.synthetic_published
    assert out[(("output", "synthetic"),)] == published
    assert samples[("synthstream_model_promoted_version", ())] == pipeline.registry.current().version == 1
    assert samples[("synthstream_model_versions_total", ())] == len(before.model_versions) == 1
    assert samples[("synthstream_consuming", ())] == 1.0
    assert samples[("synthstream_publish_rate_target", ())] == 1_000
    latency = _of(samples, "synthstream_ingest_latency_seconds")
    assert latency[(("quantile", "0.99"),)] == before.latency["p99_ms"] / 1000.0

    # Against what the pipeline published on its topics.
    dead = [
        EventSerde(DeadLetterEvent, store).decode(r.value) for r in await read_topic(kafka, config.topics.deadletter)
    ]
    assert Counter(e.reason for e in dead) == c.by_reason
    findings = Counter()
    for rec in await read_topic(kafka, config.topics.pii_findings):
        for f in EventSerde(PiiFindingsEvent, store).decode(rec.value).findings:
            findings[(f.field, f.entity_type, f.operator)] += f.count
    redactions = {
        (dict(k)["field"], dict(k)["entity_type"], dict(k)["operator"]): v
        for k, v in _of(samples, "synthstream_redactions_total").items()
    }
    assert redactions and redactions == dict(findings)
    assert redactions[("first", "PERSON", "fake")] == RECORDS
    drift_events = [EventSerde(DriftEvent, store).decode(r.value) for r in await read_topic(kafka, config.topics.drift)]
    by = Counter((e.monitor, f, e.severity) for e in drift_events for f in e.fields)
    scraped = {
        (dict(k)["monitor"], dict(k)["field"], dict(k)["severity"]): v
        for k, v in _of(samples, "synthstream_drift_events_total").items()
    }
    assert scraped == dict(by)
    windows = _of(samples, "synthstream_drift_windows_total")
    assert windows[(("side", "real"),)] == RECORDS // 500
    assert _of(samples, "synthstream_window_lag_seconds")[(("stage", "drift"),)] >= 0

    health = orjson.loads(health_body)
    assert health["status"] == "ok" and health["broker_connected"] and health["consuming"]
    assert health["promoted_version"] == 1 and health["last_batch_age_s"] >= 0


async def test_privacy_budget_and_window_lag_setters(kafka, names, tmp_path):
    sample = ADULT_CSV
    schema = infer_schema(read_table(sample, nrows=500), name="Adult")
    config = pipeline_config(names.prefix, tmp_path, sample, metrics={"enabled": True, "port": 0})
    pipeline = Pipeline(config, kafka, schema)
    server = MetricsServer(config.metrics, pipeline)
    server.metrics.set_privacy_budget(spent=0.75, remaining=0.25, scope="stats", unit="epsilon")
    server.metrics.set_window_lag("stats", 12.5)
    await server.start()
    try:
        status, body = await http_get(server.port, "/metrics")
        health_status, health = await http_get(server.port, "/health")
    finally:
        await server.close()
    assert status == 200
    samples = _samples(body.decode())
    labels = (("scope", "stats"), ("unit", "epsilon"))
    assert samples[("synthstream_privacy_budget_spent", labels)] == 0.75
    assert samples[("synthstream_privacy_budget_remaining", labels)] == 0.25
    assert samples[("synthstream_window_lag_seconds", (("stage", "stats"),))] == 12.5
    assert samples[("synthstream_model_promoted_version", ())] == 0
    # Not running: no producer and no consumer, so the process is not healthy.
    assert health_status == 503 and orjson.loads(health)["status"] == "degraded"
