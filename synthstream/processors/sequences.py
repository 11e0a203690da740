"""Sequences from the stream: per-entity keyed state and sliding windows over one long series.

:class:`EntitySequences` keeps, per entity (``entity_field``, optionally cut by calendar
``period``: station x day), its latest events ordered by ``time_field``. Memory is bounded
twice: at most ``max_events_per_entity`` events per entity (the oldest fall out) and at most
``max_entities`` entities (the least recently updated is evicted whole). Nothing is lost
silently: :class:`SequenceCounters` counts every record skipped (no entity, no time),
every event dropped by the per-entity bound, every entity evicted and the events that
went with it, and events that arrived out of order (kept, inserted in time order).

:class:`SlidingWindows` cuts a single long series (a sensor, a taxi-demand count) into
windows of ``length`` events every ``stride`` events, keeping at most ``max_windows``
(oldest evicted, counted).

Both are pure (no I/O) and also implement the ingest stage's ``BatchObserver`` protocol
(``observe``/``tick``/``close``) so the pipeline can feed them redacted micro-batches;
``tick`` logs the counters (names and counts only) when they changed, at most every
``report_every_s`` seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from synthstream.config import SequenceConfig
from synthstream.log import get_logger
from synthstream.schemas.time_text import parse_time_text

__all__ = [
    "EntitySequences",
    "SequenceCounters",
    "SlidingWindows",
    "event_time_us",
    "sequence_state_from_config",
    "sliding_windows",
]

Record = dict[str, Any]
Period = Literal["none", "day", "week"]
PERIODS: tuple[Period, ...] = ("none", "day", "week")
_DAY_US = 86_400_000_000
_WEEK_US = 7 * _DAY_US
_MONDAY_US = 4 * _DAY_US  # 1970-01-05 was a Monday
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


def event_time_us(value: Any) -> int | None:
    """An event time as epoch microseconds: aware/naive (taken as UTC) datetime, ISO string or epoch seconds.

    ``None`` when the value is missing or cannot be read as a time. Numbers (and digit strings)
    are read as epoch seconds: for the keyed state that only orders events, which is right for
    integer periods too (a year 1987, a year-month 198703); their calendar meaning is the
    sequence model's :class:`~synthstream.models.sequence_time.TimeCodec`. ``period: day/week``
    bucketing needs real timestamps or epoch numbers.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        delta = value - (_EPOCH_NAIVE if value.tzinfo is None else _EPOCH)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return round(value * 1_000_000) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if text[:1].isdigit() and text.replace(".", "", 1).isdigit():
            # a number written as text ("1987", "198703"): read as a number, which keeps the order of
            # integer periods; the model reads the field's true kind (models/sequence_time.py)
            return event_time_us(float(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            # dated text the sequence model reads too (schemas/time_text.py): Jan 1 2000, 2010/01/01 00:00
            written = parse_time_text(text)
            return None if written is None else event_time_us(written)
        return event_time_us(parsed)
    return None


@dataclass
class SequenceCounters:
    """What the keyed state did with the records it was given; nothing disappears uncounted."""

    records_seen: int = 0
    accepted: int = 0
    skipped_no_entity: int = 0
    skipped_no_time: int = 0
    out_of_order: int = 0
    events_dropped: int = 0
    entities_evicted: int = 0
    events_evicted: int = 0
    windows_emitted: int = 0
    windows_evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        """Plain dict of the counters."""
        return asdict(self)


class _Entity:
    """One entity's events (and their times), oldest first."""

    __slots__ = ("events", "times")

    def __init__(self, cap: int) -> None:
        self.events: deque[Record] = deque(maxlen=cap)
        self.times: deque[int] = deque(maxlen=cap)


class _Reporter:
    """Logs counters when they changed, at most every ``every_s`` seconds.

    Records skipped since the last report (no readable time, no entity) are also logged as a
    ``sequences.skipped`` warning naming the field and why, never a value: a time field written
    in a way nothing reads would otherwise leave the sequence feed idle with only an info line.
    """

    def __init__(self, name: str, every_s: float, time_field: str, entity_field: str | None = None) -> None:
        self.every_s = every_s
        self.time_field = time_field
        self.entity_field = entity_field
        self._last_at = time.monotonic()
        self._last: dict[str, int] = {}
        self._log = get_logger(name)

    def maybe_report(self, counters: SequenceCounters, *, force: bool = False, **extra: int) -> bool:
        now = time.monotonic()
        current = counters.as_dict()
        if not force and (now - self._last_at < self.every_s or current == self._last):
            return False
        before, self._last_at, self._last = self._last, now, current
        self._log.info("sequences.state", **current, **extra)
        no_time = current["skipped_no_time"] - before.get("skipped_no_time", 0)
        no_entity = current["skipped_no_entity"] - before.get("skipped_no_entity", 0)
        if no_time or no_entity:
            reasons = []
            if no_time:
                reasons.append(
                    f"{no_time} without a readable time in {self.time_field!r} (null, or not a timestamp, "
                    "ISO or dated text, or a number)"
                )
            if no_entity:
                reasons.append(f"{no_entity} without a value in the entity field {self.entity_field!r}")
            self._log.warning(
                "sequences.skipped",
                skipped_no_time=no_time,
                skipped_no_entity=no_entity,
                records_seen=current["records_seen"],
                accepted=current["accepted"],
                message=f"records left out of the sequences: {'; '.join(reasons)}",
            )
        return True


class EntitySequences:
    """Per-entity sequences in bounded keyed state (see the module docstring).

    Examples
    --------
    >>> state = EntitySequences("card", "ts", max_entities=2, max_events_per_entity=2)
    >>> state.process([{"card": c, "ts": t} for c, t in [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("c", 5)]])
    5
    >>> sorted(state.sequences())
    ['a', 'c']
    >>> state.counters.events_dropped, state.counters.entities_evicted, state.counters.events_evicted
    (1, 1, 1)

    """

    def __init__(
        self,
        entity_field: str,
        time_field: str,
        *,
        period: Period = "none",
        max_entities: int = 10_000,
        max_events_per_entity: int = 1_000,
        report_every_s: float = 60.0,
    ) -> None:
        if not entity_field or not time_field or entity_field == time_field:
            raise ValueError("entity_field and time_field must be two different field names")
        if period not in PERIODS:
            raise ValueError(f"period must be one of {list(PERIODS)}; got {period!r}")
        for name, value in (("max_entities", max_entities), ("max_events_per_entity", max_events_per_entity)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if report_every_s <= 0:
            raise ValueError("report_every_s must be positive")
        self.entity_field = entity_field
        self.time_field = time_field
        self.period: Period = period
        self.max_entities = max_entities
        self.max_events_per_entity = max_events_per_entity
        self.report_every_s = report_every_s
        self.counters = SequenceCounters()
        self._entities: OrderedDict[Hashable, _Entity] = OrderedDict()
        self._events = 0
        self._lock = threading.Lock()
        self._reporter = _Reporter("processors.sequences", report_every_s, time_field, entity_field)
        self._bucket = {"none": _no_bucket, "day": _day_bucket, "week": _week_bucket}[period]

    def __repr__(self) -> str:
        return (
            f"EntitySequences(entity_field={self.entity_field!r}, time_field={self.time_field!r}, "
            f"period={self.period!r}, max_entities={self.max_entities}, "
            f"max_events_per_entity={self.max_events_per_entity})"
        )

    def __len__(self) -> int:
        return len(self._entities)

    @property
    def events(self) -> int:
        """Events held across all entities (at most ``max_entities * max_events_per_entity``)."""
        return self._events

    def __call__(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Same as :meth:`process`."""
        return self.process(records)

    def process(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add records to their entities' sequences; return how many were accepted."""
        accepted = 0
        with self._lock:
            for record in records:
                accepted += self._add(record)
        return accepted

    def _add(self, record: Mapping[str, Any]) -> int:
        counters = self.counters
        counters.records_seen += 1
        entity = record.get(self.entity_field)
        if entity is None or (isinstance(entity, float) and math.isnan(entity)):
            counters.skipped_no_entity += 1
            return 0
        stamp = event_time_us(record.get(self.time_field))
        if stamp is None:
            counters.skipped_no_time += 1
            return 0
        key: Hashable = (entity, self._bucket(stamp)) if self.period != "none" else entity
        state = self._entities.get(key)
        if state is None:
            if len(self._entities) >= self.max_entities:
                self._evict_oldest()
            state = self._entities[key] = _Entity(self.max_events_per_entity)
        else:
            self._entities.move_to_end(key)
        self._insert(state, dict(record), stamp)
        counters.accepted += 1
        return 1

    def _insert(self, state: _Entity, record: Record, stamp: int) -> None:
        times, events = state.times, state.events
        full = len(times) == self.max_events_per_entity
        if not times or stamp >= times[-1]:
            if full:
                self.counters.events_dropped += 1  # the oldest falls out of the bounded deque
            else:
                self._events += 1
            times.append(stamp)
            events.append(record)
            return
        self.counters.out_of_order += 1
        position = len(times) - 1
        while position > 0 and times[position - 1] > stamp:
            position -= 1
        if full:
            if position == 0:
                self.counters.events_dropped += 1  # older than everything kept: this one is the oldest
                return
            times.popleft()
            events.popleft()
            position -= 1
            self.counters.events_dropped += 1
        else:
            self._events += 1
        times.insert(position, stamp)
        events.insert(position, record)

    def _evict_oldest(self) -> None:
        _, state = self._entities.popitem(last=False)
        self.counters.entities_evicted += 1
        self.counters.events_evicted += len(state.events)
        self._events -= len(state.events)

    def sequences(self) -> dict[Hashable, list[Record]]:
        """A copy of every entity's events in time order (keys are entity values, or (entity, period))."""
        with self._lock:
            return {key: list(state.events) for key, state in self._entities.items()}

    def snapshot(self, *, min_events: int = 1) -> list[list[Record]]:
        """The sequences with at least ``min_events`` events, least recently updated first."""
        with self._lock:
            return [list(s.events) for s in self._entities.values() if len(s.events) >= min_events]

    def clear(self) -> None:
        """Forget all state (counters are kept)."""
        with self._lock:
            self._entities.clear()
            self._events = 0

    # -- BatchObserver ---------------------------------------------------------------------------

    async def observe(self, records: Sequence[Record], sources: Sequence[Any]) -> None:
        """Take one redacted micro-batch (``sources`` are not needed: state is keyed by entity)."""
        self.process(records)

    async def tick(self) -> None:
        """Report the counters when they changed."""
        self._reporter.maybe_report(self.counters, entities=len(self._entities), events_held=self._events)

    async def close(self) -> None:
        """Report the final counters."""
        self._reporter.maybe_report(self.counters, force=True, entities=len(self._entities), events_held=self._events)


def _no_bucket(stamp: int) -> int:
    return 0


def _day_bucket(stamp: int) -> int:
    return stamp // _DAY_US


def _week_bucket(stamp: int) -> int:
    return (stamp - _MONDAY_US) // _WEEK_US


class SlidingWindows:
    """Windows of ``length`` consecutive events every ``stride`` events over one long series.

    Events are expected in time order; one older than the last seen is counted under
    ``out_of_order`` and dropped from the series (a window must be contiguous in time).

    Examples
    --------
    >>> windows = SlidingWindows("ts", length=3, stride=2, max_windows=10)
    >>> windows.process([{"ts": t} for t in range(8)])
    8
    >>> [[e["ts"] for e in w] for w in windows.windows()]
    [[0, 1, 2], [2, 3, 4], [4, 5, 6]]

    """

    def __init__(
        self,
        time_field: str,
        *,
        length: int,
        stride: int,
        max_windows: int = 2_000,
        report_every_s: float = 60.0,
    ) -> None:
        if not time_field:
            raise ValueError("time_field must be a field name")
        for name, value in (("length", length), ("stride", stride), ("max_windows", max_windows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if length < 2:
            raise ValueError("length must be at least 2 events")
        if report_every_s <= 0:
            raise ValueError("report_every_s must be positive")
        self.time_field = time_field
        self.length = length
        self.stride = stride
        self.max_windows = max_windows
        self.report_every_s = report_every_s
        self.counters = SequenceCounters()
        self._recent: deque[Record] = deque(maxlen=length)
        self._windows: deque[list[Record]] = deque(maxlen=max_windows)
        self._last_time: int | None = None
        self._since_window = 0
        self._lock = threading.Lock()
        self._reporter = _Reporter("processors.sequences", report_every_s, time_field)

    def __repr__(self) -> str:
        return (
            f"SlidingWindows(time_field={self.time_field!r}, length={self.length}, stride={self.stride}, "
            f"max_windows={self.max_windows})"
        )

    def __len__(self) -> int:
        return len(self._windows)

    def __call__(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Same as :meth:`process`."""
        return self.process(records)

    def process(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append events; emit a window whenever ``stride`` events passed and ``length`` are held."""
        accepted = 0
        with self._lock:
            for record in records:
                accepted += self._add(record)
        return accepted

    def _add(self, record: Mapping[str, Any]) -> int:
        counters = self.counters
        counters.records_seen += 1
        stamp = event_time_us(record.get(self.time_field))
        if stamp is None:
            counters.skipped_no_time += 1
            return 0
        if self._last_time is not None and stamp < self._last_time:
            counters.out_of_order += 1
            counters.events_dropped += 1
            return 0
        self._last_time = stamp
        self._recent.append(dict(record))
        counters.accepted += 1
        self._since_window += 1
        first = counters.windows_emitted == 0 and len(self._recent) == self.length
        if first or (counters.windows_emitted > 0 and self._since_window >= self.stride):
            if len(self._windows) == self.max_windows:
                counters.windows_evicted += 1
            self._windows.append(list(self._recent))
            counters.windows_emitted += 1
            self._since_window = 0
        return 1

    def windows(self) -> list[list[Record]]:
        """A copy of the kept windows, oldest first."""
        with self._lock:
            return [list(w) for w in self._windows]

    def snapshot(self, *, min_events: int = 1) -> list[list[Record]]:
        """Same as :meth:`windows` (the sequences to train on)."""
        return [w for w in self.windows() if len(w) >= min_events]

    async def observe(self, records: Sequence[Record], sources: Sequence[Any]) -> None:
        """Take one redacted micro-batch."""
        self.process(records)

    async def tick(self) -> None:
        """Report the counters when they changed."""
        self._reporter.maybe_report(self.counters, windows=len(self._windows))

    async def close(self) -> None:
        """Report the final counters."""
        self._reporter.maybe_report(self.counters, force=True, windows=len(self._windows))


def sliding_windows(items: Sequence[Any], length: int, stride: int) -> list[list[Any]]:
    """Cut ``items`` into windows of ``length`` starting every ``stride`` (the batch form of :class:`SlidingWindows`).

    >>> sliding_windows(list(range(7)), 3, 2)
    [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    """
    if length < 1 or stride < 1:
        raise ValueError("length and stride must be positive")
    return [list(items[i : i + length]) for i in range(0, len(items) - length + 1, stride)]


def sequence_state_from_config(config: SequenceConfig) -> EntitySequences | SlidingWindows:
    """The keyed state a pipeline's ``sequence`` section asks for (entities or windows of one series)."""
    if config.time_field is None:
        raise ValueError("sequence.time_field is required")
    if config.mode == "windows":
        return SlidingWindows(
            config.time_field,
            length=config.window_length,
            stride=config.window_stride,
            max_windows=config.max_windows,
        )
    if config.entity_field is None:
        raise ValueError("sequence.entity_field is required in entities mode")
    return EntitySequences(
        config.entity_field,
        config.time_field,
        period=config.period,
        max_entities=config.max_entities,
        max_events_per_entity=config.max_events_per_entity,
    )
