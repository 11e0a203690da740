"""Encoders between record values and the sequence network's tensors.

* :class:`NumericCodec`: a numeric (or datetime) field <-> a standard-normal score through
  its empirical distribution. With at most 256 distinct values the distribution is kept
  exactly (only observed values come back: ``RAIN`` stays mostly 0.0, ``CO`` keeps its
  steps of 100); otherwise an inverse quantile grid, linear in between. Ties are spread by
  the distributional transform ``u = F(x-) + V (F(x) - F(x-))`` so scores stay normal.
* :class:`CategoricalCodec`: categories held by at least ``min_count`` records, by frequency
  (a null is one more category); rare values go to an *other* category of synthesised
  strings or are folded into kept ones by frequency, as the copula does.

Nothing held by fewer than ``min_count`` records is stored (:mod:`synthstream.models.guards`).
* :class:`ArrivalModel`: when entities start (a coarse week-level date grid plus the exact
  position in the week, so daily/weekly alignment of starts is kept), the gaps between
  consecutive entity starts (the live arrival process) and the number of events per entity.
* :func:`time_features`: hour-of-day, day-of-week and day-of-year as sin/cos pairs.

All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import ndtr, ndtri

from synthstream.errors import ModelError
from synthstream.models.guards import (
    DEFAULT_MIN_COUNT,
    OTHER_SHARE,
    ShapeModel,
    frequent,
    other_shape,
    supported_bounds,
    supported_quantiles,
)

__all__ = [
    "ArrivalModel",
    "CategoricalCodec",
    "NumericCodec",
    "datetimes_from_us",
    "stratified_uniform",
    "time_features",
    "to_epoch_us",
]

FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]

US = 1_000_000
DAY_US = 86_400 * US
WEEK_US = 7 * DAY_US
YEAR_US = int(365.2425 * DAY_US)
MONDAY_US = 4 * DAY_US  # 1970-01-05 was a Monday
_DISCRETE_MAX = 256
_EPS = 1e-6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_us(values: pd.Series | Sequence[Any], name: str) -> FloatArray:
    """Timestamps (datetimes, strings or numbers of epoch seconds) as float epoch microseconds, NaN for null."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        seconds: FloatArray = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return seconds * US
    try:
        stamps = pd.to_datetime(series, utc=True, errors="raise", format="mixed")
    except (ValueError, TypeError, OverflowError):
        raise ModelError(f"field {name!r} holds values that are not timestamps") from None
    out = np.full(len(stamps), np.nan)
    ok = stamps.notna().to_numpy()
    if ok.any():
        out[ok] = stamps[ok].dt.as_unit("us").astype("int64").to_numpy().astype(np.float64)
    return out


def datetimes_from_us(values: IntArray) -> list[datetime]:
    """Epoch microseconds to tz-aware UTC datetimes."""
    return [_EPOCH + timedelta(microseconds=v) for v in values.tolist()]


def time_features(us: IntArray | FloatArray) -> NDArray[np.float32]:
    """(N, 6) sin/cos of hour-of-day, day-of-week and day-of-year for epoch microseconds ``us``."""
    t = np.asarray(us, dtype=np.float64)
    phases = np.stack(
        [
            (t % DAY_US) / DAY_US,
            ((t - MONDAY_US) % WEEK_US) / WEEK_US,
            (t % YEAR_US) / YEAR_US,
        ],
        axis=-1,
    )
    angle = 2.0 * np.pi * phases
    feats: NDArray[np.float32] = np.concatenate([np.sin(angle), np.cos(angle)], axis=-1).astype(np.float32)
    return feats


def _normal(u: FloatArray) -> FloatArray:
    z: FloatArray = ndtri(np.clip(u, _EPS, 1.0 - _EPS))
    return z


