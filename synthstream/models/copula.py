"""Our own Gaussian-copula tabular generator: the baseline later generators must beat.

How it models a record:

* every modelled field is mapped to a standard-normal *score* through its empirical
  distribution, using the distributional transform ``u = F(x-) + V * (F(x) - F(x-))``
  with ``V ~ U(0, 1)`` from the seeded RNG. For categories this is exactly SDV's
  "sample uniformly inside the category's cumulative-frequency interval"; for numeric
  fields with ties (``capital-gain`` is 92 % zeros) it keeps scores standard normal,
  so the Gaussian latent model is consistent with the data it was estimated from;
* the dependence between fields is the Pearson correlation of those scores, shrunk
  toward the identity until it is positive definite, then Cholesky-factored;
* sampling draws correlated normals and maps each back through the field's inverse
  distribution.

Per field (decided once at fit time, so sampling has no per-row branching). Nothing a
single record holds is stored (defence in depth behind redaction, :mod:`synthstream.models.guards`,
with ``k = min_count``):

* numeric (long/double) with at most 256 distinct values, where the values held by at
  least k records cover 95 % of the rows: an exact ordered discrete distribution over those
  values (age, hours, education-num, capital-gain); rarer values count as the nearest kept one;
* other numeric: an inverse quantile grid of ``n_quantiles`` points, linear in between,
  clipped to the supported range (k records and 0.5 % beyond each end), each point a mean
  of k neighbouring values; long fields are rounded and stay inside the grid;
* datetime: the same, on epoch microseconds, returned as tz-aware UTC ``datetime``;
* categorical (strings, booleans, categorical-role numbers): categories held by at least k
  records, ordered by frequency (at most ``max_categories``); the rest become an *other*
  category of fresh strings of their shape when they are id-like strings holding 5 % of
  the rows or more (a field mixing CPFs into lot codes), otherwise their rows get a kept
  category drawn by frequency (so kept proportions stay right);
* nulls: for categorical fields null is one more category, so it joins the copula and
  its co-occurrence with other fields (Adult's ``workclass``/``occupation`` nulls) is
  kept. Numeric and datetime fields with nulls get a null-indicator latent column in the
  copula; the value score of a null row is imputed with an independent normal draw;
* identifiers are never copied: fresh strings of the same shape (length distribution,
  per-position character class: digits, hex, letters, constant punctuation) or
  integers/floats/timestamps uniform in the supported range, with the observed null rate.
  Random collisions with real identifiers are possible for short shapes;
* free text: word sequences from a bounded vocabulary of lower-case, digit-free tokens used by at
  least k records, sampled independently of the other fields; never a training sentence.
  A field with no such token is generated as null (empty when not nullable), with a warning.

Contracts: the same seed and data give the same model and the same samples; sampling
without a seed continues one RNG stream (a continuous feed) and ``seed=`` restarts it;
the fitted object pickles (the registry stores it). Error messages name fields, never
values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import ndtr, ndtri

from synthstream.errors import ModelError, NotFittedError
from synthstream.models.dependencies import apply_dependencies, find_dependencies
from synthstream.models.encoding import column_frame
from synthstream.models.guards import (
    DEFAULT_MIN_COUNT,
    OTHER_SHARE,
    ShapeModel,
    TextModel,
    check_min_count,
    frequent,
    other_shape,
    supported_bounds,
    supported_quantiles,
    warn_dropped,
)
from synthstream.models.params import check_int
from synthstream.models.resolution import apply_decimals, apply_resolution, learn_decimals, learn_resolution
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

__all__ = ["GaussianCopulaGenerator"]

_DISCRETE_MAX = 256
_EPS = 1e-9
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TRUE_STRINGS = frozenset({"true", "t", "1", "yes", "y"})
_FALSE_STRINGS = frozenset({"false", "f", "0", "no", "n"})

Column: TypeAlias = pd.Series
FloatArray: TypeAlias = NDArray[np.float64]
BoolArray: TypeAlias = NDArray[np.bool_]


# ---------------------------------------------------------------------------------------------
# value conversion helpers
# ---------------------------------------------------------------------------------------------


def _normal_scores(lo: FloatArray, hi: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Distributional transform: a normal score drawn uniformly inside ``[lo, hi]`` in CDF space."""
    u = lo + rng.random(lo.shape[0]) * (hi - lo)
    scores: FloatArray = ndtri(np.clip(u, _EPS, 1.0 - _EPS))
    return scores


