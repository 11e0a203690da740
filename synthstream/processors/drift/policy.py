"""The drift policy: turns per-window observations into events and (rate-limited) retrain requests.

State is kept per (monitor, fields, statistic):

* **enter**: a quiet key whose value reaches its warning threshold starts drifting (one event);
* **escalate**: a drifting key that reaches a higher severity (warning -> critical) sends one
  more event; staying at or falling back within the drifting band sends nothing;
* **clear** (hysteresis): a drifting key clears only after ``clear_windows`` consecutive
  windows below ``clear_ratio`` x its warning threshold, and says so with an ``info`` event.
  A field that flaps around its threshold therefore stays "drifting" and is reported once.

Actions: with ``action="alert"`` every event is an alert only. With ``action="retrain"``,
an event of a monitor in ``retrain_on`` at ``retrain_severity`` or above asks for a retrain,
at most once per ``cooldown_s`` seconds across all fields: a request inside the cool-down
is held (action ``cooldown``) and sent as a ``deferred`` retrain when the cool-down ends,
if that key is still drifting then. However many fields flap, retrains are at least
``cooldown_s`` apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from synthstream.processors.drift.signals import MONITORS, Monitor, Observation, Severity, severity_rank

__all__ = ["Action", "DriftDecision", "DriftPolicy", "Transition"]

Action = Literal["none", "alert", "retrain", "cooldown"]
Transition = Literal["enter", "escalate", "clear", "deferred"]
Key = tuple[str, tuple[str, ...], str]


@dataclass(frozen=True)
class DriftDecision:
    """What the policy decided about one observation: the event to publish and the action taken."""

    observation: Observation
    severity: Severity
    action: Action
    transition: Transition

    @property
    def reason(self) -> str:
        """A one-line reason naming monitor, fields and numbers (never record values)."""
        obs = self.observation
        fields = ",".join(obs.fields)
        return (
            f"{obs.monitor} drift on {fields}: {obs.statistic}={obs.value:.4g} "
            f"(warning {obs.thresholds.warning:.4g}, {self.severity}, {self.transition})"
        )


@dataclass
class _State:
    severity: Severity
    last: Observation
    quiet_windows: int = 0
    held: bool = False


class DriftPolicy:
    """Hysteresis per key, severity levels, and a global cool-down between retrain requests."""

    def __init__(
        self,
        *,
        action: Literal["alert", "retrain"] = "alert",
        retrain_on: Iterable[Monitor] = ("staleness",),
        retrain_severity: Literal["warning", "critical"] = "warning",
        cooldown_s: float = 300.0,
        clear_ratio: float = 0.5,
        clear_windows: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if action not in ("alert", "retrain"):
            raise ValueError(f"unknown action {action!r}; choose from ['alert', 'retrain']")
        retrain_on = tuple(retrain_on)
        unknown = [m for m in retrain_on if m not in MONITORS]
        if unknown:
            raise ValueError(f"unknown monitors {unknown} in retrain_on; choose from {list(MONITORS)}")
        if retrain_severity not in ("warning", "critical"):
            raise ValueError(f"unknown retrain_severity {retrain_severity!r}; choose from ['warning', 'critical']")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must be >= 0")
        if not 0.0 < clear_ratio <= 1.0:
            raise ValueError("clear_ratio must be in (0, 1]")
        if clear_windows < 1:
            raise ValueError("clear_windows must be at least 1")
        self.action = action
        self.retrain_on = retrain_on
        self.retrain_severity = retrain_severity
        self.cooldown_s = cooldown_s
        self.clear_ratio = clear_ratio
        self.clear_windows = clear_windows
        self.clock = clock
        self.retrains_requested = 0
        self.retrains_held = 0
        self._states: dict[Key, _State] = {}
        self._last_retrain: float | None = None

    def __repr__(self) -> str:
        return (
            f"DriftPolicy(action={self.action!r}, retrain_on={list(self.retrain_on)}, "
            f"cooldown_s={self.cooldown_s}, clear_ratio={self.clear_ratio}, clear_windows={self.clear_windows})"
        )

    @property
    def drifting(self) -> dict[Key, Severity]:
        """Keys currently drifting and their severity."""
        return {key: state.severity for key, state in self._states.items()}

    def cooling_down(self) -> bool:
        """Whether a retrain was requested less than ``cooldown_s`` ago."""
        return self._last_retrain is not None and self.clock() - self._last_retrain < self.cooldown_s

    def reset(self, monitor: Monitor) -> None:
        """Forget the drift state of one monitor (e.g. staleness, when a new version is promoted)."""
        self._states = {k: s for k, s in self._states.items() if k[0] != monitor}

    def decide(self, observations: Sequence[Observation]) -> list[DriftDecision]:
        """Update the state with one window's observations; return the events to publish."""
        decisions: list[DriftDecision] = []
        for obs in observations:
            decision = self._step(obs)
            if decision is not None:
                decisions.append(decision)
        deferred = self._deferred(observations, decisions)
        if deferred is not None:
            decisions.append(deferred)
        return decisions

    def _step(self, obs: Observation) -> DriftDecision | None:
        key = obs.key
        severity = obs.severity
        state = self._states.get(key)
        if state is None:
            if severity is None:
                return None
            state = self._states[key] = _State(severity, obs)
            return self._decision(obs, severity, "enter", state)
        state.last = obs
        if severity is not None and severity_rank(severity) > severity_rank(state.severity):
            state.severity = severity
            state.quiet_windows = 0
            return self._decision(obs, severity, "escalate", state)
        if obs.value < obs.thresholds.warning * self.clear_ratio:
            state.quiet_windows += 1
            if state.quiet_windows >= self.clear_windows:
                del self._states[key]
                return DriftDecision(obs, "info", "none", "clear")
        else:
            state.quiet_windows = 0
        return None

    def _wants_retrain(self, obs: Observation, severity: Severity) -> bool:
        return (
            self.action == "retrain"
            and obs.monitor in self.retrain_on
            and severity_rank(severity) >= severity_rank(self.retrain_severity)
        )

    def _decision(self, obs: Observation, severity: Severity, transition: Transition, state: _State) -> DriftDecision:
        if not self._wants_retrain(obs, severity):
            return DriftDecision(obs, severity, "alert", transition)
        if self.cooling_down():
            state.held = True
            self.retrains_held += 1
            return DriftDecision(obs, severity, "cooldown", transition)
        self._retrained()
        return DriftDecision(obs, severity, "retrain", transition)

    def _retrained(self) -> None:
        self._last_retrain = self.clock()
        self.retrains_requested += 1
        for state in self._states.values():
            state.held = False

    def due(self) -> DriftDecision | None:
        """A retrain held back by the cool-down, once the cool-down is over and its drift is still there.

        Call it on a timer: a stream that goes quiet must still get the retrain its last drift asked
        for. The decision carries the key's latest observation.
        """
        return self._deferred((), ())

    def _deferred(self, observations: Sequence[Observation], decided: Sequence[DriftDecision]) -> DriftDecision | None:
        if self.cooling_down() or any(d.action == "retrain" for d in decided):
            return None
        held = [state for state in self._states.values() if state.held]
        if not held:
            return None
        current = {obs.key for obs in observations}
        # Prefer a key observed in this very window; any held key otherwise.
        state = next((s for s in held if s.last.key in current), held[0])
        self._retrained()
        return DriftDecision(state.last, state.severity, "retrain", "deferred")
