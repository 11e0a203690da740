"""What a running pipeline is doing, in one line: counts and the current activity.

``synthstream run`` shows :meth:`RunStatus.line` as a live status line on a terminal, and
``/health`` carries :attr:`RunStatus.activity`, so a run that waits (the backlog before the
first fit, a rejected version and its retry, a stalled stream, a spent budget, a stalled fit, a
lost broker) says so instead of going quiet. :func:`closing_log` writes the run's last log line:
what was published, and why nothing when nothing was. The activity is
read from the pipeline's own objects; nothing here changes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from synthstream.log import get_logger

if TYPE_CHECKING:
    from synthstream.streams.pipeline import Pipeline

__all__ = ["RunStatus", "closing_log", "closing_words", "run_status"]


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
        published=summary.synthetic_published + summary.sequences_published,
        activity=_activity(pipeline, promoted),
    )


def _activity(pipeline: Pipeline, promoted: int | None) -> str:
    monitor = pipeline.monitor
    away = monitor.unavailable_for()
    if away > 0:
        limit = monitor.settings.unavailable_timeout_s
        return f"broker unavailable for {away:.0f} s, retrying (gives up after {limit:g} s)"
    unread = _sequences_unread(pipeline)
    if unread is not None:
        return unread
    scheduler = pipeline.scheduler
    if scheduler is not None:
        if scheduler.exhausted is not None:
            return f"training stopped: privacy budget exhausted ({scheduler.exhausted})"
        stalled = getattr(scheduler, "stream_stalled", None)
        if stalled is not None and not scheduler.busy:
            return f"stalled: {stalled}; retrying {scheduler.retry_hint()}"
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
        if promoted is None and pipeline.trains and scheduler.versions_trained == 0 and scheduler.fits_failed == 0:
            return scheduler.first_fit_hint()
    waiting = _sequences_waiting(pipeline)
    if waiting is not None:
        return waiting
    if pipeline.publisher is not None and promoted is None:
        return "waiting for a promoted model version"
    if pipeline.consumes and not pipeline.consuming.is_set():
        return "joining the consumer group"
    if pipeline.publisher is not None and promoted is not None:
        return f"publishing v{promoted}"
    if pipeline.stage is not None and pipeline.stage.idle_seconds() > 1.0:
        return "caught up, waiting for records"
    return "consuming"


def _sequences_unread(pipeline: Pipeline) -> str | None:
    """The phrase for a sequence state that has seen records and kept none of them, else None."""
    state = pipeline.sequence_state
    if state is None:
        return None
    c = state.counters
    if c.records_seen == 0 or c.accepted > 0:
        return None
    parts = []
    if c.skipped_no_time:
        parts.append(f"{c.skipped_no_time:,} without a readable time in {state.time_field!r}")
    if c.skipped_no_entity:
        parts.append(f"{c.skipped_no_entity:,} without an entity in {getattr(state, 'entity_field', None)!r}")
    return f"sequences: none of {c.records_seen:,} records kept ({', '.join(parts) or 'see sequences.state'})"


def _sequences_waiting(pipeline: Pipeline) -> str | None:
    """The phrase for a sequence model that cannot train yet: too few sequences held."""
    scheduler, state = pipeline.sequence_scheduler, pipeline.sequence_state
    if scheduler is None or state is None or scheduler.versions_trained or scheduler.busy:
        return None
    held, needed = len(state), scheduler.config.min_sequences
    if held >= needed:
        return None
    return f"sequences: waiting for {needed:,} sequences ({held:,} held; lower sequence.min_sequences for fewer)"


def closing_words(pipeline: Pipeline) -> tuple[str, str]:
    """The run's last log line: (level, message) saying what was published, and why nothing if nothing was.

    A run stopped (SIGTERM) after every version was rejected still exits 0; this line is
    where the operator reads that nothing was published and why. A role that trains but does
    not publish says whether a version was promoted.
    """
    publisher = pipeline.publisher
    published = publisher.published if publisher is not None else 0
    scheduler = pipeline.scheduler
    sequences = pipeline.sequence_publisher
    if sequences is not None:  # the sequence feed is said too (a sequence-only run once said "0 published")
        feed = f"{sequences.published} synthetic sequence records published"
        if publisher is None and scheduler is None:  # a sequence-only run
            if sequences.published == 0:
                return "warning", f"stopped: {feed}: {_sequence_shortfall(pipeline)}"
            return "info", f"stopped: {feed}"
        if published > 0 and sequences.published > 0:
            return "info", f"stopped: {published} synthetic records and {feed}"
    if published > 0 or (publisher is None and scheduler is None):
        return "info", f"stopped: {published} synthetic records published"
    current = pipeline.registry.current()
    if current is not None:
        if publisher is None:
            return "info", f"stopped: v{current.version} is promoted (this role does not publish)"
        return "warning", f"stopped: nothing was published although v{current.version} is promoted"
    nothing = "nothing was published" if publisher is not None else "no version was promoted"
    if scheduler is None:
        return "warning", f"stopped: {nothing}: no promoted version appeared in the registry"
    if scheduler.last_rejected is not None:
        version, reason = scheduler.last_rejected
        short = reason if len(reason) <= 200 else reason[:197] + "..."
        return (
            "warning",
            f"stopped: {nothing}: {scheduler.versions_rejected} version(s) trained and all rejected "
            f"by the audit (last: v{version}: {short})",
        )
    if scheduler.exhausted is not None:
        return "warning", f"stopped: {nothing}: the model privacy budget is spent ({scheduler.exhausted})"
    if scheduler.fits_failed:
        return "warning", f"stopped: {nothing}: {scheduler.fits_failed} fit(s) failed and none succeeded"
    if scheduler.busy or scheduler.progress is not None:
        return "warning", f"stopped: {nothing}: the first fit had not finished"
    return "warning", f"stopped: {nothing}: no fit yet ({scheduler.first_fit_hint()})"


def _sequence_shortfall(pipeline: Pipeline) -> str:
    """Why a sequence-only run published nothing (names and counts only)."""
    unread = _sequences_unread(pipeline) or _sequences_waiting(pipeline)
    if unread is not None:
        return unread
    scheduler = pipeline.sequence_scheduler
    if scheduler is not None and scheduler.fits_failed and not scheduler.versions_trained:
        return f"{scheduler.fits_failed} sequence fit(s) failed and none succeeded"
    if scheduler is not None and not scheduler.versions_trained:
        return "no sequence model was trained yet"
    return "no sequence version was published"


def closing_log(pipeline: Pipeline) -> None:
    """Log :func:`closing_words` as ``pipeline.stopped`` (with the published count)."""
    level, message = closing_words(pipeline)
    published = pipeline.publisher.published if pipeline.publisher is not None else 0
    sequences = pipeline.sequence_publisher.published if pipeline.sequence_publisher is not None else 0
    log = get_logger("pipeline", stream=pipeline.config.stream, role=pipeline.role)
    emit = log.warning if level == "warning" else log.info
    emit("pipeline.stopped", published=published, sequence_records_published=sequences, message=message)
