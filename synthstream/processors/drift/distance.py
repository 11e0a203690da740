"""Distribution distances (PSI, Jensen-Shannon) and the stream-drift monitor built on them.

* **PSI** (population stability index), ``sum((a - e) * ln(a / e))`` over bins, with
  expected shares ``e`` from a reference and actual shares ``a`` from the window. Shares
  are smoothed with half a count per bin (Jeffreys), so an empty bin gives a large but
  finite value. Conventional reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25
  significant; those are the default warning/critical thresholds.
* **Jensen-Shannon distance** (base 2): the square root of the JS divergence, symmetric and
  bounded in [0, 1]; used where neither side is "the expected one" (real against synthetic).

:class:`StreamDistanceMonitor` compares each closed window with the sum of the
``reference_windows`` windows before it, on every monitored field: it measures how much the
stream changed lately, independently of any model (the staleness monitor measures the model).
A trailing reference forgets a shift after ``reference_windows`` windows, so the drift clears
by itself once the stream is stable again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.distance import jensenshannon

from synthstream.processors.drift.signals import Observation, Thresholds, WindowRef

__all__ = ["STATISTICS", "StatisticName", "StreamDistanceMonitor", "js_distance", "psi"]

StatisticName = Literal["psi", "js"]
Counts: TypeAlias = NDArray[np.int64] | NDArray[np.float64]


def _smoothed(counts: Counts) -> NDArray[np.float64]:
    c: NDArray[np.float64] = np.asarray(counts, dtype=np.float64) + 0.5
    shares: NDArray[np.float64] = c / c.sum()
    return shares


def psi(expected: Counts, actual: Counts) -> float:
    """Population stability index of ``actual`` bin counts against ``expected`` ones.

    >>> psi([50, 50], [50, 50])
    0.0
    >>> round(psi([80, 20], [20, 80]), 2)
    1.65
    """
    e, a = _smoothed(expected), _smoothed(actual)
    if e.shape != a.shape:
        raise ValueError(f"bin counts differ in length: {e.size} and {a.size}")
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(p: Counts, q: Counts) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two bin-count vectors.

    >>> js_distance([1, 0], [0, 1])
    1.0
    >>> js_distance([3, 1], [6, 2])
    0.0
    """
    p_arr, q_arr = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p_arr.shape != q_arr.shape:
        raise ValueError(f"bin counts differ in length: {p_arr.size} and {q_arr.size}")
    if p_arr.sum() <= 0 or q_arr.sum() <= 0:
        return 0.0
    value = float(jensenshannon(p_arr, q_arr, base=2))
    return 0.0 if np.isnan(value) else min(1.0, max(0.0, value))


#: Distance functions by name: (reference counts, window counts) -> value.
STATISTICS: Mapping[StatisticName, Callable[[Counts, Counts], float]] = {"psi": psi, "js": js_distance}


def statistic_function(name: str) -> Callable[[Counts, Counts], float]:
    """The distance function called ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return STATISTICS[name]  # type: ignore[index]  # a plain str is checked here, at run time
    except KeyError:
        raise ValueError(f"unknown statistic {name!r}; choose from {sorted(STATISTICS)}") from None


class StreamDistanceMonitor:
    """Each closed window against the trailing ``reference_windows`` windows, per field."""

    def __init__(
        self,
        *,
        statistic: StatisticName = "psi",
        thresholds: Thresholds,
        reference_windows: int = 5,
        min_reference_windows: int = 1,
    ) -> None:
        self._distance = statistic_function(statistic)
        if not 1 <= min_reference_windows <= reference_windows:
            raise ValueError("need 1 <= min_reference_windows <= reference_windows")
        self.statistic = statistic
        self.thresholds = thresholds
        self.reference_windows = reference_windows
        self.min_reference_windows = min_reference_windows
        self._trailing: deque[dict[str, NDArray[np.int64]]] = deque(maxlen=reference_windows)

    def __repr__(self) -> str:
        return (
            f"StreamDistanceMonitor(statistic={self.statistic!r}, thresholds={self.thresholds!r}, "
            f"reference_windows={self.reference_windows})"
        )

    def reference(self) -> dict[str, NDArray[np.int64]]:
        """Summed bin counts of the trailing windows, per field (empty before the first window)."""
        out: dict[str, NDArray[np.int64]] = {}
        for window in self._trailing:
            for name, counts in window.items():
                out[name] = out[name] + counts if name in out else counts.copy()
        return out

    def reset(self) -> None:
        """Forget the trailing windows (e.g. when the binning changes)."""
        self._trailing.clear()

    def observe(
        self, window: WindowRef, histograms: Mapping[str, NDArray[np.int64]], model_version: int | None = None
    ) -> list[Observation]:
        """Compare ``window``'s histograms with the trailing reference, then add it to the reference."""
        out: list[Observation] = []
        if len(self._trailing) >= self.min_reference_windows:
            reference = self.reference()
            for name, counts in histograms.items():
                if name in reference:
                    value = self._distance(reference[name], counts)
                    out.append(
                        Observation("distance", (name,), self.statistic, value, self.thresholds, window, model_version)
                    )
        self._trailing.append({name: counts.copy() for name, counts in histograms.items()})
        return out
