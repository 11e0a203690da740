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

Per field (decided once at fit time, so sampling has no per-row branching):

* numeric (long/double) with at most 256 distinct values: an exact ordered discrete
  distribution (only observed values come back; age, hours, education-num, capital-gain);
* other numeric: an inverse quantile grid of ``n_quantiles`` points, linear in between;
  long fields are rounded and clipped to the observed range;
* datetime: the same, on epoch microseconds, returned as tz-aware UTC ``datetime``;
* categorical (strings, booleans, categorical-role numbers): categories ordered by
  frequency; beyond ``max_categories`` the rare ones are folded into the kept ones
  (their rows get a kept category drawn by frequency, so kept proportions stay right);
* nulls: for categorical fields null is one more category, so it joins the copula and
  its co-occurrence with other fields (Adult's ``workclass``/``occupation`` nulls) is
  kept. Numeric and datetime fields with nulls get a null-indicator latent column in the
  copula; the value score of a null row is imputed with an independent normal draw;
* identifiers are never copied: fresh strings of the same shape (length distribution,
  per-position character class: digits, hex, letters, constant punctuation) or
  integers/floats/timestamps uniform in the observed range, with the observed null rate.
  Random collisions with real identifiers are possible for short shapes;
* free text: the top ``max_categories`` values by frequency, sampled independently of
  the other fields. This *does* repeat training text verbatim, the known limitation of
  this baseline: redact free text upstream or drop it from the schema.

Contracts: the same seed and data give the same model and the same samples; sampling
without a seed continues one RNG stream (a continuous feed) and ``seed=`` restarts it;
the fitted object pickles (the registry stores it). Error messages name fields, never
values.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import ndtr, ndtri

from synthstream.errors import ModelError, NotFittedError
from synthstream.models.encoding import column_frame
from synthstream.models.params import check_int
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

__all__ = ["GaussianCopulaGenerator"]

_DISCRETE_MAX = 256
_EPS = 1e-9
_MAX_ID_LENGTHS = 32
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
    """Categories ordered by frequency on cumulative intervals (SDV-style normal scores)."""

    def __init__(self, field: FieldSpec, max_categories: int, *, in_copula: bool = True) -> None:
        super().__init__(field)
        self.max_categories = max_categories
        self.in_copula = in_copula
        self.values: NDArray[np.object_] = np.array([None], dtype=object)
        self.cum: FloatArray = np.ones(1)

    def fit(self, column: Column, rng: np.random.Generator) -> FloatArray:
        codes, uniques = pd.factorize(column, use_na_sentinel=True, sort=True)
        null = codes < 0
        scores = np.zeros(len(column))
        if len(uniques):
            scores[~null] = self._fit_categories(codes[~null], uniques.tolist(), rng)
        if not self.in_copula:
            self.null_rate = float(null.mean())
            self.n_latent = 0
            return np.empty((len(column), 0))
        return self._with_null_indicator(scores, null, rng)

    def _fit_categories(self, codes: NDArray[np.intp], uniques: list[Any], rng: np.random.Generator) -> FloatArray:
        """Keep the top ``max_categories``, fold the rest in by frequency; return the rows' scores."""
        counts = np.bincount(codes, minlength=len(uniques)).astype(np.float64)
        order = np.argsort(-counts, kind="stable")[: self.max_categories]
        rank = np.full(len(uniques), -1)
        rank[order] = np.arange(len(order))
        kept = counts[order]
        self.values = np.empty(len(order), dtype=object)
        self.values[:] = [_canonical(uniques[i], self.ftype) for i in order.tolist()]
        self.cum = np.cumsum(kept / kept.sum())
        self.cum[-1] = 1.0
        ranks = rank[codes]
        folded = ranks < 0
        if folded.any():  # rare categories take a kept category drawn by frequency
            ranks[folded] = np.searchsorted(self.cum, rng.random(int(folded.sum())), side="right")
        ranks = np.minimum(ranks, len(kept) - 1)
        lo = np.concatenate(([0.0], self.cum[:-1]))
        return _normal_scores(lo[ranks], self.cum[ranks], rng)

    def sample(self, latent: FloatArray, rng: np.random.Generator) -> list[Any]:
        u = ndtr(latent[:, 0]) if self.in_copula else rng.random(latent.shape[0])
        idx = np.minimum(np.searchsorted(self.cum, u, side="right"), len(self.values) - 1)
        values: list[Any] = self.values[idx].tolist()
        return _with_nulls(values, self._null_mask(latent, rng))


class _Numeric(_FieldModel):
    """Numeric or datetime marginal: exact discrete distribution or an inverse quantile grid."""

    def __init__(self, field: FieldSpec, n_quantiles: int) -> None:
        super().__init__(field)
        self.n_quantiles = n_quantiles
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
            self._fit_marginal(observed)
            ordered = np.sort(observed)
            lo = np.searchsorted(ordered, observed, side="left") / observed.size
            hi = np.searchsorted(ordered, observed, side="right") / observed.size
            scores[~null] = _normal_scores(lo, hi, rng)
        return self._with_null_indicator(scores, null, rng)

    def _fit_marginal(self, observed: FloatArray) -> None:
        uniques, counts = np.unique(observed, return_counts=True)
        self.discrete = uniques.size <= _DISCRETE_MAX
        if self.discrete:
            self.support = uniques
            self.cum = np.cumsum(counts) / observed.size
            self.cum[-1] = 1.0
        else:
            self.cum = np.linspace(0.0, 1.0, self.n_quantiles)
            self.support = np.quantile(observed, self.cum)

    def sample(self, latent: FloatArray, rng: np.random.Generator) -> list[Any]:
        u = ndtr(latent[:, 0])
        if self.discrete:
            idx = np.minimum(np.searchsorted(self.cum, u, side="right"), self.support.size - 1)
            x = self.support[idx]
        else:
            x = np.interp(u, self.cum, self.support)
        values: list[Any]
        if self.is_integral:
            ints = np.clip(np.rint(x), self.support[0], self.support[-1]).astype(np.int64)
            values = _us_to_datetimes(ints) if self.is_datetime else ints.tolist()
        else:
            values = x.tolist()
        return _with_nulls(values, self._null_mask(latent, rng))


_DIGITS = string.digits
_HEX_LOWER = "abcdef"
_HEX_UPPER = "ABCDEF"


class _Identifier(_FieldModel):
    """Fresh identifiers of the observed shape; never a training value by construction."""

    def __init__(self, field: FieldSpec) -> None:
        super().__init__(field)
        self.low = 0.0
        self.high = 0.0
        self.lengths: NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self.length_cum: FloatArray = np.empty(0)
        self.alphabets: dict[int, list[NDArray[np.uint8]]] = {}

    def fit(self, column: Column, rng: np.random.Generator) -> FloatArray:
        null = column.isna().to_numpy()
        if null.all():
            raise ModelError(f"field {self.name!r} has no non-null values to learn from")
        self.null_rate = float(null.mean())
        observed = column[~null]
        if self.ftype is FieldType.STRING:
            self._fit_strings(observed.astype(str))
        else:
            spec = FieldSpec(name=self.name, type=self.ftype, role=FieldRole.IDENTIFIER)
            x = _to_epoch_us(observed, spec) if self.ftype is FieldType.TIMESTAMP else _to_float(observed, spec)
            self.low, self.high = float(x.min()), float(x.max())
        return np.empty((len(column), 0))

    def _fit_strings(self, observed: Column) -> None:
        lengths = observed.str.len().to_numpy()
        uniques, counts = np.unique(lengths, return_counts=True)
        top = np.argsort(-counts, kind="stable")[:_MAX_ID_LENGTHS]
        self.lengths = uniques[top]
        self.length_cum = np.cumsum(counts[top]) / counts[top].sum()
        self.length_cum[-1] = 1.0
        letters = set("".join(sorted(set("".join(observed.iloc[:10_000].tolist())))))
        hexish = letters <= set(_DIGITS + _HEX_LOWER + _HEX_UPPER)
        for length in self.lengths.tolist():
            if length == 0:
                self.alphabets[0] = []
                continue
            chars = np.array(observed[lengths == length].tolist(), dtype=f"U{length}").view("U1").reshape(-1, length)
            self.alphabets[length] = [_alphabet(set(np.unique(chars[:, j]).tolist()), hexish) for j in range(length)]

    def sample(self, latent: FloatArray, rng: np.random.Generator) -> list[Any]:
        n = latent.shape[0]
        values: list[Any]
        if self.ftype is FieldType.STRING:
            values = self._sample_strings(n, rng)
        elif self.ftype is FieldType.BOOLEAN:
            values = (rng.random(n) < 0.5).tolist()
        elif self.ftype is FieldType.DOUBLE:
            values = rng.uniform(self.low, self.high, n).tolist()
        else:
            ints = rng.integers(int(self.low), int(self.high), n, dtype=np.int64, endpoint=True)
            values = _us_to_datetimes(ints) if self.ftype is FieldType.TIMESTAMP else ints.tolist()
        return _with_nulls(values, self._null_mask(latent, rng))

    def _sample_strings(self, n: int, rng: np.random.Generator) -> list[Any]:
        which = np.minimum(np.searchsorted(self.length_cum, rng.random(n), side="right"), self.lengths.size - 1)
        out = np.empty(n, dtype=object)
        for k, length in enumerate(self.lengths.tolist()):
            rows = np.flatnonzero(which == k)
            if rows.size == 0:
                continue
            if length == 0:
                out[rows] = ""
                continue
            codes = np.empty((rows.size, length), dtype=np.uint8)
            for j, alphabet in enumerate(self.alphabets[length]):
                codes[:, j] = alphabet[rng.integers(0, alphabet.size, rows.size)]
            out[rows] = codes.view(f"S{length}").ravel().astype(f"U{length}")
        result: list[Any] = out.tolist()
        return result


def _alphabet(chars: set[str], hexish: bool) -> NDArray[np.uint8]:
    """Build the ASCII alphabet of one identifier position: whole character classes, punctuation as seen."""
    pieces: list[str] = []
    if chars & set(_DIGITS):
        pieces.append(_DIGITS)
    lower = {c for c in chars if c.islower() and c.isascii()}
    upper = {c for c in chars if c.isupper() and c.isascii()}
    if lower:
        pieces.append(_HEX_LOWER if hexish else string.ascii_lowercase)
    if upper:
        pieces.append(_HEX_UPPER if hexish else string.ascii_uppercase)
    pieces.extend(sorted(c for c in chars if c.isascii() and not c.isalnum()))
    alphabet = "".join(pieces) or string.ascii_letters + _DIGITS
    return np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8).copy()


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
        Categories kept per categorical or free-text field, most frequent first.
    n_quantiles:
        Points of the inverse quantile grid of continuous numeric and datetime fields.
    shrinkage:
        Minimum weight of the identity in the correlation matrix; raised automatically
        until the matrix is positive definite.

    Examples
    --------
    >>> GaussianCopulaGenerator(seed=3)
    GaussianCopulaGenerator(seed=3, max_categories=1000, n_quantiles=1001, shrinkage=0.0)

    """

    name: ClassVar[str] = "gaussian_copula"

    def __init__(
        self, seed: int = 0, max_categories: int = 1000, n_quantiles: int = 1001, shrinkage: float = 0.0
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
            f"n_quantiles={self.n_quantiles}, shrinkage={self.shrinkage})"
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
        self._schema = schema
        self.rows_ = len(frame)
        self._rng = sample_seq
        return self

    def _field_model(self, spec: FieldSpec) -> _FieldModel:
        role, ftype = spec.role, spec.type
        if role is FieldRole.IDENTIFIER:
            return _Identifier(spec)
        if role is FieldRole.FREE_TEXT:
            return _Categorical(spec, self.max_categories, in_copula=False)
        numeric_type = ftype in (FieldType.LONG, FieldType.DOUBLE, FieldType.TIMESTAMP)
        if role in (FieldRole.NUMERIC, FieldRole.DATETIME) and numeric_type:
            return _Numeric(spec, self.n_quantiles)
        return _Categorical(spec, self.max_categories)

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
        return columns

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
