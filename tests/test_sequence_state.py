"""Keyed sequence state and sliding windows: ordering, bounds, eviction counts, observer contract."""

from __future__ import annotations

import pickle
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from structlog.testing import capture_logs

from synthstream.config import SequenceConfig
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import Producer
from synthstream.processors.redactor import PassThroughRedactor
from synthstream.processors.sequences import (
    EntitySequences,
    SlidingWindows,
    event_time_us,
    sequence_state_from_config,
    sliding_windows,
)
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import FieldType
from synthstream.settings import KafkaSettings
from synthstream.streams.ingest import BatchObserver
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.status import run_status
from tests.helpers import TRANSACTIONS_CSV, pipeline_config

T0 = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


def _event(entity: object, minutes: int, **extra: object) -> dict[str, object]:
    return {"card": entity, "ts": T0 + timedelta(minutes=minutes), **extra}


def test_events_are_kept_per_entity_in_time_order_even_when_they_arrive_out_of_order() -> None:
    state = EntitySequences("card", "ts", max_entities=10, max_events_per_entity=10)
    arrivals = [("a", 5), ("b", 1), ("a", 1), ("a", 9), ("a", 3), ("b", 0)]
    assert state.process([_event(c, m, n=i) for i, (c, m) in enumerate(arrivals)]) == len(arrivals)
    seqs = state.sequences()
    assert [e["ts"] for e in seqs["a"]] == [T0 + timedelta(minutes=m) for m in (1, 3, 5, 9)]
    assert [e["n"] for e in seqs["b"]] == [5, 1]
    assert state.counters.out_of_order == 3
    assert state.counters.accepted == 6 and state.events == 6


def test_per_entity_bound_keeps_the_latest_events_and_counts_the_rest() -> None:
    state = EntitySequences("card", "ts", max_entities=5, max_events_per_entity=4)
    state.process([_event("a", m) for m in range(10)])
    state.process([_event("a", -1)])  # older than everything kept: dropped, counted
    kept = state.sequences()["a"]
    assert [e["ts"] for e in kept] == [T0 + timedelta(minutes=m) for m in range(6, 10)]
    assert state.counters.events_dropped == 7
    state.process([_event("a", 7)])  # late but inside the kept range: inserted, the oldest falls out
    assert [e["ts"].minute for e in state.sequences()["a"]] == [7, 7, 8, 9]
    assert state.events == 4


def test_skipped_records_are_counted_not_silently_lost() -> None:
    state = EntitySequences("card", "ts")
    state.process([{"card": None, "ts": T0}, {"card": "x", "ts": None}, {"card": "x", "ts": "not a time"}, {"ts": T0}])
    c = state.counters
    assert (c.records_seen, c.accepted, c.skipped_no_entity, c.skipped_no_time) == (4, 0, 2, 2)
    assert len(state) == 0


