"""Model staleness: how far recent windows are from the promoted model's training distribution.

The promoted version's :class:`~synthstream.processors.drift.profile.TrainingProfile`
(stored with the version by :class:`synthstream.streams.drift.ProfileHook`) is
the reference: each closed window is binned with the profile's own bins and compared
with the profile's shares, per field. Unlike stream drift, staleness does not fade while
the stream stays shifted: it persists until a version trained on the new data is promoted,
which makes it the natural retrain trigger.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from synthstream.processors.drift.distance import StatisticName, statistic_function
from synthstream.processors.drift.profile import Column, TrainingProfile
from synthstream.processors.drift.signals import Observation, Thresholds, WindowRef

__all__ = ["StalenessMonitor"]


class StalenessMonitor:
    """Each closed window against the training profile of the promoted version."""

    def __init__(self, *, statistic: StatisticName = "psi", thresholds: Thresholds) -> None:
        self._distance = statistic_function(statistic)
        self.statistic = statistic
        self.thresholds = thresholds
        self.profile: TrainingProfile | None = None
        self.version: int | None = None

    def __repr__(self) -> str:
        return f"StalenessMonitor(statistic={self.statistic!r}, thresholds={self.thresholds!r}, version={self.version})"

    def use(self, profile: TrainingProfile | None, version: int | None) -> None:
        """Measure against ``profile`` (of model ``version``) from now on; ``None`` pauses the monitor."""
        self.profile = profile
        self.version = version

    def observe(self, window: WindowRef, columns: Mapping[str, Column]) -> list[Observation]:
        """The window's distance to the training profile, per profiled field (none without a profile)."""
        profile = self.profile
        if profile is None:
            return []
        out: list[Observation] = []
        for name, column in columns.items():
            field = profile.fields.get(name)
            if field is None or field.rows == 0:
                continue
            counts = field.histogram(column)
            expected = np.asarray(field.counts, dtype=np.float64)
            value = self._distance(expected, counts)
            out.append(Observation("staleness", (name,), self.statistic, value, self.thresholds, window, self.version))
        return out