def _mean_scores(lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Mean of a standard normal restricted to ``[lo, hi]`` in CDF space (no jitter).

    Used for null indicators: jittering a rare binary dilutes its correlation (two
    always-together 5 % null flags get a Pearson correlation near 0.3 and the copula then
    almost never nulls both); interval means keep it near the phi coefficient.
    """
    a, b = ndtri(np.clip(lo, 0.0, 1.0)), ndtri(np.clip(hi, 0.0, 1.0))
    width = np.maximum(hi - lo, _EPS)
    means: FloatArray = (_phi(a) - _phi(b)) / width
    return means


def _phi(z: FloatArray) -> FloatArray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(np.isfinite(z), np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi), 0.0)


def _to_float(column: Column, field: FieldSpec) -> FloatArray:
    """Numeric values as float64 (NaN for null); ModelError naming the field otherwise."""
    try:
        values: FloatArray = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        return values
    except (ValueError, TypeError):
        raise ModelError(f"field {field.name!r} ({field.type.value}) holds non-numeric values") from None


def _to_epoch_us(column: Column, field: FieldSpec) -> FloatArray:
    """Timestamps as float64 epoch microseconds (NaN for null); naive values are taken as UTC."""
    try:
        stamps = pd.to_datetime(column, utc=True, errors="raise", format="mixed")
    except (ValueError, TypeError, OverflowError):
        raise ModelError(f"field {field.name!r} ({field.type.value}) holds values that are not timestamps") from None
    mask = stamps.isna().to_numpy()
    out = np.full(len(stamps), np.nan)
    if (~mask).any():
        stamps_us = stamps[~mask].dt.as_unit("us")
        out[~mask] = stamps_us.astype("int64").to_numpy().astype(np.float64)
    return out


def _canonical(value: Any, ftype: FieldType) -> Any:
    """One category value in its canonical Python type for ``ftype``."""
    if ftype is FieldType.BOOLEAN:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE_STRINGS:
                return True
            if lowered in _FALSE_STRINGS:
                return False
        return bool(value)
    if ftype is FieldType.LONG:
        return int(value)
    if ftype is FieldType.DOUBLE:
        return float(value)
    if ftype is FieldType.TIMESTAMP:
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.to_pydatetime()
    return str(value)


def _us_to_datetimes(values: NDArray[np.int64]) -> list[datetime]:
    """Epoch microseconds to tz-aware UTC datetimes."""
    return [_EPOCH + timedelta(microseconds=v) for v in values.tolist()]


def _with_nulls(values: list[Any], null_mask: BoolArray | None) -> list[Any]:
    """Put ``None`` where ``null_mask`` is set (in place) and return ``values``."""
    if null_mask is not None:
        for i in np.flatnonzero(null_mask).tolist():
            values[i] = None
    return values


# ---------------------------------------------------------------------------------------------
# per-field models: fit -> normal scores (n, n_latent); sample(latent, rng) -> canonical values
# ---------------------------------------------------------------------------------------------


class _FieldModel:
    """One field's marginal: how it maps to normal scores and back.

    A field with nulls in the training data gets a null-indicator latent column (the last
    of its block): null rows sit in the top ``null_rate`` of its CDF, so correlated nulls
    (Adult's ``workclass``/``occupation``) stay correlated. Measured on the Adult sample,
    this kept their co-occurrence, which null-as-a-category in the middle of a
    frequency-ordered interval did not (a Gaussian copula only carries linear dependence).
    """

    n_latent: int = 0

    def __init__(self, field: FieldSpec) -> None:
        self.name = field.name
        self.ftype = field.type
        self.null_rate = 0.0
        self.null_cut: float | None = None  # latent threshold above which a value is null

    def fit(self, column: Column, rng: np.random.Generator) -> FloatArray:
        """Learn the marginal and return the training rows' normal scores, shape ``(n, n_latent)``."""
        raise NotImplementedError

    def sample(self, latent: FloatArray, rng: np.random.Generator) -> list[Any]:
        """Map correlated normals ``(n, n_latent)`` back to canonical values."""
        raise NotImplementedError

    def _with_null_indicator(self, scores: FloatArray, null: BoolArray, rng: np.random.Generator) -> FloatArray:
        """Stack the value scores with a null-indicator column when the field had nulls."""
        scores[null] = rng.standard_normal(int(null.sum()))  # a null row's value score is unknown: impute
        if not null.any():
            self.n_latent = 1
            return scores.reshape(-1, 1)
        self.n_latent = 2
        self.null_rate = float(null.mean())
        self.null_cut = float(ndtri(1.0 - self.null_rate))
        ind_lo = np.where(null, 1.0 - self.null_rate, 0.0)
        ind_hi = np.where(null, 1.0, 1.0 - self.null_rate)
        return np.column_stack([scores, _mean_scores(ind_lo, ind_hi)])

    def _null_mask(self, latent: FloatArray, rng: np.random.Generator) -> BoolArray | None:
        """Rows to null: from the indicator column in the copula, else independently at ``null_rate``."""
        if self.null_cut is not None:
            mask: BoolArray = latent[:, -1] > self.null_cut
            return mask
        return rng.random(latent.shape[0]) < self.null_rate if self.null_rate > 0 else None


class _Categorical(_FieldModel):
    """Categories ordered by frequency on cumulative intervals (SDV-style normal scores).

    Only categories held by at least ``min_count`` records are kept (at most
    ``max_categories``); the rare ones become an *other* category decoding to fresh strings of
    their shape when :func:`~synthstream.models.guards.other_shape` says so, otherwise their
    rows are folded into the kept categories by frequency. No rare value is stored.
    """

    def __init__(self, field: FieldSpec, max_categories: int, min_count: int) -> None:
        super().__init__(field)
        self.max_categories = max_categories
        self.min_count = min_count
        self.values: NDArray[np.object_] = np.array([None], dtype=object)
        self.cum: FloatArray = np.ones(1)
        self.other: int | None = None  # index of the other category, if any
        self.shape: ShapeModel | None = None

    def fit(self, column: Column, rng: np.random.Generator) -> FloatArray:
        codes, uniques = pd.factorize(column, use_na_sentinel=True, sort=True)
        null = codes < 0
        scores = np.zeros(len(column))
        if len(uniques):
            scores[~null] = self._fit_categories(codes[~null], uniques.tolist(), rng)
        return self._with_null_indicator(scores, null, rng)

    def _fit_categories(self, codes: NDArray[np.intp], uniques: list[Any], rng: np.random.Generator) -> FloatArray:
        """Keep the frequent categories (an other bucket or folding for the rest); return the rows' scores."""
        counts = np.bincount(codes, minlength=len(uniques)).astype(np.int64)
        kept = frequent(counts, self.min_count, self.max_categories)
        rare = np.setdiff1d(np.arange(len(uniques)), kept)
        canonical = [_canonical(u, self.ftype) for u in uniques]
        self.shape = other_shape([canonical[i] for i in rare.tolist()], counts[rare].tolist(), int(counts.sum()))
        if kept.size == 0 and self.shape is None:
            kept, self.shape = self._fallback(canonical, counts)
        entries: list[tuple[int, int]] = [(int(counts[i]), int(i)) for i in kept.tolist()]
        if self.shape is not None:
            entries.append((int(counts[rare].sum()), -1))
        entries.sort(key=lambda e: -e[0])  # stable: kept ties stay in value order, other after them
        rank = np.full(len(uniques), -1)
        self.values = np.empty(len(entries), dtype=object)
        self.other = None
        for position, (_, index) in enumerate(entries):
            if index < 0:
                self.other = position
                self.values[position] = None
            else:
                rank[index] = position
                self.values[position] = canonical[index]
        if self.other is not None:
            rank[rare] = self.other
        weights = np.asarray([e[0] for e in entries], dtype=np.float64)
        self.cum = np.cumsum(weights / weights.sum())
        self.cum[-1] = 1.0
        ranks = rank[codes]
        folded = ranks < 0
        if folded.any():  # rare categories take a kept category drawn by frequency
            ranks[folded] = np.searchsorted(self.cum, rng.random(int(folded.sum())), side="right")
        ranks = np.minimum(ranks, len(entries) - 1)
        lo = np.concatenate(([0.0], self.cum[:-1]))
        return _normal_scores(lo[ranks], self.cum[ranks], rng)

    def _fallback(self, canonical: list[Any], counts: NDArray[np.int64]) -> tuple[NDArray[np.int64], ShapeModel | None]:
        """Every category is rare: strings become shapes; other types keep only values that are not sensitive."""
        if self.ftype is FieldType.STRING:
            return np.empty(0, dtype=np.int64), ShapeModel().fit([str(v) for v in canonical], counts.tolist())
        if self.ftype is FieldType.BOOLEAN:
            return np.arange(len(canonical), dtype=np.int64), None
        # A numeric category seen fewer than k times: keep one, the value nearest the supported median.
        spec = FieldSpec(name=self.name, type=self.ftype, role=FieldRole.NUMERIC)
        numbers = _to_epoch_us(pd.Series(canonical), spec) if self.ftype is FieldType.TIMESTAMP else None
        if numbers is None:
            numbers = _to_float(pd.Series(canonical), spec)
        median = supported_quantiles(np.repeat(numbers, counts), np.asarray([0.5]), self.min_count)[0]
        return np.asarray([int(np.argmin(np.abs(numbers - median)))], dtype=np.int64), None

    def sample(self, latent: FloatArray, rng: np.random.Generator) -> list[Any]:
        u = ndtr(latent[:, 0])
        idx = np.minimum(np.searchsorted(self.cum, u, side="right"), len(self.values) - 1)
        out = self.values[idx]
        if self.other is not None and self.shape is not None:
            hits = np.flatnonzero(idx == self.other)
            if hits.size:
                out[hits] = self.shape.sample(int(hits.size), rng)
        values: list[Any] = out.tolist()
        return _with_nulls(values, self._null_mask(latent, rng))


class _FreeText(_FieldModel):
    """Free text from a bounded vocabulary of frequent tokens (:class:`~synthstream.models.guards.TextModel`).

    Sampled independently of the other fields. A field with no qualifying token is
    dropped (null, or empty when not nullable) and a warning names it.
    """

    def __init__(self, field: FieldSpec, min_count: int) -> None:
        super().__init__(field)
        self.text = TextModel(field.name, nullable=field.nullable, min_count=min_count)

    def fit(self, column: Column, rng: np.random.Generator) -> FloatArray:
        self.text.fit(column.tolist())
        self.null_rate = self.text.null_rate
        if self.text.dropped:
            warn_dropped(self.name, "no token is used by enough records")
        self.n_latent = 0
        return np.empty((len(column), 0))

    def sample(self, latent: FloatArray, rng: np.random.Generator) -> list[Any]:
        return self.text.sample(latent.shape[0], rng)


class _Numeric(_FieldModel):
    """Numeric or datetime marginal: exact discrete distribution or an inverse quantile grid.

    Discrete when at most 256 distinct values occur and the values held by at least
    ``min_count`` records cover all but :data:`~synthstream.models.guards.OTHER_SHARE` of the
    rows: only those values are stored (a rarer value's rows count as the nearest kept one).
    Otherwise a grid of :func:`~synthstream.models.guards.supported_quantiles`: clipped to the
    supported range, each point a mean of ``min_count`` neighbouring values, so no single
    record's value (an outlier above all) is stored or sampled.
    """

    def __init__(self, field: FieldSpec, n_quantiles: int, min_count: int) -> None:
        super().__init__(field)
        self.n_quantiles = n_quantiles
        self.min_count = min_count
        self.is_datetime = field.type is FieldType.TIMESTAMP
        self.is_integral = field.type is FieldType.LONG or self.is_datetime
        self.support: FloatArray = np.zeros(1)  # discrete values, or the quantile grid
        self.cum: FloatArray = np.ones(1)  # discrete cumulative probabilities, or grid levels
        self.discrete = True

    def _values(self, column: Column) -> FloatArray:
        field = FieldSpec(name=self.name, type=self.ftype, role=FieldRole.NUMERIC)
        return _to_epoch_us(column, field) if self.is_datetime else _to_float(column, field)

    def fit(self, column: Column, rng: np.random.Generator) -> FloatArray:
        x = self._values(column)
        null = np.isnan(x)
        observed = x[~null]
        scores = np.zeros(x.size)
        if observed.size:
            observed = self._fit_marginal(observed)
            ordered = np.sort(observed)
            lo = np.searchsorted(ordered, observed, side="left") / observed.size
            hi = np.searchsorted(ordered, observed, side="right") / observed.size
            scores[~null] = _normal_scores(lo, hi, rng)
        return self._with_null_indicator(scores, null, rng)

    def _fit_marginal(self, observed: FloatArray) -> FloatArray:
        """Fit the marginal; return the values as the model sees them (rare ones moved to kept ones)."""
        uniques, counts = np.unique(observed, return_counts=True)
        kept = np.sort(frequent(counts, self.min_count))
        covered = counts[kept].sum() >= (1.0 - OTHER_SHARE) * observed.size
        self.discrete = uniques.size <= _DISCRETE_MAX and kept.size > 0 and bool(covered)
        if self.discrete:
            self.support = uniques[kept]
            mapped = _nearest(self.support, observed)
            _, mapped_counts = np.unique(mapped, return_counts=True)
            self.cum = np.cumsum(mapped_counts) / observed.size
            self.cum[-1] = 1.0
            return mapped
        self.cum = np.linspace(0.0, 1.0, self.n_quantiles)
        self.support = supported_quantiles(observed, self.cum, self.min_count)
        return np.clip(observed, self.support[0], self.support[-1])

    def sample(self, latent: FloatArray, rng: np.random.Generator) -> list[Any]:
        u = ndtr(latent[:, 0])
        if self.discrete:
            idx = np.minimum(np.searchsorted(self.cum, u, side="right"), self.support.size - 1)
            x = self.support[idx]
        else:
            x = np.interp(u, self.cum, self.support)
        values: list[Any]
        if self.is_integral:
            ints = np.clip(np.rint(x), np.rint(self.support[0]), np.rint(self.support[-1])).astype(np.int64)
            values = _us_to_datetimes(ints) if self.is_datetime else ints.tolist()
        else:
            values = x.tolist()
        return _with_nulls(values, self._null_mask(latent, rng))


def _nearest(support: FloatArray, values: FloatArray) -> FloatArray:
    """Each value replaced by the nearest of the sorted ``support`` values."""
    idx = np.clip(np.searchsorted(support, values), 1, max(support.size - 1, 1))
    if support.size == 1:
        return np.full(values.shape, support[0])
    left, right = support[idx - 1], support[idx]
    out: FloatArray = np.where(np.abs(values - left) <= np.abs(right - values), left, right)
    return out


class _Identifier(_FieldModel):
    """Fresh identifiers of the observed shape; never a training value by construction.

    Strings: a :class:`~synthstream.models.guards.ShapeModel` (lengths and per-position
    character classes). Numbers and times: uniform in the supported range
    (:func:`~synthstream.models.guards.supported_bounds`), not the raw minimum and maximum.
    """

    def __init__(self, field: FieldSpec, min_count: int) -> None:
        super().__init__(field)
        self.min_count = min_count
        self.low = 0.0
        self.high = 0.0
        self.shape = ShapeModel()

    def fit(self, column: Column, rng: np.random.Generator) -> FloatArray:
        null = column.isna().to_numpy()
        if null.all():
            raise ModelError(f"field {self.name!r} has no non-null values to learn from")
        self.null_rate = float(null.mean())
        observed = column[~null]
        if self.ftype is FieldType.STRING:
            self.shape = ShapeModel().fit(observed.astype(str).tolist())
        elif self.ftype is not FieldType.BOOLEAN:
            spec = FieldSpec(name=self.name, type=self.ftype, role=FieldRole.IDENTIFIER)
            x = _to_epoch_us(observed, spec) if self.ftype is FieldType.TIMESTAMP else _to_float(observed, spec)
            self.low, self.high = supported_bounds(x, self.min_count)
        return np.empty((len(column), 0))

    def sample(self, latent: FloatArray, rng: np.random.Generator) -> list[Any]:
        n = latent.shape[0]
        values: list[Any]
        if self.ftype is FieldType.STRING:
            values = self.shape.sample(n, rng)
        elif self.ftype is FieldType.BOOLEAN:
            values = (rng.random(n) < 0.5).tolist()
        elif self.ftype is FieldType.DOUBLE:
            values = rng.uniform(self.low, self.high, n).tolist()
        else:
            ints = rng.integers(int(self.low), int(self.high), n, dtype=np.int64, endpoint=True)
            values = _us_to_datetimes(ints) if self.ftype is FieldType.TIMESTAMP else ints.tolist()
        return _with_nulls(values, self._null_mask(latent, rng))


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


class GaussianCopulaGenerator:
    """Gaussian-copula generator over empirical marginals (see the module docstring).

    Parameters
    ----------
    seed:
        Seeds fitting (score jitter, category folding) and the initial sampling stream.
    max_categories:
        Categories kept per categorical field, most frequent first.
    min_count:
        k: a category, a discrete numeric value or a free-text token is kept only when at
        least this many training records hold it; numeric grids are clipped to values with
        this much support (see :mod:`synthstream.models.guards`).
    n_quantiles:
        Points of the inverse quantile grid of continuous numeric and datetime fields.
    shrinkage:
        Minimum weight of the identity in the correlation matrix; raised automatically
        until the matrix is positive definite.

    Examples
    --------
    >>> GaussianCopulaGenerator(seed=3)
    GaussianCopulaGenerator(seed=3, max_categories=1000, n_quantiles=1001, shrinkage=0.0, min_count=5)

    """

    name: ClassVar[str] = "gaussian_copula"

    def __init__(
        self,
        seed: int = 0,
        max_categories: int = 1000,
        n_quantiles: int = 1001,
        shrinkage: float = 0.0,
        min_count: int = DEFAULT_MIN_COUNT,
    ) -> None:
        check_int("seed", seed, 0, 2**63 - 1)
        check_int("max_categories", max_categories, 1, 1_000_000)
        check_int("n_quantiles", n_quantiles, 2, 1_000_000)
        if isinstance(shrinkage, bool) or not isinstance(shrinkage, int | float) or not 0.0 <= shrinkage < 1.0:
            raise ValueError(f"shrinkage must be a float in [0, 1); got {shrinkage!r}")
        self.seed = seed
        self.max_categories = max_categories
        self.n_quantiles = n_quantiles
        self.shrinkage = float(shrinkage)
        self.min_count = check_min_count(min_count)
        self._schema: RecordSchema | None = None
        self._fields: list[_FieldModel] = []
        self._chol: FloatArray = np.empty((0, 0))
        self._rng = np.random.default_rng(seed)
        self.correlation_: FloatArray = np.empty((0, 0))
        self.shrinkage_used_: float = 0.0
        self.rows_: int = 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(seed={self.seed}, max_categories={self.max_categories}, "
            f"n_quantiles={self.n_quantiles}, shrinkage={self.shrinkage}, min_count={self.min_count})"
        )

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has completed."""
        return self._schema is not None

    @property
    def schema(self) -> RecordSchema | None:
        """The schema the generator was fitted on, ``None`` before fit."""
        return self._schema

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, records: Sequence[Mapping[str, Any]] | pd.DataFrame, schema: RecordSchema) -> Self:
        """Learn marginals and the score correlation from ``records``; returns ``self``.

        Raises :class:`ModelError` on empty data, on records or a frame missing schema
        fields, and on values that do not fit a field's type (naming the field only).
        """
        frame = _as_frame(records, schema)
        fit_rng, sample_seq = (np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(2))
        fields = [self._field_model(spec) for spec in schema.fields]
        blocks = [model.fit(frame[model.name], fit_rng) for model in fields]
        scores = np.hstack(blocks) if blocks else np.empty((len(frame), 0))
        self.correlation_, self._chol, self.shrinkage_used_ = _correlation(scores, self.shrinkage)
        self._fields = fields
        # One correlation cannot hold a code and its label together: exact pairs are rewritten after sampling.
        self.dependencies_ = find_dependencies(frame, schema, min_count=self.min_count)
        self.time_steps_ = learn_resolution(frame, schema)  # whole hours stay whole hours
        self.decimals_ = learn_decimals(frame, schema)  # 0.1 mm stays 0.1 mm
        self._schema = schema
        self.rows_ = len(frame)
        self._rng = sample_seq
        return self

    def _field_model(self, spec: FieldSpec) -> _FieldModel:
        if spec.role is FieldRole.IDENTIFIER:
            return _Identifier(spec, self.min_count)
        if spec.role is FieldRole.FREE_TEXT:
            return _FreeText(spec, self.min_count)
        if spec.continuous:
            return _Numeric(spec, self.n_quantiles, self.min_count)
        return _Categorical(spec, self.max_categories, self.min_count)

    # -- sampling ----------------------------------------------------------------------------

    def sample_columns(self, n: int, *, seed: int | None = None) -> dict[str, list[Any]]:
        """Return ``n`` synthetic rows as ``{field: values}`` with canonical values (the fast path).

        Without ``seed`` the call continues the generator's random stream; with one the
        stream restarts from ``seed`` (and later unseeded calls continue from there).
        """
        if self._schema is None:
            raise NotFittedError(f"{type(self).__name__} must be fitted before sampling")
        check_int("n", n, 0, 2**40)
        if seed is not None:
            check_int("seed", seed, 0, 2**63 - 1)
            self._rng = np.random.default_rng(seed)
        rng = self._rng
        latent = rng.standard_normal((n, self._chol.shape[0])) @ self._chol.T
        columns: dict[str, list[Any]] = {}
        start = 0
        for model in self._fields:
            columns[model.name] = model.sample(latent[:, start : start + model.n_latent], rng)
            start += model.n_latent
        apply_resolution(columns, getattr(self, "time_steps_", {}))  # models pickled before: unrounded
        apply_decimals(columns, getattr(self, "decimals_", {}))
        return apply_dependencies(columns, getattr(self, "dependencies_", []), self._schema)

    def sample(self, n: int, *, seed: int | None = None) -> list[dict[str, Any]]:
        """Return ``n`` synthetic records (dicts keyed by field name, canonical values)."""
        columns = self.sample_columns(n, seed=seed)
        names = list(columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _as_frame(records: Sequence[Mapping[str, Any]] | pd.DataFrame, schema: RecordSchema) -> pd.DataFrame:
    """The schema's columns of the training data (:func:`~synthstream.models.encoding.column_frame`), never empty."""
    frame = column_frame(records, schema)
    if len(frame) == 0:
        raise ModelError("cannot fit a generator on zero records")
    return frame


def _correlation(scores: FloatArray, shrinkage: float) -> tuple[FloatArray, FloatArray, float]:
    """Pearson correlation of the scores, shrunk toward identity until Cholesky succeeds."""
    d = scores.shape[1]
    if d == 0:
        return np.empty((0, 0)), np.empty((0, 0)), shrinkage
    if scores.shape[0] < 3:
        corr = np.eye(d)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.atleast_2d(np.corrcoef(scores, rowvar=False))
        corr = np.nan_to_num(corr, nan=0.0)
        np.fill_diagonal(corr, 1.0)
    weight = shrinkage
    while True:
        shrunk = (1.0 - weight) * corr + weight * np.eye(d)
        try:
            chol = np.linalg.cholesky(shrunk)
        except np.linalg.LinAlgError:
            chol = None
        if chol is not None and np.min(np.diag(chol)) > 1e-6:
            return shrunk, chol, weight
        weight = min(1.0, max(2.0 * weight, 1e-4))
