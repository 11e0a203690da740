"""Accounting checked against independent implementations: Google's dp-accounting and OpenDP's curve."""

from __future__ import annotations

import doctest

import pytest
from dp_accounting import GaussianDpEvent, SelfComposedDpEvent, ZCDpEvent, pld, rdp

import synthstream.privacy.accounting as accounting
from synthstream.privacy.accounting import Spend, epsilon_to_rho, gaussian_sigma, rho_to_epsilon, window_guarantee
from synthstream.privacy.mechanisms import GaussianMechanism


def _rdp_epsilon(event, delta: float) -> float:
    acc = rdp.RdpAccountant()
    acc.compose(event)
    return float(acc.get_epsilon(delta))


@pytest.mark.parametrize("rho", [0.001, 0.05, 0.5, 2.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-6, 1e-9])
def test_zcdp_conversion_agrees_with_dp_accounting(rho: float, delta: float) -> None:
    ours = rho_to_epsilon(rho, delta)
    theirs = _rdp_epsilon(ZCDpEvent(rho), delta)
    # Both bound the same RDP curve; ours optimises over real α (CKS20), theirs over a grid of α:
    # within 10% (their grid is coarse at small ρ: 5% apart at ρ=0.001). OpenDP is matched exactly below.
    assert ours <= theirs * 1.0001
    assert ours >= theirs * 0.9


@pytest.mark.parametrize("sigma", [2.0, 10.0, 40.0])
def test_zcdp_bound_is_valid_above_the_exact_gaussian_privacy_loss(sigma: float) -> None:
    # The PLD accountant gives the (near) exact ε of a Gaussian mechanism; a zCDP conversion is an upper bound.
    delta = 1e-6
    acc = pld.PLDAccountant()
    acc.compose(GaussianDpEvent(noise_multiplier=sigma))
    exact = float(acc.get_epsilon(delta))
    ours = rho_to_epsilon(1 / (2 * sigma**2), delta)
    assert exact <= ours + 1e-9
    assert ours < exact * 1.6  # and not a uselessly loose one


def test_composition_adds_rho_as_dp_accounting_composes_zcdp() -> None:
    windows = [0.01, 0.02, 0.005, 0.03, 0.015]
    total = sum((Spend(rho=r) for r in windows), Spend())
    acc = rdp.RdpAccountant()
    for r in windows:
        acc.compose(ZCDpEvent(r))
    assert total.rho == pytest.approx(sum(windows))
    assert rho_to_epsilon(total.rho, 1e-6) == pytest.approx(float(acc.get_epsilon(1e-6)), rel=5e-3)
    # Ten equal windows: our sum of ρ against dp-accounting's self-composition of the same event.
    ten = sum((Spend(rho=0.01) for _ in range(10)), Spend())
    theirs = _rdp_epsilon(SelfComposedDpEvent(ZCDpEvent(0.01), 10), 1e-6)
    assert rho_to_epsilon(ten.rho, 1e-6) == pytest.approx(theirs, rel=5e-3)
    # A wrong composition (ρ of one window, or the ε's added) is far from it: the check can fail.
    assert rho_to_epsilon(0.01, 1e-6) < 0.5 * theirs < 2 * theirs < 10 * rho_to_epsilon(0.01, 1e-6)


def test_gaussian_mechanism_noise_matches_dp_accounting_calibration() -> None:
    # Same ρ, same sensitivity: the noise multiplier σ/Δ gives the same RDP curve as ZCDpEvent(ρ).
    mech = GaussianMechanism(0.02, 1.0, integer=False)
    delta = 1e-6
    ours = rho_to_epsilon(mech.spend.rho, delta)
    theirs = _rdp_epsilon(GaussianDpEvent(noise_multiplier=mech.noise_std), delta)
    assert ours == pytest.approx(theirs, rel=5e-3)


def test_opendp_curve_agrees() -> None:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int)
    meas = dp.m.make_gaussian(*space, scale=5.0)
    curve = dp.c.make_zCDP_to_approxDP(meas).map(1)
    rho = float(meas.map(1))
    assert rho == pytest.approx(1 / (2 * 25.0))
    for delta in (1e-5, 1e-7):
        assert rho_to_epsilon(rho, delta) == pytest.approx(float(curve.epsilon(delta)), rel=1e-6)


def test_epsilon_to_rho_inverts_and_known_values() -> None:
    assert rho_to_epsilon(0.5, 1e-6) == pytest.approx(5.2215, abs=1e-3)
    for eps in (0.1, 1.0, 10.0):
        assert rho_to_epsilon(epsilon_to_rho(eps, 1e-6), 1e-6) == pytest.approx(eps, rel=1e-6)
    assert gaussian_sigma(0.5, 1.0) == pytest.approx(1.0)


def test_window_guarantee_states_the_w_window_bound() -> None:
    g = window_guarantee(
        "gaussian", Spend(rho=epsilon_to_rho(1.0, 1e-6), delta=1e-8), conversion_delta=1e-6, unit="record", w=10
    )
    assert g.epsilon == pytest.approx(1.0, rel=1e-6)
    assert g.rho is not None and g.epsilon == pytest.approx(_rdp_epsilon(ZCDpEvent(g.rho), 1e-6), rel=0.1)
    assert g.delta == pytest.approx(1e-6 + 1e-8)
    assert "over any 10 windows" in g.describe()


@pytest.mark.parametrize("bad", [(-1.0, 1e-6), (0.1, 0.0), (0.1, 1.0)])
def test_bad_inputs_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        rho_to_epsilon(*bad)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(accounting)
    assert result.attempted >= 2
    assert result.failed == 0
