"""processors.drift: drift monitors over the redacted stream and the policy that acts on them.

Pure, transport-free pieces, one module per monitor kind:

* :mod:`~.detectors`: river change detectors (ADWIN, Page-Hinkley, KSWIN) on numeric fields;
* :mod:`~.distance`: PSI / Jensen-Shannon distances and the stream-drift monitor (a window
  against the trailing windows);
* :mod:`~.staleness`: a window against the promoted model's :class:`TrainingProfile`;
* :mod:`~.divergence`: synthetic windows against the real ones;
* :mod:`~.policy`: hysteresis, severities, cool-down, the alert/retrain decision;
* :mod:`~.profile`, :mod:`~.windows`, :mod:`~.signals`: binning, offset-aligned windows and
  the observation types they share.

:mod:`synthstream.streams.drift` wires them to Kafka.
"""

from synthstream.processors.drift.detectors import DEFAULT_DETECTORS, Detection, DetectorKind, NumericDetectors
from synthstream.processors.drift.distance import StreamDistanceMonitor, js_distance, psi
from synthstream.processors.drift.divergence import OutputDivergenceMonitor
from synthstream.processors.drift.policy import DriftDecision, DriftPolicy
from synthstream.processors.drift.profile import FieldProfile, TrainingProfile, drift_fields
from synthstream.processors.drift.signals import Observation, Thresholds, WindowRef
from synthstream.processors.drift.staleness import StalenessMonitor
from synthstream.processors.drift.windows import BatchCoords, ClosedWindow, OffsetWindows

__all__ = [
    "DEFAULT_DETECTORS",
    "BatchCoords",
    "ClosedWindow",
    "Detection",
    "DetectorKind",
    "DriftDecision",
    "DriftPolicy",
    "FieldProfile",
    "NumericDetectors",
    "Observation",
    "OffsetWindows",
    "OutputDivergenceMonitor",
    "StalenessMonitor",
    "StreamDistanceMonitor",
    "Thresholds",
    "TrainingProfile",
    "WindowRef",
    "drift_fields",
    "js_distance",
    "psi",
]
