"""What a running pipeline is doing, in one line: counts and the current activity.

``synthstream run`` shows :meth:`RunStatus.line` as a live status line on a terminal, and
``/health`` carries :attr:`RunStatus.activity`, so a run that waits (a rejected version, a
spent budget, a stalled fit, a lost broker) says so instead of going quiet. The activity is
read from the pipeline's own objects; nothing here changes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthstream.streams.pipeline import Pipeline

__all__ = ["RunStatus", "run_status"]


@dataclass(frozen=True)
class RunStatus:
    """A snapshot of a run: counts and one phrase for what it is doing now."""

    role: str
    records_in: int
    dead_letters: int
    versions: int
    promoted: int | None
    published: int
    activity: str

    def line(self) -> str:
        """The status line, e.g. ``in 12,000 | dead 3 | versions 2 (v2 live) | published 5,000 | publishing v2``."""
        live = f"v{self.promoted} live" if self.promoted is not None else "none live"
        return (
            f"[{self.role}] in {self.records_in:,} | dead letters {self.dead_letters:,} | "
            f"versions {self.versions} ({live}) | published {self.published:,} | {self.activity}"
        )


def run_status(pipeline: Pipeline) -> RunStatus:
    """Read ``pipeline``'s counts and decide its activity phrase (most pressing first)."""
    summary = pipeline.summary()
    current = pipeline.registry.current()
    promoted = current.version if current is not None else None
    return RunStatus(
        role=pipeline.role,
        records_in=summary.counters.records_in,
        dead_letters=summary.counters.dead_letters,
        versions=len(summary.model_versions),
        promoted=promoted,
        published=summary.synthetic_published,
        activity=_activity(pipeline, promoted),
    )


def _activity(pipeline: Pipeline, promoted: int | None) -> str:
    monitor = pipeline.monitor
    away = monitor.unavailable_for()
    if away > 0:
        limit = monitor.settings.unavailable_timeout_s
        return f"broker unavailable for {away:.0f} s, retrying (gives up after {limit:g} s)"
    scheduler = pipeline.scheduler
    if scheduler is not None:
        if scheduler.exhausted is not None:
            return f"training stopped: privacy budget exhausted ({scheduler.exhausted})"
        if scheduler.busy:
            progress = scheduler.progress
            if scheduler.stalled_s > 0 and progress is not None:
                return f"training v{progress[0]} stalled: no progress for {scheduler.stalled_s:.0f} s"
            if progress is not None:
                return f"training v{progress[0]} ({100 * progress[1]:.0f}% {progress[2]})".rstrip()
            return "training"
        if scheduler.last_rejected is not None and (promoted is None or promoted < scheduler.last_rejected[0]):
            version, reason = scheduler.last_rejected
            short = reason if len(reason) <= 80 else reason[:77] + "..."
            return f"waiting: version {version} rejected ({short}), retrying {scheduler.retry_hint()}"
        if promoted is None and pipeline.trains:
            needed = scheduler.config.min_records - len(scheduler.buffer)
            if needed > 0:
                return f"waiting for data: {needed} more records before the first fit"
    if pipeline.publisher is not None and promoted is None:
        return "waiting for a promoted model version"
    if pipeline.consumes and not pipeline.consuming.is_set():
        return "joining the consumer group"
    if pipeline.publisher is not None and promoted is not None:
        return f"publishing v{promoted}"
    if pipeline.stage is not None and pipeline.stage.idle_seconds() > 1.0:
        return "caught up, waiting for records"
    return "consuming"
