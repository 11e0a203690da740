"""The command line, run as a user would: subprocesses against the session broker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from synthstream.demo import sample_path
from synthstream.models.registry import ModelRegistry
from tests.helpers import TRANSACTIONS_CSV

CLI = [sys.executable, "-m", "synthstream"]


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps table cells to the terminal width
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env)


def _row(table: str, label: str) -> str:
    """The value cell of the row of a rich summary table whose label cell starts with ``label``."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 4 and cells[1].startswith(label):
            return cells[2]
    raise AssertionError(f"no row {label!r} in the table:\n{table}")


def test_demo_prints_its_summary_and_exits_zero(tmp_path: Path):
    result = run_cli("demo", "--records", "2000", "--synthetic", "3000", "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "synthstream demo summary" in out
    assert _row(out, "records in (source topic)") == "2,003"  # 2,000 sample rows + 3 bad ones
    assert _row(out, "dead letters").startswith("3 (malformed_json=1")
    assert _row(out, "synthetic records out") == "3,000"
    assert _row(out, "status") == "ok"  # the exact status cell; a failed demo lists its problems there
    assert ModelRegistry(tmp_path / "models", out.split("stream '")[1].split("'")[0]).current() is not None
    assert "DP statistics windows" in out and "over any 10 windows" in out
    assert (tmp_path / "privacy.duckdb").is_file()
    # The registry path: confluent-kafka's AvroDeserializer read all 3,000 under one registry id,
    # and the source and synthetic subjects are <topic>-value in the embedded registry.
    assert re.fullmatch(r"schema ids \d+ \(3,000 records\)", _row(out, "by confluent-kafka AvroDeserializer"))
    stream = out.split("stream '")[1].split("'")[0]
    assert f"{stream}-value" in out and f"{stream}.synthetic-value" in out


def test_budget_shows_spent_and_remaining_from_the_ledger(tmp_path: Path):
    from datetime import UTC, datetime

    from synthstream.privacy.accounting import Spend, epsilon_to_rho
    from synthstream.privacy.ledger import PrivacyLedger, Release

    state = tmp_path / "state"
    ledger = PrivacyLedger(state / "privacy.duckdb")
    rho_w = epsilon_to_rho(2.0, 1e-6)
    now = datetime.now(UTC)
    for window in range(3):
        ledger.commit_window(
            stream="payments", scope="stats", unit="record", window_index=window, window_start=now, window_end=now,
            releases=[Release("count", "gaussian", Spend(rho=rho_w / 4))], budget=Spend(rho=rho_w), w=4, payload={},
        )  # fmt: skip
    config = {
        "stream": "payments",
        "source": {"topic": "payments", "sample_file": str(sample_path())},
        "stats": {"enabled": True, "epsilon_w": 2.0, "w": 4},
        "state_dir": str(state),
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("budget", "--config", str(tmp_path / "p.yaml"), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(result.stdout)
    assert row["stream"] == "payments" and row["windows"] == 3 and row["refusals"] == 0
    assert row["spent_rho"] == pytest.approx(3 * rho_w / 4)
    assert row["remaining_rho"] == pytest.approx(rho_w / 4)
    assert 0 < row["remaining_epsilon"] < row["spent_epsilon"] < 2.0
    table = run_cli("budget", "--config", str(tmp_path / "p.yaml"))
    assert table.returncode == 0 and "privacy budget" in table.stdout
    missing = run_cli("budget", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode != 0


def test_replay_run_drain_and_models_against_a_broker(broker, names, tmp_path: Path):
    bootstrap = broker.bootstrap_servers
    source = names.topic("payments")
    schemas = names.topic("schemas")
    config_path = tmp_path / "pipeline.yaml"
    config = {
        "stream": names.prefix,
        "source": {"topic": source, "sample_file": str(sample_path()), "group_id": names.group()},
        "training": {"every_records": 1_000, "min_records": 200},
        "publisher": {"rate": 0, "max_records": 1_500},
        "audit": {"enabled": False},  # the gate has its own tests; this one is about the commands
        "topics": {
            "synthetic": names.topic("synthetic"),
            "deadletter": names.topic("dlq"),
            "models": names.topic("models"),
            "schemas": schemas,
        },
        "state_dir": str(tmp_path / "state"),
    }
    config_path.write_text(yaml.safe_dump(config))

    replay = run_cli(
        "replay",
        str(sample_path()),
        "--topic",
        source,
        "--format",
        "avro",
        "--limit",
        "1000",
        "--schemas-topic",
        schemas,
        "-b",
        bootstrap,
    )
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert "replayed 1000 records" in replay.stdout

    run = run_cli("run", "--config", str(config_path), "-b", bootstrap, "--log-level", "WARNING")
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["synthetic_published"] == 1_500
    assert summary["records_in"] == summary["processed"] + summary["dead_letters"]
    assert summary["dead_letters"] == 0
    assert summary["model_versions"]

    parquet = tmp_path / "synthetic.parquet"
    drained = run_cli(
        "drain", names.topic("synthetic"), "--parquet", str(parquet), "--schemas-topic", schemas, "-b", bootstrap
    )
    assert drained.returncode == 0, drained.stderr[-2000:]
    table = pq.read_table(parquet)
    assert table.num_rows == 1_500
    assert {"age", "education-num", "income", "_offset"} <= set(table.column_names)

    db = tmp_path / "out.duckdb"
    drained = run_cli(
        "drain",
        names.topic("synthetic"),
        "--duckdb",
        str(db),
        "--table",
        "synth",
        "--schemas-topic",
        schemas,
        "-b",
        bootstrap,
    )
    assert drained.returncode == 0, drained.stderr[-2000:]
    with duckdb.connect(str(db)) as con:
        count, adults = con.execute("SELECT count(*), count(*) FILTER (WHERE age >= 17) FROM synth").fetchone()
    assert count == adults == 1_500

    models = run_cli("models", "--config", str(config_path))
    assert models.returncode == 0, models.stderr[-2000:]
    assert "promoted" in models.stdout


def test_bad_config_lists_every_problem(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("stream: 'no spaces allowed'\nsource: {topic: t, format: xml}\npublisher: {rate: -5}\n")
    result = run_cli("run", "--config", str(path), "-b", "127.0.0.1:1")
    assert result.returncode == 2
    text = result.stderr
    assert "3 problem(s)" in text
    for where in ("stream", "source.format", "publisher.rate"):
        assert where in text


def test_infer_schema_prints_roles():
    result = run_cli("infer-schema", str(TRANSACTIONS_CSV), "--output", "avro")
    assert result.returncode == 0, result.stderr[-2000:]
    avro = json.loads(result.stdout)
    roles = {f["name"]: f["role"] for f in avro["fields"]}
    assert roles["trans_num"] == "identifier"
    assert roles["trans_date_trans_time"] == "datetime"
    assert roles["amt"] == "numeric"


def test_missing_file_is_a_clear_error(tmp_path: Path):
    result = run_cli("infer-schema", str(tmp_path / "nope.csv"))
    assert result.returncode == 2
    assert "nope.csv" in result.stderr


def test_broker_command_serves_until_interrupted():
    import signal
    import socket
    import time

    from synthstream.connectors.broker import free_port

    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "broker", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "broker never accepted connections"
                time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert f"127.0.0.1:{port}" in out
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