class NumericCodec:
    """A numeric field <-> standard-normal scores (exact discrete distribution or quantile grid).

    Nothing fewer than ``min_count`` records hold is stored: the discrete support keeps only
    values held by ``min_count`` records (a rarer value encodes as the nearest kept one; a
    field whose kept values cover less than 95 % of the rows uses the grid instead), the grid
    points are :func:`~synthstream.models.guards.supported_quantiles` and the clip range
    (``low``/``high``) is :func:`~synthstream.models.guards.supported_bounds`.
    """

    def __init__(
        self, name: str, *, integral: bool = False, n_quantiles: int = 512, min_count: int = DEFAULT_MIN_COUNT
    ) -> None:
        self.name = name
        self.integral = integral
        self.n_quantiles = n_quantiles
        self.min_count = min_count
        self.discrete = True
        self.support: FloatArray = np.zeros(1)  # discrete values, or the quantile grid
        self.cum: FloatArray = np.ones(1)  # discrete cumulative probabilities, or grid levels
        self.missing_rate = 0.0
        self.low = 0.0
        self.high = 0.0

    def __repr__(self) -> str:
        kind = "discrete" if self.discrete else "grid"
        return f"NumericCodec(name={self.name!r}, {kind}, points={self.support.size})"

    def fit(self, x: FloatArray) -> NumericCodec:
        """Learn the distribution of the non-NaN values of ``x`` (all-NaN gives a point mass at 0)."""
        observed = x[~np.isnan(x)]
        self.missing_rate = float(np.isnan(x).mean()) if x.size else 0.0
        if observed.size == 0:
            observed = np.zeros(1)
        self.low, self.high = supported_bounds(observed, self.min_count)
        values, counts = np.unique(observed, return_counts=True)
        kept = np.sort(frequent(counts, self.min_count))
        covered = counts[kept].sum() >= (1.0 - OTHER_SHARE) * observed.size
        if values.size <= _DISCRETE_MAX and kept.size and covered:
            self.discrete = True
            self.support = values[kept].astype(np.float64)
            nearest = _nearest_index(self.support, observed)
            weights = np.bincount(nearest, minlength=self.support.size).astype(np.float64)
            self.cum = np.cumsum(weights) / weights.sum()
            self.cum[-1] = 1.0
            self.low, self.high = float(self.support[0]), float(self.support[-1])
        else:
            self.discrete = False
            self.cum = np.linspace(0.0, 1.0, self.n_quantiles)
            self.support = supported_quantiles(observed, self.cum, self.min_count)
        return self

    def encode(self, x: FloatArray, rng: np.random.Generator) -> FloatArray:
        """Normal scores of ``x`` (NaN stays NaN), ties spread uniformly in CDF space."""
        z = np.full(x.shape, np.nan)
        ok = ~np.isnan(x)
        v = np.clip(x[ok], self.low, self.high)
        if self.discrete:
            idx = _nearest_index(self.support, v)
            hi = self.cum[idx]
            lo = np.where(idx > 0, self.cum[np.clip(idx - 1, 0, None)], 0.0)
        else:
            grid, levels = self.support, self.cum
            left = np.searchsorted(grid, v, side="left")
            right = np.searchsorted(grid, v, side="right")
            tie = right > left
            i = np.clip(left, 1, grid.size - 1)
            width = np.maximum(grid[i] - grid[i - 1], 1e-300)
            u_lin = levels[i - 1] + (v - grid[i - 1]) / width * (levels[i] - levels[i - 1])
            lo = np.where(tie, levels[np.clip(left, 0, grid.size - 1)], u_lin)
            hi = np.where(tie, levels[np.clip(right - 1, 0, grid.size - 1)], u_lin)
        z[ok] = _normal(lo + rng.random(v.size) * (hi - lo))
        return z

    def decode(self, z: FloatArray) -> FloatArray:
        """Values for normal scores ``z`` (kept values only when discrete; rounded when integral)."""
        u = ndtr(z)
        if self.discrete:
            idx = np.minimum(np.searchsorted(self.cum, u, side="right"), self.support.size - 1)
            out: FloatArray = self.support[idx]
        else:
            out = np.interp(u, self.cum, self.support)
        if self.integral:
            out = np.round(out)
        return out


def _nearest_index(support: FloatArray, v: FloatArray) -> IntArray:
    """Index of the nearest ``support`` value (sorted) for each of ``v``."""
    idx = np.clip(np.searchsorted(support, v, side="left"), 0, support.size - 1)
    below = np.clip(idx - 1, 0, support.size - 1)
    nearer_below = (idx > 0) & (np.abs(support[below] - v) < np.abs(support[idx] - v))
    out: IntArray = np.where(nearer_below, below, idx).astype(np.int64)
    return out


