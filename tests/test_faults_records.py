"""Per-record failure isolation through the real broker: poison pills, stage failures, conserved counts.

Each test plants values that must never leave the record (``Zorblax`` markers, the out-of-range
numbers themselves) and checks the dead-letter topic, the structlog event dicts and the
exception texts for them.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import structlog

from synthstream.config import StatsConfig
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.privacy.ledger import PrivacyLedger
from synthstream.processors.buffer import TrainingBuffer
from synthstream.processors.pii.redactor import PiiRedactor, build_plan
from synthstream.processors.validator import RecordValidator
from synthstream.schemas.events import BudgetEvent, DeadLetterEvent, EventSerde, StatsEvent, stable_event_id
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore
from synthstream.streams.ingest import IngestStage, Rejection, SourceRecord
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.stats import StatsStage
from tests.helpers import pipeline_config, read_topic

SCHEMA = RecordSchema(
    name="Pay",
    fields=(
        FieldSpec(name="id", type=FieldType.LONG, role=FieldRole.NUMERIC),
        FieldSpec(name="amount", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
        FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
        FieldSpec(name="city", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
    ),
)
CITIES = ["Lisbon", "Porto", "Braga", "Faro"]
START = datetime(2024, 3, 1, tzinfo=UTC)
#: Planted in every bad record: none of these may appear in any output but the source topic.
PLANTED = ("Zorblax", "9223372036854775808", "9223372036854775809", "0001-01-01T00:00:00+14:00", "10000-01-01")
PLANTED_KEY = "maria.zorblax@example.com"


def _rows(n: int, seed: int, start: datetime = START, step_s: float = 1.0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": rng.randrange(1, 10**9),
            "amount": round(rng.uniform(1, 500), 2),
            "ts": start + timedelta(seconds=i * step_s),
            "city": rng.choice(CITIES),
        }
        for i in range(n)
    ]


def _sample(tmp_path: Path) -> Path:
    path = tmp_path / "pay.csv"
    frame = pd.DataFrame(_rows(200, seed=1))
    frame["ts"] = frame["ts"].map(lambda t: t.isoformat())
    frame.to_csv(path, index=False)
    return path


def _json(record: dict[str, Any]) -> bytes:
    # The standard library writes integers of any size (orjson refuses those beyond 64 bits).
    return json.dumps({k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}).encode()


def _assert_clean(blobs: Sequence[bytes | str]) -> None:
    for blob in blobs:
        text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
        for planted in (*PLANTED, PLANTED_KEY):
            assert planted not in text, f"planted value {planted!r} leaked"


def _log_text(logs: list[dict[str, Any]]) -> list[str]:
    return [repr(entry) for entry in logs]


# -- poison pills through the whole pipeline ------------------------------------------------------


async def test_poison_pills_are_dead_lettered_and_the_stream_goes_on(kafka, names, tmp_path) -> None:
    """Values that pass a type check but cannot be encoded: each dead-lettered, records after them flow."""
    config = pipeline_config(
        names.prefix,
        tmp_path / "state",
        _sample(tmp_path),
        source={"extra_fields": "reject", "format": "auto"},
        training={"min_records": 100_000, "every_records": 100_000, "every_seconds": 3_600},
        publisher={"max_records": None},
        drift={"enabled": False},
    )
    store = InMemorySchemaStore()
    avro = AvroRecordSerde(SCHEMA, store, subject=f"{config.source.topic}-value")
    base = dict(_rows(1, seed=2)[0], city="PLANTED-Zorblax")
    pills: dict[str, tuple[bytes, str]] = {
        "long_too_big": (_json(dict(base, id=2**63)), "value_out_of_range"),
        "long_too_small": (_json(dict(base, id=-(2**63) - 1)), "value_out_of_range"),
        "long_as_huge_float": (_json(dict(base, id=9223372036854775809.0)), "value_out_of_range"),
        "ts_before_year_1_in_utc": (_json(dict(base, ts="0001-01-01T00:00:00+14:00")), "value_out_of_range"),
        "ts_year_10000": (_json(dict(base, ts="10000-01-01T00:00:00")), "value_out_of_range"),
        "nan_from_avro": (avro.encode(dict(base, amount=float("nan"))), "value_out_of_range"),
        "infinity_from_avro": (avro.encode(dict(base, amount=float("inf"))), "value_out_of_range"),
        "pii_as_a_key": (_json(dict(base, **{PLANTED_KEY: 1})), "schema_violation"),
    }
    good_before, good_after = _rows(40, seed=3), _rows(60, seed=4, start=START + timedelta(hours=1))
    values = [_json(r) for r in good_before] + [v for v, _ in pills.values()] + [_json(r) for r in good_after]
    expected_in = len(values)
    await ensure_topics(kafka, [config.source.topic])
    pipeline = Pipeline(config, kafka, SCHEMA, store=store)
    with structlog.testing.capture_logs() as logs:
        run = asyncio.create_task(pipeline.run(until=lambda p: p.summary().counters.records_in >= expected_in))
        async with Producer(kafka) as producer:
            await producer.send_batch(config.source.topic, [OutMessage(value=v) for v in values])
        summary = await asyncio.wait_for(run, timeout=120)

    c = summary.counters
    assert c.records_in == expected_in
    assert c.processed == len(good_before) + len(good_after), "records after the pills must be processed"
    assert c.dead_letters == len(pills) and c.conserved

    dead_msgs = await read_topic(kafka, config.topics.deadletter)
    events = [EventSerde(DeadLetterEvent, store).decode(r.value) for r in dead_msgs]
    by_offset = {e.offset: e for e in events}
    assert len(by_offset) == len(events) == len(pills)
    for i, (name, (_, reason)) in enumerate(pills.items()):
        event = by_offset[len(good_before) + i]
        assert event.reason == reason, name
        assert event.stage == "validate"
        if reason == "value_out_of_range":
            field = "'amount'" if "avro" in name else "'ts'" if name.startswith("ts") else "'id'"
            assert field in event.detail, (name, event.detail)
    redacted = await read_topic(kafka, config.redacted_topic)
    assert len(redacted) == len(good_before) + len(good_after)
    _assert_clean([r.value for r in dead_msgs] + [r.value for r in redacted] + _log_text(logs))


# -- stage failures on one record -----------------------------------------------------------------


class _PlantedFailures:
    """A real PII redactor that breaks on planted records, the way a buggy operator would.

    ``BOOM`` records raise with the value in the message (as ``int('Maria')`` does); ``ENC``
    records come out with a string in the long field, which the Avro encoder cannot take.
    """

    redacts = True

    def __init__(self, inner: PiiRedactor) -> None:
        self.inner = inner
        self.output_schema = inner.output_schema

    def process(self, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out = self.inner.process(records)
        for rec in out:
            if rec["city"].startswith("BOOM"):
                raise ValueError(f"cannot redact {rec['city']!r}")
            if rec["city"].startswith("ENC"):
                rec["id"] = rec["city"]
        return out


class _PickyObserver:
    """An all-or-nothing observer that cannot take planted ``OBS`` records (raising with the value)."""

    stage_name = "picky"

    def __init__(self, fail_with: type[Exception] = KeyError) -> None:
        self.seen: list[int] = []
        self.fail_with = fail_with
        self.sink: Any = None

    async def observe(self, records: Sequence[dict[str, Any]], sources: Sequence[SourceRecord]) -> None:
        for rec in records:
            if rec["city"].startswith("OBS"):
                raise self.fail_with(f"unexpected city {rec['city']}")
        self.seen.extend(s.offset for s in sources)

    async def tick(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def bind_dead_letters(self, sink: Any) -> None:
        self.sink = sink


def _stage(kafka_producer: Producer, names: Any, store: InMemorySchemaStore, **kwargs: Any) -> IngestStage:
    inner = PiiRedactor(SCHEMA, build_plan(SCHEMA, []))
    redactor = kwargs.pop("redactor", None) or _PlantedFailures(inner)
    serde = AvroRecordSerde(redactor.output_schema, store, subject=names.topic("redacted-value"))
    return IngestStage(
        validator=RecordValidator(SCHEMA, source_format="json"),
        redactor=redactor,
        buffer=TrainingBuffer(10_000),
        producer=kafka_producer,
        deadletter_topic=names.topic("deadletter"),
        deadletter_serde=EventSerde(DeadLetterEvent, store),
        stream=names.prefix,
        redacted_topic=names.topic("redacted"),
        encode_redacted=serde.encode_many,
        **kwargs,
    )


async def _source_batch(kafka: Any, topic: str, records: Sequence[dict[str, Any]]) -> list[Any]:
    await ensure_topics(kafka, [topic])
    async with Producer(kafka) as producer:
        await producer.send_batch(topic, [OutMessage(value=_json(r)) for r in records])
    return await read_topic(kafka, topic)


async def test_a_redactor_encoder_or_observer_failure_dead_letters_only_that_record(kafka, names) -> None:
    rows = _rows(30, seed=5)
    rows[4]["city"] = "BOOM-Zorblax"
    rows[11]["city"] = "ENC-Zorblax"
    rows[20]["city"] = "OBS-Zorblax"
    batch = await _source_batch(kafka, names.topic("source"), rows)
    store = InMemorySchemaStore()
    await ensure_topics(kafka, [names.topic("deadletter"), names.topic("redacted")])
    observer = _PickyObserver()
    async with Producer(kafka) as producer:
        stage = _stage(producer, names, store, observers=[observer])
        with structlog.testing.capture_logs() as logs:
            taken = await stage.handle(batch)

    c = stage.counters
    assert (c.records_in, c.processed, c.dead_letters) == (30, 27, 3) and c.conserved
    assert taken == 27
    assert c.by_reason == {"redact_failed": 1, "encode_failed": 1, "picky_failed": 1}
    dead_msgs = await read_topic(kafka, names.topic("deadletter"))
    events = {e.offset: e for e in (EventSerde(DeadLetterEvent, store).decode(r.value) for r in dead_msgs)}
    assert len(dead_msgs) == 3
    assert (events[4].reason, events[4].stage) == ("redact_failed", "redact")
    assert (events[11].reason, events[11].stage) == ("encode_failed", "encode")
    assert (events[20].reason, events[20].stage) == ("picky_failed", "picky")
    assert "ValueError" in events[4].detail and "KeyError" in events[20].detail
    # A record that failed to redact or encode goes no further; the observer's one stays upstream.
    redacted_keys = {r.key for r in await read_topic(kafka, names.topic("redacted"))}
    source = names.topic("source")
    assert redacted_keys == {stable_event_id(source, 0, i).encode() for i in range(30) if i not in (4, 11)}
    assert len(stage.buffer) == 28
    assert sorted(observer.seen) == [i for i in range(30) if i not in (4, 11, 20)]
    _assert_clean([r.value for r in dead_msgs] + _log_text(logs))


async def test_infrastructure_failures_propagate_instead_of_dead_lettering(kafka, names) -> None:
    """A full disk is no record's fault: the batch is not committed and nothing is dead-lettered."""
    rows = _rows(10, seed=6)
    rows[3]["city"] = "OBS-Zorblax"
    batch = await _source_batch(kafka, names.topic("source"), rows)
    store = InMemorySchemaStore()
    await ensure_topics(kafka, [names.topic("deadletter"), names.topic("redacted")])
    async with Producer(kafka) as producer:
        stage = _stage(producer, names, store, observers=[_PickyObserver(fail_with=OSError)])
        with pytest.raises(OSError) as raised:
            await stage.handle(batch)
    assert stage.counters.records_in == stage.counters.processed == stage.counters.dead_letters == 0
    assert await read_topic(kafka, names.topic("deadletter")) == []
    assert isinstance(raised.value, OSError)


