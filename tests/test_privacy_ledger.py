"""The privacy ledger: w-event budget never exceeded, append-only, durable, idempotent."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import duckdb
import numpy as np
import pytest

from synthstream.privacy.accounting import Spend
from synthstream.privacy.allocation import HalfRemainingAllocation, UniformAllocation, make_allocation
from synthstream.privacy.ledger import BudgetExceeded, DomainRow, LedgerError, PrivacyLedger, Release

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _commit(ledger: PrivacyLedger, window: int, rho: float, budget: float, w: int, payload=None) -> Spend:
    return ledger.commit_window(
        stream="s",
        scope="stats",
        unit="record",
        window_index=window,
        window_start=T0,
        window_end=T0,
        releases=[
            Release("count", "gaussian", Spend(rho=rho / 2)),
            Release("marginal:a", "gaussian", Spend(rho=rho / 2)),
        ],
        budget=Spend(rho=budget),
        w=w,
        payload=payload if payload is not None else {"window": window},
    )


def _max_sliding_sum(path, w: int) -> float:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT window_index, sum(rho) FROM releases WHERE scope='stats' GROUP BY 1 ORDER BY 1"
        ).fetchall()
    spend = dict(rows)
    if not spend:
        return 0.0
    lo, hi = min(spend), max(spend)
    return max(sum(spend.get(j, 0.0) for j in range(i - w + 1, i + 1)) for i in range(lo, hi + 1))


@pytest.mark.parametrize("allocation", ["uniform", "half_remaining", "greedy"])
def test_w_event_budget_is_never_exceeded_over_a_long_run(tmp_path, allocation: str) -> None:
    """120 windows, with gaps; a 'greedy' allocation asks for far too much and must be refused by the ledger."""
    ledger = PrivacyLedger(tmp_path / "ledger.duckdb")
    budget, w = 1.0, 7
    rng = random.Random(3)
    refused = released = 0
    window = 0
    for _ in range(120):
        window += rng.choice([1, 1, 1, 2, 5])
        previous = ledger.window_spend("s", "stats", "record", window - w + 1, window - 1)
        if allocation == "greedy":
            ask = rng.uniform(0.1, 0.6) * budget
        else:
            ask = make_allocation(allocation).allocate(Spend(rho=budget), w, previous).rho
        try:
            after = _commit(ledger, window, ask, budget, w)
            released += 1
            assert after.rho <= budget * (1 + 1e-9)
        except BudgetExceeded as exc:
            refused += 1
            assert exc.window_index == window
    assert _max_sliding_sum(tmp_path / "ledger.duckdb", w) <= budget * (1 + 1e-9)
    assert released > 20
    if allocation == "greedy":
        assert refused > 0
        assert ledger.refusal_count("s", "stats") == refused
    else:
        assert refused == 0


def test_uniform_and_half_remaining_allocations() -> None:
    b = Spend(rho=1.0)
    assert UniformAllocation().allocate(b, 4, Spend()).rho == pytest.approx(0.25)
    assert UniformAllocation().allocate(b, 4, Spend(rho=0.9)).rho == pytest.approx(0.1)
    assert HalfRemainingAllocation().allocate(b, 4, Spend(rho=0.2)).rho == pytest.approx(0.4)
    assert HalfRemainingAllocation().allocate(b, 4, Spend(rho=1.0)).rho == 0.0
    with pytest.raises(ValueError, match="uniform"):
        make_allocation("nope")


def test_a_window_is_released_once_and_its_payload_is_stored(tmp_path) -> None:
    ledger = PrivacyLedger(tmp_path / "l.duckdb")
    _commit(ledger, 5, 0.1, 1.0, 3, payload={"values": [1, 2, 3]})
    assert ledger.stored_window("s", "stats", "record", 5) == {"values": [1, 2, 3]}
    assert ledger.last_released_window("s", "stats", "record") == 5
    with pytest.raises(LedgerError, match="already released"):
        _commit(ledger, 5, 0.1, 1.0, 3)
    # The failed attempt left nothing behind (atomic): still exactly two ledger rows.
    assert ledger.window_spend("s", "stats", "record", 5, 5).rho == pytest.approx(0.1)


def test_restart_never_refreshes_the_budget(tmp_path) -> None:
    path = tmp_path / "l.duckdb"
    first = PrivacyLedger(path)
    _commit(first, 0, 0.6, 1.0, 10)
    again = PrivacyLedger(path)  # a new process opening the same file
    with pytest.raises(BudgetExceeded):
        _commit(again, 1, 0.6, 1.0, 10)
    _commit(again, 1, 0.4, 1.0, 10)
    assert again.window_spend("s", "stats", "record", -100, 100).rho == pytest.approx(1.0)


def test_model_scope_total_budget_and_idempotent_charges(tmp_path) -> None:
    ledger = PrivacyLedger(tmp_path / "l.duckdb")
    spend = [Release("aim:measure", "gaussian", Spend(rho=0.3))]
    budget = Spend(rho=0.5)
    assert ledger.charge(stream="s", scope="model", unit="record", releases=spend, budget=budget, key="v1").rho == 0.3
    # The same key again (a retried fit) is not charged twice.
    assert ledger.charge(stream="s", scope="model", unit="record", releases=spend, budget=budget, key="v1").rho == 0.3
    with pytest.raises(BudgetExceeded):
        ledger.charge(stream="s", scope="model", unit="record", releases=spend, budget=budget, key="v2")
    assert ledger.scope_spend("s", "model", "record").rho == pytest.approx(0.3)


def test_domains_and_marginals_round_trip(tmp_path) -> None:
    from synthstream.privacy.ledger import NoisyMarginalRow

    ledger = PrivacyLedger(tmp_path / "l.duckdb")
    assert ledger.save_domains("s", [DomainRow("age", "numeric", None, (0.0, 50.0, 100.0), "declared")]) == 1
    assert ledger.save_domains("s", [DomainRow("age", "numeric", None, (0.0, 1.0), "declared")]) == 0
    ledger.commit_window(
        stream="s",
        scope="stats",
        unit="record",
        window_index=3,
        window_start=T0,
        window_end=T0,
        releases=[Release("marginal:age", "gaussian", Spend(rho=0.1))],
        budget=Spend(rho=1.0),
        w=2,
        payload={},
        marginals=[NoisyMarginalRow(("age",), "marginal", (10.0, 5.0), 2.5)],
        domains=[DomainRow("sex", "categorical", ("F", "M"), None, "dp_threshold")],
    )
    domains = ledger.domains("s")
    assert domains["age"]["edges"] == [0.0, 50.0, 100.0]
    assert domains["sex"]["labels"] == ["F", "M"]
    rows = ledger.marginals("s", last_windows=1)
    assert rows[0]["query"] == ["age"] and np.allclose(rows[0]["answer"], [10.0, 5.0])
    assert rows[0]["noise_std"] == 2.5