class CategoricalCodec:
    """Categories by frequency (null is a category); only values ``min_count`` records hold are kept.

    At most ``max_categories`` values are kept. Rare strings become one *other* category
    decoding to fresh strings of their shape when
    :func:`~synthstream.models.guards.other_shape` allows it; otherwise rare values are folded
    into kept ones by frequency, as the copula does. No rare value is stored.
    """

    def __init__(self, name: str, *, max_categories: int = 64, min_count: int = DEFAULT_MIN_COUNT) -> None:
        self.name = name
        self.max_categories = max_categories
        self.min_count = min_count
        self.values: list[Any] = [None]
        self.cum: FloatArray = np.ones(1)
        self.other: int | None = None
        self.shape: ShapeModel | None = None
        self._index: dict[Any, int] = {}
        self.folded_last = 0

    def __repr__(self) -> str:
        return f"CategoricalCodec(name={self.name!r}, categories={len(self.values)})"

    @property
    def size(self) -> int:
        """Number of categories (including null and other when they are ones)."""
        return len(self.values)

    def fit(self, values: Sequence[Any], *, include_null: bool = False) -> CategoricalCodec:
        """Learn the vocabulary; ``include_null`` keeps a null category even when none was seen."""
        counts = pd.Series(_keys(values), dtype=object).value_counts(dropna=False, sort=False)
        pairs = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
        # Null is kept whatever its count (it is no value); others need min_count records.
        kept_pairs = [(k, c) for k, c in pairs if _from_key(k) is None or c >= self.min_count]
        kept_pairs = kept_pairs[: self.max_categories]
        kept_keys = {_key(k) for k, _ in kept_pairs}
        rare = [(k, c) for k, c in pairs if _key(k) not in kept_keys]
        total = int(sum(c for _, c in pairs))
        self.shape = other_shape([k for k, _ in rare], [c for _, c in rare], total)
        if self.shape is None and not [k for k, _ in kept_pairs if _from_key(k) is not None] and rare:
            if all(isinstance(k, str) for k, _ in rare):
                self.shape = ShapeModel().fit([k for k, _ in rare], [c for _, c in rare])
            elif all(isinstance(k, bool) for k, _ in rare):
                kept_pairs = kept_pairs + rare  # booleans hide nothing
        kept: list[Any] = [_from_key(k) for k, _ in kept_pairs]
        freq = [float(c) for _, c in kept_pairs]
        self.other = None
        if self.shape is not None:
            self.other = len(kept)
            kept.append(_OTHER)
            freq.append(float(sum(c for _, c in rare)))
        if include_null and None not in kept:
            kept.append(None)
            freq.append(0.0)
        if not kept:
            kept, freq = [None], [1.0]
        weights = np.asarray(freq, dtype=np.float64)
        self.values = kept
        self.cum = np.cumsum(weights) / max(weights.sum(), 1.0)
        self.cum[-1] = 1.0
        self.reindex()
        return self

    def encode(self, values: Sequence[Any], rng: np.random.Generator) -> IntArray:
        """Category indices; values outside the vocabulary take the other category, else a kept one by frequency."""
        index = self._index
        idx = np.fromiter((index.get(k, -1) for k in _keys(values)), dtype=np.int64, count=len(values))
        unknown = idx < 0
        self.folded_last = int(unknown.sum())
        if self.folded_last and self.other is not None:
            idx[unknown] = self.other
        elif self.folded_last:
            idx[unknown] = np.minimum(
                np.searchsorted(self.cum, rng.random(self.folded_last), side="right"), self.size - 1
            )
        return idx

    def decode(self, idx: IntArray, rng: np.random.Generator | None = None) -> list[Any]:
        """Category values for indices ``idx`` (the other category: fresh strings of the rare values' shape)."""
        values = self.values
        out = [values[i] for i in idx.tolist()]
        if self.other is not None and self.shape is not None:
            hits = np.flatnonzero(np.asarray(idx) == self.other)
            if hits.size:
                draw = rng if rng is not None else np.random.default_rng(len(out))
                for i, value in zip(hits.tolist(), self.shape.sample(int(hits.size), draw), strict=True):
                    out[i] = value
        return out

    def reindex(self) -> None:
        """Rebuild the lookup after unpickling or copying."""
        self._index = {_key(v): i for i, v in enumerate(self.values) if i != self.other}


#: Placeholder of the other category in a vocabulary (never a training value; decoded to shapes).
_OTHER = "\x00other"


