"""The state directory as an operator sees it: checked writable at start, OS errors named plainly.

A worker writes its model registry, privacy ledger (DuckDB) and caches under one state
directory. A read-only mount, a full disk or a missing permission used to surface as a raw
traceback deep inside DuckDB or pickle (``cannot rollback - no transaction is active`` with
the real cause buried). :func:`check_state_dir` probes the directory before anything else
(create, write, fsync, remove a probe file) and :func:`explain_os_error` turns the errno of
any failure, found anywhere in an exception's cause chain, into one sentence.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path

from synthstream.errors import StateDirError

__all__ = ["check_state_dir", "explain_os_error", "find_os_error"]

#: errno -> what the operator should read (the path is prefixed by :func:`explain_os_error`).
_CAUSES: dict[int, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (check the owner and mode of the directory)",
    errno.EPERM: "operation not permitted (check the owner and mode of the directory)",
    errno.ENOTDIR: "a path component is a file, not a directory",
    errno.EEXIST: "a file is in the way of the directory",
    errno.EIO: "an I/O error from the device",
}
#: Substrings of DuckDB/SQLite messages that carry an errno-like cause in text only.
_TEXT_CAUSES: tuple[tuple[str, int], ...] = (
    ("no space left on device", errno.ENOSPC),
    ("disk quota exceeded", errno.EDQUOT),
    ("read-only file system", errno.EROFS),
    ("permission denied", errno.EACCES),
)


def find_os_error(exc: BaseException) -> tuple[int, str | None] | None:
    """The first operator-level OS error (errno, filename) in ``exc``'s cause/context chain or group.

    DuckDB reports a full disk as an ``IOException`` whose text holds the OS message and then,
    on cleanup, ``cannot rollback``; the text is searched too so the real cause is found.
    """
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _CAUSES:
            filename = current.filename if isinstance(current.filename, str) else None
            return current.errno, filename
        text = str(current).lower()
        for needle, code in _TEXT_CAUSES:
            if needle in text:
                return code, None
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    return None


def explain_os_error(exc: BaseException, where: Path | str | None = None) -> str | None:
    """One sentence naming the OS-level cause of ``exc`` (and the path), or None when there is none."""
    found = find_os_error(exc)
    if found is None:
        return None
    code, filename = found
    place = filename or (str(where) if where is not None else None)
    cause = _CAUSES[code]
    return f"cannot write to {place}: {cause}" if place else f"cannot write: {cause}"


def check_state_dir(path: Path) -> Path:
    """Create ``path`` if needed and prove it writable: create, write, fsync and remove a probe file.

    Raises :class:`~synthstream.errors.StateDirError` with the cause (read-only file system,
    no space, permission denied) instead of letting the first model or ledger write fail later.
    """
    probe = path / f".synthstream-probe-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"synthstream state directory probe\n" * 32)
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink()
        cause = _CAUSES.get(exc.errno or -1, exc.strerror or type(exc).__name__)
        raise StateDirError(f"state directory {path} is not usable: {cause}") from None
    return path
