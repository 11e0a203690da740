"""Crash tests as data: a paced, numbered source, a killable worker and the invariants checked after.

Used by the fault suite (``tests/test_faults_suite.py``) and ``benchmarks/faults.py``, and
usable by anyone who wants to crash-test their own configuration (bytewax's ``testing.py`` is
the model). The schedule is data: a seeded list of "run for s seconds, then SIGTERM/SIGKILL".
After the schedule, :func:`audit_run` reads the topics and the ledger and reports what a
fault must never do:

- lose a record: every source offset is in ``<stream>.redacted`` or in the dead-letter topic
  (at-least-once; the redacted record's key is the stable id of its source coordinates);
- lose or duplicate a DP window: every event-time window between the first and the last holds
  exactly one noised release in the ledger, is on the stats topic (re-publications carry the
  same event id and values), and its released count is the true count within noise;
- overspend: no run of w consecutive windows spends more than the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import psutil

from synthstream.connectors.kafka import OutMessage, Producer, read_to_end
from synthstream.connectors.schema_topic import SchemaTopicReader
from synthstream.schemas.events import DeadLetterEvent, EventSerde, StatsEvent, stable_event_id
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.settings import KafkaSettings

__all__ = [
    "Fault",
    "FaultAudit",
    "PacedSource",
    "Worker",
    "audit_run",
    "kill_schedule",
    "write_fault_config",
]

Signal = Literal["SIGTERM", "SIGKILL"]


@dataclass(frozen=True)
class Fault:
    """One step of a schedule: let the worker run ``after_s`` seconds, then send ``signal``."""

    after_s: float
    signal: Signal


def kill_schedule(n: int, *, seed: int, min_s: float = 4.0, max_s: float = 12.0) -> list[Fault]:
    """``n`` faults at seeded random moments, SIGTERM and SIGKILL mixed (both always present when n >= 2)."""
    if n < 0 or min_s <= 0 or max_s < min_s:
        raise ValueError("need n >= 0 and 0 < min_s <= max_s")
    rng = np.random.default_rng(seed)
    kinds: list[Signal] = ["SIGTERM" if i % 2 == 0 else "SIGKILL" for i in range(n)]
    rng.shuffle(kinds)  # numpy shuffles a list in place
    return [Fault(float(rng.uniform(min_s, max_s)), kind) for kind in kinds]


class PacedSource:
    """Produces numbered JSON records at a steady rate, keyed so partitions interleave.

    Each record carries ``seq`` (its number), so the audit can tell which ones were produced;
    the record's Kafka timestamp is the wall clock, the stats stage's event time by default.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        make_record: Any,
        *,
        rate: float,
        batch: int = 20,
    ) -> None:
        if rate <= 0 or batch <= 0:
            raise ValueError("rate and batch must be positive")
        self.settings = settings
        self.topic = topic
        self.make_record = make_record
        self.rate = rate
        self.batch = batch
        self.produced = 0

    def __repr__(self) -> str:
        return f"PacedSource(topic={self.topic!r}, rate={self.rate})"

    async def run(self, stop: asyncio.Event, serde: JsonRecordSerde, *, limit: int | None = None) -> int:
        """Produce until ``stop`` is set or ``limit`` records went out; return the count."""
        started = time.monotonic()
        async with Producer(self.settings) as producer:
            while not stop.is_set() and (limit is None or self.produced < limit):
                n = self.batch if limit is None else min(self.batch, limit - self.produced)
                messages = [
                    OutMessage(
                        value=serde.encode(self.make_record(self.produced + i)), key=str(self.produced + i).encode()
                    )
                    for i in range(n)
                ]
                await producer.send_batch(self.topic, messages)
                self.produced += n
                due = started + self.produced / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
        return self.produced