def _key(value: Any) -> Any:
    """Hashable lookup key: nulls (None/NaN) collapse to None; numpy scalars to Python."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _keys(values: Sequence[Any]) -> list[Any]:
    return [_key(v) for v in values]


def _from_key(key: Any) -> Any:
    return None if key is None or (isinstance(key, float) and np.isnan(key)) else key


class _Empirical:
    """A discrete empirical distribution of values each held by ``min_count`` records.

    When every distinct value is held by at least ``min_count`` records (and there are at most
    ``max_points``), the values themselves; otherwise equally weighted
    :func:`~synthstream.models.guards.supported_quantiles` (at most one point per
    ``min_count`` records), so a single entity's exact start offset or gap is not stored.
    """

    def __init__(self, values: FloatArray, max_points: int = 4096, min_count: int = DEFAULT_MIN_COUNT) -> None:
        uniq, counted = np.unique(values, return_counts=True)
        weights = counted.astype(np.float64)
        if uniq.size > max_points or (counted < min_count).any():
            points = max(1, min(max_points, values.size // max(min_count, 1)))
            levels = (np.arange(points) + 0.5) / points
            uniq = supported_quantiles(values, levels, min_count)
            weights = np.ones(points)
        self.values = uniq.astype(np.float64)
        self.cum = np.cumsum(weights) / weights.sum()
        self.cum[-1] = 1.0

    def sample(self, n: int, rng: np.random.Generator, *, stratified: bool = False) -> FloatArray:
        u = stratified_uniform(n, rng) if stratified else rng.random(n)
        idx = np.minimum(np.searchsorted(self.cum, u, side="right"), self.values.size - 1)
        out: FloatArray = self.values[idx]
        return out


def stratified_uniform(n: int, rng: np.random.Generator) -> FloatArray:
    """``n`` uniforms, one in each of ``n`` equal strata, in random order (Latin hypercube in 1-D).

    A batch of synthetic entities then covers the start-date and length distributions
    evenly instead of by the luck of ``n`` independent draws (a few hundred weekly entities
    otherwise over- or under-sample seasons, which shows up in every marginal).
    """
    u: FloatArray = (rng.permutation(n) + rng.random(n)) / max(n, 1)
    return u


class ArrivalModel:
    """When synthetic entities start, how far apart, and how many events each has.

    * start dates: a quantile grid over the week of each real start (coarse: week level),
      plus the exact empirical offset inside the week, so starts keep their alignment
      (every real entity starting Monday 00:00 gives synthetic ones starting Monday 00:00);
    * gaps between consecutive starts (sorted), for a live arrival process;
    * lengths: the empirical distribution of events per entity.
    """

    def __init__(self, min_count: int = DEFAULT_MIN_COUNT) -> None:
        self.min_count = min_count
        self.weeks = NumericCodec("start_week", min_count=min_count)
        self.offsets = _Empirical(np.zeros(1), min_count=1)
        self.gaps = _Empirical(np.zeros(1), min_count=1)
        self.lengths = _Empirical(np.ones(1), min_count=1)
        self.mean_length = 1.0

    def __repr__(self) -> str:
        return f"ArrivalModel(mean_length={self.mean_length:.1f})"

    def fit(self, starts_us: IntArray, lengths: IntArray) -> ArrivalModel:
        """Learn from each real entity's first timestamp and number of events."""
        since_monday = starts_us.astype(np.int64) - MONDAY_US
        week_index = np.floor_divide(since_monday, WEEK_US)
        k = self.min_count
        self.weeks = NumericCodec("start_week", integral=True, min_count=k).fit(week_index.astype(np.float64))
        self.offsets = _Empirical((since_monday - week_index * WEEK_US).astype(np.float64), min_count=k)
        ordered = np.sort(starts_us)
        self.gaps = _Empirical(np.diff(ordered).astype(np.float64) if ordered.size > 1 else np.zeros(1), min_count=k)
        self.lengths = _Empirical(lengths.astype(np.float64), min_count=k)
        self.mean_length = float(lengths.mean()) if lengths.size else 1.0
        return self

    def sample_starts(self, n: int, rng: np.random.Generator) -> IntArray:
        """``n`` start times (epoch microseconds) from the learned start distribution, stratified."""
        weeks = self.weeks.decode(_normal(stratified_uniform(n, rng)))
        offsets = self.offsets.sample(n, rng, stratified=True)
        starts: IntArray = (MONDAY_US + weeks * WEEK_US + offsets).astype(np.int64)
        return starts

    def sample_process(self, n: int, origin_us: int, rng: np.random.Generator, *, first_at_origin: bool) -> IntArray:
        """``n`` start times of a live arrival process after ``origin_us``: cumulative learned gaps.

        ``first_at_origin`` starts the first entity exactly at ``origin_us`` (a fresh feed);
        otherwise ``origin_us`` is the previous start and every entity is one gap later.
        """
        gaps = self.gaps.sample(n, rng)
        if first_at_origin and n:
            gaps[0] = 0.0
        starts: IntArray = (origin_us + np.cumsum(gaps)).astype(np.int64)
        return starts

    def sample_lengths(self, n: int, rng: np.random.Generator) -> IntArray:
        """``n`` entity lengths (at least 1 event)."""
        lengths: IntArray = np.maximum(np.round(self.lengths.sample(n, rng, stratified=True)), 1).astype(np.int64)
        return lengths
