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
#: Most start-date bands the entity lengths are learned in, and the fewest entities a band needs.
LENGTH_BANDS = 10
ENTITIES_PER_BAND = 50
_DISCRETE_MAX = 256
#: Values at each end of a discrete support whose share is capped at the data's (see NumericCodec._cap_ends).
_ENDS = 3
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
        self.missing_count = 0
        self.decode_support: FloatArray | None = None
        #: (value, share of the non-null training rows) of the smallest and the largest value.
        self.end_shares: list[tuple[float, float]] | None = None
        self.low = 0.0
        self.high = 0.0

    def __repr__(self) -> str:
        kind = "discrete" if self.discrete else "grid"
        return f"NumericCodec(name={self.name!r}, {kind}, points={self.support.size})"

    def fit(self, x: FloatArray) -> NumericCodec:
        """Learn the distribution of the non-NaN values of ``x`` (all-NaN gives a point mass at 0)."""
        observed = x[~np.isnan(x)]
        self.missing_rate = float(np.isnan(x).mean()) if x.size else 0.0
        self.missing_count = int(np.isnan(x).sum())
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
            self.decode_support = None
            shares = np.diff(self.cum, prepend=0.0)  # one kept value: it is both ends
            size = self.support.size
            ends = sorted({*range(min(_ENDS, size)), *range(max(size - _ENDS, 0), size)})
            self.end_shares = [(float(self.support[i]), float(shares[i])) for i in ends]
        else:
            self.discrete = False
            self.cum = np.linspace(0.0, 1.0, self.n_quantiles)
            self.support = supported_quantiles(observed, self.cum, self.min_count)
            # Decoding reads a grid whose clipped tails are spread (encoding keeps the flat runs, so
            # clipped training values still spread over the tail's levels).
            self.decode_support = _unpiled_tails(self.support, observed, self.min_count)
            self.end_shares = [
                (bound, float(np.count_nonzero(observed == bound)) / observed.size) for bound in (self.low, self.high)
            ]
        return self

    def calibrate_missing(self, missing: NDArray[np.bool_], rng: np.random.Generator) -> NDArray[np.bool_]:
        """The sampled null flags of one batch, brought to the training null rate.

        A network's missingness head is trained by likelihood and over-produces rare nulls
        (one null in 26,115 training rows came back in 0.69 % of rows), so the flags are
        calibrated per batch: with fewer than ``min_count`` nulls in training, no null at all
        (k-support, as for any other value); otherwise the batch gets ``missing_rate x n``
        nulls (stochastically rounded), keeping a random subset of the network's nulls when it
        made too many and adding nulls at random rows when it made too few, so where the
        network put nulls (runs, after other nulls) is kept as far as the rate allows.
        """
        flags = np.asarray(missing, dtype=bool)
        if getattr(self, "missing_count", 0) < self.min_count or self.missing_rate <= 0.0:
            return np.zeros(flags.shape, dtype=bool)
        expected = self.missing_rate * flags.size
        target = int(np.floor(expected) + (rng.random() < expected - np.floor(expected)))
        made = np.flatnonzero(flags)
        out = flags.copy()
        if made.size > target:
            out[rng.choice(made, made.size - target, replace=False)] = False
        elif made.size < target:
            free = np.flatnonzero(~flags)
            out[rng.choice(free, min(target - made.size, free.size), replace=False)] = True
        return out

    def decode_with_nulls(
        self, z: FloatArray, missing: NDArray[np.bool_], rng: np.random.Generator, groups: IntArray
    ) -> tuple[FloatArray, NDArray[np.bool_]]:
        """Values and null flags of one sampled batch, with the null rate calibrated (:meth:`calibrate_missing`).

        ``groups`` names each row's sequence (rows of a sequence are consecutive, in time order).
        A row the network left null but calibration keeps needs a value: the network gave it
        none (its score is 0, the median), so it takes its sequence's last non-null score before
        it (last observation carried forward keeps the series smooth), or a draw from the
        marginal when the sequence has none yet. The median is never piled up that way.
        """
        network_null = np.asarray(missing, dtype=bool)
        flags = self.calibrate_missing(network_null, rng)
        scores = np.asarray(z, dtype=np.float64).copy()
        scored = ~network_null  # rows holding a score to carry forward
        for i in np.flatnonzero(network_null & ~flags).tolist():  # few rows, in time order
            j = i - 1
            while j >= 0 and groups[j] == groups[i] and not scored[j]:
                j -= 1
            scores[i] = scores[j] if j >= 0 and groups[j] == groups[i] else rng.standard_normal()
            scored[i] = True
        return self._cap_ends(self.decode(scores), flags, rng), flags

    def _cap_ends(self, values: FloatArray, nulls: NDArray[np.bool_], rng: np.random.Generator) -> FloatArray:
        """No more rows at an extreme value than the data's share of it (issue 16's extremes rule).

        A network that over-shoots a tail puts every over-shooting row on the extreme value
        (the top kept value of a discrete field, the bound of a grid): a real extreme then
        recurs several times more often than the data holds it (wind direction 360 in 10 % of
        synthetic rows vs 2.2 % real). For the three smallest and largest values of a discrete
        field, and the two bounds of a grid, rows beyond the expected count (stochastically
        rounded) are drawn again from the distribution between those extremes.
        """
        ends = getattr(self, "end_shares", None)
        if ends is None:
            return values
        present = ~np.asarray(nulls, dtype=bool)
        inner = self._inner_levels()
        if inner is None:
            return values
        out = values.copy()
        for value, share in ends:
            rows = np.flatnonzero(present & (out == value))
            expected = share * int(present.sum())
            allowed = int(np.floor(expected) + (rng.random() < expected - np.floor(expected)))
            if rows.size <= allowed:
                continue
            excess = rng.choice(rows, rows.size - allowed, replace=False)
            u = rng.uniform(inner[0], inner[1], excess.size)
            out[excess] = self._decode_levels(u)
        return out

    def _inner_levels(self) -> tuple[float, float] | None:
        """CDF levels between the smallest and the largest value's own intervals (None when there are none)."""
        if self.discrete:
            if self.support.size <= 2 * _ENDS:
                return None
            return float(self.cum[_ENDS - 1]), float(self.cum[-_ENDS - 1])
        grid = self.decode_support if self.decode_support is not None else self.support
        inside = np.flatnonzero((grid > self.low) & (grid < self.high))
        if inside.size == 0:
            return None
        return float(self.cum[inside[0]]), float(self.cum[inside[-1]])

    def _decode_levels(self, u: FloatArray) -> FloatArray:
        """Values at CDF levels ``u`` (as :meth:`decode` does for ``ndtr(z)``)."""
        if self.discrete:
            idx = np.minimum(np.searchsorted(self.cum, u, side="right"), self.support.size - 1)
            out: FloatArray = self.support[idx]
        else:
            grid = self.decode_support if self.decode_support is not None else self.support
            out = np.interp(u, self.cum, grid)
        return np.round(out) if self.integral else out

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
            grid = getattr(self, "decode_support", None)
            out = np.interp(_beyond_edges(z, u, self.cum), self.cum, self.support if grid is None else grid)
        if self.integral:
            out = np.round(out)
        return out