async def test_skipped_records_are_a_warning_naming_the_field_and_no_value() -> None:
    state = EntitySequences("card", "ts", report_every_s=0.001)
    secret = "Tuesday after the 4242-4242 payment"
    with capture_logs() as logs:
        await state.observe([{"card": "x", "ts": secret}, {"card": None, "ts": T0}, _event("y", 1)], [])
        await state.close()
    warnings = [e for e in logs if e["event"] == "sequences.skipped"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert (warnings[0]["skipped_no_time"], warnings[0]["skipped_no_entity"], warnings[0]["accepted"]) == (1, 1, 1)
    assert "'ts'" in warnings[0]["message"] and "'card'" in warnings[0]["message"]
    assert secret not in repr(logs) and "4242" not in repr(logs)


def test_period_splits_an_entity_into_calendar_days_and_weeks() -> None:
    day = EntitySequences("card", "ts", period="day")
    week = EntitySequences("card", "ts", period="week")
    events = [_event("a", h * 60) for h in range(0, 24 * 8, 6)]  # every 6 h for 8 days
    day.process(events)
    week.process(events)
    assert len(day) == 8 and all(len(v) == 4 for v in day.sequences().values())
    assert len(week) == 2 and sorted(len(v) for v in week.sequences().values()) == [4, 28]


def test_one_hundred_thousand_keys_stay_under_the_bounds_and_every_eviction_is_counted() -> None:
    state = EntitySequences("card", "ts", max_entities=2_000, max_events_per_entity=3)
    tracemalloc.start()
    try:
        for chunk in range(10):
            batch = [{"card": f"card-{k}", "ts": k, "amt": 1.5} for k in range(chunk * 10_000, (chunk + 1) * 10_000)]
            state.process(batch)
            assert len(state) <= 2_000
        # repeat visits to the most recent keys: they stay, older ones are evicted
        state.process([{"card": f"card-{k}", "ts": 200_000 + k, "amt": 2.0} for k in range(99_000, 100_000)] * 4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    c = state.counters
    assert len(state) == 2_000
    assert state.events <= 2_000 * 3
    assert c.accepted == 104_000
    assert c.entities_evicted == 98_000
    assert c.events_evicted == 98_000  # every evicted entity held exactly one event
    assert c.events_dropped == 2_000  # 1,000 keys got 1 + 4 events, capped at 3: 2 dropped each
    assert c.accepted == state.events + c.events_evicted + c.events_dropped  # conservation
    assert all(len(v) == 3 for k, v in state.sequences().items() if int(str(k)[5:]) >= 99_000)
    assert peak < 64 * 2**20  # bounded state: far below what 100k keys x 5 events would take


def test_least_recently_updated_entity_is_evicted_first() -> None:
    state = EntitySequences("card", "ts", max_entities=3)
    state.process([_event("a", 0), _event("b", 1), _event("c", 2), _event("a", 3), _event("d", 4)])
    assert sorted(state.sequences()) == ["a", "c", "d"]


def test_sliding_windows_are_contiguous_bounded_and_counted() -> None:
    windows = SlidingWindows("ts", length=4, stride=2, max_windows=3)
    windows.process([{"ts": T0 + timedelta(minutes=m), "v": m} for m in range(12)])
    windows.process([{"ts": T0, "v": -1}])  # out of order in a single series: dropped, counted
    got = [[e["v"] for e in w] for w in windows.windows()]
    assert got == [[4, 5, 6, 7], [6, 7, 8, 9], [8, 9, 10, 11]]
    c = windows.counters
    assert (c.windows_emitted, c.windows_evicted, c.out_of_order, c.events_dropped) == (5, 2, 1, 1)
    assert sliding_windows(list(range(10)), 4, 3) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), 1_000_000),
        (datetime(1970, 1, 1, 0, 0, 1), 1_000_000),
        ("1970-01-01T00:00:02Z", 2_000_000),
        (3, 3_000_000),
        (float("nan"), None),
        (True, None),
        ("yesterday", None),
        # dated text the sequence model reads too (pandas' per-value parser): a naive time is UTC
        ("Jan 1 2000", 946_684_800_000_000),
        ("2010/01/01 01:00", 1_262_307_600_000_000),
        ("01/02/2020", 1_577_923_200_000_000),  # month first, as pandas reads it
    ],
)
def test_event_time_us_reads_the_usual_time_encodings(value: object, expected: int | None) -> None:
    assert event_time_us(value) == expected


def test_invalid_options_are_refused_with_the_valid_choices() -> None:
    with pytest.raises(ValueError, match="period must be one of"):
        EntitySequences("card", "ts", period="month")  # type: ignore[arg-type]  # invalid on purpose
    with pytest.raises(ValueError, match="max_entities"):
        EntitySequences("card", "ts", max_entities=0)
    with pytest.raises(ValueError, match="different"):
        EntitySequences("ts", "ts")
    with pytest.raises(ValueError, match="length"):
        SlidingWindows("ts", length=1, stride=1)


