"""How a w-event budget is spread over windows (pluggable).

Under w-event privacy (Kellaris et al., VLDB 2014) any w consecutive windows together may
spend at most the budget B. An allocation decides what window i may spend, given ``previous``:
the largest spend of the *other* windows of any run of w consecutive windows that contains i
(windows i-w+1..i-1 when windows are released in order; the windows after i count too when
they were committed first, e.g. after a restart). Whatever it returns stays within every
containing run as long as it is at most ``B - previous``. The ledger enforces the constraint whatever the allocation
says, so a faulty allocation leads to refused releases, never to an over-spend.

- :class:`UniformAllocation` (default): every window gets B / w. Simple, predictable error.
- :class:`HalfRemainingAllocation`: a window gets half of what the sliding window has left
  (never below ``floor`` x B / w when that much is left): spends more early, adapts to gaps.
"""

from __future__ import annotations

from typing import Protocol

from synthstream.privacy.accounting import Spend

__all__ = ["ALLOCATIONS", "BudgetAllocation", "HalfRemainingAllocation", "UniformAllocation", "make_allocation"]


class BudgetAllocation(Protocol):
    """Decides the spend of one window from the budget and what the other windows of its runs spent."""

    def allocate(self, budget: Spend, w: int, previous: Spend) -> Spend:
        """What this window may spend; ``previous``: largest spend of the other windows of a run containing it."""
        ...


def _remaining(budget: Spend, previous: Spend) -> Spend:
    return Spend(
        max(0.0, budget.rho - previous.rho),
        max(0.0, budget.epsilon - previous.epsilon),
        max(0.0, budget.delta - previous.delta),
    )


def _scale(spend: Spend, factor: float) -> Spend:
    return Spend(spend.rho * factor, spend.epsilon * factor, spend.delta * factor)


def _min(a: Spend, b: Spend) -> Spend:
    return Spend(min(a.rho, b.rho), min(a.epsilon, b.epsilon), min(a.delta, b.delta))


class UniformAllocation:
    """Each window spends budget / w (capped by what is left, which only matters after a change of w)."""

    def __repr__(self) -> str:
        return "UniformAllocation()"

    def allocate(self, budget: Spend, w: int, previous: Spend) -> Spend:
        """Budget / w, or less when the sliding window has less left."""
        return _min(_scale(budget, 1 / w), _remaining(budget, previous))


class HalfRemainingAllocation:
    """Each window spends half of what the sliding window has left (at least ``floor`` x budget / w if left)."""

    def __init__(self, floor: float = 0.5) -> None:
        if not 0 <= floor <= 1:
            raise ValueError(f"floor must be in [0, 1], got {floor}")
        self.floor = floor

    def __repr__(self) -> str:
        return f"HalfRemainingAllocation(floor={self.floor})"

    def allocate(self, budget: Spend, w: int, previous: Spend) -> Spend:
        """max(half of what is left, floor x budget / w), capped by what is left."""
        left = _remaining(budget, previous)
        half = _scale(left, 0.5)
        floor = _scale(budget, self.floor / w)
        wanted = Spend(max(half.rho, floor.rho), max(half.epsilon, floor.epsilon), max(half.delta, floor.delta))
        return _min(wanted, left)


ALLOCATIONS: dict[str, type[UniformAllocation] | type[HalfRemainingAllocation]] = {
    "uniform": UniformAllocation,
    "half_remaining": HalfRemainingAllocation,
}


def make_allocation(name: str) -> BudgetAllocation:
    """The allocation called ``name``; ValueError lists the known ones."""
    try:
        return ALLOCATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown allocation {name!r}; choose one of {sorted(ALLOCATIONS)}") from None
