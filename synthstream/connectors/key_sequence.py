"""Unique, deterministic record keys for a synthetic feed, across restarts and replicas.

A key is ``<stream>:v<model version>:<instance>:<sequence>``:

- ``instance`` identifies the state directory's publisher identity: given, or a random id made
  once and kept in ``<directory>/instance-id`` (so a restart keeps it; replicas with their own
  state directories get different ones);
- ``sequence`` never repeats within an instance and model version: numbers are *reserved* in
  blocks under an exclusive file lock on ``<directory>/<name>.<scope>.next`` (the first number
  nobody has reserved; the scope is the model version, so each version counts from 0),
  written and fsynced before any of them is used. A restart starts after the last reserved
  block (the unused rest of a block is skipped, never reused), and replicas that share the
  state directory (and so the instance id) reserve disjoint blocks.

So no two records ever get the same key, whether a publisher restarts, crashes mid-block or
runs beside another replica; keys are deterministic given the directory's state.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
import threading
from pathlib import Path

from synthstream.errors import StateDirError

_INSTANCE_FILE = "instance-id"


class KeySequence:
    """Sequence numbers reserved in blocks from a counter file in ``directory`` (see the module doc)."""

    def __init__(self, directory: Path, name: str, *, instance_id: str | None = None, block: int = 10_000) -> None:
        if not name or "/" in name or name in {".", ".."}:
            raise ValueError(f"name must be a non-empty file name, not {name!r}")
        if block < 1:
            raise ValueError(f"block must be >= 1, not {block}")
        if instance_id is not None and (not instance_id or ":" in instance_id):
            raise ValueError("instance_id must be non-empty and free of ':' (the key separator)")
        self.directory = Path(directory)
        self.name = name
        self.block = block
        self.directory.mkdir(parents=True, exist_ok=True)
        self.instance_id = instance_id or self._persisted_instance()
        self._blocks: dict[str, tuple[int, int]] = {}  # scope -> the reserved block [next, end)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeySequence(directory={str(self.directory)!r}, name={self.name!r}, instance_id={self.instance_id!r})"

    def counter_path(self, scope: str = "") -> Path:
        """The file holding the first sequence number of ``scope`` nobody has reserved."""
        return self.directory / (f"{self.name}.{scope}.next" if scope else f"{self.name}.next")

    def _persisted_instance(self) -> str:
        path = self.directory / _INSTANCE_FILE
        with _Locked(self.directory / f"{_INSTANCE_FILE}.lock"):
            if path.exists():
                text = path.read_text(encoding="utf-8").strip()
                if text:
                    return text
            instance = secrets.token_hex(4)
            _write_atomically(path, instance)
            return instance

    def take(self, n: int, scope: str = "") -> int:
        """Reserve ``n`` consecutive sequence numbers of ``scope`` and return the first."""
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        if "/" in scope:
            raise ValueError(f"scope must be usable in a file name, not {scope!r}")
        with self._lock:
            nxt, end = self._blocks.get(scope, (0, 0))
            if end - nxt < n:
                nxt, end = self._reserve(max(n, self.block), scope)
            self._blocks[scope] = (nxt + n, end)
            return nxt

    def _reserve(self, size: int, scope: str) -> tuple[int, int]:
        with _Locked(self.directory / f"{self.name}.lock"):
            path = self.counter_path(scope)
            try:
                start = int(path.read_text(encoding="utf-8").strip() or 0) if path.exists() else 0
            except ValueError:
                raise StateDirError(f"{path} does not hold a sequence number; refusing to guess one") from None
            _write_atomically(path, str(start + size))
        return start, start + size

    def prefix(self, stream: str, version: int) -> str:
        """The key prefix of records of ``stream`` from model ``version`` published by this instance."""
        return f"{stream}:v{version}:{self.instance_id}:"


class _Locked:
    """An exclusive ``flock`` on a lock file, across processes (and threads holding separate descriptors)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
