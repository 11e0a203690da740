"""What drift monitors report: windows, thresholds and one observation per field and window.

Every monitor turns a closed window into :class:`Observation` objects, one per monitored
field (or field group), whether or not the field drifted: the policy needs the quiet
windows too, to decide when a drift has cleared (hysteresis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

#: Which monitor produced an observation.
Monitor = Literal["detector", "distance", "staleness", "divergence"]
MONITORS: tuple[Monitor, ...] = ("detector", "distance", "staleness", "divergence")

#: How far past its thresholds a statistic is; ``info`` marks a drift that cleared.
Severity = Literal["info", "warning", "critical"]
_RANK: dict[str, int] = {"quiet": 0, "info": 0, "warning": 1, "critical": 2}


def severity_rank(severity: str) -> int:
    """Order severities: quiet/info < warning < critical.

    >>> severity_rank("critical") > severity_rank("warning") > severity_rank("info")
    True
    """
    return _RANK[severity]


@dataclass(frozen=True)
class Thresholds:
    """Warning and critical thresholds of a statistic that grows with drift."""

    warning: float
    critical: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.warning) and math.isfinite(self.critical)):
            raise ValueError("thresholds must be finite numbers")
        if not 0 < self.warning <= self.critical:
            raise ValueError(f"need 0 < warning <= critical; got warning={self.warning}, critical={self.critical}")

    def severity(self, value: float) -> Severity | None:
        """``critical``/``warning`` when ``value`` reaches that threshold, else ``None``.

        >>> Thresholds(0.1, 0.25).severity(0.3), Thresholds(0.1, 0.25).severity(0.05)
        ('critical', None)
        """
        if value >= self.critical:
            return "critical"
        if value >= self.warning:
            return "warning"
        return None


@dataclass(frozen=True)
class WindowRef:
    """Which records a window holds: source coordinates and event-time span.

    Windows are aligned to source offsets (window ``index`` of a partition holds offsets
    ``index * size`` to ``(index + 1) * size - 1``), so a redelivered window has the same
    ``key`` and the events about it the same id.
    """

    topic: str
    partition: int
    index: int
    first_offset: int
    last_offset: int
    records: int
    start: datetime
    end: datetime

    @property
    def key(self) -> tuple[str, int, int]:
        """(topic, partition, index): the stable identity of the window."""
        return (self.topic, self.partition, self.index)


@dataclass(frozen=True)
class Observation:
    """One monitor's statistic for some fields in one window."""

    monitor: Monitor
    fields: tuple[str, ...]
    statistic: str
    value: float
    thresholds: Thresholds
    window: WindowRef
    model_version: int | None = None

    @property
    def key(self) -> tuple[str, tuple[str, ...], str]:
        """(monitor, fields, statistic): what the policy keeps drift state for."""
        return (self.monitor, self.fields, self.statistic)

    @property
    def severity(self) -> Severity | None:
        """Severity of the value against the thresholds (``None`` below warning)."""
        return self.thresholds.severity(self.value)
