"""Windowed DP statistics through the real broker: releases, late records, budget refusals, ledger durability."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import psutil
import pytest
import yaml

from synthstream.connectors.files import read_table
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.connectors.replay import replay_file
from synthstream.privacy.accounting import epsilon_to_rho
from synthstream.privacy.ledger import PrivacyLedger
from synthstream.schemas.events import BudgetEvent, DeadLetterEvent, EventSerde, StatsEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.pipeline import Pipeline
from tests.helpers import REPO, pipeline_config, read_topic, shared

WINDOW_S = 6 * 3600
CATEGORIES = [
    "entertainment", "food_dining", "gas_transport", "grocery_net", "grocery_pos", "health_fitness", "home",
    "kids_pets", "misc_net", "misc_pos", "personal_care", "shopping_net", "shopping_pos", "travel",
]  # fmt: skip


@pytest.fixture
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHSTREAM_PSEUDONYM_KEY", "test-key-" + "k" * 24)


def _transactions(tmp_path: Path, rows: int) -> Path:
    frame = pd.read_csv(shared("transactions/fraudTrain_prefix.csv"), nrows=rows)
    path = tmp_path / "tx.csv"
    frame.to_csv(path, index=False)
    return path


def _stats(epsilon_w: float, **extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "window_s": WINDOW_S,
        "grace_s": 600,
        "time_field": "trans_date_trans_time",
        "w": 4,
        "epsilon_w": epsilon_w,
        "numeric": {"amt": {"bounds": [0, 1000], "bins": 5, "sum": True}},
        "categorical": {"category": {"values": CATEGORIES}, "gender": {"values": ["F", "M"]}},
        "pairs": [["category", "gender"]],
        **extra,
    }


def _truth(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    ms = pd.to_datetime(frame["trans_date_trans_time"], utc=True).astype("int64") // 1_000_000
    frame["window"] = ms // (WINDOW_S * 1000)
    return frame


async def _run_until(pipeline: Pipeline, done) -> Any:
    return await asyncio.wait_for(pipeline.run(until=done), timeout=240)


async def _poll(predicate, limit_s: float) -> bool:
    """Wait until ``predicate()`` holds (a worker process and a file: no event to await)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_window_releases_match_the_truth_and_late_records_are_dead_lettered(
    kafka, names, tmp_path, pseudonym_key
) -> None:
    path = _transactions(tmp_path, 3_000)
    schema = infer_schema(read_table(path), name="Tx")
    config = pipeline_config(
        names.prefix, tmp_path / "state", path, stats=_stats(epsilon_w=2_000.0),
        publisher={"max_records": None, "rate": 200}, topics={"budget": names.topic("budget")},
    )  # fmt: skip
    await ensure_topics(kafka, [config.source.topic])
    store = InMemorySchemaStore()
    pipeline = Pipeline(config, kafka, schema, store=store)
    late_sent = asyncio.Event()
    run = asyncio.create_task(
        _run_until(pipeline, lambda p: late_sent.is_set() and p.summary().counters.records_in >= 3_001)
    )
    serde = JsonRecordSerde(schema)
    async with Producer(kafka) as producer:
        await replay_file(producer, config.source.topic, path, schema, serde.encode, progress=False)
        first = serde.encode(next(iter(_rows(path, schema))))
        await asyncio.sleep(1.0)  # let the ingest pass the watermark over the first windows
        await producer.send_batch(config.source.topic, [OutMessage(value=first)])
        late_sent.set()
    await run

    truth = _truth(path)
    events = [EventSerde(StatsEvent, store).decode(r.value) for r in await read_topic(kafka, config.stats_topic)]
    released = sorted({e.window_index for e in events})
    assert released == list(range(int(truth["window"].min()), int(truth["window"].max()) + 1))
    by_window = {e.window_index: e for e in events}
    total_late = 0
    for window, group in truth.groupby("window"):
        event = by_window[int(window)]
        total_late += event.records_late
        queries = {(q.kind, tuple(q.query)): q for q in event.queries}
        count = queries[("count", ())]
        assert abs(count.values[0] - len(group)) <= 5 * count.noise_scale + 1
        category = queries[("marginal", ("category",))]
        expected = group["category"].value_counts().reindex(CATEGORIES, fill_value=0).tolist()
        for got, want in zip(category.values, expected, strict=False):
            assert abs(got - want) <= 5 * category.noise_scale + 1
        assert category.cells[: len(CATEGORIES)] == CATEGORIES
        pair = queries[("marginal", ("category", "gender"))]
        assert len(pair.values) == len(pair.cells) == (len(CATEGORIES) + 1) * 3  # + __other__ (no nulls here)
        assert event.means["amt"] == pytest.approx(group["amt"].clip(0, 1000).mean(), rel=0.05)
        assert event.unit == "record" and event.w == 4 and event.guarantee_epsilon == 2_000.0
        assert event.domains == {"amt": "declared", "category": "declared", "gender": "declared"}
    assert total_late >= 1

    dead = [
        EventSerde(DeadLetterEvent, store).decode(r.value) for r in await read_topic(kafka, config.topics.deadletter)
    ]
    late = [d for d in dead if d.reason == "late_record"]
    assert len(late) == 1 and late[0].stage == "stats" and late[0].offset == 3_000

    # The ledger: consecutive windows, every sliding w-window within budget, marginals queryable with SQL.
    ledger_path = config.state_dir / "privacy.duckdb"
    budget = epsilon_to_rho(2_000.0, 1e-6)
    with duckdb.connect(str(ledger_path), read_only=True) as con:
        spend = dict(con.execute("SELECT window_index, sum(rho) FROM releases GROUP BY 1").fetchall())
        n_marginals = con.execute(
            "SELECT count(*) FROM marginals WHERE stream = ? AND kind = 'marginal'", [config.stream]
        ).fetchone()[0]
    for i in spend:
        assert sum(spend.get(j, 0.0) for j in range(i - 3, i + 1)) <= budget * (1 + 1e-9)
    assert n_marginals == 4 * len(released)


