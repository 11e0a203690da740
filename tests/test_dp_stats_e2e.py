"""Windowed DP statistics through the real broker: releases, late records, budget refusals, ledger durability."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
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
from tests.helpers import REPO, TRANSACTIONS_CSV, pipeline_config, read_topic

WINDOW_S = 6 * 3600
CATEGORIES = [
    "entertainment", "food_dining", "gas_transport", "grocery_net", "grocery_pos", "health_fitness", "home",
    "kids_pets", "misc_net", "misc_pos", "personal_care", "shopping_net", "shopping_pos", "travel",
]  # fmt: skip


@pytest.fixture
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHSTREAM_PSEUDONYM_KEY", "test-key-" + "k" * 24)


def _transactions(tmp_path: Path, rows: int) -> Path:
    frame = pd.read_csv(TRANSACTIONS_CSV, nrows=rows)
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


def _truth(path: Path, window_s: int = WINDOW_S) -> pd.DataFrame:
    frame = pd.read_csv(path)
    ms = pd.to_datetime(frame["trans_date_trans_time"], utc=True).astype("int64") // 1_000_000
    frame["window"] = ms // (window_s * 1000)
    return frame


def _opendp_epsilon(rho: float, delta: float) -> float:
    """ε at ``delta`` of ρ-zCDP by OpenDP's own conversion curve (independent of synthstream's accountant)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)
    meas = dp.m.make_gaussian(*space, scale=math.sqrt(1 / (2 * rho)))
    return float(dp.c.make_zCDP_to_approxDP(meas).map(1.0).epsilon(delta))


def _opendp_rho(epsilon: float, delta: float) -> float:
    """The ρ whose OpenDP conversion is ``epsilon`` at ``delta`` (bisection on the curve above)."""
    lo, hi = 1e-9, 1e3
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _opendp_epsilon(mid, delta) < epsilon else (lo, mid)
    return math.sqrt(lo * hi)


def _count_sigma(epsilon_w: float, delta: float, w: int, queries: int) -> float:
    """σ of a count or marginal cell from the configuration alone, by the rule dp_release.py states.

    Uniform allocation gives each window ρ_w / w; a window splits its ρ equally over its queries;
    a count or marginal cell has sensitivity 1 (one record per unit): σ = sqrt(1 / (2 ρ_query)).
    """
    rho_query = _opendp_rho(epsilon_w, delta) / w / queries
    return math.sqrt(1 / (2 * rho_query))


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
        names.prefix, tmp_path / "state", path, stats=_stats(epsilon_w=2_000.0, idle_flush_s=1.0),
        publisher={"max_records": None, "rate": 200}, topics={"budget": names.topic("budget")},
    )  # fmt: skip
    await ensure_topics(kafka, [config.source.topic])
    store = InMemorySchemaStore()
    pipeline = Pipeline(config, kafka, schema, store=store)
    late_sent = asyncio.Event()
    n_windows = int(_truth(path)["window"].nunique())
    # The last window is released once the source has been idle for idle_flush_s (never at shutdown).
    run = asyncio.create_task(
        _run_until(
            pipeline,
            lambda p: (
                late_sent.is_set()
                and p.summary().counters.records_in >= 3_001
                and p.stats is not None
                and p.stats.counters["windows_released"] >= n_windows
            ),
        )
    )
    serde = JsonRecordSerde(schema)
    async with Producer(kafka) as producer:
        await replay_file(producer, config.source.topic, path, schema, serde.encode, progress=False)
        first = serde.encode(next(iter(_rows(path, schema))))
        # The first record is late once its window was released (the watermark passed it).
        assert await _poll(lambda: pipeline.stats is not None and pipeline.stats.counters["windows_released"] >= 1, 120)
        await producer.send_batch(config.source.topic, [OutMessage(value=first)])
        late_sent.set()
    await run

    truth = _truth(path)
    events = [EventSerde(StatsEvent, store).decode(r.value) for r in await read_topic(kafka, config.stats_topic)]
    released = sorted({e.window_index for e in events})
    assert released == list(range(int(truth["window"].min()), int(truth["window"].max()) + 1))
    by_window = {e.window_index: e for e in events}
    # σ from the configuration (ε_w = 2,000: tiny noise, so the values must be the truth to within a few units).
    sigma = _count_sigma(2_000.0, 1e-6, w=4, queries=6)
    assert sigma < 0.5
    total_late = 0
    for window, group in truth.groupby("window"):
        event = by_window[int(window)]
        total_late += event.records_late
        assert len(event.queries) == 6  # count, marginals of amt, category, gender, the pair, sum of amt
        queries = {(q.kind, tuple(q.query)): q for q in event.queries}
        count = queries[("count", ())]
        assert abs(count.values[0] - len(group)) <= 5 * sigma + 1
        category = queries[("marginal", ("category",))]
        expected = group["category"].value_counts().reindex(CATEGORIES, fill_value=0).tolist()
        for got, want in zip(category.values, expected, strict=False):
            assert abs(got - want) <= 5 * sigma + 1
        assert category.cells[: len(CATEGORIES)] == CATEGORIES
        assert category.consistent is not None and min(category.consistent) >= 0.0  # post-processed beside raw
        assert sum(category.consistent) == pytest.approx(len(group), abs=5 * sigma + 1)
        pair = queries[("marginal", ("category", "gender"))]
        assert len(pair.values) == len(pair.cells) == (len(CATEGORIES) + 1) * 3  # + __other__ (no nulls here)
        assert event.means["amt"] == pytest.approx(group["amt"].clip(0, 1000).mean(), rel=0.05)
        assert event.unit == "record" and event.w == 4
        assert event.domains == {"amt": "declared", "category": "declared", "gender": "declared"}
    assert total_late >= 1
    _check_guarantees(events, config.state_dir / "privacy.duckdb", epsilon_w=2_000.0, delta=1e-6, w=4)

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


