"""Without a terminal, ``synthstream run`` says its status in log lines (``pipeline.status``).

A run under a log collector once waited minutes for an audit control set it could not reach
and said nothing. The status logger is fed a stand-in pipeline whose activity changes; lines
come when the activity's kind changes (numbers aside), not on every progress tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs

from synthstream.cli import _status_log
from synthstream.log import configure_logging
from synthstream.streams.status import RunStatus

ACTIVITIES = [
    "waiting for the audit's control set: 9 of 10 records held out",
    "waiting for the audit's control set: 9 of 10 records held out",
    "training v1 (10% epoch 1/10)",
    "training v1 (60% epoch 6/10)",
    "publishing v1",
    "publishing v1",
]


class _Run:
    """A stand-in for the pipeline: only what the status logger reads (its status and names)."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(stream="s")
        self.role = "all"
        self.calls = 0
        self.seen_all = asyncio.Event()

    def status(self) -> RunStatus:
        activity = ACTIVITIES[min(self.calls, len(ACTIVITIES) - 1)]
        self.calls += 1
        if self.calls >= len(ACTIVITIES) + 3:
            self.seen_all.set()
        return RunStatus("all", 100 * self.calls, 0, 1, None, 0, activity)


@pytest.fixture
def _info_level() -> Iterator[None]:
    """The suite logs at WARNING (conftest); these lines are info."""
    configure_logging(level="INFO")
    yield
    configure_logging(level="WARNING")


@pytest.mark.usefixtures("_info_level")
async def test_status_lines_follow_the_activity_not_its_progress_numbers() -> None:
    run = _Run()
    with capture_logs() as logs:
        task = asyncio.create_task(_status_log(run, check_s=0.001, quiet_s=0.0, heartbeat_s=1_000.0))  # type: ignore[arg-type]
        await asyncio.wait_for(run.seen_all.wait(), timeout=10)
        task.cancel()
    lines = [e for e in logs if e["event"] == "pipeline.status"]
    assert [e["activity"] for e in lines] == [ACTIVITIES[0], ACTIVITIES[2], ACTIVITIES[4]]
    assert all(e["log_level"] == "info" and e["records_in"] > 0 for e in lines)
