"""Window completeness through the real broker: stops mid-window (SIGTERM path, SIGKILL) and a failing ledger.

Every event-time window from the first to the last must be released exactly once (copies of a
release carry the same event id and values) with its full count. The budget is large so that
the noise bound, computed here from the configured mechanism and budget (not from the event's
reported noise scale), is below one: the integer noisy count must equal the true count.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import yaml

from synthstream.connectors.files import read_table
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.connectors.replay import replay_file
from synthstream.connectors.schema_topic import SchemaTopicReader
from synthstream.privacy.ledger import LedgerError, PrivacyLedger, _file_lock
from synthstream.schemas.events import BudgetEvent, EventSerde, StatsEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.settings import KafkaSettings
from synthstream.streams.pipeline import Pipeline
from tests.helpers import REPO, pipeline_config, read_topic

WINDOW_S = 10
PER_WINDOW = 40
W = 3
EPSILON_W = 500.0
DELTA = 1e-6
BASE = datetime(2024, 3, 1, tzinfo=UTC)  # a multiple of WINDOW_S since the epoch
CATEGORIES = ["A", "B", "C"]


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHSTREAM_PSEUDONYM_KEY", "test-key-" + "k" * 24)


def _count_noise_bound() -> float:
    """6 σ of the count's Gaussian noise, from the configuration alone (a conservative zCDP conversion).

    ρ of the w-window budget from ε = ρ + 2 sqrt(ρ ln(1/δ)) (Bun & Steinke 2016, Prop. 1.3; any
    tighter conversion gives more ρ, i.e. less noise); a window gets ρ / w (uniform allocation),
    split evenly over its 2 queries (count, marginal of category); σ = k / sqrt(2 ρ_q) with k = 1.
    """
    log_term = math.log(1 / DELTA)
    rho = (math.sqrt(log_term + EPSILON_W) - math.sqrt(log_term)) ** 2
    rho_query = rho / W / 2
    return 6 * 1.0 / math.sqrt(2 * rho_query)


def _rows(windows: range, part: slice = slice(None)) -> list[dict[str, Any]]:
    """PER_WINDOW records per window, in event-time order, with seeded categories."""
    rows = []
    for window in windows:
        chunk = []
        for j in range(PER_WINDOW):
            ts = BASE + timedelta(seconds=window * WINDOW_S + j * WINDOW_S / PER_WINDOW)
            chunk.append({"ts": ts.strftime("%Y-%m-%d %H:%M:%S.%f"), "category": CATEGORIES[(window * 7 + j) % 3]})
        rows += chunk[part] if window == windows[-1] else chunk
    return rows


def _csv(tmp_path: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _stats(**extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "window_s": WINDOW_S,
        "grace_s": 1,
        "time_field": "ts",
        "w": W,
        "epsilon_w": EPSILON_W,
        "delta": DELTA,
        "categorical": {"category": {"values": CATEGORIES}},
        **extra,
    }


def _first_window() -> int:
    return int(BASE.timestamp()) // WINDOW_S


async def _stats_events(kafka: KafkaSettings, topic: str, store: InMemorySchemaStore) -> list[StatsEvent]:
    return [EventSerde(StatsEvent, store).decode(r.value) for r in await read_topic(kafka, topic)]


def _assert_each_window_once_with_its_count(events: list[StatsEvent], windows: range) -> None:
    by_window: dict[int, list[StatsEvent]] = {}
    for event in events:
        by_window.setdefault(event.window_index - _first_window(), []).append(event)
    assert sorted(by_window) == list(windows), f"released windows {sorted(by_window)}, expected {list(windows)}"
    bound = _count_noise_bound()
    assert bound < 1.0
    for window, copies in by_window.items():
        # At-least-once publishing: a second copy is the same release (same id, same noisy values).
        assert all(c.event_id == copies[0].event_id and c.queries == copies[0].queries for c in copies), window
        count = next(q for q in copies[0].queries if q.kind == "count").values[0]
        assert abs(count - PER_WINDOW) <= bound, f"window {window}: released count {count}, true {PER_WINDOW}"


def _worst_run(ledger: Path, w: int) -> float:
    """The largest summed ρ of any w consecutive windows, summed here from the ledger's rows."""
    with duckdb.connect(str(ledger), read_only=True) as con:
        rows = con.execute("SELECT window_index, sum(rho) FROM releases WHERE window_index IS NOT NULL GROUP BY 1")
        spend = dict(rows.fetchall())
    starts = range(min(spend) - w + 1, max(spend) + 1)
    return max(sum(spend.get(j, 0.0) for j in range(s, s + w)) for s in starts)


def _budget_rho() -> float:
    from synthstream.privacy.accounting import epsilon_to_rho

    return epsilon_to_rho(EPSILON_W, DELTA)


async def _run(pipeline: Pipeline, until: Callable[[Pipeline], bool]) -> None:
    await asyncio.wait_for(pipeline.run(until=until), timeout=180)


