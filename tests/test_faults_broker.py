"""Broker lost under a running ``synthstream run`` (a real process) on a broker of the test's own.

The test starts its own :class:`EmbeddedBroker` (not the session one), runs the CLI against it
with ``--json-logs`` and /health on a free port, kills the broker, and checks: /health turns
``degraded`` with ``broker_connected: false``; a broker restarted on the same port is picked
up again and new records are processed; every stderr line is JSON; past the configured
deadline the worker exits 1 with one clear line and no traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthstream.connectors.broker import EmbeddedBroker
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.demo import sample_path
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import JsonRecordSerde
from synthstream.settings import KafkaSettings

CLI = [sys.executable, "-m", "synthstream"]


class Worker:
    """A ``synthstream run --json-logs`` process whose stderr lines are collected by a thread."""

    def __init__(self, config: Path, bootstrap: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*CLI, "run", "--config", str(config), "-b", bootstrap, "--json-logs", "--log-level", "INFO"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def events(self) -> Iterator[dict[str, Any]]:
        for line in list(self.lines):
            try:
                yield json.loads(line)
            except ValueError:
                continue

    def metrics_port(self) -> int | None:
        for event in self.events():
            if event.get("event") == "metrics.listening":
                return int(event["port"])
        return None

    def finish(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return int(self.proc.returncode)


def wait_for(check: Callable[[], Any], what: str, timeout: float) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def http_json(port: int, path: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:  # 503 while degraded still carries the document
        return dict(json.loads(exc.read()))
    except OSError:
        return None


def records_in(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    for line in text.splitlines():
        if line.startswith("synthstream_records_in_total{") or line.startswith("synthstream_records_in{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def write_config(tmp_path: Path, prefix: str) -> tuple[Path, str]:
    topic = f"{prefix}.source"
    config = {
        "stream": prefix,
        "source": {"topic": topic, "sample_file": str(sample_path()), "assign_partitions": True},
        "redaction": {"enabled": False},
        "drift": {"enabled": False},
        # No fit during the test: the broker, not the model, is under test.
        "training": {"min_records": 100_000, "every_records": 100_000},
        "audit": {"enabled": False},
        "metrics": {"enabled": True, "port": 0},
        "topics": {
            "deadletter": f"{prefix}.deadletter",
            "models": f"{prefix}.models",
            "schemas": f"{prefix}.schemas",
        },
        "state_dir": str(tmp_path / "state"),
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, topic


def produce(bootstrap: str, topic: str, n: int, start: int = 0) -> None:
    frame = read_table(sample_path(), nrows=start + n)
    schema = infer_schema(frame, name="Adult")
    encode = JsonRecordSerde(schema).encode
    values = [encode(r) for r in records_from_frame(frame, schema)[start:]]
    settings = KafkaSettings.for_embedded(bootstrap)

    async def main() -> None:
        await ensure_topics(settings, [topic])
        async with Producer(settings) as producer:
            await producer.send_batch(topic, [OutMessage(value=v) for v in values])

    asyncio.run(main())


def assert_all_json(lines: list[str]) -> None:
    bad = [line for line in lines if line.strip() and not _is_json(line)]
    assert not bad, f"{len(bad)} non-JSON stderr lines, e.g. {bad[:3]}"


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_lost_broker_degrades_health_and_the_worker_resumes_when_it_returns(tmp_path: Path, names):
    broker = EmbeddedBroker().start()
    port = broker.port
    config, topic = write_config(tmp_path, names.prefix)
    worker: Worker | None = None
    try:
        produce(broker.bootstrap_servers, topic, 200)
        worker = Worker(config, broker.bootstrap_servers)
        metrics = wait_for(worker.metrics_port, "the metrics port in the logs", 120)
        wait_for(lambda: records_in(metrics) >= 200, "the first 200 records", 120)
        health = http_json(metrics, "/health")
        assert health is not None and health["status"] == "ok" and health["broker_connected"] is True

        broker.stop()
        lost = wait_for(
            lambda: (h := http_json(metrics, "/health")) and h["broker_connected"] is False and h,
            "/health to report the lost broker",
            15,
        )
        assert lost["status"] == "degraded"
        assert worker.proc.poll() is None  # still running, retrying

        broker = EmbeddedBroker(port=port).start()  # memory only: an empty broker on the same port
        wait_for(
            lambda: (h := http_json(metrics, "/health")) and h["broker_connected"] is True,
            "/health to see the broker again",
            30,
        )
        produce(broker.bootstrap_servers, topic, 150, start=200)
        wait_for(
            lambda: records_in(metrics) >= 350,
            f"records produced after the broker returned; last log lines {worker.lines[-8:]}",
            120,
        )
        assert http_json(metrics, "/health")["status"] == "ok"  # type: ignore[index]
        events = [e.get("event") for e in worker.events()]
        assert "broker.lost" in events and "broker.restored" in events
    finally:
        rc = worker.finish() if worker is not None else 0
        broker.stop()
    assert rc == 0, worker.lines[-5:] if worker else None
    assert_all_json(worker.lines)
    assert not any("Traceback" in line for line in worker.lines)


def test_worker_gives_up_with_one_clear_line_after_the_deadline(tmp_path: Path, names):
    broker = EmbeddedBroker().start()
    config, topic = write_config(tmp_path, names.prefix)
    worker: Worker | None = None
    try:
        produce(broker.bootstrap_servers, topic, 50)
        worker = Worker(config, broker.bootstrap_servers, env={"SYNTHSTREAM_KAFKA_UNAVAILABLE_TIMEOUT_S": "4"})
        metrics = wait_for(worker.metrics_port, "the metrics port in the logs", 120)
        wait_for(lambda: records_in(metrics) >= 50, "the first records", 120)
        broker.stop()
        worker.proc.wait(timeout=90)
    finally:
        if worker is not None:
            worker.finish()
        broker.stop()
    assert worker.proc.returncode == 1
    assert_all_json(worker.lines)  # the final error too, in JSON mode
    failures = [e for e in worker.events() if e.get("event") == "cli.failed"]
    assert len(failures) == 1, worker.lines[-10:]
    assert failures[0]["error"].startswith("lost Kafka at 127.0.0.1:")
    assert "unavailable_timeout_s" in failures[0]["error"]
    assert not any("Traceback" in line for line in worker.lines)
