"""Quality of a synthetic table for the audit: fidelity scores, TSTR and the report's summaries.

* fidelity: SDMetrics-style column shapes and pair trends (:mod:`synthstream.evaluation.fidelity`);
* TSTR (train on synthetic, test on real): a gradient-boosted model fitted on the synthetic
  rows and, as the reference (TRTR), on as many training rows, both scored on the control
  records neither has seen. Classification targets are scored with macro F1 (Adult's income
  is 76 % one class, so accuracy would flatter a constant), numeric targets with R². The
  ratio TSTR / TRTR is what the gate floors;
* report summaries: per-field distributions (real vs synthetic shares over the same bins or
  categories) and a Cramér's V association matrix of each table. Real-data summaries are
  aggregates of redacted data, but they are not differentially private: cells with fewer
  than ``min_count`` real records are suppressed and numeric bins span the 1st-99th
  percentiles, so no single record's extreme value is printed.

Inputs are frames from :func:`synthstream.evaluation.privacy_risk.attack_frame` (floats
for continuous fields, strings for the rest), except :func:`fidelity_scores`, which takes
canonical records.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from synthstream.evaluation.fidelity import fidelity_report
from synthstream.schemas.record import RecordSchema

__all__ = [
    "Associations",
    "FieldDistribution",
    "association_matrices",
    "fidelity_scores",
    "field_distributions",
    "tstr_score",
    "tstr_scores",
]

FloatArray: TypeAlias = NDArray[np.float64]
_OTHER = "(other)"
_NULL = "(null)"
_TOP_CATEGORIES = 20
_ASSOCIATION_BINS = 10
_TSTR_MAX_CATEGORIES = 250


class FieldDistribution(BaseModel):
    """One field's distribution in the real and the synthetic table, over the same cells."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(description="Field name.")
    kind: Literal["numeric", "categorical"] = Field(description="Histogram bins or categories.")
    labels: list[str] = Field(description="Cell labels: bin ranges or category values.")
    real: list[float] = Field(description="Share of real records per cell (suppressed cells are 0).")
    synthetic: list[float] = Field(description="Share of synthetic records per cell.")
    suppressed: int = Field(default=0, ge=0, description="Cells hidden because too few real records fall in them.")


