"""Offset-aligned tumbling count windows over a micro-batched stream, per source partition.

Window ``k`` of a partition holds the records with offsets ``k * size`` to
``(k + 1) * size - 1``. Aligning windows to offsets (not to arrival counts) is what makes
drift events idempotent under redelivery: after a restart from the last committed offset,
a window is rebuilt with the same identity, so the events about it get the same id. A
window closes as soon as its last offset arrives (or a later one, if the partition has
gaps); windows holding less than ``min_fill`` of ``size`` records (the partial first
window after a restart) are counted in ``skipped`` and not evaluated.

The windows keep columns, not records: float arrays for numeric fields and category
counts for categorical ones, plus the strongest detector hit per field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthstream.processors.drift.detectors import Detection
from synthstream.processors.drift.profile import Column
from synthstream.processors.drift.signals import WindowRef

__all__ = ["BatchCoords", "ClosedWindow", "OffsetWindows"]


@dataclass(frozen=True)
class BatchCoords:
    """Source coordinates of a micro-batch, one entry per record, in batch order."""

    topics: Sequence[str]
    partitions: NDArray[np.int64]
    offsets: NDArray[np.int64]
    timestamps_ms: NDArray[np.int64]

    @classmethod
    def of(cls, sources: Sequence[Any]) -> BatchCoords:
        """Coordinates of records with ``topic``/``partition``/``offset``/``timestamp`` attributes."""
        n = len(sources)
        return cls(
            topics=[s.topic for s in sources],
            partitions=np.fromiter((s.partition for s in sources), dtype=np.int64, count=n),
            offsets=np.fromiter((s.offset for s in sources), dtype=np.int64, count=n),
            timestamps_ms=np.fromiter((s.timestamp for s in sources), dtype=np.int64, count=n),
        )

    def __len__(self) -> int:
        return len(self.topics)


@dataclass(frozen=True)
class ClosedWindow:
    """A complete window: its coordinates, its columns and the strongest detection per field."""

    ref: WindowRef
    columns: dict[str, Column]
    detections: dict[str, Detection]


@dataclass
class _Open:
    topic: str
    partition: int
    index: int
    first_offset: int
    last_offset: int = -1
    records: int = 0
    start_ms: int = 2**62
    end_ms: int = -(2**62)
    numeric: dict[str, list[NDArray[np.float64]]] = field(default_factory=dict)
    categorical: dict[str, Counter[Any]] = field(default_factory=dict)
    detections: dict[str, Detection] = field(default_factory=dict)

    def close(self) -> ClosedWindow:
        columns: dict[str, Column] = {n: np.concatenate(parts) for n, parts in self.numeric.items()}
        columns.update(self.categorical)
        ref = WindowRef(
            topic=self.topic,
            partition=self.partition,
            index=self.index,
            first_offset=self.first_offset,
            last_offset=self.last_offset,
            records=self.records,
            start=datetime.fromtimestamp(self.start_ms / 1000.0, UTC),
            end=datetime.fromtimestamp(self.end_ms / 1000.0, UTC),
        )
        return ClosedWindow(ref=ref, columns=columns, detections=dict(self.detections))


def _stronger(a: Detection | None, b: Detection) -> Detection:
    if a is None:
        return b
    return b if b.value / b.threshold > a.value / a.threshold else a


class OffsetWindows:
    """Cuts a stream of column batches into offset-aligned windows of ``size`` records per partition."""

    def __init__(self, size: int, numeric: Sequence[str], categorical: Sequence[str], *, min_fill: float = 0.5) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1 record")
        if not 0.0 < min_fill <= 1.0:
            raise ValueError("min_fill must be in (0, 1]")
        overlap = sorted(set(numeric) & set(categorical))
        if overlap:
            raise ValueError(f"fields {overlap} are both numeric and categorical")
        self.size = size
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.min_fill = min_fill
        #: Windows dropped because they held less than ``min_fill`` of ``size`` records.
        self.skipped = 0
        self.closed = 0
        self._open: dict[tuple[str, int], _Open] = {}

    def __repr__(self) -> str:
        return f"OffsetWindows(size={self.size}, fields={len(self.numeric) + len(self.categorical)})"

    @property
    def open_windows(self) -> int:
        """Windows currently filling (one per partition seen)."""
        return len(self._open)

    def add(
        self,
        numeric: Mapping[str, NDArray[np.float64]],
        categorical: Mapping[str, Sequence[Any]],
        coords: BatchCoords,
        detections: Sequence[Detection] = (),
    ) -> list[ClosedWindow]:
        """Add one batch's columns (same order as ``coords``); return the windows it completed."""
        n = len(coords)
        if n == 0:
            return []
        size = self.size
        windows = coords.offsets // size
        hits: dict[tuple[str, int, int], list[Detection]] = {}
        for det in detections:
            pos = det.position
            key = (coords.topics[pos], int(coords.partitions[pos]), int(windows[pos]))
            hits.setdefault(key, []).append(det)
        out: list[ClosedWindow] = []
        for (topic, partition), idx in self._groups(coords).items():
            w = windows[idx]
            cuts = np.flatnonzero(np.diff(w)) + 1
            for seg in np.split(idx, cuts) if cuts.size else [idx]:
                index = int(windows[seg[0]])
                out.extend(self._append(topic, partition, index, seg, n, numeric, categorical, coords, hits))
        return out

    def _groups(self, coords: BatchCoords) -> dict[tuple[str, int], NDArray[np.int64]]:
        first = (coords.topics[0], int(coords.partitions[0]))
        parts = coords.partitions
        if (parts == parts[0]).all() and all(t == first[0] for t in coords.topics):
            return {first: np.arange(len(coords), dtype=np.int64)}
        groups: dict[tuple[str, int], list[int]] = {}
        for i, (t, p) in enumerate(zip(coords.topics, parts.tolist(), strict=True)):
            groups.setdefault((t, p), []).append(i)
        return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}

    def _append(
        self,
        topic: str,
        partition: int,
        index: int,
        seg: NDArray[np.int64],
        n: int,
        numeric: Mapping[str, NDArray[np.float64]],
        categorical: Mapping[str, Sequence[Any]],
        coords: BatchCoords,
        hits: Mapping[tuple[str, int, int], list[Detection]],
    ) -> list[ClosedWindow]:
        out: list[ClosedWindow] = []
        key = (topic, partition)
        current = self._open.get(key)
        if current is not None and current.index != index:
            out.extend(self._finish(key))
            current = None
        if current is None:
            current = self._open[key] = _Open(topic, partition, index, first_offset=int(coords.offsets[seg[0]]))
        whole = seg.size == n
        for name in self.numeric:
            column = numeric[name]
            current.numeric.setdefault(name, []).append(column if whole else column[seg])
        for name in self.categorical:
            values = categorical[name]
            counter = current.categorical.setdefault(name, Counter())
            counter.update(values if whole else [values[i] for i in seg.tolist()])
        for det in hits.get((topic, partition, index), ()):
            current.detections[det.field] = _stronger(current.detections.get(det.field), det)
        current.records += int(seg.size)
        current.last_offset = int(coords.offsets[seg[-1]])
        stamps = coords.timestamps_ms[seg]
        current.start_ms = min(current.start_ms, int(stamps.min()))
        current.end_ms = max(current.end_ms, int(stamps.max()))
        if current.last_offset >= (index + 1) * self.size - 1:
            out.extend(self._finish(key))
        return out

    def _finish(self, key: tuple[str, int]) -> list[ClosedWindow]:
        window = self._open.pop(key)
        if window.records < self.min_fill * self.size:
            self.skipped += 1
            return []
        self.closed += 1
        return [window.close()]
