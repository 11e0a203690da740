"""Constructor argument checks shared by the generators: clear errors at construction, not mid-fit."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_float", "check_int"]


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in [low, high]; ValueError naming ``name`` otherwise (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}]; got {value!r}")
    return int(value)


def check_float(name: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float in [low, high]; ValueError naming ``name`` otherwise (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}]; got {value!r}")
    return float(value)
