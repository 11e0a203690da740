"""The drift stage on the real broker: idempotent event ids under redelivery, and the cool-down under flapping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthstream.config import DriftConfig
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.models.registry import Lineage, ModelRegistry
from synthstream.models.training import fit_generator
from synthstream.schemas.events import DriftEvent, EventSerde
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore
from synthstream.streams.drift import DriftStage, ProfileHook
from tests.helpers import ADULT_CSV, read_topic, shuffled

WINDOW = 1_000


@dataclass(frozen=True)
class Src:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _adult(n: int):
    frame = read_table(ADULT_CSV)
    schema = infer_schema(frame, name="Adult")
    return schema, shuffled(records_from_frame(frame, schema), n, seed=11)


def _batch(records: list[dict[str, Any]], first_offset: int) -> tuple[list[dict[str, Any]], list[Src]]:
    sources = [Src("src", 0, first_offset + i, 1_700_000_000_000 + first_offset + i) for i in range(len(records))]
    return records, sources


async def _promoted(tmp_path, schema, training) -> ModelRegistry:
    """A registry whose promoted version 1 has a training profile, stored the way the scheduler stores it."""
    registry = ModelRegistry(tmp_path, "s")
    model, seconds = fit_generator("gaussian_copula", training, schema, 0)
    lineage = Lineage(rows=len(training), schema_fingerprint=schema.fingerprint(), seed=0, fit_seconds=seconds)
    version = registry.register(model, lineage=lineage)
    hook = ProfileHook(registry, schema)
    await hook(version, model, training)
    registry.promote(version.version)
    return registry


def _stage(config: DriftConfig, schema, producer, topic, store, registry, clock, requests) -> DriftStage:
    return DriftStage(
        config=config,
        schema=schema,
        producer=producer,
        topic=topic,
        serde=EventSerde(DriftEvent, store),
        stream="s",
        registry=registry,
        request_retrain=requests.append,
        clock=clock,
    )


async def test_a_redelivered_window_gives_the_same_event_ids(kafka, names, tmp_path):
    schema, records = _adult(5_000)
    registry = await _promoted(tmp_path, schema, records[:3_000])
    # Window 0 is like the training data; window 1 (offsets 1,000-1,999) is shifted.
    stream = records[3_000:4_000] + [dict(r, age=r["age"] + 15) for r in records[4_000:5_000]]
    topic = names.topic("drift")
    await ensure_topics(kafka, [topic])
    store = InMemorySchemaStore()
    config = DriftConfig(window_records=WINDOW, action="alert")
    async with Producer(kafka) as producer:
        first = _stage(config, schema, producer, topic, store, registry, Clock(), [])
        await first.tick()
        await first.observe(*_batch(stream[:1_400], 0))
        await first.observe(*_batch(stream[1_400:], 1_400))  # closes window 1: its events are published ...
        # ... and the process dies before committing: a new one resumes from offset 1,400.
        second = _stage(config, schema, producer, topic, store, registry, Clock(), [])
        await second.tick()
        await second.observe(*_batch(stream[1_400:], 1_400))
    events = [EventSerde(DriftEvent, store).decode(r.value) for r in await read_topic(kafka, topic)]
    before, after = events[: first.events_published], events[first.events_published :]
    stale_before = {e.event_id: e for e in before if e.monitor == "staleness"}
    stale_after = {e.event_id: e for e in after if e.monitor == "staleness"}
    assert {e.fields[0] for e in stale_before.values()} == {"age"}
    # The rebuilt window (600 of its 1,000 records) reports the same drift under the same id.
    assert stale_after.keys() == stale_before.keys()
    (event,) = stale_after.values()
    assert event.window_records == 600 and stale_before[event.event_id].window_records == WINDOW


async def test_cooldown_holds_a_flapping_field_to_one_retrain(kafka, names, tmp_path):
    schema, records = _adult(24_000)
    registry = await _promoted(tmp_path, schema, records[:4_000])
    topic = names.topic("drift")
    await ensure_topics(kafka, [topic])
    store = InMemorySchemaStore()
    clock = Clock()
    requests: list[str] = []
    # A drift clears after one quiet window, so the flapping field re-enters every other window.
    config = DriftConfig(window_records=WINDOW, action="retrain", cooldown_s=600, clear_windows=1)
    stream = records[4_000:24_000]
    async with Producer(kafka) as producer:
        stage = _stage(config, schema, producer, topic, store, registry, clock, requests)
        await stage.tick()
        for w in range(20):  # 20 windows, 30 s apart: 570 s, inside one cool-down
            clock.now = 30.0 * w
            window = stream[w * WINDOW : (w + 1) * WINDOW]
            if w % 2 == 0:
                window = [dict(r, age=r["age"] + 15) for r in window]
            await stage.observe(*_batch(window, w * WINDOW))
        assert len(requests) == 1 and "staleness drift on age" in requests[0]
        # After the cool-down, a drift that is still there gets its retrain (deferred or on re-entry).
        clock.now = 700.0
        await stage.observe(*_batch([dict(r, age=r["age"] + 15) for r in stream[:WINDOW]], 20 * WINDOW))
    assert len(requests) == 2
    events = [EventSerde(DriftEvent, store).decode(r.value) for r in await read_topic(kafka, topic)]
    age_staleness = [e for e in events if (e.monitor, e.fields) == ("staleness", ["age"])]
    entered = [e for e in age_staleness if e.severity != "info"]
    assert len(entered) == 11  # it entered drift 10 times in the cool-down and once after
    assert [e.action for e in entered] == ["retrain"] + ["cooldown"] * 9 + ["retrain"]
    assert sum(1 for e in age_staleness if e.severity == "info") == 10  # and cleared in between
    assert stage.policy.retrains_held == 9
