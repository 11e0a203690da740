"""River change detectors on numeric fields, one per field, chosen by the field's type.

Each numeric field gets its own detector, fed standardised values: the first ``warmup``
non-null values fix a mean and standard deviation; every later value is winsorised to
``clip`` standard deviations (so one huge capital gain is not a "change"), averaged over
``chunk`` consecutive values and scaled to standard units of those means. Thresholds are
therefore in standard deviations whatever the field's unit, and chunking divides the
per-record cost by ``chunk`` (an ADWIN update costs 3-6 µs; a mean of 32 records carries
the same mean shift with 1/5.7 of the noise). Detections are reported with the position of
the record that completed the chunk, so the stage can attribute them to a window.

Which detector for which field type, measured by ``benchmarks/drift.py`` (results in
``benchmarks/results/drift.json``) on the four NAB series of ``../shared/data/nab`` (12
labelled anomaly windows; false alarms = detections outside every window after NAB's 15%
probationary period, which also serves as the warm-up) and on shuffled, stationary Adult
fields:

==============  =====================================  ======================================
detector        NAB integer series (nyc_taxi, 5 win.)  NAB real-valued series (3, 7 windows)
==============  =====================================  ======================================
ADWIN           5/5 windows, 0.19 false alarms / 1k    6/7, 0.22-4.27 / 1k
Page-Hinkley    4/5, 1.16 / 1k                         6/7, 0.28-3.44 / 1k
KSWIN           2/5, 2.23 / 1k                         6/7, 0.17-2.51 / 1k; ~230 µs per update
==============  =====================================  ======================================

* ``long`` (counts, ages, amounts in cents): **ADWIN** (delta 1e-4). Best on the integer
  series, and its cut is a bound with a controlled false-positive rate: 0 false alarms on
  6 Adult fields x 32,561 shuffled records (river's default ADWIN on raw values: 0.05 per
  1,000). Checking every 32 chunk means, it needs ~1,100 records to see an age shift of
  +5 years (0.37 sd); the pipeline reports detections per 2,000-record window anyway.
* ``double`` (readings, measurements): **Page-Hinkley** (threshold 50, delta 0.1 sd).
  At the same detection rate, fewer false alarms than ADWIN on the real-valued series
  (mean 1.9 against 2.6 per 1,000) and close to KSWIN (1.7) at 1/140 of its cost per
  update (~1.7 µs); its cumulative sum suits the sustained level shifts sensors show.
  Also silent on the stationary Adult fields.
* **KSWIN** is available but not a default: a KS test on every update (~230 µs), and on
  integer data (ties) it caught 2 of 5 windows.

Together (the per-type choice): 11/12 NAB windows at 1.48 false alarms per 1,000 points,
against 12/12 at 5.3-17.5 for river's three detectors with default settings on raw values.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from river import drift

from synthstream.schemas.record import FieldType

__all__ = ["DEFAULT_DETECTORS", "DETECTOR_KINDS", "Detection", "DetectorKind", "NumericDetectors"]

DetectorKind = Literal["adwin", "page_hinkley", "kswin"]
DETECTOR_KINDS: tuple[DetectorKind, ...] = ("adwin", "page_hinkley", "kswin")
#: The measured choice per numeric field type (see the module docstring).
DEFAULT_DETECTORS: Mapping[FieldType, DetectorKind] = {FieldType.LONG: "adwin", FieldType.DOUBLE: "page_hinkley"}

_ADWIN_MIN_WINDOW = 5  # river's default min_window_length, used in its cut bound
_ADWIN_HISTORY = 8_192  # values kept to report where ADWIN cut (memory: 64 KiB per field)


@dataclass(frozen=True)
class Detection:
    """A detector fired on ``field``; ``position`` is the batch index of the record that completed the chunk."""

    field: str
    position: int
    statistic: str
    value: float
    threshold: float


class _FieldDetector:
    """Warm-up, scaling, chunking and one river detector for one field."""

    def __init__(self, name: str, kind: DetectorKind, owner: NumericDetectors) -> None:
        self.name = name
        self.kind = kind
        self.owner = owner
        self.detector: Any = owner.make(kind)
        self.warm: list[NDArray[np.float64]] = []
        self.warm_n = 0
        self.mean = 0.0
        self.std = 1.0
        self.ready = False
        self.carry = np.empty(0, dtype=np.float64)
        #: The values ADWIN holds, up to a bound (for reporting its cut, not for detecting).
        self.recent: deque[float] = deque(maxlen=_ADWIN_HISTORY)

    def update(self, values: NDArray[np.float64]) -> list[Detection]:
        present = ~np.isnan(values)
        positions = np.flatnonzero(present)
        kept = values[present]
        if not self.ready:
            self.warm.append(kept)
            self.warm_n += kept.size
            if self.warm_n < self.owner.warmup:
                return []
            self._calibrate()
            return []
        return self._feed(kept, positions)

    def _calibrate(self) -> None:
        data = np.concatenate(self.warm)
        self.warm = []
        self.mean = float(data.mean())
        std = float(data.std())
        self.std = std if std > 0 else 1.0  # a constant warm-up: changes are measured in the field's own unit
        self.ready = True
        self._feed(data, np.zeros(data.size, dtype=np.int64))  # prime the detector with the reference data
        self.detector = self.detector if not self._fired() else self.owner.make(self.kind)

    def _fired(self) -> bool:
        return bool(self.detector.drift_detected)

    def _feed(self, kept: NDArray[np.float64], positions: NDArray[np.int64]) -> list[Detection]:
        clip = self.owner.clip * self.std
        kept = np.clip(kept, self.mean - clip, self.mean + clip)
        chunk = self.owner.chunk
        values = np.concatenate([self.carry, kept]) if self.carry.size else kept
        full = values.size // chunk
        self.carry = values[full * chunk :].copy()
        if full == 0:
            return []
        means = values[: full * chunk].reshape(full, chunk).mean(axis=1)
        z = (means - self.mean) / (self.std / math.sqrt(chunk))
        # The record completing chunk i is value index (i + 1) * chunk - 1 - len(previous carry).
        carried = values.size - kept.size
        ends = np.arange(1, full + 1) * chunk - 1 - carried
        out: list[Detection] = []
        update = self._update_adwin if self.kind == "adwin" else self._update_other
        for i, x in enumerate(z.tolist()):
            hit = update(x)
            if hit is not None:
                end = int(ends[i])
                position = int(positions[end]) if 0 <= end < positions.size else 0
                out.append(Detection(self.name, position, self.kind, hit[0], hit[1]))
        return out

    def _update_adwin(self, x: float) -> tuple[float, float] | None:
        det = self.detector
        width = int(det.width)
        self.recent.append(x)
        det.update(x)
        if not det.drift_detected:
            return None
        # river does not expose the cut it found: find the most significant split of the
        # window it held (the last width + 1 values) and report its mean shift and bound.
        window = np.fromiter(self.recent, dtype=np.float64)[-(width + 1) :]
        shift, bound = _adwin_split(window, self.owner.adwin_delta)
        scale = math.sqrt(self.owner.chunk)  # chunk-mean units -> standard deviations of the field
        return (shift / scale, bound / scale)

    def _update_other(self, x: float) -> tuple[float, float] | None:
        det = self.detector
        det.update(x)
        if not det.drift_detected:
            return None
        if self.kind == "page_hinkley":
            # The test statistic at detection (river resets it on the next update).
            up = det._sum_increase - det._min_increase
            down = det._max_decrease - det._sum_decrease
            return (float(max(up, down)), float(det.threshold))
        p_value = max(float(det.p_value), 1e-300)
        return (-math.log10(p_value), -math.log10(self.owner.kswin_alpha))

    def nominal_threshold(self) -> float:
        """The detector's threshold right now (ADWIN: the cut bound for two halves of its window)."""
        if self.kind == "adwin":
            det = self.detector
            width = int(det.width)
            if width < 2 * _ADWIN_MIN_WINDOW:
                return 1.0
            half = width / 2
            bound = _adwin_epsilon(half, half, width, det.variance / width, self.owner.adwin_delta)
            return bound / math.sqrt(self.owner.chunk)
        if self.kind == "page_hinkley":
            return float(self.owner.ph_threshold)
        return -math.log10(self.owner.kswin_alpha)