async def test_late_dead_letters_from_an_observer_move_a_record_from_processed(kafka, names) -> None:
    """A record counted processed, then dead-lettered by an observer's timer: counted once, as a dead letter."""
    batch = await _source_batch(kafka, names.topic("source"), _rows(8, seed=7))
    store = InMemorySchemaStore()
    await ensure_topics(kafka, [names.topic("deadletter"), names.topic("redacted")])
    observer = _PickyObserver()
    async with Producer(kafka) as producer:
        stage = _stage(producer, names, store, observers=[observer])
        await stage.handle(batch)
        assert observer.sink is not None, "the stage must bind its dead-letter sink to observers that report"
        late = [Rejection(batch[2], "late_record", "window 1 was already released", "picky")]
        await observer.sink(late)
        await observer.sink(late)  # reported twice: still one dead letter
    c = stage.counters
    assert (c.records_in, c.processed, c.dead_letters) == (8, 7, 1) and c.conserved
    assert len(await read_topic(kafka, names.topic("deadletter"))) == 1


# -- counts with the DP statistics stage on ------------------------------------------------------


async def test_stats_dead_letters_reach_the_ingest_counters(kafka, names, tmp_path) -> None:
    """Late and future records dead-lettered by the stats stage: in = processed + dead, and the topic agrees."""
    store = InMemorySchemaStore()
    topics = {k: names.topic(k) for k in ("deadletter", "redacted", "stats", "budget")}
    await ensure_topics(kafka, list(topics.values()))
    config = StatsConfig(
        enabled=True,
        window_s=60,
        grace_s=0,
        time_field="ts",
        w=2,
        epsilon_w=1_000.0,
        numeric={"amount": {"bounds": (0, 500), "bins": 5}},
        categorical={"city": {"values": CITIES}},
    )
    on_time = _rows(150, seed=8, step_s=1.2)  # windows 0-2 of event time
    late = _rows(5, seed=9)  # window 0 again, once it is released
    future = _rows(2, seed=10, start=datetime.now(UTC) + timedelta(days=30))
    batch1 = await _source_batch(kafka, names.topic("source"), on_time)
    async with Producer(kafka) as producer:
        await producer.send_batch(names.topic("source"), [OutMessage(value=_json(r)) for r in late + future])
    everything = await read_topic(kafka, names.topic("source"))
    batch2 = everything[len(batch1) :]
    ledger = PrivacyLedger(tmp_path / "privacy.duckdb")
    plain = PiiRedactor(SCHEMA, build_plan(SCHEMA, []))
    async with Producer(kafka) as producer:
        stats = StatsStage(
            config=config,
            stream=names.prefix,
            schema=SCHEMA,
            ledger=ledger,
            producer=producer,
            stats_topic=topics["stats"],
            budget_topic=topics["budget"],
            deadletter_topic=topics["deadletter"],
            stats_serde=EventSerde(StatsEvent, store),
            budget_serde=EventSerde(BudgetEvent, store),
            deadletter_serde=EventSerde(DeadLetterEvent, store),
        )
        stage = _stage(producer, names, store, redactor=plain, observers=[stats])
        await stage.handle(batch1)
        await stage.handle(batch2)
        await stats.close()
    c = stage.counters
    assert c.records_in == len(everything) == 157
    assert c.dead_letters == 7 and c.processed == 150 and c.conserved
    assert c.by_reason == {"late_record": 5, "event_time_in_future": 2}
    dead = [EventSerde(DeadLetterEvent, store).decode(r.value) for r in await read_topic(kafka, topics["deadletter"])]
    assert len(dead) == len({(e.partition, e.offset) for e in dead}) == c.dead_letters
    assert {e.stage for e in dead} == {"stats"}
