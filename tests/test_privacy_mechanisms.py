"""DP mechanisms: the noise has the variance the accounting claims, and OpenDP accounts what we asked for.

Variance checks: over n draws the sample variance of noise added to zeros must fall inside a
99.99% interval around the theoretical variance of the *discrete* (or continuous) distribution,
whose fourth moment gives the interval's width: Var(s²) ≈ (μ4 - σ⁴) / n.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthstream.privacy.accounting import Spend, gaussian_sigma, laplace_scale
from synthstream.privacy.mechanisms import (
    GaussianMechanism,
    LaplaceMechanism,
    discrete_gaussian_std,
    discrete_laplace_std,
    private_quantiles,
    threshold_histogram,
)

N = 40_000
Z = 3.9  # two-sided 99.99%


def _discrete_moments(weights_at) -> tuple[float, float]:
    xs = np.arange(-2_000, 2_001, dtype=np.float64)
    w = weights_at(xs)
    w = w / w.sum()
    return float((w * xs**2).sum()), float((w * xs**4).sum())


def _assert_variance(draws: np.ndarray, var: float, mu4: float) -> None:
    n = len(draws)
    sample_var = float(np.var(draws, ddof=1))
    se = math.sqrt((mu4 - var**2) / n)
    assert abs(sample_var - var) < Z * se, (sample_var, var, se)
    assert abs(float(draws.mean())) < Z * math.sqrt(var / n)


@pytest.mark.parametrize("rho", [0.005, 0.05])
def test_discrete_gaussian_variance_matches_theory(rho: float) -> None:
    mech = GaussianMechanism(rho, 1.0)
    sigma = gaussian_sigma(rho, 1.0)
    var, mu4 = _discrete_moments(lambda x: np.exp(-(x**2) / (2 * sigma**2)))
    assert mech.noise_std == pytest.approx(math.sqrt(var), rel=1e-6)
    _assert_variance(mech.release_counts(np.zeros(N, dtype=np.int64)).astype(float), var, mu4)


def test_continuous_gaussian_sums_variance() -> None:
    mech = GaussianMechanism(0.02, 7.5, integer=False)
    sigma = 7.5 / math.sqrt(2 * 0.02)
    _assert_variance(mech.release_sums(np.zeros(N)), sigma**2, 3 * sigma**4)


@pytest.mark.parametrize("epsilon", [0.2, 1.0])
def test_discrete_laplace_variance_matches_theory(epsilon: float) -> None:
    mech = LaplaceMechanism(epsilon, 1.0)
    b = laplace_scale(epsilon, 1.0)
    var, mu4 = _discrete_moments(lambda x: np.exp(-np.abs(x) / b))
    assert mech.noise_std == pytest.approx(discrete_laplace_std(b), rel=1e-9)
    assert mech.noise_std == pytest.approx(math.sqrt(var), rel=1e-6)
    _assert_variance(mech.release_counts(np.zeros(N, dtype=np.int64)).astype(float), var, mu4)


def test_continuous_laplace_sums_variance() -> None:
    mech = LaplaceMechanism(0.5, 3.0, integer=False)
    b = 3.0 / 0.5
    _assert_variance(mech.release_sums(np.zeros(N)), 2 * b**2, 24 * b**4)


def test_discrete_gaussian_std_is_below_sigma_when_small_and_equal_when_large() -> None:
    assert discrete_gaussian_std(0.3) < 0.3
    assert discrete_gaussian_std(20.0) == pytest.approx(20.0, rel=1e-9)


def test_opendp_accounts_exactly_the_budget_we_calibrated_for() -> None:
    assert GaussianMechanism(0.01, 3.0).spend.rho == pytest.approx(0.01, rel=1e-9)
    assert LaplaceMechanism(0.7, 2.0).spend.epsilon == pytest.approx(0.7, rel=1e-9)
    # Noise grows with the sensitivity: k records per unit need k times the noise.
    assert GaussianMechanism(0.01, 4.0).noise_std > 3.9 * GaussianMechanism(0.01, 1.0).noise_std


@pytest.mark.parametrize(
    "make",
    [
        lambda: GaussianMechanism(0.0, 1.0),
        lambda: GaussianMechanism(0.1, -1.0),
        lambda: LaplaceMechanism(float("inf"), 1.0),
        lambda: LaplaceMechanism(1.0, 0.0),
    ],
)
def test_bad_parameters_are_refused(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_counts_mechanism_refuses_real_sums_and_back() -> None:
    with pytest.raises(ValueError, match="integer"):
        GaussianMechanism(0.1, 1.0).release_sums(np.zeros(3))
    with pytest.raises(ValueError, match="sums"):
        GaussianMechanism(0.1, 1.0, integer=False).release_counts(np.zeros(3, dtype=np.int64))


def test_private_quantiles_land_near_the_truth_at_a_generous_budget() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(50, 10, 20_000).tolist()
    quantiles, spent = private_quantiles(values, np.linspace(0, 100, 501).tolist(), [0.25, 0.5, 0.75], Spend(rho=3.0))
    truth = np.quantile(values, [0.25, 0.5, 0.75])
    assert np.allclose(quantiles, truth, atol=1.0)
    assert spent.rho == pytest.approx(3.0, rel=1e-6)


def test_threshold_histogram_suppresses_rare_keys_and_keeps_common_ones() -> None:
    counts = {"common": 5_000, "also": 2_000, "rare": 2, "once": 1}
    released, spent = threshold_histogram(counts, Spend(rho=0.5), 1e-9)
    assert set(released) == {"common", "also"}
    assert abs(released["common"] - 5_000) < 100
    assert spent.rho == pytest.approx(0.5, rel=1e-6)
    assert 0 < spent.delta <= 1e-9
