"""DP mechanisms: noise from OpenDP's vetted samplers, never from numpy.

Each mechanism is calibrated once (budget + sensitivity -> noise scale) and then releases
vectors. OpenDP's own privacy map is the authority on what a release costs: after
calibration the mechanism asks OpenDP's measurement what it spends at the declared
sensitivity and refuses to exist when that exceeds the budget it was given.

- :class:`GaussianMechanism` (ρ-zCDP): counts and histograms get the discrete Gaussian
  (exact integer sampling, Canonne-Kamath-Steinke 2020); sums get OpenDP's float Gaussian.
- :class:`LaplaceMechanism` (ε-DP): discrete Laplace for counts, float Laplace for sums.
- :func:`private_quantiles` (exponential-mechanism quantiles over data-independent candidates)
  and :func:`threshold_histogram` (stability histogram: rare keys suppressed) for the bootstrap
  of numeric bins and categorical domains.

OpenDP samples from the operating system's entropy, so noise is not reproducible from a seed by
design (a seeded DP noise stream would let anyone who learns the seed remove the noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synthstream.privacy.accounting import Spend, gaussian_sigma, laplace_scale

__all__ = [
    "GaussianMechanism",
    "LaplaceMechanism",
    "NoiseMechanism",
    "discrete_gaussian_std",
    "discrete_laplace_std",
    "make_mechanism",
    "private_quantiles",
    "threshold_histogram",
]

_TOLERANCE = 1e-9


@lru_cache(maxsize=1)
def _dp() -> Any:
    """OpenDP's prelude with the ``contrib`` features (needed for these measurements in 0.16)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def discrete_gaussian_std(sigma: float) -> float:
    """Standard deviation of the discrete Gaussian with parameter σ (slightly below σ when σ is small)."""
    if sigma > 50:
        return sigma  # the two agree to far below float precision of any use here
    xs = np.arange(-math.ceil(40 * sigma) - 1, math.ceil(40 * sigma) + 2, dtype=np.float64)
    weights = np.exp(-(xs**2) / (2 * sigma * sigma))
    return float(math.sqrt(float((weights * xs**2).sum() / weights.sum())))


def discrete_laplace_std(scale: float) -> float:
    """Standard deviation of the discrete Laplace with scale b: variance 2e^(-1/b) / (1 - e^(-1/b))²."""
    q = math.exp(-1 / scale)
    return math.sqrt(2 * q) / (1 - q)


class NoiseMechanism:
    """Common shape of the two mechanisms: a budget, a sensitivity and a calibrated OpenDP measurement.

    A mechanism is built for integer counts (discrete noise) or for real sums (continuous
    noise), never both: the sensitivity and the privacy map differ.
    """

    name: str
    #: Standard deviation of the noise added to each cell (for consumers and error bars).
    noise_std: float
    spend: Spend
    integer: bool
    _measurement: Any

    def release_counts(self, counts: NDArray[np.int64]) -> NDArray[np.int64]:
        """Noisy integer counts (same shape)."""
        if not self.integer:
            raise ValueError("this mechanism was calibrated for real sums; build one with integer=True")
        flat = np.asarray(counts, dtype=np.int64).ravel()
        return np.asarray(self._measurement([int(v) for v in flat]), dtype=np.int64).reshape(np.shape(counts))

    def release_sums(self, sums: NDArray[np.float64]) -> NDArray[np.float64]:
        """Noisy real-valued sums (same shape)."""
        if self.integer:
            raise ValueError("this mechanism was calibrated for integer counts; build one with integer=False")
        flat = np.asarray(sums, dtype=np.float64).ravel()
        return np.asarray(self._measurement([float(v) for v in flat]), dtype=np.float64).reshape(np.shape(sums))