class Associations(BaseModel):
    """Cramér's V between every pair of audited fields, in the real and the synthetic table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fields: list[str] = Field(description="Field names, the rows and columns of both matrices.")
    real: list[list[float]] = Field(description="Association matrix of the real records.")
    synthetic: list[list[float]] = Field(description="Association matrix of the synthetic records.")


def fidelity_scores(real: pd.DataFrame, synthetic: pd.DataFrame, schema: RecordSchema) -> dict[str, float]:
    """``column_shapes``, ``pair_trends`` and ``overall`` in [0, 1] (NaN scores are left out)."""
    report = fidelity_report(real, synthetic, schema)
    return {k: float(v) for k, v in report.items() if not np.isnan(v)}


# ---------------------------------------------------------------------------------------------
# TSTR
# ---------------------------------------------------------------------------------------------


def _design(frames: Sequence[pd.DataFrame], features: Sequence[str]) -> tuple[list[FloatArray], list[bool]]:
    """Features as float matrices: numbers as they are, categories as shared integer codes (NaN = null)."""
    columns: list[list[FloatArray]] = [[] for _ in frames]
    categorical: list[bool] = []
    for name in features:
        if frames[0][name].dtype.kind == "f":
            for i, frame in enumerate(frames):
                columns[i].append(frame[name].to_numpy(dtype=np.float64))
            categorical.append(False)
            continue
        counts = frames[0][name].value_counts()
        kept = pd.Index(counts.index[:_TSTR_MAX_CATEGORIES])
        for i, frame in enumerate(frames):
            codes = kept.get_indexer(frame[name]).astype(np.float64)
            codes[codes < 0] = np.nan  # null, or a category outside the kept ones
            columns[i].append(codes)
        categorical.append(True)
    return [np.column_stack(c) if c else np.zeros((len(f), 0)) for c, f in zip(columns, frames, strict=True)], (
        categorical
    )


def _fit_score(
    train: pd.DataFrame, test: pd.DataFrame, reference: pd.DataFrame, target: str, regression: bool, seed: int
) -> float:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # OpenMP threads fighting the stream for 2 cores ran 10-40x slower
        return _fit_score_in(train, test, reference, target, regression, seed)


def _fit_score_in(
    train: pd.DataFrame, test: pd.DataFrame, reference: pd.DataFrame, target: str, regression: bool, seed: int
) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import f1_score, r2_score

    features = [c for c in reference.columns if c != target]
    (x_train, x_test), categorical = _design([train, test], features)
    y_train, y_test = train[target], test[target]
    if regression:
        model = HistGradientBoostingRegressor(max_iter=100, categorical_features=categorical, random_state=seed)
        model.fit(x_train, y_train.to_numpy(dtype=np.float64))
        return float(r2_score(y_test.to_numpy(dtype=np.float64), model.predict(x_test)))
    labels = y_train.astype(str).to_numpy()
    if len(np.unique(labels)) < 2:
        return 0.0  # a generator that emits one class predicts nothing
    classifier = HistGradientBoostingClassifier(max_iter=100, categorical_features=categorical, random_state=seed)
    classifier.fit(x_train, labels)
    predicted = classifier.predict(x_test)
    return float(f1_score(y_test.astype(str).to_numpy(), predicted, average="macro"))


def tstr_score(
    synthetic: pd.DataFrame, control: pd.DataFrame, *, target: str, regression: bool, seed: int = 0
) -> float:
    """TSTR alone: a model fitted on ``synthetic``, scored on ``control`` (rows with a null target dropped).

    Macro F1 for a categorical target, R² for a numeric one. What the trainer's validation adds
    to a candidate's accuracy when the pipeline declares ``audit.target_field``.
    """
    synth = synthetic[synthetic[target].notna()].reset_index(drop=True)
    test = control[control[target].notna()].reset_index(drop=True)
    if len(synth) == 0 or len(test) == 0:
        return 0.0  # a generator that never emits the target predicts nothing
    return _fit_score(synth, test, synth, target, regression, seed)


def tstr_scores(
    training: pd.DataFrame,
    synthetic: pd.DataFrame,
    control: pd.DataFrame,
    *,
    target: str,
    regression: bool,
    seed: int = 0,
) -> dict[str, float]:
    """``tstr`` (fit on synthetic), ``trtr`` (fit on as many training rows) and ``tstr_ratio``, tested on control.

    Rows with a null target are dropped. ``training`` is the reference the features are
    encoded from. The ratio is 0 when TRTR is not positive (nothing to compare with).
    """
    keep = [frame[frame[target].notna()].reset_index(drop=True) for frame in (training, synthetic, control)]
    train, synth, test = keep
    if len(train) == 0 or len(synth) == 0 or len(test) == 0:
        raise ValueError(f"TSTR needs rows with a non-null {target!r} in training, synthetic and control data")
    n = min(len(train), len(synth))
    train = train.sample(n, random_state=seed) if len(train) > n else train
    synth = synth.sample(n, random_state=seed) if len(synth) > n else synth
    tstr = _fit_score(synth, test, train, target, regression, seed)
    trtr = _fit_score(train, test, train, target, regression, seed)
    ratio = tstr / trtr if trtr > 0 else 0.0
    return {"tstr": tstr, "trtr": trtr, "tstr_ratio": ratio}


# ---------------------------------------------------------------------------------------------
# report summaries
# ---------------------------------------------------------------------------------------------


def _shares(counts: FloatArray) -> list[float]:
    total = counts.sum()
    return [float(x) for x in (counts / total if total > 0 else counts)]


def _numeric_distribution(name: str, real: pd.Series, synth: pd.Series, bins: int, min_count: int) -> FieldDistribution:
    r = real.to_numpy(dtype=np.float64)
    s = synth.to_numpy(dtype=np.float64)
    finite = r[~np.isnan(r)]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)

    def counts(values: FloatArray) -> FloatArray:
        v = values[~np.isnan(values)]
        cells = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, bins - 1)
        out = np.bincount(cells, minlength=bins).astype(np.float64)
        return np.append(out, float(np.isnan(values).sum()))

    real_counts, synth_counts = counts(r), counts(s)
    labels = [f"{edges[i]:.4g}–{edges[i + 1]:.4g}" for i in range(bins)] + [_NULL]
    if real_counts[-1] == 0 and synth_counts[-1] == 0:
        real_counts, synth_counts, labels = real_counts[:-1], synth_counts[:-1], labels[:-1]
    small = (real_counts > 0) & (real_counts < min_count)
    real_shares = _shares(real_counts)
    real_shown = [0.0 if hide else share for share, hide in zip(real_shares, small.tolist(), strict=True)]
    return FieldDistribution(
        field=name,
        kind="numeric",
        labels=labels,
        real=real_shown,
        synthetic=_shares(synth_counts),
        suppressed=int(small.sum()),
    )


def _categorical_distribution(name: str, real: pd.Series, synth: pd.Series, min_count: int) -> FieldDistribution:
    real_counts = real.fillna(_NULL).value_counts()
    shown = [c for c, n in real_counts.items() if n >= min_count][:_TOP_CATEGORIES]
    suppressed = int((real_counts < min_count).sum())

    def cells(column: pd.Series) -> FloatArray:
        values = column.fillna(_NULL)
        counts = values.value_counts()
        kept = [float(counts.get(c, 0)) for c in shown]
        return np.array([*kept, float(len(values)) - sum(kept)], dtype=np.float64)

    return FieldDistribution(
        field=name,
        kind="categorical",
        labels=[str(c) for c in shown] + [_OTHER],
        real=_shares(cells(real)),
        synthetic=_shares(cells(synth)),
        suppressed=suppressed,
    )


def field_distributions(
    real: pd.DataFrame, synthetic: pd.DataFrame, *, bins: int = 20, min_count: int = 10
) -> list[FieldDistribution]:
    """Per-field distributions of the real and synthetic tables over the same cells.

    Numeric fields: ``bins`` equal-width bins over the real 1st-99th percentiles (values
    outside go to the end bins) plus a null cell. Categorical fields: the most frequent
    real categories with at least ``min_count`` records, the rest pooled as ``(other)``.
    """
    out = []
    for name in real.columns:
        if real[name].dtype.kind == "f":
            out.append(_numeric_distribution(name, real[name], synthetic[name], bins, min_count))
        else:
            out.append(_categorical_distribution(name, real[name], synthetic[name], min_count))
    return out


def _codes(real: pd.Series, synth: pd.Series) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """Integer cells of both columns on the real data's cells (numbers: deciles; nulls and unknowns: own cells)."""
    if real.dtype.kind == "f":
        r, s = real.to_numpy(dtype=np.float64), synth.to_numpy(dtype=np.float64)
        finite = r[~np.isnan(r)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, _ASSOCIATION_BINS + 1))) if finite.size else [0.0]
        inner = np.asarray(edges[1:-1])

        def cut(v: FloatArray) -> NDArray[np.int64]:
            c = np.searchsorted(inner, v, side="right").astype(np.int64)
            c[np.isnan(v)] = len(inner) + 1
            return c

        return cut(r), cut(s), len(inner) + 2
    categories = pd.Index(real.fillna(_NULL).unique())
    rc = categories.get_indexer(real.fillna(_NULL)).astype(np.int64)
    sc = categories.get_indexer(synth.fillna(_NULL)).astype(np.int64)
    sc[sc < 0] = len(categories)
    return rc, sc, len(categories) + 1


def _cramers_v(a: NDArray[np.int64], b: NDArray[np.int64], ka: int, kb: int) -> float:
    table = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(np.float64)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    n = table.sum()
    if n == 0 or min(table.shape) < 2:
        return 0.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))


def association_matrices(real: pd.DataFrame, synthetic: pd.DataFrame) -> Associations:
    """Cramér's V of every pair of fields (numbers cut into the real data's deciles), for both tables."""
    names = list(real.columns)
    coded = [_codes(real[n], synthetic[n]) for n in names]
    k = len(names)
    real_m, synth_m = np.eye(k), np.eye(k)
    for i, j in itertools.combinations(range(k), 2):
        (ra, sa, ka), (rb, sb, kb) = coded[i], coded[j]
        real_m[i, j] = real_m[j, i] = _cramers_v(ra, rb, ka, kb)
        synth_m[i, j] = synth_m[j, i] = _cramers_v(sa, sb, ka, kb)
    return Associations(
        fields=names,
        real=[[round(float(x), 4) for x in row] for row in real_m],
        synthetic=[[round(float(x), 4) for x in row] for row in synth_m],
    )