def _adwin_split(window: NDArray[np.float64], delta: float) -> tuple[float, float]:
    """(|mean shift|, ADWIN bound) at the split of ``window`` where the shift exceeds its bound the most."""
    n = window.size
    lo = _ADWIN_MIN_WINDOW
    if n < 2 * lo:
        return (0.0, 1.0)
    sums = np.cumsum(window)
    k = np.arange(lo, n - lo + 1, dtype=np.float64)
    older = sums[lo - 1 : n - lo] / k
    newer = (sums[-1] - sums[lo - 1 : n - lo]) / (n - k)
    shift = np.abs(older - newer)
    delta_prime = math.log(2 * math.log(n) / delta)
    m_recip = 1.0 / (k - lo + 1) + 1.0 / (n - k - lo + 1)
    bound = np.sqrt(2 * m_recip * float(window.var()) * delta_prime) + 2.0 / 3.0 * delta_prime * m_recip
    best = int(np.argmax(shift / bound))
    return (float(shift[best]), float(bound[best]))


def _adwin_epsilon(n0: float, n1: float, width: float, variance: float, delta: float) -> float:
    """ADWIN's cut bound (Bifet & Gavaldà 2007, as river computes it) for sub-windows of n0 and n1 values."""
    delta_prime = math.log(2 * math.log(max(width, 3.0)) / delta)
    m_recip = 1.0 / max(n0 - _ADWIN_MIN_WINDOW + 1, 1.0) + 1.0 / max(n1 - _ADWIN_MIN_WINDOW + 1, 1.0)
    return math.sqrt(2 * m_recip * variance * delta_prime) + 2.0 / 3.0 * delta_prime * m_recip