def _released(p: Pipeline) -> int:
    return p.stats.counters["windows_released"] if p.stats is not None else 0


async def test_a_graceful_stop_mid_window_releases_nothing_partial_and_the_restart_releases_it_whole(
    kafka, names, tmp_path
) -> None:
    """The SIGTERM path (the stop event) with window 3 half read; the restart reads its records again."""
    first = _csv(tmp_path, "first.csv", _rows(range(4), slice(0, PER_WINDOW // 2)))
    second = _csv(tmp_path, "second.csv", _rows(range(3, 5))[PER_WINDOW // 2 :])
    schema = infer_schema(read_table(first), name="Ev")
    serde = JsonRecordSerde(schema)
    store = InMemorySchemaStore()
    topics = {"budget": names.topic("budget")}
    # Run 1 never flushes on idleness: only the stop can end window 3, and it must not release it.
    config = pipeline_config(
        names.prefix, tmp_path / "state", first, stats=_stats(idle_flush_s=600), topics=topics,
        publisher={"max_records": None},
    )  # fmt: skip
    await ensure_topics(kafka, [config.source.topic])
    async with Producer(kafka) as producer:
        await replay_file(producer, config.source.topic, first, schema, serde.encode, progress=False)
    pipeline = Pipeline(config, kafka, schema, store=store)
    await _run(pipeline, lambda p: p.summary().counters.records_in >= 3 * PER_WINDOW + 20 and _released(p) >= 3)
    assert pipeline.stats is not None and pipeline.stats.aggregator is not None
    assert pipeline.stats.aggregator.open_windows == [_first_window() + 3]  # stopped with window 3 half full
    assert _released(pipeline) == 3

    config = pipeline_config(
        names.prefix, tmp_path / "state", first, stats=_stats(idle_flush_s=1.0), topics=topics,
        publisher={"max_records": None},
    )  # fmt: skip
    async with Producer(kafka) as producer:
        await replay_file(producer, config.source.topic, second, schema, serde.encode, progress=False)
    pipeline = Pipeline(config, kafka, schema, store=store)
    await _run(pipeline, lambda p: _released(p) >= 2)  # windows 3 (re-read, whole) and 4 (idle flush)
    assert pipeline.stats is not None and pipeline.stats.counters["redelivered"] == 0

    _assert_each_window_once_with_its_count(await _stats_events(kafka, config.stats_topic, store), range(5))
    assert _worst_run(config.state_dir / "privacy.duckdb", W) <= _budget_rho() * (1 + 1e-9)


async def test_a_failing_ledger_refuses_releases_and_they_follow_once_it_is_back(kafka, names, tmp_path) -> None:
    """Fail closed: with the ledger file unreadable nothing is published but a BudgetEvent; nothing is lost."""
    rows = _rows(range(4))
    path = _csv(tmp_path, "all.csv", rows)
    first = _csv(tmp_path, "first.csv", rows[: 2 * PER_WINDOW])
    rest = _csv(tmp_path, "rest.csv", rows[2 * PER_WINDOW :])
    schema = infer_schema(read_table(path), name="Ev")
    serde = JsonRecordSerde(schema)
    store = InMemorySchemaStore()
    config = pipeline_config(
        names.prefix, tmp_path / "state", path, stats=_stats(idle_flush_s=1.0),
        topics={"budget": names.topic("budget")}, publisher={"max_records": None},
    )  # fmt: skip
    ledger_path = config.state_dir / "privacy.duckdb"
    await ensure_topics(kafka, [config.source.topic])
    pipeline = Pipeline(config, kafka, schema, store=store)
    state: dict[str, Any] = {"good": None, "refused": False}

    async def drive() -> None:
        async with Producer(kafka) as producer:
            await replay_file(producer, config.source.topic, first, schema, serde.encode, progress=False)
            await _poll(lambda: _released(pipeline) >= 2, 60)  # windows 0 and 1 (the second by idle flush)
            with _file_lock(ledger_path):
                state["good"] = ledger_path.read_bytes()
                ledger_path.write_bytes(b"not a ledger" * 4096)
            await replay_file(producer, config.source.topic, rest, schema, serde.encode, progress=False)
            assert pipeline.stats is not None
            await _poll(lambda: pipeline.stats.counters["ledger_errors"] > 0, 60)
            state["refused"] = True
            # While it fails, nothing more is published.
            assert len(await _stats_events(kafka, config.stats_topic, store)) == 2
            with _file_lock(ledger_path):
                ledger_path.write_bytes(state["good"])

    driver = asyncio.create_task(drive())
    await _run(pipeline, lambda p: state["refused"] and _released(p) >= 4)
    await driver

    _assert_each_window_once_with_its_count(await _stats_events(kafka, config.stats_topic, store), range(4))
    budget_topic = await read_topic(kafka, config.topics.budget)
    budget_events = [EventSerde(BudgetEvent, store).decode(r.value) for r in budget_topic]
    assert budget_events and all("ledger unavailable" in e.reason for e in budget_events)
    assert all(e.window_index == _first_window() + 2 for e in budget_events)  # the first window it held back
    with pytest.raises(LedgerError):
        PrivacyLedger(tmp_path / "nowhere" / "missing.duckdb", read_only=True).summaries()


# -- SIGKILL of a real worker process -----------------------------------------------------------


def _write_config(tmp_path: Path, prefix: str, sample: Path, idle_flush_s: float) -> Path:
    data = {
        "stream": prefix,
        "source": {"topic": f"{prefix}.source", "sample_file": str(sample), "group_id": f"{prefix}-g"},
        "training": {"every_records": 100_000, "every_seconds": 600, "min_records": 100_000},
        "publisher": {"rate": 10},
        "stats": _stats(idle_flush_s=idle_flush_s),
        "metrics": {"enabled": True, "port": 0},
        "topics": {k: f"{prefix}.{k}" for k in ("synthetic", "deadletter", "models", "schemas", "budget", "stats")},
        "state_dir": str(tmp_path / "state"),
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _worker(config: Path, bootstrap: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        SYNTHSTREAM_KAFKA_SESSION_TIMEOUT_MS="2000",
        SYNTHSTREAM_KAFKA_REBALANCE_TIMEOUT_MS="500",
        SYNTHSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS="300",
    )
    command = [sys.executable, "-m", "synthstream", "run", "--config", str(config), "-b", bootstrap]
    with log.open("ab") as out:  # the worker's log, shown when the test fails
        return subprocess.Popen([*command, "--log-level", "INFO"], env=env, stdout=out, stderr=subprocess.STDOUT)


async def _poll(predicate: Callable[[], bool], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_a_worker_killed_with_a_window_half_full_releases_every_window_once_after_restart(
    kafka, names, tmp_path
) -> None:
    first = _csv(tmp_path, "first.csv", _rows(range(4), slice(0, PER_WINDOW // 2)))
    second = _csv(tmp_path, "second.csv", _rows(range(3, 6))[PER_WINDOW // 2 :])
    schema = infer_schema(read_table(first), name="Ev")
    serde = JsonRecordSerde(schema)
    # The first worker never flushes on idleness: window 3 stays half full until the kill.
    config = _write_config(tmp_path, names.prefix, first, idle_flush_s=600)
    ledger_path = tmp_path / "state" / "privacy.duckdb"
    topic = f"{names.prefix}.source"

    def released() -> set[int]:
        if not ledger_path.exists():
            return set()
        try:
            ledger = PrivacyLedger(ledger_path, read_only=True)
            return {w - _first_window() for w in ledger.released_windows(names.prefix, "stats", "record")}
        except LedgerError:
            return set()

    await ensure_topics(kafka, [topic])
    async with Producer(kafka) as producer:
        await replay_file(producer, topic, first, schema, serde.encode, progress=False)
    worker = _worker(config, kafka.bootstrap_servers, tmp_path / "worker.log")
    try:
        # Windows 0-2 close on event time; window 3 is half full (its records counted, not committed).
        await _poll(lambda: released() >= {0, 1, 2} or worker.poll() is not None, 120)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)

    config = _write_config(tmp_path, names.prefix, first, idle_flush_s=1.0)
    worker = _worker(config, kafka.bootstrap_servers, tmp_path / "worker.log")
    try:
        async with Producer(kafka) as producer:
            await replay_file(producer, topic, second, schema, serde.encode, progress=False)
        await _poll(lambda: released() >= set(range(6)) or worker.poll() is not None, 150)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=120)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=30)
            log = (tmp_path / "worker.log").read_text(errors="replace")
            pytest.fail(f"the worker did not stop within 120 s of SIGTERM; log tail:\n{log[-3000:]}")
    assert worker.returncode == 0

    store = InMemorySchemaStore()
    await SchemaTopicReader(kafka, f"{names.prefix}.schemas", store).refresh()
    _assert_each_window_once_with_its_count(await _stats_events(kafka, f"{names.prefix}.stats", store), range(6))
    assert _worst_run(ledger_path, W) <= _budget_rho() * (1 + 1e-9)


def test_a_window_below_the_resumed_timeline_that_was_never_released_is_reopened_not_skipped() -> None:
    """After a restart at window 5, window 3 (never released) takes its records and closes before window 6."""
    from synthstream.processors.windows import Attribute, Discretizer, WindowAggregator

    agg = WindowAggregator(
        Discretizer([Attribute("category", "categorical", labels=tuple(CATEGORIES))]), [("category",)], window_ms=1_000
    )
    agg.resume_after(5, reopen=[3])
    result = agg.add([{"category": "A"}] * 4, [3_100, 3_200, 2_500, 6_100])
    assert result.late == (2,)  # window 2 was released: its record is redelivered, window 3 is open
    assert agg.reopened == [3]
    closed = agg.close_due(now_ms=7_500)
    assert [(w.index, w.count) for w in closed] == [(3, 2), (6, 1)]
    assert agg.reopened == []
