"""Drift through the real pipeline and broker: quiet on a stationary replay, loud on an injected shift.

Records are replayed into a source topic in two phases: phase one lets the first model be
trained, profiled and promoted; phase two is either more of the same data (stationary) or
the same rows with the age distribution moved and the share of women doubled. The drift
topic is read back and its Avro events decoded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.processors.drift.profile import TrainingProfile
from synthstream.schemas.events import DriftEvent, EventSerde
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import RecordSchema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.drift import PROFILE_ARTIFACT, DriftStage
from synthstream.streams.pipeline import Pipeline, PipelineSummary
from tests.helpers import ADULT_CSV, pipeline_config, read_topic, shuffled

WINDOW = 2_000
PHASE_ONE = 4_000  # two windows; the first model trains on >= 3,000 of them
PHASE_TWO = 12_000  # six windows


def _adult() -> tuple[Path, RecordSchema, list[dict[str, Any]]]:
    sample = ADULT_CSV
    frame = read_table(sample)
    schema = infer_schema(frame, name="Adult")
    # The file is sorted by nothing in particular; seeded shuffles (a second pass past 8,000) are i.i.d.
    return sample, schema, shuffled(records_from_frame(frame, schema), PHASE_ONE + PHASE_TWO, seed=7)


def _shift(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ages 10 years older; every other man becomes a woman (Female's share ~33% -> ~66%)."""
    out = []
    men = 0
    for rec in records:
        moved = dict(rec, age=rec["age"] + 10)
        if rec["sex"] == "Male":
            men += 1
            if men % 2 == 0:
                moved["sex"] = "Female"
        out.append(moved)
    return out


def _stage(pipeline: Pipeline) -> DriftStage:
    (stage,) = [o for o in pipeline.observers if isinstance(o, DriftStage)]
    return stage


@dataclass
class Outcome:
    pipeline: Pipeline
    summary: PipelineSummary
    events: list[DriftEvent]
    shift_at: datetime  # timestamp of the first phase-two record


async def _run(kafka, names, tmp_path, phase_one, phase_two, schema, sample, *, versions: int) -> Outcome:
    config = pipeline_config(
        names.prefix,
        tmp_path,
        sample,
        training={"every_records": 1_000_000, "every_seconds": 3_600, "min_records": 3_000},
        publisher={"rate": 2_000, "max_records": None},
        topics={"drift": names.topic("drift")},
        drift={"window_records": WINDOW, "divergence_interval_s": 0, "cooldown_s": 600},
    )
    store = InMemorySchemaStore()
    serde = JsonRecordSerde(schema)
    # Output topics exist before the pipeline's producer starts (producing to a topic created after
    # the producer connected can fail with NotLeaderForPartition on the embedded broker).
    await ensure_topics(kafka, [config.source.topic, config.topics.drift])
    pipeline = Pipeline(config, kafka, schema, store=store)
    total = len(phase_one) + len(phase_two)

    def done(p: Pipeline) -> bool:
        stage = _stage(p)
        return (
            p.summary().counters.records_in >= total
            and stage.windows_evaluated >= total // WINDOW
            and stage.synthetic_windows_evaluated >= 2
            and len(p.registry.versions()) >= versions
        )

    run = asyncio.create_task(pipeline.run(until=done))
    async with Producer(kafka) as producer:
        await producer.send_batch(config.source.topic, [OutMessage(value=serde.encode(r)) for r in phase_one])
        for _ in range(600):  # until the first version is trained, profiled and promoted
            await asyncio.sleep(0.1)
            if pipeline.observers and _stage(pipeline).model_version is not None:
                break
        assert _stage(pipeline).model_version == 1, "no promoted model before phase two"
        assert _stage(pipeline).staleness.profile is not None, "the promoted version has no training profile"
        await producer.send_batch(config.source.topic, [OutMessage(value=serde.encode(r)) for r in phase_two])
    summary = await asyncio.wait_for(run, timeout=180)
    source = await read_topic(kafka, config.source.topic)
    shift_at = datetime.fromtimestamp(source[len(phase_one)].timestamp / 1000.0, UTC)
    events = [EventSerde(DriftEvent, store).decode(r.value) for r in await read_topic(kafka, config.topics.drift)]
    return Outcome(pipeline, summary, events, shift_at)


async def test_stationary_replay_stays_quiet(kafka, names, tmp_path):
    sample, schema, records = _adult()
    out = await _run(kafka, names, tmp_path, records[:PHASE_ONE], records[PHASE_ONE:], schema, sample, versions=1)
    stage = _stage(out.pipeline)
    assert out.summary.counters.processed == PHASE_ONE + PHASE_TWO
    assert stage.windows_evaluated == (PHASE_ONE + PHASE_TWO) // WINDOW
    monitored = {"detector": 6, "distance": 15, "staleness": 15, "divergence": 15}
    for monitor, fields in monitored.items():
        assert sum(1 for key in stage.latest if key[0] == monitor) == fields, f"{monitor} did not measure every field"
    assert [(e.monitor, e.fields, e.statistic, round(e.value, 3)) for e in out.events] == []
    assert stage.retrains_requested == 0 and out.summary.model_versions == [1]
    # Clearly below the warning levels (PSI 0.1, JS 0.1), not just under them by luck.
    assert max(v for k, v in stage.latest.items() if k[2] == "psi") < 0.05
    assert max(v for k, v in stage.latest.items() if k[2] == "js") < 0.08


async def test_injected_shift_fires_at_once_and_requests_one_retrain(kafka, names, tmp_path):
    sample, schema, records = _adult()
    shifted = _shift(records[PHASE_ONE:])
    out = await _run(kafka, names, tmp_path, records[:PHASE_ONE], shifted, schema, sample, versions=2)
    stage = _stage(out.pipeline)
    loud = [e for e in out.events if e.severity in ("warning", "critical")]
    fired = {(e.monitor, e.fields[0]) for e in loud}
    assert {("staleness", "age"), ("distance", "age"), ("detector", "age"), ("divergence", "age")} <= fired
    assert {("staleness", "sex"), ("distance", "sex"), ("divergence", "sex")} <= fired
    assert {f for _, f in fired} <= {"age", "sex"}, f"unshifted fields fired: {sorted(fired)}"
    # Nothing fired before the shift, and staleness saw it in the first shifted window.
    assert all(e.window_start >= out.shift_at for e in loud)
    # (v2, trained on a buffer still mostly pre-shift, may be stale too: held back by the cool-down.)
    (stale_age,) = [e for e in loud if (e.monitor, e.fields, e.model_version) == ("staleness", ["age"], 1)]
    assert stale_age.window_start == out.shift_at and stale_age.window_records == WINDOW
    assert stale_age.severity == "critical" and stale_age.value >= 0.25 and stale_age.threshold == 0.1
    # One retrain request (staleness is the trigger; the cool-down holds the other fields back).
    retrains = [e for e in out.events if e.action == "retrain"]
    assert len(retrains) == 1 and retrains[0].monitor == "staleness" and retrains[0].model_version == 1
    assert stage.retrains_requested == 1
    assert all(e.action in ("alert", "cooldown", "none") for e in out.events if e is not retrains[0])
    # The request reached the scheduler: a second version was trained, profiled and promoted.
    registry = out.pipeline.registry
    assert registry.current().version == 2 and out.summary.model_versions == [1, 2]
    profile = TrainingProfile.from_json(registry.load_extra(2, PROFILE_ARTIFACT))
    assert profile.rows == registry.get(2).lineage.rows
    # One event per (monitor, statistic, fields, window): ids never repeat.
    assert len({e.event_id for e in out.events}) == len(out.events)
