"""Output divergence: the synthetic feed against the real stream it imitates.

Each closed window of synthetic records (from the ``<stream>.synthetic`` topic, one model
version at a time) is binned like the real windows and compared, per field, with the most
recent real windows (default: Jensen-Shannon distance, symmetric since neither side is
"expected"). It catches what staleness cannot: a model that fits its training data badly,
or a feed still produced by an old version after the stream moved.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from synthstream.processors.drift.distance import StatisticName, statistic_function
from synthstream.processors.drift.signals import Observation, Thresholds, WindowRef

__all__ = ["OutputDivergenceMonitor"]


class OutputDivergenceMonitor:
    """Synthetic windows against the sum of the last ``real_windows`` real windows, per field."""

    def __init__(self, *, statistic: StatisticName = "js", thresholds: Thresholds, real_windows: int = 5) -> None:
        self._distance = statistic_function(statistic)
        if real_windows < 1:
            raise ValueError("real_windows must be at least 1")
        self.statistic = statistic
        self.thresholds = thresholds
        self.real_windows = real_windows
        self._real: deque[dict[str, NDArray[np.int64]]] = deque(maxlen=real_windows)

    def __repr__(self) -> str:
        return (
            f"OutputDivergenceMonitor(statistic={self.statistic!r}, thresholds={self.thresholds!r}, "
            f"real_windows={self.real_windows})"
        )

    @property
    def has_real(self) -> bool:
        """Whether a real window has been seen (nothing is compared before)."""
        return bool(self._real)

    def add_real(self, histograms: Mapping[str, NDArray[np.int64]]) -> None:
        """Remember a closed real window's histograms (the oldest falls out)."""
        self._real.append({name: counts.copy() for name, counts in histograms.items()})

    def reset(self) -> None:
        """Forget the real windows (e.g. when the binning changes)."""
        self._real.clear()

    def observe(
        self, window: WindowRef, histograms: Mapping[str, NDArray[np.int64]], model_version: int | None
    ) -> list[Observation]:
        """Compare a synthetic window of ``model_version`` with the recent real windows."""
        if not self._real:
            return []
        real: dict[str, NDArray[np.int64]] = {}
        for past in self._real:
            for name, counts in past.items():
                real[name] = real[name] + counts if name in real else counts.copy()
        out: list[Observation] = []
        for name, counts in histograms.items():
            if name in real:
                value = self._distance(real[name], counts)
                out.append(
                    Observation("divergence", (name,), self.statistic, value, self.thresholds, window, model_version)
                )
        return out
