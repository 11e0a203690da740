"""The training buffer: the most recent records for the next retrain, and a control set never trained on.

Bounded by construction (a ring of ``max_records``), so memory stays flat however long
the stream runs. It holds records after the redaction hook only.

With ``holdout_share > 0`` every arriving record is routed, by a seeded coin flip, either
to the training ring or to the *control set* (the holdout). A record routed to the control
set never enters the ring, so no model ever trains on it: the privacy audit compares what
attacks learn about training records with what they learn about these unseen ones. The
control set is a reservoir of at most ``holdout_max`` records (Vitter's algorithm R), so it
stays a uniform random sample of every record ever routed to it, however long the stream.

The coin flips and the reservoir draws come from two independent seeded generators, so the
split depends only on the seed and the arrival order, not on how records were batched.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from itertools import compress
from typing import Any

import numpy as np

Record = dict[str, Any]


class TrainingBuffer:
    """A thread-safe ring of the latest ``max_records`` training records plus a bounded control set.

    ``snapshot()`` returns the training records (what the trainer fits on); ``holdout()``
    returns the control set (what the auditor attacks against). ``holdout_share`` is the
    probability that an arriving record goes to the control set; ``holdout_max`` caps it.
    """

    def __init__(
        self,
        max_records: int = 20_000,
        *,
        holdout_share: float = 0.0,
        holdout_max: int = 10_000,
        seed: int = 0,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if not 0.0 <= holdout_share < 1.0:
            raise ValueError("holdout_share must be in [0, 1): 0 keeps no control set")
        if holdout_max < 1:
            raise ValueError("holdout_max must be at least 1")
        self.max_records = max_records
        self.holdout_share = float(holdout_share)
        self.holdout_max = holdout_max
        self.seed = seed
        self._ring: deque[Record] = deque(maxlen=max_records)
        self._reservoir: list[Record] = []
        self._lock = threading.Lock()
        self._total = 0
        self._holdout_seen = 0
        split_seq, reservoir_seq = np.random.SeedSequence(seed).spawn(2)
        self._split_rng = np.random.default_rng(split_seq)
        self._reservoir_rng = np.random.default_rng(reservoir_seq)

    def __repr__(self) -> str:
        return (
            f"TrainingBuffer(max_records={self.max_records}, holdout_share={self.holdout_share}, "
            f"holdout_max={self.holdout_max}, seed={self.seed})"
        )

    def __len__(self) -> int:
        """Training records held (the control set is not counted)."""
        return len(self._ring)

    @property
    def total_seen(self) -> int:
        """Records ever appended, training and control (including those that have since fallen out)."""
        return self._total

    @property
    def holdout_seen(self) -> int:
        """Records ever routed to the control set (the reservoir keeps at most ``holdout_max``)."""
        return self._holdout_seen

    @property
    def holdout_size(self) -> int:
        """Records in the control set now."""
        return len(self._reservoir)

    def extend(self, records: Iterable[Record]) -> int:
        """Append records, routing each to training or control; return how many arrived.

        The oldest training records fall out past ``max_records``; the control set is
        updated reservoir-style. Cost per record: one vectorised coin flip and, for records
        routed to the control set only, one comparison (measured in the README).
        """
        batch = records if isinstance(records, list) else list(records)
        if not batch:
            return 0
        with self._lock:
            self._total += len(batch)
            if self.holdout_share == 0.0:
                self._ring.extend(batch)
                return len(batch)
            to_control = self._split_rng.random(len(batch)) < self.holdout_share
            if not to_control.any():
                self._ring.extend(batch)
                return len(batch)
            self._ring.extend(compress(batch, (~to_control).tolist()))
            self._add_to_reservoir(list(compress(batch, to_control.tolist())))
        return len(batch)

    def _add_to_reservoir(self, control: list[Record]) -> None:
        """Algorithm R: the t-th control record (0-based) replaces a random slot with probability cap/(t+1)."""
        cap = self.holdout_max
        seen = self._holdout_seen
        draws = self._reservoir_rng.random(len(control))
        free = max(0, min(cap - seen, len(control)))  # the first records fill the reservoir
        if free:
            self._reservoir.extend(control[:free])
        if free < len(control):
            # Record t (0-based over all control records) takes slot floor(u * (t + 1)) when it is < cap.
            t = np.arange(seen + free, seen + len(control), dtype=np.float64)
            slots = (draws[free:] * (t + 1.0)).astype(np.int64)
            hits = np.flatnonzero(slots < cap)
            reservoir = self._reservoir
            for slot, i in zip(slots[hits].tolist(), (hits + free).tolist(), strict=True):
                reservoir[slot] = control[i]  # in arrival order: a later record overwrites an earlier one
        self._holdout_seen = seen + len(control)

    def snapshot(self) -> list[Record]:
        """Return a copy of the buffered training records, oldest first (never a control record)."""
        with self._lock:
            return list(self._ring)

    def holdout(self) -> list[Record]:
        """Return a copy of the control set: records no model has trained on, in reservoir order."""
        with self._lock:
            return list(self._reservoir)