def _beyond_edges(z: FloatArray, u: FloatArray, levels: FloatArray) -> FloatArray:
    """CDF levels for scores ``z``, with the scores beyond the grid's end intervals spread inside them.

    A network over-shooting the tails gives scores so far out that ``ndtr`` rounds them to 0 or
    1, and every one of them would decode to the exact bound (a real value). Beyond the first
    (last) grid interval the level decays with the distance instead: ``u = l1 exp(z - z1)`` below,
    mirrored above. It is continuous at the edge and strictly monotone, so distinct scores give
    distinct values; the share of the tail is unchanged.
    """
    if levels.size < 3:
        return u
    first, last = float(levels[1]), float(levels[-2])
    z_first, z_last = float(ndtri(first)), float(ndtri(last))
    out = np.where(z < z_first, first * np.exp(np.minimum(z - z_first, 0.0)), u)
    spread: FloatArray = np.where(z > z_last, 1.0 - (1.0 - last) * np.exp(np.minimum(z_last - z, 0.0)), out)
    return spread


def _unpiled_tails(grid: FloatArray, observed: FloatArray, min_count: int) -> FloatArray:
    """A quantile grid whose clipped tails are spread out instead of piled on one real value.

    :func:`~synthstream.models.guards.supported_quantiles` clips the tails to
    :func:`~synthstream.models.guards.supported_bounds`, so every grid point in the top
    (bottom) 0.5 % equals the bound, an order statistic of the data: interpolating such a flat
    run returns that one real value for the whole tail share of samples (a real extreme repeated
    far more often than the data holds it). The flat run is replaced by a linear ramp from the
    last grid value inside the bounds to the bound, except for the share the bound really holds
    when at least ``min_count`` records hold it (a true atom, such as a humidity of 100 %).
    Values stay inside the supported range and the grid stays non-decreasing.
    """
    out = grid.astype(np.float64).copy()
    size = out.size
    if size < 3:
        return out
    low, high = supported_bounds(observed, min_count)
    for top in (True, False):
        values = out if top else -out[::-1]
        bound = high if top else -low  # the exact real value (grid points are sums: off by rounding)
        near = np.abs(values - bound) <= 1e-9 * max(1.0, abs(bound))
        run = int(np.argmax(near))  # first index of the flat run at the bound
        if not near[-1] or run == 0:
            continue  # no flat run at the bound, or a constant grid: nothing to spread towards
        values[run:] = bound
        held = int(np.count_nonzero(observed == (high if top else low)))
        atom = held / observed.size if held >= min_count else 0.0
        ramp_end = size - 1 - int(np.floor(atom * (size - 1)))  # whole grid steps the atom fills stay flat
        if ramp_end <= run:
            continue  # the run is no larger than the atom the data holds
        base = values[run - 1]
        values[run : ramp_end + 1] = np.linspace(base, bound, ramp_end - run + 2)[1:]
        if not top:
            out = -values[::-1]
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