def _rows(path: Path, schema):
    from synthstream.connectors.files import records_from_frame

    return records_from_frame(read_table(path, nrows=1), schema)


async def test_a_smaller_budget_after_a_restart_refuses_releases_and_says_so(kafka, names, tmp_path, pseudonym_key):
    path = _transactions(tmp_path, 3_000)
    schema = infer_schema(read_table(path), name="Tx")
    frame = pd.read_csv(path)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    frame.iloc[:1_500].to_csv(first, index=False)
    frame.iloc[1_500:].to_csv(second, index=False)
    serde = JsonRecordSerde(schema)
    topics = {"budget": names.topic("budget")}
    state = tmp_path / "state"
    spent_before = None
    for part, epsilon_w, n_in in ((first, 2.0, 1_500), (second, 0.5, 1_500)):
        config = pipeline_config(
            names.prefix, state, path, stats=_stats(epsilon_w, allocation="uniform"),
            publisher={"max_records": None, "rate": 100}, topics=topics,
        )  # fmt: skip
        await ensure_topics(kafka, [config.source.topic])
        store = InMemorySchemaStore()
        pipeline = Pipeline(config, kafka, schema, store=store)
        run = asyncio.create_task(_run_until(pipeline, lambda p, n=n_in: p.summary().counters.records_in >= n))
        async with Producer(kafka) as producer:
            await replay_file(producer, config.source.topic, part, schema, serde.encode, progress=False)
        await run
        ledger = PrivacyLedger(config.state_dir / "privacy.duckdb")
        if spent_before is None:
            spent_before = ledger.summaries()[0].total
    refusals = [EventSerde(BudgetEvent, store).decode(r.value) for r in await read_topic(kafka, config.topics.budget)]
    assert refusals, "a budget cut to a quarter must refuse the windows whose sliding window already spent more"
    assert all(r.scope == "stats" and r.window_index is not None for r in refusals)
    assert ledger.refusal_count(config.stream, "stats") >= 1
    # Never a fresh budget: the second run only added to what the first one spent.
    assert ledger.summaries()[0].total.rho > spent_before.rho


