"""Structured logging: structlog, console or JSON lines, on stderr.

Loggers are bound with stream/topic/partition/offset by the stages that emit them.
Record values never go into a log line: events carry names, counts and coordinates.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure_logging(*, json: bool = False, level: str = "INFO") -> None:
    """Configure structlog once for the process (called by the CLI entry point)."""
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **bound: Any) -> Any:
    """Return a structlog logger bound with ``component=name`` and any extra keys.

    The logger is a lazy proxy: it picks up :func:`configure_logging` even when it was
    created at import time, before the entry point configured logging.
    """
    return structlog.get_logger(component=name, **bound)
