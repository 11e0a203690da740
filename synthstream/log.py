"""Structured logging: structlog, console or JSON lines, on stderr.

Loggers are bound with stream/topic/partition/offset by the stages that emit them.
Record values never go into a log line: events carry names, counts and coordinates.

Everything that logs in the process goes through the same renderer: structlog's own
loggers directly, and the standard library's (aiokafka, kafka, asyncio, ``warnings``)
through :class:`structlog.stdlib.ProcessorFormatter`, so ``--json-logs`` output is JSON on
every line even while a client library reports a lost broker. Client libraries repeat the
same complaint on every retry (thousands of lines a minute while a broker is down):
:class:`RepeatFilter` lets one line per message template through per interval and counts
the rest; the pipeline's own ``broker.lost`` / ``broker.restored`` events say what matters.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

#: Standard-library loggers of the client libraries whose per-retry messages are throttled.
NOISY_LIBRARIES: tuple[str, ...] = (
    "aiokafka",
    "kafka",
    "asyncio",
    "faust",
    "mode",
    "httpx",
    "httpcore",
    "confluent_kafka",
)
#: A repeated library message is let through at most once per this many seconds.
REPEAT_INTERVAL_S = 30.0


class RepeatFilter(logging.Filter):
    """Let a client library's message template through once per ``interval_s``; count the rest.

    The key is (logger name, unformatted message template), so "Unable connect to node 0"
    retried every 100 ms for five minutes is one line every ``interval_s`` carrying
    ``suppressed=<n>`` (how many were dropped since the last one). Other loggers pass untouched.
    """

    def __init__(self, prefixes: tuple[str, ...] = NOISY_LIBRARIES, interval_s: float = REPEAT_INTERVAL_S) -> None:
        super().__init__()
        if interval_s < 0:
            raise ValueError("interval_s must be >= 0")
        self.prefixes = prefixes
        self.interval_s = interval_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RepeatFilter(prefixes={self.prefixes!r}, interval_s={self.interval_s})"

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is emitted (the first of its kind in the interval)."""
        name = record.name
        if not any(name == p or name.startswith(p + ".") for p in self.prefixes):
            return True
        key = (name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._seen.get(key, (-float("inf"), 0))
            if now - last < self.interval_s:
                self._seen[key] = (last, suppressed + 1)
                return False
            self._seen[key] = (now, 0)
        if suppressed:
            record.suppressed = suppressed
        return True


#: Where every log line goes: ``sys.stderr`` as it was when logging was configured, or what
#: :func:`set_log_stream` installed (a live status display). Not ``sys.stderr`` looked up per write:
#: faust/mode replace it with a proxy that logs what is written, which would loop.
_stream: TextIO = sys.stderr


def set_log_stream(stream: TextIO) -> TextIO:
    """Send log lines to ``stream`` from now on (e.g. a rich Live display's proxy); return the previous one."""
    global _stream
    previous, _stream = _stream, stream
    return previous


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # StreamHandler is generic in typeshed only
    """A handler that writes to the log stream of :func:`set_log_stream` at the time of the write."""

    def __init__(self) -> None:
        super().__init__(_stream)

    @property
    def stream(self) -> TextIO:
        return _stream

    @stream.setter
    def stream(self, value: TextIO) -> None:
        return None


class _StderrLogger:
    """structlog's sink: one rendered line per event to the log stream."""

    def msg(self, message: str) -> None:
        """Write one rendered event."""
        stream = _stream
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = failure = err = msg


def _stderr_logger_factory(*args: Any) -> _StderrLogger:
    return _StderrLogger()


def _add_suppressed(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event.get("_record")
    suppressed = getattr(record, "suppressed", None)
    if suppressed:
        event["suppressed_repeats"] = suppressed
    return event


#: The arguments of the last :func:`configure_logging` call, so child processes log the same way.
_settings: dict[str, Any] | None = None


def logging_settings() -> dict[str, Any] | None:
    """How this process configured logging (``configure_logging``'s arguments), or None if it did not."""
    return None if _settings is None else dict(_settings)


def configure_logging(*, json: bool = False, level: str = "INFO") -> None:
    """Configure structlog and the standard library's logging once for the process (CLI entry point).

    Both write one line per event to stderr with the same renderer (JSON lines with ``json``).
    Client libraries log at WARNING and above only, throttled by :class:`RepeatFilter`.
    """
    global _settings
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    _settings = {"json": json, "level": level}
    set_log_stream(sys.stderr)
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=_stderr_logger_factory,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            timestamper,
            _add_suppressed,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))
    logging.captureWarnings(True)


def get_logger(name: str, **bound: Any) -> Any:
    """Return a structlog logger bound with ``component=name`` and any extra keys.

    The logger is a lazy proxy: it picks up :func:`configure_logging` even when it was
    created at import time, before the entry point configured logging.
    """
    return structlog.get_logger(component=name, **bound)
