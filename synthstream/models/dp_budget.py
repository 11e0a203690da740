"""The privacy budget of model training: what a DP fit may spend, composed over a stream's whole history.

Every DP fit of a stream (AIM/MST measurements in zCDP, DP-SGD steps of the neural model)
draws on one lifetime budget ``(epsilon, delta)`` for the ``model`` scope of the privacy
ledger, per privacy unit. :class:`ModelAccountant` reads the ledger and composes
everything in Rényi DP: a ρ-zCDP release is RDP ``α ρ`` at every order α, a DP-SGD fit is
the subsampled-Gaussian RDP curve of opacus' accountant for its (noise multiplier, sample
rate, steps). The RDP curves add; the total converts to (ε, δ) with the same bound opacus
and OpenDP use (Canonne-Kamath-Steinke Prop. 12 / Balle et al. 2020). When the history
is zCDP only, the conversion is the exact :func:`~synthstream.privacy.accounting.rho_to_epsilon`.

δ: the δ terms recorded in the ledger (DP thresholds that learned categorical domains) are
subtracted first; the conversion uses what is left of the budget's δ.

The accountant is read from the ledger file each time, so restarts and warm-start
retrains continue it: it is never reset. A fit checks its plan here before measuring, and
is refused (recorded in the ledger's refusals) when the composed total would exceed the budget.

Selection: :func:`noisy_argmax` is OpenDP's noisy-max (exponential mechanism) under zCDP,
used by AIM and MST to pick marginals, so selection noise comes from OpenDP as well.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from synthstream.privacy.accounting import rho_to_epsilon
from synthstream.privacy.ledger import BudgetExceeded, PrivacyLedger

__all__ = ["DPContext", "ModelAccountant", "SGDStep", "noisy_argmax", "selection_scale"]

#: One DP-SGD fit for the accountant: (noise multiplier, sample rate, steps).
SGDStep = tuple[float, float, int]

#: Rényi orders of the composition: opacus' default grid plus larger orders for small spends.
_ORDERS: tuple[float, ...] = (
    *(1 + x / 10.0 for x in range(1, 100)),
    *(float(a) for a in range(12, 64)),
    *(64.0, 80.0, 96.0, 128.0, 160.0, 192.0, 256.0, 384.0, 512.0),
)
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class DPContext:
    """Where a DP fit records its spend and what it may spend (picklable: crosses into the fit worker).

    Attributes:
        ledger_path: the pipeline's privacy ledger (``state_dir/privacy.duckdb``).
        stream: the stream whose records are the training data.
        epsilon: lifetime ε budget of model training on this stream (all fits composed).
        delta: lifetime δ of that guarantee.
        epsilon_per_fit: how much one fit may add to the composed ε (capped by what is left).
        key: stable key of this fit: a retry with the same key is not charged twice.
        unit: privacy unit (``record``).
        scope: ledger scope (``model``).
    """

    ledger_path: Path
    stream: str
    epsilon: float
    delta: float
    epsilon_per_fit: float
    key: str
    unit: str = "record"
    scope: str = "model"

    def __post_init__(self) -> None:
        problems = []
        if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            problems.append("epsilon must be a positive finite number")
        if not 0 < self.delta < 1:
            problems.append("delta must be in (0, 1)")
        if not (self.epsilon_per_fit > 0 and math.isfinite(self.epsilon_per_fit)):
            problems.append("epsilon_per_fit must be a positive finite number")
        if not self.key:
            problems.append("key must not be empty")
        if problems:
            raise ValueError("; ".join(problems))

    def ledger(self) -> PrivacyLedger:
        """The ledger this context records into."""
        return PrivacyLedger(self.ledger_path)

    def accountant(self) -> ModelAccountant:
        """The composed accountant of this context's stream/scope/unit."""
        return ModelAccountant(self.ledger(), self.stream, scope=self.scope, unit=self.unit)