def _check_guarantees(events: list[StatsEvent], ledger: Path, *, epsilon_w: float, delta: float, w: int) -> None:
    """Each event's guarantee against OpenDP's conversion of what the ledger holds, not against the config.

    Per release: ε is the conversion of the ledger's ρ for that window. Per stream: the stated
    (ε, δ) covers the spend of every w consecutive windows, and is tight (uniform allocation
    spends the whole budget once w windows are full).
    """
    with duckdb.connect(str(ledger), read_only=True) as con:
        spend = dict(con.execute("SELECT window_index, sum(rho) FROM releases GROUP BY 1").fetchall())
    spans = {i: sum(spend.get(j, 0.0) for j in range(i - w + 1, i + 1)) for i in spend}
    worst = _opendp_epsilon(max(spans.values()), delta)
    for event in events:
        assert event.rho == pytest.approx(spend[event.window_index], rel=1e-9)
        assert event.epsilon == pytest.approx(_opendp_epsilon(spend[event.window_index], delta), rel=1e-6)
        assert _opendp_epsilon(spans[event.window_index], delta) <= event.guarantee_epsilon * (1 + 1e-9)
        assert event.guarantee_delta >= delta
    if len(spend) >= w:
        assert worst == pytest.approx(epsilon_w, rel=1e-6)
        assert max(e.guarantee_epsilon for e in events) == pytest.approx(worst, rel=1e-6)


async def test_released_noise_has_the_variance_the_configuration_implies(kafka, names, tmp_path, pseudonym_key) -> None:
    """Empirical noise over ~39 hourly windows against σ computed from ε_w, δ and w, never the event's noise_scale.

    ε_w = 5 over w = 4 windows and 6 queries gives σ ≈ 5.1 per count cell; ~700 residuals (count,
    category and gender cells) estimate the variance to about ±5 %, so noise drawn at σ/2 (or
    at 0.8 σ) while σ is reported fails the check.
    """
    window_s = 3600
    path = _transactions(tmp_path, 3_000)
    schema = infer_schema(read_table(path), name="Tx")
    stats = {**_stats(epsilon_w=5.0, idle_flush_s=1.0, allocation="uniform"), "window_s": window_s}
    config = pipeline_config(
        names.prefix, tmp_path / "state", path, stats=stats,
        publisher={"max_records": None, "rate": 200}, topics={"budget": names.topic("budget")},
    )  # fmt: skip
    await ensure_topics(kafka, [config.source.topic])
    store = InMemorySchemaStore()
    pipeline = Pipeline(config, kafka, schema, store=store)
    truth = _truth(path, window_s)
    n_windows = int(truth["window"].nunique())
    run = asyncio.create_task(
        _run_until(
            pipeline,
            lambda p: p.stats is not None and p.stats.counters["windows_released"] >= n_windows,
        )
    )
    async with Producer(kafka) as producer:
        await replay_file(producer, config.source.topic, path, schema, JsonRecordSerde(schema).encode, progress=False)
    await run

    events = [EventSerde(StatsEvent, store).decode(r.value) for r in await read_topic(kafka, config.stats_topic)]
    by_window = {e.window_index: e for e in events}
    assert len(by_window) >= 30
    residuals: list[float] = []
    for window, group in truth.groupby("window"):
        event = by_window[int(window)]
        assert len(event.queries) == 6
        for q in event.queries:
            if q.kind == "count":
                residuals.append(q.values[0] - len(group))
            elif q.kind == "marginal" and q.query in (["category"], ["gender"]):
                counts = group[q.query[0]].value_counts()
                residuals.extend(v - int(counts.get(c, 0)) for c, v in zip(q.cells, q.values, strict=True))
    sigma = _count_sigma(5.0, 1e-6, w=4, queries=6)
    noise = np.asarray(residuals, dtype=float)
    assert noise.size >= 600
    ratio = float(np.mean(noise**2)) / sigma**2
    assert 0.75 < ratio < 1.3, f"empirical noise variance is {ratio:.2f} x the configured sigma^2 ({sigma:.2f}^2)"
    assert abs(float(noise.mean())) < 4 * sigma / math.sqrt(noise.size)  # unbiased
    _check_guarantees(events, config.state_dir / "privacy.duckdb", epsilon_w=5.0, delta=1e-6, w=4)


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
    with duckdb.connect(str(ledger_path), read_only=True) as con:
        charged = dict(con.execute("SELECT window_index, rho FROM releases WHERE query = 'count'").fetchall())
    for window, copies in by_window.items():
        count = next(q for q in copies[0].queries if q.kind == "count")
        sigma = math.sqrt(1 / (2 * charged[window]))  # from the ρ charged for the count, sensitivity 1
        assert abs(count.values[0] - truth.get(window, 0)) <= 6 * sigma + 1, window