class GaussianMechanism(NoiseMechanism):
    """ρ-zCDP Gaussian noise for a query with L2 sensitivity ``l2_sensitivity``.

    Args:
        rho: the zCDP budget of this release.
        l2_sensitivity: how much one privacy unit can move the query vector in L2 norm
            (1 for a histogram with one record per unit; k with k records per unit).
        integer: counts (discrete Gaussian) or real sums (continuous Gaussian).
    """

    name = "gaussian"

    def __init__(self, rho: float, l2_sensitivity: float, *, integer: bool = True) -> None:
        if not (rho > 0 and math.isfinite(rho)):
            raise ValueError(f"rho must be a positive finite number, got {rho!r}")
        if not (l2_sensitivity > 0 and math.isfinite(l2_sensitivity)):
            raise ValueError(f"l2_sensitivity must be a positive finite number, got {l2_sensitivity!r}")
        dp = _dp()
        self.rho = float(rho)
        self.l2_sensitivity = float(l2_sensitivity)
        self.integer = integer
        self.sigma = gaussian_sigma(rho, l2_sensitivity)
        self.noise_std = discrete_gaussian_std(self.sigma) if integer else self.sigma
        if integer:
            space = dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int)
            d_in: Any = math.ceil(l2_sensitivity)
        else:
            space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float)
            d_in = float(l2_sensitivity)
        self._measurement = dp.m.make_gaussian(*space, scale=self.sigma)
        spent = float(self._measurement.map(d_in))
        if spent > rho * (1 + _TOLERANCE):
            raise ValueError(f"OpenDP accounts rho={spent} for this release, above the budget {rho}")
        self.spend = Spend(rho=spent)

    def __repr__(self) -> str:
        return (
            f"GaussianMechanism(rho={self.rho:.6g}, l2_sensitivity={self.l2_sensitivity:g}, "
            f"integer={self.integer}, sigma={self.sigma:.4g})"
        )


class LaplaceMechanism(NoiseMechanism):
    """ε-DP Laplace noise for a query with L1 sensitivity ``l1_sensitivity``."""

    name = "laplace"

    def __init__(self, epsilon: float, l1_sensitivity: float, *, integer: bool = True) -> None:
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise ValueError(f"epsilon must be a positive finite number, got {epsilon!r}")
        if not (l1_sensitivity > 0 and math.isfinite(l1_sensitivity)):
            raise ValueError(f"l1_sensitivity must be a positive finite number, got {l1_sensitivity!r}")
        dp = _dp()
        self.epsilon = float(epsilon)
        self.l1_sensitivity = float(l1_sensitivity)
        self.integer = integer
        self.scale = laplace_scale(epsilon, l1_sensitivity)
        self.noise_std = discrete_laplace_std(self.scale) if integer else self.scale * math.sqrt(2)
        if integer:
            space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
            d_in: Any = math.ceil(l1_sensitivity)
        else:
            space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
            d_in = float(l1_sensitivity)
        self._measurement = dp.m.make_laplace(*space, scale=self.scale)
        spent = float(self._measurement.map(d_in))
        if spent > epsilon * (1 + _TOLERANCE):
            raise ValueError(f"OpenDP accounts epsilon={spent} for this release, above the budget {epsilon}")
        self.spend = Spend(epsilon=spent)

    def __repr__(self) -> str:
        return (
            f"LaplaceMechanism(epsilon={self.epsilon:.6g}, l1_sensitivity={self.l1_sensitivity:g}, "
            f"integer={self.integer}, scale={self.scale:.4g})"
        )


def make_mechanism(
    kind: str, share: Spend, sensitivity: float, *, integer: bool = True
) -> GaussianMechanism | LaplaceMechanism:
    """The mechanism of ``kind`` calibrated to spend ``share`` at ``sensitivity``."""
    if kind == "gaussian":
        return GaussianMechanism(share.rho, sensitivity, integer=integer)
    if kind == "laplace":
        return LaplaceMechanism(share.epsilon, sensitivity, integer=integer)
    raise ValueError(f"unknown mechanism {kind!r}; choose gaussian or laplace")