def _band_edges(starts: FloatArray, min_count: int) -> FloatArray:
    """Inner edges of start-date bands of at least :data:`ENTITIES_PER_BAND` entities (empty: one band).

    Starts on a grid, each date held by ``min_count`` entities or more (a yearly panel), are cut
    between dates, each date its own band when it has enough entities: late starters of a
    panel cut by the data's end are short, and merging the last two years would hide that.
    Otherwise the edges are supported quantiles (means of ``min_count`` starts), so no single
    entity's start is stored.
    """
    n = starts.size
    if n < 2 * ENTITIES_PER_BAND:
        return np.zeros(0)
    values, counts = np.unique(starts, return_counts=True)
    if counts.min() >= min_count:
        target = ENTITIES_PER_BAND if values.size <= LENGTH_BANDS else max(ENTITIES_PER_BAND, -(-n // LENGTH_BANDS))
        edges, held = [], 0
        for i in range(values.size - 1):
            held += int(counts[i])
            if held >= target and int(counts[i + 1 :].sum()) >= ENTITIES_PER_BAND:
                edges.append((values[i] + values[i + 1]) / 2)
                held = 0
        return np.asarray(edges, dtype=np.float64)
    bands = min(LENGTH_BANDS, n // ENTITIES_PER_BAND)
    return np.unique(supported_quantiles(starts, np.arange(1, bands) / bands, min_count))


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
    * lengths: the empirical distribution of events per entity, per band of start dates when
      there are enough entities (up to :data:`LENGTH_BANDS` bands of at least
      :data:`ENTITIES_PER_BAND` entities): in a panel cut by the end of the data, late
      starters are short, and lengths drawn regardless of the start gave 28 % one-row persons
      where the data has 22 %. A live feed past the data's span draws from all lengths.
    """

    def __init__(self, min_count: int = DEFAULT_MIN_COUNT) -> None:
        self.min_count = min_count
        self.weeks = NumericCodec("start_week", min_count=min_count)
        self.offsets = _Empirical(np.zeros(1), min_count=1)
        self.gaps = _Empirical(np.zeros(1), min_count=1)
        self.lengths = _Empirical(np.ones(1), min_count=1)
        self.mean_length = 1.0
        #: Inner edges of the start-date bands (epoch microseconds) and each band's lengths (None: too few).
        self.band_edges: FloatArray = np.zeros(0)
        self.band_lengths: list[_Empirical | None] = []

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
        self._fit_bands(starts_us, lengths)
        return self

    def _fit_bands(self, starts_us: IntArray, lengths: IntArray) -> None:
        self.band_edges, self.band_lengths = _band_edges(starts_us.astype(np.float64), self.min_count), []
        if self.band_edges.size == 0:
            return
        member = np.searchsorted(self.band_edges, starts_us.astype(np.float64), side="right")
        for band in range(self.band_edges.size + 1):
            held = lengths[member == band].astype(np.float64)
            enough = held.size >= ENTITIES_PER_BAND
            self.band_lengths.append(_Empirical(held, min_count=self.min_count) if enough else None)

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

    def sample_lengths(self, n: int, rng: np.random.Generator, starts_us: IntArray | None = None) -> IntArray:
        """``n`` entity lengths (at least 1 event); with ``starts_us`` (inside the data's span), given each start."""
        drawn = self.lengths.sample(n, rng, stratified=True)
        bands = getattr(self, "band_lengths", [])  # models pickled before the bands draw from all lengths
        if starts_us is not None and bands:
            member = np.searchsorted(self.band_edges, np.asarray(starts_us, dtype=np.float64), side="right")
            for band, empirical in enumerate(bands):
                where = np.flatnonzero(member == band)
                if empirical is not None and where.size:
                    drawn[where] = empirical.sample(where.size, rng, stratified=True)
        lengths: IntArray = np.maximum(np.round(drawn), 1).astype(np.int64)
        return lengths
