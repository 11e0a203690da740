"""Fidelity of a synthetic table to the real one: column shapes and pair trends.

Pure numpy/pandas/scipy re-implementations of SDMetrics' single-table quality scores,
so the service can score its own models without importing SDMetrics (whose
dependency chain pulls BUSL-licensed code):

* column shapes: per field ``1 - KS statistic`` (numeric and datetime, nulls dropped)
  or ``1 - total variation distance`` (categorical, nulls dropped); averaged;
* pair trends: per pair of fields ``1 - |corr_real - corr_synth| / 2`` (Pearson, both
  numeric/datetime, rows with a null in the pair dropped) or ``1 - TVD`` of the
  two-way contingency table (both categorical, nulls kept as a category; a numeric
  field in a mixed pair is cut into 10 equal-width bins);
* identifiers and free text are skipped.

Differences from SDMetrics 0.32, documented so numbers can be compared: a numeric
field in a mixed pair is binned on the *real* data's edges for both tables (SDMetrics
bins each table on its own edges, which hides a shifted range), and by default every
pair counts (SDMetrics' QualityReport only averages pairs whose real correlation
exceeds 0.5 or Cramér's V exceeds 0.3; pass those thresholds to mirror it).
"""

from __future__ import annotations

import itertools
from typing import TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import ks_2samp
from scipy.stats.contingency import association

from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

__all__ = ["as_float", "column_shapes_score", "fidelity_report", "pair_trends_score"]

_SKIPPED_ROLES = (FieldRole.IDENTIFIER, FieldRole.FREE_TEXT)
_BINS = 10

FloatArray: TypeAlias = NDArray[np.float64]


def _scored_fields(schema: RecordSchema, *frames: pd.DataFrame) -> list[FieldSpec]:
    """Fields that are scored: not identifiers or free text, present in every frame."""
    return [
        f for f in schema.fields if f.role not in _SKIPPED_ROLES and all(f.name in frame.columns for frame in frames)
    ]


def as_float(column: pd.Series, field: FieldSpec) -> FloatArray:
    """Column as float64 (NaN for null or unparsable); timestamps as epoch microseconds."""
    if field.type is FieldType.TIMESTAMP:
        stamps = pd.to_datetime(column, utc=True, errors="coerce", format="mixed")
        out = np.full(len(stamps), np.nan)
        ok = stamps.notna().to_numpy()
        out[ok] = stamps[ok].dt.as_unit("us").astype("int64").to_numpy().astype(np.float64)
        return out
    values: FloatArray = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def _category_key(column: pd.Series) -> pd.Series:
    """Categorical values made comparable across frames (``1`` == ``1.0``, bools kept); nulls as NaN."""
    return column.astype(object).where(column.notna(), np.nan)


def _ks_complement(real: FloatArray, synth: FloatArray) -> float:
    real, synth = real[~np.isnan(real)], synth[~np.isnan(synth)]
    if real.size == 0 or synth.size == 0:
        return float("nan")
    return float(1.0 - ks_2samp(real, synth, method="asymp").statistic)  # the statistic only; p is unused


def _tv_complement(real: pd.Series, synth: pd.Series) -> float:
    real_freq = real.dropna().value_counts(normalize=True)
    synth_freq = synth.dropna().value_counts(normalize=True)
    if real_freq.empty or synth_freq.empty:
        return float("nan")
    index = real_freq.index.union(synth_freq.index, sort=False)
    diff = real_freq.reindex(index, fill_value=0.0) - synth_freq.reindex(index, fill_value=0.0)
    return float(1.0 - 0.5 * np.abs(diff.to_numpy(dtype=np.float64)).sum())


def column_shapes_score(real: pd.DataFrame, synthetic: pd.DataFrame, schema: RecordSchema) -> float:
    """Mean per-field marginal similarity in [0, 1] (1 = identical marginals); NaN if nothing is scored."""
    scores = []
    for field in _scored_fields(schema, real, synthetic):
        if field.continuous:
            scores.append(_ks_complement(as_float(real[field.name], field), as_float(synthetic[field.name], field)))
        else:
            scores.append(_tv_complement(_category_key(real[field.name]), _category_key(synthetic[field.name])))
    return _nanmean(scores)


