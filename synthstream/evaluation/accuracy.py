"""Accuracy of a synthetic table: ``1 - total variation`` over discretised 1- and 2-way distributions.

The "accuracy" of MOSTLY AI's open quality-assurance package (mostlyai-qa), re-implemented
on numpy/pandas so the trainer can score candidates without another dependency stack (its
report also embeds rows with a downloaded language model, which this offline service cannot):

* every scored field is discretised on the **real** table: numeric and datetime fields into
  ``bins`` (10) quantile bins, categorical fields into their ``top`` (10) most frequent values
  plus one "other" bucket; a null is its own bucket in both cases;
* univariate accuracy = mean over fields of ``1 - TVD`` of the bucket frequencies;
* bivariate accuracy = mean over field pairs of ``1 - TVD`` of the joint bucket frequencies;
* accuracy = the mean of the two.

Unlike SDMetrics' correlation-based pair trends it does not saturate on near-linear pairs and
it counts nulls, so it separates good models from very good ones. Identifiers and free
text are skipped (they are synthesised without reading the data). With many fields the
pairs are subsampled (``max_pairs``, seeded) so scoring stays cheap inside a fit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from synthstream.evaluation.fidelity import as_float
from synthstream.schemas.record import FieldRole, FieldSpec, RecordSchema

__all__ = ["AccuracyReport", "accuracy_report"]

_SKIPPED = (FieldRole.IDENTIFIER, FieldRole.FREE_TEXT)
_OTHER = -2
_NULL = -1


@dataclass(frozen=True)
class AccuracyReport:
    """Univariate, bivariate and overall accuracy in [0, 1] (1 = identical discretised distributions)."""

    univariate: float
    bivariate: float
    overall: float
    fields: int
    pairs: int


def _codes(
    real: pd.Series, synth: pd.Series, field: FieldSpec, bins: int, top: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Bucket codes of both columns on the real column's buckets (null -1, other -2)."""
    if field.continuous:
        r, s = as_float(real, field), as_float(synth, field)
        finite = r[~np.isnan(r)]
        if finite.size == 0:
            return np.full(r.shape, _NULL, np.int64), np.where(np.isnan(s), _NULL, _OTHER).astype(np.int64)
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
        out = []
        for values in (r, s):
            code = np.searchsorted(edges, np.nan_to_num(values), side="right").astype(np.int64)
            code[np.isnan(values)] = _NULL
            out.append(code)
        return out[0], out[1]
    r_obj = real.astype(object).where(real.notna(), None)
    s_obj = synth.astype(object).where(synth.notna(), None)
    kept = [v for v in r_obj.dropna().map(_key).value_counts().index[:top]]
    lookup = {v: i for i, v in enumerate(kept)}
    result = []
    for column in (r_obj, s_obj):
        result.append(
            np.fromiter(
                (_NULL if v is None else lookup.get(_key(v), _OTHER) for v in column), dtype=np.int64, count=len(column)
            )
        )
    return result[0], result[1]


def _key(value: object) -> object:
    """Comparable key: ``1`` == ``1.0`` == ``"1"`` is not assumed, but numbers compare by value."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    return value


def _tv_complement(real: NDArray[np.int64], synth: NDArray[np.int64]) -> float:
    keys_r, counts_r = np.unique(real, return_counts=True, axis=0)
    keys_s, counts_s = np.unique(synth, return_counts=True, axis=0)
    freq: dict[object, float] = {}
    for key, count in zip(map(_row_key, keys_r), counts_r, strict=True):
        freq[key] = count / len(real)
    for key, count in zip(map(_row_key, keys_s), counts_s, strict=True):
        freq[key] = freq.get(key, 0.0) - count / len(synth)
    return float(1.0 - 0.5 * sum(abs(v) for v in freq.values()))


def _row_key(row: NDArray[np.int64]) -> object:
    return tuple(int(x) for x in np.atleast_1d(row))


def accuracy_report(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: RecordSchema,
    *,
    bins: int = 10,
    top: int = 10,
    max_pairs: int | None = None,
    seed: int = 0,
) -> AccuracyReport:
    """Score ``synthetic`` against ``real`` (see the module docstring); NaN parts when nothing is scored."""
    if len(real) == 0 or len(synthetic) == 0:
        raise ValueError("accuracy needs at least one real and one synthetic row")
    fields = [
        f for f in schema.fields if f.role not in _SKIPPED and f.name in real.columns and f.name in synthetic.columns
    ]
    codes = {f.name: _codes(real[f.name], synthetic[f.name], f, bins, top) for f in fields}
    uni = [_tv_complement(*codes[f.name]) for f in fields]
    pairs = list(itertools.combinations([f.name for f in fields], 2))
    if max_pairs is not None and len(pairs) > max_pairs:
        picked = np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False)
        pairs = [pairs[i] for i in sorted(picked)]
    bi = [
        _tv_complement(np.column_stack([codes[a][0], codes[b][0]]), np.column_stack([codes[a][1], codes[b][1]]))
        for a, b in pairs
    ]
    u = float(np.mean(uni)) if uni else float("nan")
    b = float(np.mean(bi)) if bi else float("nan")
    overall = float(np.nanmean([u, b])) if uni else float("nan")
    return AccuracyReport(univariate=u, bivariate=b, overall=overall, fields=len(fields), pairs=len(pairs))