async def test_state_is_a_batch_observer_built_from_config_and_pickles() -> None:
    config = SequenceConfig(
        enabled=True, entity_field="card", time_field="ts", max_entities=7, max_events_per_entity=5, period="day"
    )
    state = sequence_state_from_config(config)
    assert isinstance(state, EntitySequences) and isinstance(state, BatchObserver)
    assert (state.max_entities, state.max_events_per_entity, state.period) == (7, 5, "day")
    await state.observe([_event("a", 1), _event("a", 2)], [])
    await state.tick()
    await state.close()
    assert len(state.snapshot(min_events=2)) == 1
    assert "max_entities=7" in repr(state)
    windows = sequence_state_from_config(
        SequenceConfig(enabled=True, mode="windows", time_field="ts", window_length=3, window_stride=1)
    )
    assert isinstance(windows, SlidingWindows) and isinstance(windows, BatchObserver)
    restored = pickle.loads(pickle.dumps(state.sequences()))
    assert restored == state.sequences()


def test_config_reports_missing_sequence_fields() -> None:
    with pytest.raises(ValueError, match="entity_field is required"):
        SequenceConfig(enabled=True, time_field="ts")
    with pytest.raises(ValueError, match="time_field is required"):
        SequenceConfig(enabled=True, entity_field="card")


async def test_a_pipeline_with_a_sequence_section_feeds_its_keyed_state(kafka: KafkaSettings, tmp_path: Path) -> None:
    config = pipeline_config(
        "seqwire",
        tmp_path,
        TRANSACTIONS_CSV,
        sequence={
            "enabled": True,
            "entity_field": "cc_num",
            "time_field": "trans_date_trans_time",
            "max_entities": 50,
            "max_events_per_entity": 4,
        },
        redaction={"enabled": False},
    )
    assert config.source.sample_file is not None
    frame = read_table(config.source.sample_file, nrows=2_000)
    schema = infer_schema(frame, name="Txn")
    pipeline = Pipeline(config, kafka, schema, redactor=PassThroughRedactor(), role="all")
    async with Producer(kafka) as producer:
        observers = pipeline._build_observers(producer)
    (state,) = [o for o in observers if isinstance(o, EntitySequences)]
    assert (state.entity_field, state.max_entities, state.max_events_per_entity) == ("cc_num", 50, 4)
    records = records_from_frame(frame, schema)
    await state.observe(records, [])
    assert len(state) == 50 and state.events <= 200
    c = state.counters
    assert c.accepted == len(records) and c.accepted == state.events + c.events_evicted + c.events_dropped
    assert c.entities_evicted > 0


async def test_dated_text_feeds_the_state_and_an_unreadable_time_field_shows_in_the_status(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    """A time written ``Mar 04 2019 10:15`` is read (it once left every record skipped, the feed idle)."""
    config = pipeline_config(
        "seqtext",
        tmp_path,
        TRANSACTIONS_CSV,
        sequence={"enabled": True, "entity_field": "cc_num", "time_field": "when"},
        redaction={"enabled": False},
    )
    frame = read_table(TRANSACTIONS_CSV, nrows=500)
    stamps = pd.to_datetime(frame["trans_date_trans_time"])
    frame = frame.assign(when=stamps.dt.strftime("%b %d %Y %H:%M")).drop(columns=["trans_date_trans_time"])
    schema = infer_schema(frame, name="Txn")
    assert schema.field("when").type is FieldType.TIMESTAMP  # inference reads the dated text as times
    pipeline = Pipeline(config, kafka, schema, redactor=PassThroughRedactor(), role="all")
    async with Producer(kafka) as producer:
        (state,) = [o for o in pipeline._build_observers(producer) if isinstance(o, EntitySequences)]
    records = frame.to_dict("records")  # the time as the text itself (a string field, a user's producer)
    assert all(isinstance(r["when"], str) for r in records)
    await state.observe(records, [])
    assert state.counters.accepted == len(records)
    assert run_status(pipeline).activity.startswith("sequences:") is False

    unreadable = frame.assign(when="around lunch")
    bad = Pipeline(config, kafka, infer_schema(unreadable, name="Txn"), redactor=PassThroughRedactor(), role="all")
    async with Producer(kafka) as producer:
        (bad_state,) = [o for o in bad._build_observers(producer) if isinstance(o, EntitySequences)]
    await bad_state.observe(records_from_frame(unreadable, bad.schema), [])
    activity = run_status(bad).activity
    assert activity == "sequences: none of 500 records kept (500 without a readable time in 'when')", activity