def _correlation_similarity(real: FloatArray, synth: FloatArray, threshold: float) -> float:
    """``1 - |r_real - r_synth| / 2`` on rows without nulls; NaN when undefined or below threshold."""
    r_real, r_synth = _pearson(real), _pearson(synth)
    if np.isnan(r_real) or np.isnan(r_synth) or (abs(r_real) <= threshold and threshold > 0):
        return float("nan")
    return float(1.0 - abs(r_real - r_synth) / 2.0)


def _pearson(pair: FloatArray) -> float:
    pair = pair[~np.isnan(pair).any(axis=1)]
    if pair.shape[0] < 2 or np.ptp(pair[:, 0]) == 0 or np.ptp(pair[:, 1]) == 0:
        return float("nan")
    return float(np.corrcoef(pair[:, 0], pair[:, 1])[0, 1])


def _contingency_similarity(real: pd.DataFrame, synth: pd.DataFrame, threshold: float) -> float:
    """``1 - TVD`` of the two-way tables (nulls a category); NaN when below the association threshold."""
    cols = list(real.columns)
    real_counts = real.groupby(cols, dropna=False).size()
    if threshold > 0 and _cramers_v(real_counts) <= threshold:
        return float("nan")
    real_freq = real_counts / len(real)
    synth_freq = synth.groupby(cols, dropna=False).size() / max(len(synth), 1)
    index = real_freq.index.union(synth_freq.index, sort=False)
    diff = real_freq.reindex(index, fill_value=0.0) - synth_freq.reindex(index, fill_value=0.0)
    return float(1.0 - 0.5 * np.abs(diff.to_numpy(dtype=np.float64)).sum())


def _cramers_v(counts: pd.Series) -> float:
    table = counts.unstack(fill_value=0).to_numpy()
    if table.sum() == 0 or min(table.shape) < 2:
        return float("nan")
    return float(association(table, method="cramer"))


def _binned(real: FloatArray, synth: FloatArray) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Both columns cut on 10 equal-width bins of the real data (null -> its own bin)."""
    finite = real[~np.isnan(real)]
    if finite.size == 0:
        return np.full(real.shape, -1), np.full(synth.shape, -1)
    edges = np.histogram_bin_edges(finite, bins=_BINS)
    return np.digitize(real, edges), np.digitize(synth, edges)


def pair_trends_score(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: RecordSchema,
    *,
    real_correlation_threshold: float = 0.0,
    real_association_threshold: float = 0.0,
) -> float:
    """Mean per-pair dependence similarity in [0, 1] (1 = same correlations and contingency tables).

    Pairs whose real correlation (numeric pairs) or Cramér's V (other pairs) is not above
    the given threshold are left out, as SDMetrics' QualityReport does with 0.5 and 0.3.
    """
    fields = _scored_fields(schema, real, synthetic)
    real_cols, synth_cols = {}, {}
    for field in fields:
        if field.continuous:
            real_cols[field.name] = as_float(real[field.name], field)
            synth_cols[field.name] = as_float(synthetic[field.name], field)
    scores = []
    for a, b in itertools.combinations(fields, 2):
        if a.continuous and b.continuous:
            pair_real = np.column_stack([real_cols[a.name], real_cols[b.name]])
            pair_synth = np.column_stack([synth_cols[a.name], synth_cols[b.name]])
            scores.append(_correlation_similarity(pair_real, pair_synth, real_correlation_threshold))
            continue
        frames = [pd.DataFrame(index=real.index), pd.DataFrame(index=synthetic.index)]
        for field in (a, b):
            if field.continuous:
                frames[0][field.name], frames[1][field.name] = _binned(real_cols[field.name], synth_cols[field.name])
            else:
                frames[0][field.name] = _category_key(real[field.name])
                frames[1][field.name] = _category_key(synthetic[field.name])
        scores.append(_contingency_similarity(frames[0], frames[1], real_association_threshold))
    return _nanmean(scores)


def fidelity_report(real: pd.DataFrame, synthetic: pd.DataFrame, schema: RecordSchema) -> dict[str, float]:
    """Return ``column_shapes``, ``pair_trends`` and their mean ``overall``, each in [0, 1]."""
    shapes = column_shapes_score(real, synthetic, schema)
    trends = pair_trends_score(real, synthetic, schema)
    overall = _nanmean([shapes, trends])
    return {"column_shapes": shapes, "pair_trends": trends, "overall": overall}


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")
