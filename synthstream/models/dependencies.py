"""Columns that another column determines — a code and its label, a state and its region — kept exact.

Real tables often carry the same fact twice: Titanic's ``Sex`` and ``SexCode``, Adult's
``education`` and ``education-num``. A Gaussian copula models each pair through one
correlation, so on Titanic 36 % of its rows paired ``female`` with the code of ``male``; a
user checking the feed rejects it at once. The non-DP generators therefore learn, at fit
time, which low-cardinality field determines another one exactly, and rewrite the
dependent field from the determinant after sampling.

A rule ``A -> B`` is kept when, on the training data:

* both fields have between 2 and :data:`MAX_LEVELS` distinct values (a null is a value);
* every value of ``A`` held by at least ``min_count`` records maps to one value of ``B``,
  and those values cover :data:`MIN_COVERAGE` of the records (rarer values of ``A`` are
  neither judged nor rewritten: the mapping never stores what fewer than ``min_count``
  records show, the same floor the generators use for every value they emit).

A determinant is never itself rewritten, so the rules apply in one pass; of a one-to-one
pair the field listed later in the schema is the one rewritten. DP generators do not use this
(the mapping is read from the raw records without noise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from synthstream.models.encoding import canonical
from synthstream.schemas.record import FieldRole, FieldSpec, RecordSchema

__all__ = ["MAX_LEVELS", "MIN_COVERAGE", "Dependency", "apply_dependencies", "find_dependencies"]

#: Most distinct values a determinant or dependent field may have.
MAX_LEVELS = 64
#: Least share of records whose determinant value is common enough to be judged.
MIN_COVERAGE = 0.95
_ROLES = (FieldRole.CATEGORICAL, FieldRole.NUMERIC)


@dataclass(frozen=True)
class Dependency:
    """``dependent`` takes ``mapping[value of determinant]`` (canonical values; None for a null)."""

    determinant: str
    dependent: str
    mapping: Mapping[Any, Any]


def _key(value: Any, spec: FieldSpec) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    try:
        return canonical(value, spec.type)
    except (TypeError, ValueError, OverflowError):
        return None


def find_dependencies(frame: pd.DataFrame, schema: RecordSchema, *, min_count: int) -> list[Dependency]:
    """The exact dependencies between low-cardinality fields of ``frame`` (see the module docstring)."""
    n = len(frame)
    if n < 2 * max(min_count, 1):
        return []
    specs = [s for s in schema.fields if s.role in _ROLES and s.name in frame.columns]
    keys: dict[str, list[Any]] = {}
    codes: dict[str, NDArray[np.int64]] = {}
    levels: dict[str, list[Any]] = {}
    for spec in specs:
        column = frame[spec.name].tolist()
        if len(set(map(str, column[:5000]))) > MAX_LEVELS:  # cheap early exit for continuous fields
            continue
        values = [_key(v, spec) for v in column]
        code, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
        if 2 <= len(uniques) <= MAX_LEVELS:
            keys[spec.name], codes[spec.name] = values, code.astype(np.int64)
            levels[spec.name] = [None if (isinstance(u, float) and math.isnan(u)) else u for u in uniques]
    names = [s.name for s in specs if s.name in codes]
    rules: list[Dependency] = []
    determinants: set[str] = set()
    dependents: set[str] = set()
    for b in reversed(names):  # of a one-to-one pair, the later field is rewritten
        for a in names:
            if a == b or a in dependents or b in determinants:
                continue
            mapping = _exact(codes[a], codes[b], levels[a], levels[b], min_count)
            if mapping is not None:
                rules.append(Dependency(a, b, mapping))
                determinants.add(a)
                dependents.add(b)
                break
    return rules


def _exact(
    a: NDArray[np.int64], b: NDArray[np.int64], a_levels: Sequence[Any], b_levels: Sequence[Any], min_count: int
) -> dict[Any, Any] | None:
    """``{a value: b value}`` over the common values of ``a`` when each maps to one ``b``; else None."""
    sizes = np.bincount(a, minlength=len(a_levels))
    common = sizes >= max(min_count, 1)
    if sizes[common].sum() < MIN_COVERAGE * a.size or common.sum() < 2:
        return None
    pairs = np.unique(a * len(b_levels) + b)
    owners = pairs // len(b_levels)
    per_a = np.bincount(owners, minlength=len(a_levels))
    if (per_a[common] != 1).any():
        return None
    target = dict(zip(owners.tolist(), (pairs % len(b_levels)).tolist(), strict=True))
    mapping = {a_levels[i]: b_levels[target[i]] for i in np.flatnonzero(common).tolist()}
    if len(set(map(repr, mapping.values()))) < 2:
        return None  # B constant over the common values: nothing worth enforcing
    return mapping


def apply_dependencies(
    columns: dict[str, list[Any]], rules: Sequence[Dependency], schema: RecordSchema
) -> dict[str, list[Any]]:
    """Rewrite each rule's dependent column from its determinant (in place; rare determinant values kept)."""
    for rule in rules:
        if rule.determinant not in columns or rule.dependent not in columns:
            continue
        spec = schema.field(rule.determinant)
        mapping, missing = rule.mapping, object()
        out = []
        for a, b in zip(columns[rule.determinant], columns[rule.dependent], strict=True):
            mapped = mapping.get(_key(a, spec), missing)
            out.append(b if mapped is missing else mapped)
        columns[rule.dependent] = out
    return columns