class ModelAccountant:
    """Composes a stream's model-training spend from the ledger (see the module docstring)."""

    def __init__(self, ledger: PrivacyLedger, stream: str, *, scope: str = "model", unit: str = "record") -> None:
        self.ledger = ledger
        self.stream = stream
        self.scope = scope
        self.unit = unit
        self._history: tuple[float, float, list[SGDStep]] | None = None

    def __repr__(self) -> str:
        return f"ModelAccountant(ledger={self.ledger!r}, stream={self.stream!r}, scope={self.scope!r})"

    def history(self) -> tuple[float, float, list[SGDStep]]:
        """(ρ of every zCDP release, δ of every δ-spending release, the DP-SGD fits), read once from the ledger.

        Cached: a fit plans against one snapshot; call :meth:`refresh` after charging.
        """
        if self._history is None:
            spend = self.ledger.scope_spend(self.stream, self.scope, self.unit)
            self._history = (spend.rho, spend.delta, self.ledger.dpsgd_history(self.stream, self.scope, self.unit))
        return self._history

    def refresh(self) -> ModelAccountant:
        """Forget the cached history (the next question reads the ledger again); returns ``self``."""
        self._history = None
        return self

    def epsilon(
        self, delta: float, *, extra_rho: float = 0.0, extra_delta: float = 0.0, extra_sgd: Sequence[SGDStep] = ()
    ) -> float:
        """Composed ε at ``delta`` of the recorded history plus a planned fit (``extra_*``); inf if δ is used up."""
        rho, spent_delta, sgd = self.history()
        return compose_epsilon(rho + extra_rho, [*sgd, *extra_sgd], delta - spent_delta - extra_delta)

    def check(self, context: DPContext, *, rho: float = 0.0, delta: float = 0.0, sgd: Sequence[SGDStep] = ()) -> float:
        """The composed ε after a planned fit; refuses (recorded, :class:`BudgetExceeded`) beyond the budget."""
        after = self.epsilon(context.delta, extra_rho=rho, extra_delta=delta, extra_sgd=sgd)
        if after > context.epsilon * (1 + 1e-6) + 1e-12:
            detail = (
                f"model epsilon would reach {after:.6g} > budget {context.epsilon:.6g} at delta {context.delta:.3g}"
            )
            from synthstream.privacy.accounting import Spend

            self.ledger.record_refusal(self.stream, self.scope, self.unit, None, Spend(rho=rho, delta=delta), detail)
            raise BudgetExceeded(self.stream, self.scope, self.unit, None, detail)
        return after


def compose_epsilon(rho: float, sgd: Sequence[SGDStep], delta: float) -> float:
    """ε at ``delta`` of ρ-zCDP composed with DP-SGD fits, in RDP (0 when nothing was spent)."""
    if delta <= 0:
        return math.inf
    sgd = [s for s in sgd if s[2] > 0 and s[1] > 0]
    if not sgd:
        return rho_to_epsilon(rho, delta) if rho > 0 else 0.0
    from opacus.accountants.analysis import rdp as rdp_analysis

    orders = np.asarray(_ORDERS)
    curve = rho * orders
    for noise_multiplier, sample_rate, steps in sgd:
        curve = curve + steps * np.asarray(_step_curve(float(sample_rate), float(noise_multiplier)))
    with warnings.catch_warnings():
        # At the largest order the bound is still valid, only less tight (a calibration probing huge noise).
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        eps, _ = rdp_analysis.get_privacy_spent(orders=list(_ORDERS), rdp=list(curve), delta=delta)
    return float(eps)


@lru_cache(maxsize=4096)
def _step_curve(sample_rate: float, noise_multiplier: float) -> tuple[float, ...]:
    """RDP of one subsampled-Gaussian step at every order (opacus' analysis; steps compose linearly)."""
    from opacus.accountants.analysis import rdp as rdp_analysis

    values = rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(_ORDERS))
    return tuple(float(v) for v in np.atleast_1d(values))


@lru_cache(maxsize=1)
def _dp() -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def selection_scale(rho: float, sensitivity: float) -> float:
    """Noise scale of OpenDP's noisy max that spends ``rho`` (zCDP) on scores of L∞ sensitivity ``sensitivity``.

    A non-monotonic exponential mechanism with scale s is ε = 2Δ/s pure DP and ε²/8-zCDP
    (bounded range, Cesar & Rogers 2021), so s = 2Δ / sqrt(8ρ); OpenDP's map confirms it.
    """
    if rho <= 0 or sensitivity <= 0:
        raise ValueError("rho and the sensitivity must be positive")
    return 2 * sensitivity / math.sqrt(8 * rho)


def noisy_argmax(scores: Sequence[float], rho: float, sensitivity: float) -> tuple[int, float]:
    """Index of a high score picked with OpenDP's noisy max under ``rho``-zCDP; returns it and the ρ OpenDP accounts."""
    dp = _dp()
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.linf_distance(T=float)
    scale = selection_scale(rho, sensitivity)
    measurement = dp.m.make_noisy_max(*space, dp.zero_concentrated_divergence(), scale=scale)
    spent = float(measurement.map(float(sensitivity)))
    if spent > rho * (1 + _TOLERANCE):
        raise ValueError(f"OpenDP accounts rho={spent} for this selection, above its budget {rho}")
    clean = [float(s) if math.isfinite(float(s)) else -1e300 for s in scores]
    return int(measurement(clean)), spent
