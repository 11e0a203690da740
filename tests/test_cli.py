"""The command line, run as a user would: subprocesses against the session broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from synthstream.demo import sample_path
from synthstream.models.registry import ModelRegistry

CLI = [sys.executable, "-m", "synthstream"]


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_demo_prints_its_summary_and_exits_zero(tmp_path: Path):
    result = run_cli("demo", "--records", "2000", "--synthetic", "3000", "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "synthstream demo summary" in out
    assert "2,003" in out  # records in: 2,000 sample rows + 3 bad ones
    assert "3 (malformed_json=1" in out
    assert "3,000" in out
    assert "status" in out and "ok" in out
    assert ModelRegistry(tmp_path / "models", out.split("stream '")[1].split("'")[0]).current() is not None


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


def test_infer_schema_prints_roles(shared_data: Path):
    result = run_cli("infer-schema", str(shared_data / "transactions" / "fraudTrain_prefix.csv"), "--output", "avro")
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