def _smallest_scale(loss_at: Callable[[float], float], target: float) -> float:
    """The smallest noise scale whose OpenDP-accounted loss is at most ``target`` (bisection).

    Loss decreases as the scale grows; OpenDP's privacy map is the authority, so the returned
    scale is checked against it rather than derived from a formula of ours.
    """
    if not (target > 0 and math.isfinite(target)):
        raise ValueError(f"the budget must be a positive finite number, got {target!r}")
    lo, hi = 1e-9, 1.0
    while loss_at(hi) > target:
        lo, hi = hi, hi * 2
    for _ in range(80):
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 2
        if loss_at(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


def private_quantiles(
    values: Sequence[float],
    candidates: Sequence[float],
    alphas: Sequence[float],
    share: Spend,
    *,
    mechanism: str = "gaussian",
    contributions: int = 1,
) -> tuple[list[float], Spend]:
    """DP quantiles of ``values`` at each of ``alphas`` (OpenDP ``make_private_quantile``).

    ``candidates`` must not depend on the data (a grid over declared bounds). The budget in
    ``share`` is split evenly over the quantiles; ``contributions`` is how many values one
    privacy unit may add (the symmetric distance a unit can cause). Returns the quantiles,
    sorted so they can serve as bin edges, and what OpenDP accounts for all of them.
    """
    if not alphas:
        raise ValueError("give at least one quantile level")
    cands = sorted({float(c) for c in candidates})
    if len(cands) < 2:
        raise ValueError("give at least two distinct candidate values")
    dp = _dp()
    data = [min(max(float(v), cands[0]), cands[-1]) for v in values if v is not None and math.isfinite(float(v))]
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False))
    measure = dp.zero_concentrated_divergence() if mechanism == "gaussian" else dp.max_divergence()
    per_quantile = (share.rho if mechanism == "gaussian" else share.epsilon) / len(alphas)
    out: list[float] = []
    total = Spend()
    for alpha in alphas:

        def build(scale: float, alpha: float = float(alpha)) -> Any:
            return dp.m.make_private_quantile(domain, dp.symmetric_distance(), measure, cands, alpha, scale)

        meas = build(_smallest_scale(lambda scale: float(build(scale).map(contributions)), per_quantile))
        out.append(float(meas(data)))
        spent = float(meas.map(contributions))
        total = total + (Spend(rho=spent) if mechanism == "gaussian" else Spend(epsilon=spent))
    return sorted(out), total


def threshold_histogram(
    counts: Mapping[str, int],
    share: Spend,
    delta: float,
    *,
    mechanism: str = "gaussian",
    contributions: int = 1,
) -> tuple[dict[str, int], Spend]:
    """Release the keys, with noisy counts, whose noisy count clears a threshold: rare keys never leak.

    OpenDP's stability histogram (``make_gaussian_threshold`` / ``make_laplace_threshold``): the
    set of keys is itself data, so keys held by few units are suppressed, at the cost of
    ``delta``. ``contributions`` bounds how many records (hence keys) one unit can add.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    dp = _dp()
    domain = dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int))
    k = max(1, int(contributions))
    # (keys touched, norm, largest change of one count): an integer vector with L1 norm k has L2 norm <= k.
    d_in = (k, k, k)
    gaussian = mechanism == "gaussian"
    metric = (
        dp.l02inf_distance(dp.absolute_distance(T=int)) if gaussian else dp.l01inf_distance(dp.absolute_distance(T=int))
    )
    make = dp.m.make_gaussian_threshold if gaussian else dp.m.make_laplace_threshold
    budget = share.rho if gaussian else share.epsilon
    threshold = 2 * k

    def loss_at(scale: float) -> float:
        return float(make(domain, metric, scale=scale, threshold=threshold).map(d_in)[0])

    scale = _smallest_scale(loss_at, budget)
    while True:
        meas = make(domain, metric, scale=scale, threshold=threshold)
        loss, spent_delta = meas.map(d_in)
        if float(spent_delta) <= delta:
            break
        threshold = math.ceil(threshold * 1.2) + 1
    released = meas({str(key): int(v) for key, v in counts.items()})
    spend = (
        Spend(rho=float(loss), delta=float(spent_delta))
        if gaussian
        else Spend(epsilon=float(loss), delta=float(spent_delta))
    )
    return {str(key): int(v) for key, v in released.items()}, spend
