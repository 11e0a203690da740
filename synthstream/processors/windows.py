"""Event-time tumbling windows of exact aggregates, with late records and contribution bounding.

:class:`Discretizer` maps field values to cells of a fixed domain (numeric bins from edges,
categorical labels, plus ``__other__`` for values outside a declared domain and ``__null__``
for missing values), so every window's marginals have the same shape and windows can be
combined.

:class:`WindowAggregator` keeps the exact aggregates of the open windows (total count, 1-way
and 2-way histograms, clipped sums) for micro-batches of records, vectorised with numpy:

- window ``i`` covers event times ``[i * L, (i + 1) * L)`` (epoch-aligned, so every process agrees);
- the watermark is the largest event time seen minus the grace period; a window closes when
  the watermark passes its end, and every window from the first one on is closed in order,
  empty ones included (skipping an empty window would itself reveal that it was empty);
- with several source partitions (``add(..., partitions=...)``), the watermark is the *smallest*
  of the partitions' largest event times, as in Kafka Streams and Flink: while a backlog is
  read one partition may run ahead of another by more than the grace period, and a global
  maximum would close windows whose records are still waiting in the lagging partition (they
  would all be "late"). When the caller knows which partitions still hold unread records
  (:meth:`WindowAggregator.hold`, from the consumer's positions and high-water marks), those
  and only those hold the watermark back, however long they take, and one that has delivered
  nothing yet holds it entirely; otherwise a partition that delivered nothing for
  ``partition_idle_s`` of processing time stops holding it (a quiet partition must not stall it);
- a record whose window has already closed is *late*: it is not counted and is returned to
  the caller, who routes it by policy (dead letter or counted) — never silently lost;
- after a restart the timeline resumes after the last released window (:meth:`WindowAggregator.resume_after`);
  windows below it that were never released (``reopen``) still take their records and close
  when the watermark passes them, so a window is never skipped because a later one was released;
- with an entity as the privacy unit, at most ``max_per_entity`` records of one entity count
  in a window; the excess is dropped and counted.

Nothing here adds noise: :mod:`synthstream.processors.dp_release` turns a closed window into a
DP release.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["AddResult", "Attribute", "ClosedWindow", "Discretizer", "WindowAggregator"]

OTHER = "__other__"
NULL = "__null__"

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Attribute:
    """One discretised field: numeric (bin ``edges``) or categorical (``labels``).

    Cells, in order: the bins (``len(edges) - 1``) or the labels, then ``__other__`` for
    categorical values outside the domain (when ``other``), then ``__null__`` (when ``nullable``).
    Numeric values outside the edges are clipped into the first/last bin.
    """

    name: str
    kind: str
    labels: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()
    nullable: bool = True
    other: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"attribute {self.name!r}: kind must be numeric or categorical, got {self.kind!r}")
        if self.kind == "numeric":
            if len(self.edges) < 2 or any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
                raise ValueError(f"attribute {self.name!r}: give at least two strictly increasing bin edges")
        elif len(set(self.labels)) != len(self.labels):
            raise ValueError(f"attribute {self.name!r}: categorical labels must be distinct")

    @property
    def cells(self) -> tuple[str, ...]:
        """Cell labels in order (bins are written ``[lo, hi)``)."""
        if self.kind == "numeric":
            base = tuple(f"[{lo:g}, {hi:g})" for lo, hi in zip(self.edges, self.edges[1:], strict=False))
        else:
            base = self.labels + ((OTHER,) if self.other else ())
        return base + ((NULL,) if self.nullable else ())

    @property
    def size(self) -> int:
        """Number of cells."""
        return len(self.cells)


class Discretizer:
    """Encodes records into cell indices for a fixed list of :class:`Attribute`."""

    def __init__(self, attributes: Sequence[Attribute]) -> None:
        names = [a.name for a in attributes]
        if len(set(names)) != len(names):
            raise ValueError("attribute names must be unique")
        self.attributes: dict[str, Attribute] = {a.name: a for a in attributes}
        self._lookup = {a.name: {label: i for i, label in enumerate(a.labels)} for a in attributes}

    def __repr__(self) -> str:
        return f"Discretizer(attributes={list(self.attributes)})"

    def encode(self, name: str, values: Sequence[Any]) -> IntArray:
        """Cell index of each value of field ``name``."""
        attr = self.attributes[name]
        n = len(values)
        if attr.kind == "numeric":
            nulls = np.fromiter((v is None for v in values), dtype=bool, count=n)
            numbers = np.fromiter((0.0 if v is None else float(v) for v in values), dtype=np.float64, count=n)
            nulls |= np.isnan(numbers)
            bins = len(attr.edges) - 1
            codes = np.searchsorted(np.asarray(attr.edges[1:-1]), numbers, side="right").astype(np.int64)
            codes = np.clip(codes, 0, bins - 1)
            if attr.nullable:
                codes[nulls] = bins
            return codes
        lookup = self._lookup[name]
        other = len(attr.labels)
        null = other + (1 if attr.other else 0)
        out = np.empty(n, dtype=np.int64)
        for i, v in enumerate(values):
            if v is None:
                out[i] = null if attr.nullable else other
            else:
                out[i] = lookup.get(v if isinstance(v, str) else str(v), other)
        if not attr.other and not attr.nullable:
            out = np.minimum(out, max(0, other - 1))
        return out


@dataclass
class _WindowState:
    count: int = 0
    marginals: dict[tuple[str, ...], IntArray] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    entity_counts: dict[Any, int] = field(default_factory=dict)
    dropped: int = 0


@dataclass(frozen=True)
class ClosedWindow:
    """Exact aggregates of one closed window (before any noise)."""

    index: int
    start_ms: int
    end_ms: int
    count: int
    marginals: Mapping[tuple[str, ...], IntArray]
    sums: Mapping[str, float]
    dropped_by_bounding: int


@dataclass(frozen=True)
class AddResult:
    """What happened to a micro-batch: positions of late records, how many were dropped by bounding.

    ``windows`` maps each open window this batch touched to the positions of its records (late
    ones excluded), so a caller can track which source offsets an unreleased window depends on.
    """

    late: tuple[int, ...]
    dropped: int
    counted: int
    windows: Mapping[int, tuple[int, ...]] = field(default_factory=dict)


class WindowAggregator:
    """Exact per-window aggregates of a record stream in event time (see the module docstring).

    Args:
        discretizer: the cells of every attribute.
        queries: the marginals to keep, as tuples of attribute names (1-way and 2-way).
        sums: numeric fields with clipping bounds, for clipped sums.
        window_ms: window length in milliseconds.
        grace_ms: how late (in event time) a record may arrive and still count.
        entity_field: the privacy unit's field (``None`` = each record is its own unit).
        max_per_entity: the most records of one entity counted per window (with ``entity_field``).
    """

    def __init__(
        self,
        discretizer: Discretizer,
        queries: Sequence[tuple[str, ...]],
        *,
        sums: Mapping[str, tuple[float, float]] | None = None,
        window_ms: int,
        grace_ms: int = 0,
        entity_field: str | None = None,
        max_per_entity: int = 1,
        partition_idle_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        problems = []
        if partition_idle_s <= 0:
            problems.append("partition_idle_s must be positive")
        if window_ms <= 0:
            problems.append("window_ms must be positive")
        if grace_ms < 0:
            problems.append("grace_ms must be >= 0")
        if max_per_entity < 1:
            problems.append("max_per_entity must be >= 1")
        for query in queries:
            if not 1 <= len(query) <= 2:
                problems.append(f"query {query}: only 1-way and 2-way marginals are kept")
            missing = [a for a in query if a not in discretizer.attributes]
            if missing:
                problems.append(f"query {query}: unknown attributes {missing}")
        for name, (lo, hi) in (sums or {}).items():
            if not hi > lo:
                problems.append(f"sum {name!r}: bounds must satisfy lower < upper")
        if problems:
            raise ValueError("; ".join(problems))
        self.discretizer = discretizer
        self.queries = [tuple(q) for q in dict.fromkeys(tuple(q) for q in queries)]
        self.sums = dict(sums or {})
        self.window_ms = int(window_ms)
        self.grace_ms = int(grace_ms)
        self.entity_field = entity_field
        self.max_per_entity = max_per_entity
        self._shapes = {q: tuple(discretizer.attributes[a].size for a in q) for q in self.queries}
        self._open: dict[int, _WindowState] = {}
        #: Index of the next window to close (None until the first record).
        self.next_to_close: int | None = None
        #: Windows below ``next_to_close`` that were never released (after a restart): still open.
        self._reopened: set[int] = set()
        self.max_event_ms: int | None = None
        self.partition_idle_s = float(partition_idle_s)
        self._clock = clock
        #: Per source partition: (largest event time seen, processing time it last delivered a record).
        self._partitions: dict[Hashable, tuple[int, float]] = {}
        #: Partitions known to hold unread records (None: unknown, fall back to the idle rule).
        self._lagging: set[Hashable] | None = None
        self.late_total = 0
        self.dropped_total = 0
        self.counted_total = 0

    def __repr__(self) -> str:
        return (
            f"WindowAggregator(queries={self.queries}, sums={sorted(self.sums)}, window_ms={self.window_ms}, "
            f"grace_ms={self.grace_ms}, entity_field={self.entity_field!r}, max_per_entity={self.max_per_entity})"
        )

    @property
    def open_windows(self) -> list[int]:
        """Indices of windows holding state."""
        return sorted(self._open)

    @property
    def reopened(self) -> list[int]:
        """Windows below the resumed timeline that were never released and are still open."""
        return sorted(self._reopened)

    def window_of(self, event_ms: int) -> int:
        """Index of the window holding event time ``event_ms``."""
        return event_ms // self.window_ms

    def resume_after(self, last_released: int, reopen: Sequence[int] = ()) -> None:
        """Continue a timeline whose windows up to ``last_released`` were already released (after a restart).

        ``reopen`` names windows below ``last_released`` that were never released: they are not
        late, take their records and are closed (in order, before newer ones) once the
        watermark passes their end.
        """
        self.next_to_close = last_released + 1
        self._reopened = {int(i) for i in reopen if int(i) <= last_released}

    def add(
        self,
        records: Sequence[Mapping[str, Any]],
        event_ms: Sequence[int],
        partitions: Sequence[Hashable] | None = None,
    ) -> AddResult:
        """Count a micro-batch; records of already-closed windows are returned as late, not counted.

        ``partitions`` (one per record, e.g. ``(topic, partition)``) makes the watermark the
        slowest partition's, so records still queued in a lagging partition are not made late.
        """
        if len(records) != len(event_ms) or (partitions is not None and len(partitions) != len(records)):
            raise ValueError("records, event_ms and partitions must have the same length")
        if not records:
            return AddResult((), 0, 0, {})
        times = np.asarray(event_ms, dtype=np.int64)
        windows = times // self.window_ms
        if self.next_to_close is None:
            self.next_to_close = int(windows.min())
        late_mask = windows < self.next_to_close
        if self._reopened:
            late_mask &= ~np.isin(windows, np.fromiter(self._reopened, dtype=np.int64))
        late = tuple(int(i) for i in np.flatnonzero(late_mask))
        self.late_total += len(late)
        batch_max = int(times.max())
        self.max_event_ms = batch_max if self.max_event_ms is None else max(self.max_event_ms, batch_max)
        if partitions is not None:
            now = self._clock()
            for key, ms in zip(partitions, event_ms, strict=True):
                seen = self._partitions.get(key)
                self._partitions[key] = (int(ms) if seen is None else max(seen[0], int(ms)), now)
        keep = np.flatnonzero(~late_mask)
        dropped = 0
        counted = 0
        touched: dict[int, tuple[int, ...]] = {}
        for window in np.unique(windows[keep]):
            positions = keep[windows[keep] == window]
            touched[int(window)] = tuple(int(p) for p in positions)
            state = self._open.setdefault(int(window), _WindowState())
            if self.entity_field is not None:
                positions, excess = self._bound(state, records, positions)
                dropped += excess
                state.dropped += excess
            self._accumulate(state, records, positions)
            counted += len(positions)
        self.dropped_total += dropped
        self.counted_total += counted
        return AddResult(late, dropped, counted, touched)

    def _bound(
        self, state: _WindowState, records: Sequence[Mapping[str, Any]], positions: IntArray
    ) -> tuple[IntArray, int]:
        assert self.entity_field is not None
        kept = []
        counts = state.entity_counts
        field_name = self.entity_field
        limit = self.max_per_entity
        for p in positions:
            key = records[int(p)].get(field_name)
            seen = counts.get(key, 0)
            if seen < limit:
                counts[key] = seen + 1
                kept.append(int(p))
        return np.asarray(kept, dtype=np.int64), len(positions) - len(kept)

    def _accumulate(self, state: _WindowState, records: Sequence[Mapping[str, Any]], positions: IntArray) -> None:
        if len(positions) == 0:
            return
        rows = [records[int(p)] for p in positions]
        state.count += len(rows)
        needed = {a for q in self.queries for a in q}
        codes = {a: self.discretizer.encode(a, [r.get(a) for r in rows]) for a in needed}
        for query in self.queries:
            shape = self._shapes[query]
            flat = codes[query[0]] if len(query) == 1 else codes[query[0]] * shape[1] + codes[query[1]]
            counts = np.bincount(flat, minlength=int(np.prod(shape))).astype(np.int64)
            if query in state.marginals:
                state.marginals[query] += counts
            else:
                state.marginals[query] = counts
        for name, (lo, hi) in self.sums.items():
            values = np.fromiter(
                (np.nan if r.get(name) is None else float(r[name]) for r in rows), dtype=np.float64, count=len(rows)
            )
            values = values[~np.isnan(values)]
            state.sums[name] = state.sums.get(name, 0.0) + float(np.clip(values, lo, hi).sum())

    def hold(self, lagging: Collection[Hashable]) -> None:
        """Name the partitions that still hold unread records (the rest are caught up and hold nothing back)."""
        self._lagging = set(lagging)

    def event_watermark(self) -> int | None:
        """Largest event time every partition with records still to come has reached.

        All records when partitions are not tracked; with :meth:`hold`, the slowest lagging
        partition (None while one of them has delivered nothing: it may hold any window's records).
        """
        if not self._partitions:
            return None if self._lagging else self.max_event_ms
        if self._lagging is not None:
            if not self._lagging:
                return self.max_event_ms
            if any(p not in self._partitions for p in self._lagging):
                return None
            return min(self._partitions[p][0] for p in self._lagging)
        cutoff = self._clock() - self.partition_idle_s
        active = [ms for ms, seen in self._partitions.values() if seen >= cutoff]
        return min(active) if active else self.max_event_ms

    def watermark(self, now_ms: int | None = None) -> int | None:
        """Event time up to which windows are complete: the event watermark - grace (or ``now_ms`` - grace if later)."""
        marks = [m for m in (self.event_watermark(), now_ms) if m is not None]
        return max(marks) - self.grace_ms if marks else None

    def close_due(self, now_ms: int | None = None, *, flush: bool = False) -> list[ClosedWindow]:
        """Close every window that ended before the watermark (all open ones with ``flush``), in order.

        Empty windows between the first window and the watermark are closed too (count 0).
        ``now_ms`` lets processing time advance the watermark when event time is the Kafka
        timestamp and the stream goes quiet.
        """
        if self.next_to_close is None:
            return []
        mark = self.watermark(now_ms)
        if flush:
            last = max([*self._open, *self._reopened, self.next_to_close - 1])
        elif mark is None:
            return []
        else:
            last = (mark // self.window_ms) - 1  # windows ending at or before the watermark
        closed = []
        for index in sorted(i for i in self._reopened if i <= last):
            self._reopened.discard(index)
            closed.append(self._closed(index, self._open.pop(index, _WindowState())))
        while self.next_to_close <= last:
            index = self.next_to_close
            state = self._open.pop(index, None) or _WindowState()
            closed.append(self._closed(index, state))
            self.next_to_close = index + 1
        return closed

    def _closed(self, index: int, state: _WindowState) -> ClosedWindow:
        marginals = {
            q: state.marginals.get(q, np.zeros(int(np.prod(self._shapes[q])), dtype=np.int64)) for q in self.queries
        }
        sums = {name: state.sums.get(name, 0.0) for name in self.sums}
        return ClosedWindow(
            index=index,
            start_ms=index * self.window_ms,
            end_ms=(index + 1) * self.window_ms,
            count=state.count,
            marginals=marginals,
            sums=sums,
            dropped_by_bounding=state.dropped,
        )

    def shape(self, query: tuple[str, ...]) -> tuple[int, ...]:
        """Cell grid of a kept query."""
        return self._shapes[query]