class NumericDetectors:
    """One river detector per numeric field; :meth:`update` takes a batch of columns and returns detections."""

    def __init__(
        self,
        kinds: Mapping[str, DetectorKind],
        *,
        chunk: int = 32,
        warmup: int = 1_000,
        clip: float = 5.0,
        adwin_delta: float = 1e-4,
        ph_threshold: float = 50.0,
        ph_delta: float = 0.1,
        kswin_alpha: float = 1e-4,
        kswin_window: int = 300,
        kswin_stat: int = 100,
        seed: int = 0,
    ) -> None:
        problems = [f"{name}: {kind!r}" for name, kind in kinds.items() if kind not in DETECTOR_KINDS]
        if problems:
            raise ValueError(f"unknown detector(s) {problems}; choose from {list(DETECTOR_KINDS)}")
        if chunk < 1 or warmup < 2:
            raise ValueError("chunk must be >= 1 and warmup >= 2")
        if clip <= 0 or not 0 < adwin_delta < 1 or ph_threshold <= 0 or ph_delta < 0 or not 0 < kswin_alpha < 1:
            raise ValueError("clip, adwin_delta (0-1), ph_threshold, ph_delta (>= 0) and kswin_alpha (0-1) are invalid")
        if not 0 < kswin_stat < kswin_window:
            raise ValueError("kswin_stat must be positive and below kswin_window")
        self.kinds = dict(kinds)
        self.chunk = chunk
        self.warmup = warmup
        self.clip = clip
        self.adwin_delta = adwin_delta
        self.ph_threshold = ph_threshold
        self.ph_delta = ph_delta
        self.kswin_alpha = kswin_alpha
        self.kswin_window = kswin_window
        self.kswin_stat = kswin_stat
        self.seed = seed
        self._fields = {name: _FieldDetector(name, kind, self) for name, kind in self.kinds.items()}

    def __repr__(self) -> str:
        return f"NumericDetectors(kinds={self.kinds!r}, chunk={self.chunk}, warmup={self.warmup})"

    def make(self, kind: DetectorKind) -> Any:
        """A fresh river detector of ``kind`` with this object's settings."""
        if kind == "adwin":
            return drift.ADWIN(delta=self.adwin_delta)  # type: ignore[no-untyped-call]  # river leaves ADWIN.__init__ unannotated
        if kind == "page_hinkley":
            return drift.PageHinkley(threshold=self.ph_threshold, delta=self.ph_delta)
        return drift.KSWIN(
            alpha=self.kswin_alpha, window_size=self.kswin_window, stat_size=self.kswin_stat, seed=self.seed
        )

    @property
    def fields(self) -> list[str]:
        """The fields with a detector."""
        return list(self._fields)

    def ready(self, name: str) -> bool:
        """Whether ``name``'s warm-up is over (its detector is running)."""
        return self._fields[name].ready

    def nominal_threshold(self, name: str) -> float:
        """The current threshold of ``name``'s detector, for windows in which it did not fire."""
        return self._fields[name].nominal_threshold()

    def update(self, columns: Mapping[str, NDArray[np.float64]]) -> list[Detection]:
        """Feed each field's values of one batch (float64, NaN = null) in order; return what fired."""
        out: list[Detection] = []
        for name, values in columns.items():
            state = self._fields.get(name)
            if state is not None:
                out.extend(state.update(values))
        return out
