"""The fault suite: `synthstream run` killed (SIGTERM and SIGKILL) at random moments under a paced live stream.

Real processes against the session broker, with redaction, DP statistics and metrics on.
After the schedule the invariants of :mod:`synthstream.testing` must hold: every source
offset in ``.redacted`` or the dead-letter topic, every window released once with its true
count, no w consecutive windows over budget, no orphaned process, a clean exit on SIGTERM.
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pandas as pd
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as rdp

from synthstream.connectors.kafka import ensure_topics
from synthstream.privacy.accounting import epsilon_to_rho
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import JsonRecordSerde
from synthstream.testing import (
    PacedSource,
    Worker,
    audit_run,
    customer_record,
    fault_env,
    kill_schedule,
    ledger_windows,
    window_count_tolerance,
    write_fault_config,
)

WINDOW_S = 2.0
W = 3
EPSILON_W = 200.0
DELTA = 1e-6


def _epsilon_of_rho(rho: float, delta: float) -> float:
    """(ε, δ) of ρ-zCDP by dp-accounting's RDP conversion (ρ-zCDP is RDP ε(α) = ρα), independent of ours."""
    orders = np.concatenate([np.linspace(1.01, 10, 500), np.linspace(10, 2_000, 4_000)])
    epsilon, _ = rdp.compute_epsilon(orders, rho * orders, delta)
    return float(epsilon)


async def _wait_for(predicate, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.25)
    return predicate()


async def test_kills_at_random_moments_lose_nothing_and_release_every_window_once(kafka, names, tmp_path):
    config = write_fault_config(tmp_path, names.prefix, window_s=WINDOW_S, w=W, epsilon_w=EPSILON_W, delta=DELTA)
    prefix = names.prefix
    source_topic = f"{prefix}.source"
    await ensure_topics(kafka, [source_topic], partitions=2)
    schema = infer_schema(pd.read_csv(tmp_path / "sample.csv"), name="Customer")
    serde = JsonRecordSerde(schema)
    ledger = tmp_path / "state" / "privacy.duckdb"
    worker = Worker(config, kafka.bootstrap_servers, fault_env(), tmp_path)
    source = PacedSource(kafka, source_topic, customer_record, rate=150)
    stop_source = asyncio.Event()

    worker.start()
    producing = asyncio.create_task(source.run(stop_source, serde))
    try:
        for fault in kill_schedule(4, seed=7, min_s=2.0, max_s=8.0):
            # The fault's clock starts once the worker serves: a kill mid-stream, not mid-import.
            assert await _wait_for(lambda: worker.ready() or not worker.alive(), 120), "the worker never started"
            await asyncio.sleep(fault.after_s)
            assert worker.alive(), f"the worker died on its own; see {tmp_path}/worker-{worker.starts}.log"
            code = worker.stop(fault.signal)
            if fault.signal == "SIGTERM":
                assert code == 0, f"SIGTERM must end the worker cleanly (exit {code})"
            worker.start()
        await asyncio.sleep(3.0)
    finally:
        stop_source.set()
        await producing
    # Let the last worker catch up and close the final window (the source goes quiet for the grace period).
    truth_last = int(time.time() * 1000) // int(WINDOW_S * 1000)

    def _caught_up() -> bool:
        if not worker.alive():
            return True
        try:
            spend, _ = ledger_windows(ledger, prefix)
        except Exception:  # the worker holds the file at this instant: ask again
            return False
        return max(spend, default=-1) >= truth_last

    await _wait_for(_caught_up, 90)
    assert worker.alive(), f"the worker died on its own; see {tmp_path}/worker-{worker.starts}.log"
    assert worker.stop("SIGTERM") == 0

    rho = epsilon_to_rho(EPSILON_W, DELTA)
    # The budget the ledger sums against converts back to ε_w by an independent accountant.
    assert _epsilon_of_rho(rho, DELTA) == pytest.approx(EPSILON_W, rel=1e-3)
    # Uniform allocation: a window spends ρ/w, split evenly over its two queries (count, marginal:category);
    # the discrete Gaussian of a sensitivity-1 count at ρ_q has σ² ≤ 1 / (2 ρ_q).
    sigma = math.sqrt(1 / (2 * rho / (W * 2)))
    audit = await audit_run(
        kafka,
        stream=prefix,
        source_topic=source_topic,
        redacted_topic=f"{prefix}.redacted",
        deadletter_topic=f"{prefix}.deadletter",
        stats_topic=f"{prefix}.stats",
        schemas_topic=f"{prefix}.schemas",
        ledger=ledger,
        window_s=WINDOW_S,
        w=W,
        budget_rho=rho,
        count_tolerance=window_count_tolerance([sigma]),
    )
    report = audit.as_dict()
    assert audit.source_records == source.produced > 1_000, report
    assert audit.lost == 0, report
    assert audit.dead_letters == 0, report  # every record of this stream is valid and on time
    assert not audit.windows_missing, report
    assert not audit.windows_noised_twice, report
    assert not audit.windows_wrong_count, report
    assert not audit.over_budget_runs, report
    assert not worker.orphans, f"processes outlived their killed worker: {worker.orphans}"
    assert worker.starts == 5