def _write_config(tmp_path: Path, prefix: str, sample: Path) -> Path:
    data = {
        "stream": prefix,
        "source": {"topic": f"{prefix}.source", "sample_file": str(sample), "group_id": f"{prefix}-g"},
        "training": {"every_records": 100_000, "every_seconds": 600, "min_records": 100_000},
        "publisher": {"rate": 10},
        "stats": {
            **_stats(4.0),
            "allocation": "half_remaining",
            "numeric": {"amt": {"bounds": [0, 1000], "bins": 5, "edges": "dp_quantiles", "sum": True}},
        },
        "topics": {k: f"{prefix}.{k}" for k in ("synthetic", "deadletter", "models", "schemas", "budget", "stats")},
        "state_dir": str(tmp_path / "state"),
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _worker(config: Path, bootstrap: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        SYNTHSTREAM_PSEUDONYM_KEY="test-key-" + "k" * 24,
        PYTHONPATH=str(REPO),
        # The embedded broker holds a group join for half the rebalance timeout: keep it short.
        SYNTHSTREAM_KAFKA_SESSION_TIMEOUT_MS="2000",
        SYNTHSTREAM_KAFKA_REBALANCE_TIMEOUT_MS="500",
        SYNTHSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS="300",
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "synthstream",
            "run",
            "--config",
            str(config),
            "-b",
            bootstrap,
            "--log-level",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _released(ledger: Path) -> dict[int, float]:
    if not ledger.exists():
        return {}
    try:
        with duckdb.connect(str(ledger), read_only=True) as con:
            return dict(con.execute("SELECT window_index, sum(rho) FROM releases GROUP BY 1").fetchall())
    except duckdb.IOException:
        return {}  # the worker holds the file for a moment: ask again


async def test_a_worker_killed_with_sigkill_resumes_with_the_remaining_budget(kafka, names, tmp_path):
    path = _transactions(tmp_path, 3_000)
    schema = infer_schema(read_table(path), name="Tx")
    config = _write_config(tmp_path, names.prefix, path)
    ledger_path = tmp_path / "state" / "privacy.duckdb"
    frame = pd.read_csv(path)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    frame.iloc[:1_800].to_csv(first, index=False)
    frame.iloc[1_800:].to_csv(second, index=False)
    serde = JsonRecordSerde(schema)
    topic = f"{names.prefix}.source"
    await ensure_topics(kafka, [topic])
    async with Producer(kafka) as producer:
        await replay_file(producer, topic, first, schema, serde.encode, progress=False)

    worker = _worker(config, kafka.bootstrap_servers)
    await _poll(lambda: len(_released(ledger_path)) >= 3 or worker.poll() is not None, 120)
    pool = psutil.Process(worker.pid).children(recursive=True)  # the training pool's processes
    assert pool, "the worker should have started its training pool"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    # The pool does not outlive its killed parent (it would hold memory, and mid-fit the GPU).
    _, alive = psutil.wait_procs(pool, timeout=15)
    assert not alive, f"orphaned pool processes: {[p.pid for p in alive]}"
    before = _released(ledger_path)
    assert len(before) >= 3, "the worker released too little before it was killed"
    domains_before = PrivacyLedger(ledger_path).domains(names.prefix)

    worker = _worker(config, kafka.bootstrap_servers)
    try:
        async with Producer(kafka) as producer:
            await replay_file(producer, topic, second, schema, serde.encode, progress=False)
        last_window = int(_truth(path)["window"].max())
        # Windows up to the watermark close while running; the last ones close at shutdown.
        await _poll(
            lambda: max(_released(ledger_path), default=-1) >= last_window - 1 or worker.poll() is not None, 180
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    after = _released(ledger_path)

    # Everything committed before the kill survived it, unchanged.
    for window, rho in before.items():
        assert after[window] == pytest.approx(rho)
    assert max(after) >= last_window - 1
    budget = epsilon_to_rho(4.0, 1e-6)
    for i in after:  # any w=4 consecutive windows: within budget, across the kill
        assert sum(after.get(j, 0.0) for j in range(i - 3, i + 1)) <= budget * (1 + 1e-9)
    # The DP-learned bins were learned (and paid for) once, and reused after the restart.
    assert PrivacyLedger(ledger_path).domains(names.prefix)["amt"] == domains_before["amt"]
    with duckdb.connect(str(ledger_path), read_only=True) as con:
        bootstraps = con.execute("SELECT count(*) FROM releases WHERE query LIKE 'bootstrap:%'").fetchone()[0]
    assert bootstraps == 1
    # A window released before the kill and re-published after it carries the same noisy values.
    store = InMemorySchemaStore()
    from synthstream.connectors.schema_topic import SchemaTopicReader

    await SchemaTopicReader(kafka, f"{names.prefix}.schemas", store).refresh()
    events = [EventSerde(StatsEvent, store).decode(r.value) for r in await read_topic(kafka, f"{names.prefix}.stats")]
    by_window: dict[int, list[StatsEvent]] = {}
    for e in events:
        by_window.setdefault(e.window_index, []).append(e)
    for copies in by_window.values():
        assert all(c.queries == copies[0].queries and c.event_id == copies[0].event_id for c in copies)
    # Nothing counted before the kill was lost: offsets were committed only up to the oldest record of
    # a window not yet released, so the restarted worker re-read the open window's records.
    truth = _truth(path).groupby("window").size()
    for window, copies in by_window.items():
        count = next(q for q in copies[0].queries if q.kind == "count")
        assert abs(count.values[0] - truth.get(window, 0)) <= 6 * count.noise_scale + 1, window
