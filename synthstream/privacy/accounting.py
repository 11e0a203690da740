"""Privacy accounting: zCDP <-> (ε, δ) conversion, composition, and the guarantee a release states.

synthstream accounts Gaussian releases in zero-concentrated DP (Bun & Steinke 2016): ρ-zCDP
composes by adding ρ, which is what a sliding w-event window needs, and converts to
(ε, δ)-DP at the end. Laplace releases are accounted in pure ε (composition adds ε). Threshold
releases (categorical domains learned from data) add a δ term on top.

The ρ -> ε conversion is the tight one of Canonne, Kamath & Steinke (NeurIPS 2020, Prop. 12),
also used by OpenDP; the tests check it against Google's ``dp-accounting`` and OpenDP's own
privacy curve.

>>> round(rho_to_epsilon(0.5, 1e-6), 3)
5.222
>>> round(epsilon_to_rho(rho_to_epsilon(0.05, 1e-6), 1e-6), 6)
0.05
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy.optimize import minimize_scalar

Mechanism = Literal["gaussian", "laplace"]


def rho_to_epsilon(rho: float, delta: float) -> float:
    """The smallest ε such that ρ-zCDP implies (ε, δ)-DP (Canonne-Kamath-Steinke 2020, Prop. 12).

    ε(ρ, δ) = min over α > 1 of  ρα + (log(1/(αδ)) + (α-1) log(1 - 1/α)) / (α - 1).
    """
    if rho < 0 or not math.isfinite(rho):
        raise ValueError(f"rho must be a finite number >= 0, got {rho}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if rho == 0:
        return 0.0

    def bound(alpha: float) -> float:
        return rho * alpha + (math.log(1 / (alpha * delta)) + (alpha - 1) * math.log1p(-1 / alpha)) / (alpha - 1)

    # The bound is convex in α; the optimum lies near 1 + sqrt(log(1/δ)/ρ). Search a safe bracket.
    upper = 2.0 + 4.0 * math.sqrt(math.log(1 / delta) / rho) + 10.0
    result = minimize_scalar(bound, bounds=(1.0 + 1e-9, upper), method="bounded", options={"xatol": 1e-10})
    # The classic bound ρ + 2 sqrt(ρ log(1/δ)) is always valid: never report worse than it.
    return float(max(0.0, min(result.fun, rho + 2 * math.sqrt(rho * math.log(1 / delta)))))


def epsilon_to_rho(epsilon: float, delta: float) -> float:
    """The largest ρ whose ρ-zCDP implies (ε, δ)-DP (the inverse of :func:`rho_to_epsilon`)."""
    if epsilon <= 0 or not math.isfinite(epsilon):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon}")
    lo, hi = 0.0, max(1.0, epsilon)
    while rho_to_epsilon(hi, delta) < epsilon:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if rho_to_epsilon(mid, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo


def pure_to_rho(epsilon: float) -> float:
    """ε-DP implies (ε²/2)-zCDP (Bun & Steinke 2016, Prop. 1.4)."""
    return epsilon * epsilon / 2


def gaussian_sigma(rho: float, l2_sensitivity: float) -> float:
    """Noise standard deviation of the Gaussian mechanism that is ρ-zCDP: σ = Δ₂ / sqrt(2ρ)."""
    if rho <= 0 or l2_sensitivity <= 0:
        raise ValueError("rho and the sensitivity must be positive")
    return l2_sensitivity / math.sqrt(2 * rho)


def laplace_scale(epsilon: float, l1_sensitivity: float) -> float:
    """Noise scale b of the Laplace mechanism that is ε-DP: b = Δ₁ / ε."""
    if epsilon <= 0 or l1_sensitivity <= 0:
        raise ValueError("epsilon and the sensitivity must be positive")
    return l1_sensitivity / epsilon


@dataclass(frozen=True)
class Spend:
    """Privacy loss of one release or of a composition: ρ (zCDP), ε (pure DP) and δ (additive terms)."""

    rho: float = 0.0
    epsilon: float = 0.0
    delta: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        """Sequential composition: each term adds."""
        return Spend(self.rho + other.rho, self.epsilon + other.epsilon, self.delta + other.delta)

    def as_rho(self) -> float:
        """The whole spend as zCDP ρ (pure ε converted by ε²/2 per part is not additive; callers keep one family)."""
        return self.rho + pure_to_rho(self.epsilon)


@dataclass(frozen=True)
class Guarantee:
    """What a release (or a model) can claim: (ε, δ)-DP for a privacy unit over w windows.

    ``rho`` is set for zCDP accounting; ``epsilon`` is then its conversion at ``delta``.
    """

    epsilon: float
    delta: float
    unit: str
    w: int
    mechanism: str
    rho: float | None = None

    def describe(self) -> str:
        """One line for logs, events and the CLI."""
        rho = f", rho={self.rho:.4g}" if self.rho is not None else ""
        return f"({self.epsilon:.4g}, {self.delta:.2g})-DP per {self.unit} over any {self.w} windows{rho}"


def window_guarantee(mechanism: Mechanism, budget: Spend, *, conversion_delta: float, unit: str, w: int) -> Guarantee:
    """The (ε, δ) guarantee of spending ``budget`` over w consecutive windows."""
    if mechanism == "gaussian":
        eps = rho_to_epsilon(budget.rho, conversion_delta) if budget.rho > 0 else 0.0
        return Guarantee(eps, conversion_delta + budget.delta, unit, w, mechanism, rho=budget.rho)
    return Guarantee(budget.epsilon, budget.delta, unit, w, mechanism)
