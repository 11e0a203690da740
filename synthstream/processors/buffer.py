"""The training buffer: the most recent records, bounded, for the next retrain.

Bounded by construction (a ring of ``max_records``), so memory stays flat however long
the stream runs. It holds records after the redaction hook only.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

Record = dict[str, Any]


class TrainingBuffer:
    """A thread-safe ring of the latest ``max_records`` records with arrival counters."""

    def __init__(self, max_records: int = 20_000) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.max_records = max_records
        self._ring: deque[Record] = deque(maxlen=max_records)
        self._lock = threading.Lock()
        self._total = 0

    def __repr__(self) -> str:
        return f"TrainingBuffer(max_records={self.max_records})"

    def __len__(self) -> int:
        return len(self._ring)

    @property
    def total_seen(self) -> int:
        """Records ever appended (including those that have since fallen out)."""
        return self._total

    def extend(self, records: Iterable[Record]) -> int:
        """Append records (the oldest fall out past the bound); return how many were added."""
        batch = list(records)
        with self._lock:
            self._ring.extend(batch)
            self._total += len(batch)
        return len(batch)

    def snapshot(self) -> list[Record]:
        """Return a copy of the buffered records, oldest first."""
        with self._lock:
            return list(self._ring)