@dataclass
class Worker:
    """One ``synthstream run`` process at a time, started and killed by the schedule."""

    config: Path
    bootstrap: str
    env: dict[str, str]
    log_dir: Path
    role: str = "all"
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    orphans: list[int] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    def start(self) -> None:
        """Start a fresh worker process (logs go to ``log_dir/worker-<n>.log``)."""
        self.starts += 1
        log = (self.log_dir / f"worker-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(  # noqa: S603  # our own CLI, argv built here
            [
                sys.executable,
                "-m",
                "synthstream",
                "run",
                "--config",
                str(self.config),
                "--role",
                self.role,
                "-b",
                self.bootstrap,
                "--json-logs",
                "--log-level",
                "INFO",
            ],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    @property
    def log_path(self) -> Path:
        """The current worker's log file."""
        return self.log_dir / f"worker-{self.starts}.log"

    def ready(self) -> bool:
        """Whether the current worker is serving (it logged ``metrics.listening``; metrics must be on)."""
        return self.log_path.is_file() and b'"metrics.listening"' in self.log_path.read_bytes()

    def metrics_port(self) -> int | None:
        """The port the current worker's /metrics and /health listen on, once it is ready."""
        for line in self.log_path.read_bytes().splitlines() if self.log_path.is_file() else []:
            if b'"metrics.listening"' in line:
                return int(json.loads(line)["port"])
        return None

    def alive(self) -> bool:
        """Whether the current process is running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, how: Signal, timeout: float = 60.0) -> int:
        """Send ``how`` and wait; children still alive 15 s after a SIGKILL are recorded as orphans."""
        assert self.proc is not None
        children = psutil.Process(self.proc.pid).children(recursive=True) if self.alive() else []
        self.proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=30)
        _, alive = psutil.wait_procs(children, timeout=15)
        self.orphans += [p.pid for p in alive]
        for p in alive:
            p.kill()
        self.exit_codes.append(code)
        return code


@dataclass
class FaultAudit:
    """What the topics and the ledger say after a fault schedule."""

    source_records: int
    lost: int
    dead_letters: int
    dead_letter_reasons: dict[str, int]
    redacted_duplicates: int
    windows_expected: list[int]
    windows_missing: list[int]
    windows_noised_twice: list[int]
    windows_wrong_count: dict[int, tuple[int, float]]
    over_budget_runs: list[tuple[int, int]]
    released: dict[int, float]

    @property
    def ok(self) -> bool:
        """Nothing lost, no window missing, noised twice, miscounted or over budget."""
        return not (
            self.lost
            or self.windows_missing
            or self.windows_noised_twice
            or self.windows_wrong_count
            or self.over_budget_runs
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no record values: only counts and window indexes)."""
        return {
            "source_records": self.source_records,
            "lost": self.lost,
            "dead_letters": self.dead_letters,
            "dead_letter_reasons": self.dead_letter_reasons,
            "redacted_duplicates": self.redacted_duplicates,
            "windows_expected": len(self.windows_expected),
            "windows_missing": self.windows_missing,
            "windows_noised_twice": self.windows_noised_twice,
            "windows_wrong_count": {str(k): list(v) for k, v in self.windows_wrong_count.items()},
            "over_budget_runs": self.over_budget_runs,
        }


async def _read(settings: KafkaSettings, topic: str) -> list[Any]:
    return [rec async for batch in read_to_end(settings, topic) for rec in batch]


def ledger_windows(path: Path, stream: str) -> tuple[dict[int, float], dict[int, int]]:
    """Per window of the stats scope: total ρ spent, and how many noised releases (payload rows) it has."""
    if not path.exists():
        return {}, {}
    with duckdb.connect(str(path), read_only=True) as con:
        spend = dict(
            con.execute(
                "SELECT window_index, sum(rho) FROM releases WHERE stream = ? AND scope = 'stats' "
                "AND window_index IS NOT NULL GROUP BY 1",
                [stream],
            ).fetchall()
        )
        payloads = dict(
            con.execute(
                "SELECT window_index, count(*) FROM window_releases WHERE stream = ? GROUP BY 1", [stream]
            ).fetchall()
        )
    return {int(k): float(v) for k, v in spend.items()}, {int(k): int(v) for k, v in payloads.items()}


async def audit_run(
    settings: KafkaSettings,
    *,
    stream: str,
    source_topic: str,
    redacted_topic: str,
    deadletter_topic: str,
    stats_topic: str,
    schemas_topic: str,
    ledger: Path,
    window_s: float,
    w: int,
    budget_rho: float,
    count_tolerance: float,
) -> FaultAudit:
    """Check the invariants of a finished run (see the module docstring); the worker must be stopped."""
    source = await _read(settings, source_topic)
    redacted = await _read(settings, redacted_topic)
    store = InMemorySchemaStore()
    await SchemaTopicReader(settings, schemas_topic, store).refresh()
    dead = [EventSerde(DeadLetterEvent, store).decode(r.value) for r in await _read(settings, deadletter_topic)]
    stats = [EventSerde(StatsEvent, store).decode(r.value) for r in await _read(settings, stats_topic)]

    keys = Counter(r.key.decode() for r in redacted if r.key is not None)
    dead_ids = {stable_event_id(d.source_topic, d.partition, d.offset) for d in dead}
    lost = sum(
        1
        for r in source
        if (sid := stable_event_id(r.topic, r.partition, r.offset)) not in keys and sid not in dead_ids
    )
    window_ms = int(window_s * 1000)
    truth = Counter(r.timestamp // window_ms for r in source)
    expected = list(range(min(truth), max(truth) + 1)) if truth else []
    spend, payload_rows = await asyncio.to_thread(ledger_windows, ledger, stream)
    by_window: dict[int, list[StatsEvent]] = {}
    for event in stats:
        by_window.setdefault(event.window_index, []).append(event)
    missing = [i for i in expected if i not in by_window or i not in payload_rows]
    noised_twice = sorted(
        {i for i, n in payload_rows.items() if n > 1}
        | {i for i, events in by_window.items() if len({e.event_id for e in events}) > 1}
        | {i for i, events in by_window.items() if any(e.queries != events[0].queries for e in events)}
    )
    wrong: dict[int, tuple[int, float]] = {}
    for i in expected:
        events = by_window.get(i)
        if not events:
            continue
        count = next(q for q in events[0].queries if q.kind == "count").values[0]
        if abs(count - truth.get(i, 0)) > count_tolerance:
            wrong[i] = (truth.get(i, 0), count)
    over = [
        (i, i + w - 1)
        for i in range(min(spend, default=0), max(spend, default=-1) + 1)
        if sum(spend.get(j, 0.0) for j in range(i, i + w)) > budget_rho * (1 + 1e-9)
    ]
    return FaultAudit(
        source_records=len(source),
        lost=lost,
        dead_letters=len(dead),
        dead_letter_reasons=dict(Counter(f"{d.stage}:{d.reason}" for d in dead)),
        redacted_duplicates=sum(n - 1 for n in keys.values() if n > 1),
        windows_expected=expected,
        windows_missing=missing,
        windows_noised_twice=noised_twice,
        windows_wrong_count=wrong,
        over_budget_runs=over,
        released=spend,
    )


def fault_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a crash-tested worker: a pseudonym key and short group timeouts for the embedded broker."""
    return {
        "SYNTHSTREAM_PSEUDONYM_KEY": "fault-suite-key-" + "q" * 24,
        "SYNTHSTREAM_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "SYNTHSTREAM_KAFKA_REBALANCE_TIMEOUT_MS": "500",
        "SYNTHSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        **(extra or {}),
    }


def customer_record(i: int) -> dict[str, Any]:
    """Record ``i`` of the crash-test stream: a name (PII, pseudonymised), a category and an amount."""
    rng = np.random.default_rng(i)
    return {
        "seq": i,
        "customer": f"Customer {int(rng.integers(0, 10_000)):05d}",
        "category": ("food", "travel", "health", "home")[int(rng.integers(0, 4))],
        "amount": round(float(rng.gamma(2.0, 20.0)), 2),
    }


def write_fault_config(
    directory: Path,
    prefix: str,
    *,
    window_s: float,
    w: int,
    epsilon_w: float,
    delta: float,
    categories: Sequence[str] = ("food", "travel", "health", "home"),
) -> Path:
    """A pipeline file for the crash-test stream: redaction, DP statistics and metrics on, no model."""
    import pandas as pd
    import yaml

    sample = directory / "sample.csv"
    pd.DataFrame([customer_record(i) for i in range(300)]).to_csv(sample, index=False)
    data = {
        "stream": prefix,
        "source": {"topic": f"{prefix}.source", "sample_file": str(sample), "group_id": f"{prefix}-g"},
        "fields": {"customer": {"redact": "pseudonymize"}},
        # No model: the faults under test are ingest's, the statistics' and the ledger's.
        "training": {"every_records": 10**9, "every_seconds": 10**6, "min_records": 10**9},
        "publisher": {"rate": 10},
        "audit": {"enabled": False},
        "stats": {
            "enabled": True,
            "window_s": window_s,
            "grace_s": 1.0,
            "w": w,
            "epsilon_w": epsilon_w,
            "delta": delta,
            "categorical": {"category": {"values": list(categories)}},
        },
        "metrics": {"enabled": True, "port": 0},
        "topics": {k: f"{prefix}.{k}" for k in ("synthetic", "deadletter", "models", "schemas", "budget", "stats")},
        "state_dir": str(directory / "state"),
    }
    path = directory / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def window_count_tolerance(sigmas: Sequence[float]) -> float:
    """A count bound that holds with overwhelming probability for the largest of ``sigmas`` (6 σ + rounding)."""
    return 6.0 * max(sigmas, default=0.0) + 1.0
