"""Operator errors end the command with one clear line, exit code 1 and no traceback.

Run as an operator would (subprocesses): no broker at the bootstrap servers, a read-only
state directory, a broker port that is taken. Plus the pure pieces: OS causes found deep
in an exception chain, the log filter that keeps a lost broker from flooding the logs.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthstream.connectors.broker import free_port
from synthstream.connectors.statedir import check_state_dir, explain_os_error
from synthstream.demo import sample_path
from synthstream.errors import StateDirError
from synthstream.log import RepeatFilter

CLI = [sys.executable, "-m", "synthstream"]


def run_cli(*args: str, prefix: list[str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80"}  # narrow on purpose: the error must stay one line
    return subprocess.run(
        [*(prefix or []), *CLI, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def write_config(tmp_path: Path, state_dir: Path) -> Path:
    config = {
        "stream": "clierr",
        "source": {"topic": "clierr.source", "sample_file": str(sample_path())},
        "state_dir": str(state_dir),
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


def test_no_broker_at_start_is_one_line_naming_the_bootstrap_servers(tmp_path: Path):
    port = free_port()  # nothing listens there
    result = run_cli("run", "--config", str(write_config(tmp_path, tmp_path / "state")), "-b", f"127.0.0.1:{port}")
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("error: cannot reach Kafka at ") and f"127.0.0.1:{port}" in line


def test_replay_and_drain_without_a_broker_fail_the_same_way(tmp_path: Path):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    replay = run_cli("replay", str(sample_path()), "--topic", "t", "--limit", "5", "-b", bootstrap)
    drain = run_cli("drain", "t", "--parquet", str(tmp_path / "t.parquet"), "-b", bootstrap)
    for result in (replay, drain):
        assert result.returncode == 1
        assert bootstrap in one_line(result)


def _read_only_prefix(target: Path) -> list[str] | None:
    """A command prefix that runs the CLI with ``target`` read-only: a private read-only tmpfs as root."""
    if os.geteuid() != 0:
        target.chmod(0o555)
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    probe = subprocess.run(
        [unshare, "-m", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {target}"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return None
    return [unshare, "-m", "sh", "-c", f'mount -t tmpfs -o ro tmpfs {target} && exec "$@"', "sh"]


def test_read_only_state_dir_is_one_clear_line(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    prefix = _read_only_prefix(state)
    if prefix is None:
        pytest.skip("cannot make a read-only directory here (root without mount namespaces)")
    result = run_cli("run", "--config", str(write_config(tmp_path, state)), "-b", "127.0.0.1:1", prefix=prefix)
    assert result.returncode == 1
    line = one_line(result)
    assert str(state) in line
    assert "read-only" in line or "permission denied" in line


def test_state_dir_under_a_file_names_the_cause(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateDirError, match="is not usable: a path component is a file"):
        check_state_dir(blocker / "state")
    assert check_state_dir(tmp_path / "fresh" / "state").is_dir()  # created and probed
    assert not list((tmp_path / "fresh" / "state").iterdir())  # the probe file is gone


def test_taken_broker_port_is_one_clear_line():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli("broker", "--port", str(port), timeout=60)
    assert result.returncode == 1
    line = one_line(result)
    assert f"port {port}" in line and "already in use" in line


def test_os_cause_is_found_under_a_database_error():
    # DuckDB reports a full disk, then fails its rollback: the real cause is two links down.
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/var/lib/x/privacy.duckdb.wal")
        except OSError as full:
            raise RuntimeError("TransactionContext Error: cannot rollback - no transaction is active") from full
    except RuntimeError as exc:
        text = explain_os_error(exc, Path("/var/lib/x"))
    assert text == "cannot write to /var/lib/x/privacy.duckdb.wal: no space left on the device"
    textual = RuntimeError('IO Error: Could not write file "a.wal": No space left on device')
    assert explain_os_error(textual, "/state") == "cannot write to /state: no space left on the device"
    assert explain_os_error(ValueError("nothing of the sort")) is None


def test_repeated_library_messages_are_throttled():
    flt = RepeatFilter(interval_s=60)

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, ("x",), None)

    passed = [flt.filter(record("aiokafka.conn", "Unable connect to node %s")) for _ in range(500)]
    assert passed.count(True) == 1
    assert flt.filter(record("aiokafka", "another message %s"))  # a different template passes
    assert all(flt.filter(record("synthstream.x", "ours %s")) for _ in range(3))  # not a library logger
