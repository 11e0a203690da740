"""Column codecs: one field <-> integer tokens, the common language of the tabular generators.

AIM, MST, the from-the-stream model and the neural generator all model *discrete* columns.
A codec turns a field's canonical values into tokens ``0..size-1`` and tokens back into
canonical values. Two families:

* codecs over a **DP domain** (:func:`codec_from_attribute`): the cells of a
  :class:`~synthstream.processors.windows.Attribute` exactly as the windowed statistics
  release them (bins or labels, then ``__other__``, then ``__null__``), so a model can be
  fitted to the stream's noisy marginals. Nothing in them depends on the data beyond the
  DP-released domain. Decoding a numeric bin draws uniformly inside it (rounded for long
  fields); a *point bin* (DP quantiles that coincide, e.g. the 92 % zeros of Adult's
  ``capital-gain``) decodes to exactly that value. Uniform-within-bin is the maximum-entropy
  choice given only the bin counts a DP release provides; the point bins remove its one
  large failure (smearing an atom across a wide bin);
* **empirical** codecs (:func:`fit_codec`) for non-private models: exact values when a
  field has few distinct values (age, hours, education-num: every value held by at least
  ``min_count`` records comes back), otherwise quantile bins whose tokens decode through a
  per-bin quantile grid (the within-bin distribution is kept, not flattened). Neither stores
  a value fewer than ``min_count`` records hold (:mod:`synthstream.models.guards`).

Identifiers and free text are not modelled by tokens (see :class:`SideFields`).
Errors name fields, never values.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from synthstream.errors import ModelError
from synthstream.models.guards import (
    DEFAULT_MIN_COUNT,
    OTHER_SHARE,
    ShapeModel,
    TextModel,
    frequent,
    other_shape,
    supported_bounds,
    supported_quantiles,
    warn_dropped,
)
from synthstream.processors.windows import Attribute
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

__all__ = [
    "BinCodec",
    "ColumnCodec",
    "ExactCodec",
    "LabelCodec",
    "QuantileCodec",
    "SideFields",
    "codec_from_attribute",
    "encode_frame",
    "fit_codec",
    "modelled_fields",
    "numeric_values",
    "token_positions",
]

IntArray: TypeAlias = NDArray[np.int64]
FloatArray: TypeAlias = NDArray[np.float64]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMERIC_TYPES = (FieldType.LONG, FieldType.DOUBLE, FieldType.TIMESTAMP)
_TRUE = frozenset({"true", "t", "1", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "no", "n"})


class ColumnCodec(Protocol):
    """Maps one field to tokens ``0..size-1`` and back."""

    name: str
    size: int

    def encode(self, column: pd.Series) -> IntArray:
        """Token of each value (nulls and unknown values get the codec's fallback token)."""
        ...

    def decode(self, tokens: IntArray, rng: np.random.Generator) -> list[Any]:
        """Canonical values of ``tokens`` (randomised within a bin where a token is a range)."""
        ...


def modelled_fields(schema: RecordSchema) -> list[FieldSpec]:
    """Fields modelled jointly by tokens: everything but identifiers and free text."""
    return [f for f in schema.fields if f.role not in (FieldRole.IDENTIFIER, FieldRole.FREE_TEXT)]


def _is_numeric(spec: FieldSpec) -> bool:
    return spec.type in _NUMERIC_TYPES and spec.role in (FieldRole.NUMERIC, FieldRole.DATETIME)


def numeric_values(column: pd.Series, spec: FieldSpec) -> FloatArray:
    """Numeric values as float64 (epoch microseconds for timestamps, NaN for null)."""
    if spec.type is FieldType.TIMESTAMP:
        try:
            stamps = pd.to_datetime(column, utc=True, errors="raise", format="mixed")
        except (ValueError, TypeError, OverflowError):
            raise ModelError(f"field {spec.name!r} holds values that are not timestamps") from None
        out = np.full(len(stamps), np.nan)
        mask = stamps.notna().to_numpy()
        if mask.any():
            out[mask] = stamps[mask].dt.as_unit("us").astype("int64").to_numpy().astype(np.float64)
        return out
    try:
        values: FloatArray = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError):
        raise ModelError(f"field {spec.name!r} ({spec.type.value}) holds non-numeric values") from None
    return values


def canonical(value: Any, ftype: FieldType) -> Any:
    """One value in its canonical Python type for ``ftype`` (labels of DP domains are strings)."""
    if ftype is FieldType.BOOLEAN:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        return bool(value)
    if ftype is FieldType.LONG:
        return int(float(value)) if isinstance(value, str) else int(value)
    if ftype is FieldType.DOUBLE:
        return float(value)
    if ftype is FieldType.TIMESTAMP:
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.to_pydatetime()
    return str(value)


def _from_numbers(values: FloatArray, spec: FieldSpec) -> list[Any]:
    """Float values to canonical values of a numeric field (NaN -> None)."""
    nulls = np.isnan(values)
    filled = np.where(nulls, 0.0, values)
    out: list[Any]
    if spec.type is FieldType.TIMESTAMP:
        out = [_EPOCH + timedelta(microseconds=int(v)) for v in np.rint(filled).tolist()]
    elif spec.type is FieldType.LONG:
        out = np.rint(filled).astype(np.int64).tolist()
    else:
        out = filled.tolist()
    if nulls.any():
        for i in np.flatnonzero(nulls).tolist():
            out[i] = None
    return out


# ---------------------------------------------------------------------------------------------
# codecs over a DP domain (Attribute cells)
# ---------------------------------------------------------------------------------------------


class LabelCodec:
    """Categorical cells of an :class:`Attribute`: labels, then ``__other__``, then ``__null__``.

    ``__other__`` (values outside a declared or DP-learned domain) decodes to null when the
    field is nullable; otherwise to a label drawn with the labels' fitted frequencies
    (``other_weights``, set by the model), so no value outside the released domain is invented.
    """

    def __init__(self, spec: FieldSpec, attribute: Attribute) -> None:
        self.name = spec.name
        self.spec = spec
        self.attribute = attribute
        self.size = attribute.size
        self.labels = [canonical(v, spec.type) for v in attribute.labels]
        self._lookup = {str(v): i for i, v in enumerate(attribute.labels)}
        for i, v in enumerate(self.labels):
            self._lookup.setdefault(_key(v), i)
        self.other = len(self.labels) if attribute.other else None
        self.null = self.size - 1 if attribute.nullable else None
        self.other_weights: FloatArray | None = None
        values: list[Any] = list(self.labels)
        if attribute.other:
            values.append(None)
        if attribute.nullable:
            values.append(None)
        self._values = np.asarray([*values, None], dtype=object)[: self.size]

    def __repr__(self) -> str:
        return f"LabelCodec(name={self.name!r}, size={self.size})"

    def encode(self, column: pd.Series) -> IntArray:
        """Cell index of each value (values outside the labels -> ``__other__``)."""
        fallback = self.other if self.other is not None else 0
        null = self.null if self.null is not None else fallback
        lookup = self._lookup
        out = np.fromiter(
            (null if _missing(v) else lookup.get(_key(v), fallback) for v in column.tolist()),
            dtype=np.int64,
            count=len(column),
        )
        return out

    def decode(self, tokens: IntArray, rng: np.random.Generator) -> list[Any]:
        """Labels of the tokens; ``__other__`` as described in the class docstring."""
        out = self._values[tokens]
        if self.other is not None and not self.spec.nullable and self.labels:
            hits = np.flatnonzero(tokens == self.other)
            if hits.size:
                weights = self.other_weights
                p = None if weights is None or weights.sum() <= 0 else weights / weights.sum()
                picks = rng.choice(len(self.labels), size=hits.size, p=p)
                out[hits] = np.asarray(self.labels, dtype=object)[picks]
        values: list[Any] = out.tolist()
        return values


class BinCodec:
    """Numeric cells of an :class:`Attribute`: bins of ``edges`` (then ``__null__``); see the module docstring.

    Consecutive equal edges (``[0, 0, 5, ...]``) denote a point bin for that value; an
    Attribute needs strictly increasing edges, so point bins are passed in ``points``
    (values that are exact atoms, each the left edge of a bin that decodes to it).
    """

    def __init__(self, spec: FieldSpec, attribute: Attribute, points: Sequence[float] = ()) -> None:
        self.name = spec.name
        self.spec = spec
        self.attribute = attribute
        self.edges = np.asarray(attribute.edges, dtype=np.float64)
        self.bins = len(self.edges) - 1
        self.size = attribute.size
        self.null = self.size - 1 if attribute.nullable else None
        atoms = {float(p) for p in points}
        self.point = np.asarray([float(lo) in atoms for lo in self.edges[:-1]], dtype=bool)

    def __repr__(self) -> str:
        return f"BinCodec(name={self.name!r}, bins={self.bins}, points={int(self.point.sum())})"

    def encode(self, column: pd.Series) -> IntArray:
        """Bin of each value (clipped into the first/last bin; null -> ``__null__``)."""
        values = numeric_values(column, self.spec)
        nulls = np.isnan(values)
        codes = np.searchsorted(self.edges[1:-1], np.where(nulls, self.edges[0], values), side="right")
        codes = np.clip(codes, 0, self.bins - 1).astype(np.int64)
        # A value equal to a point bin's edge belongs to the point bin (searchsorted puts it there).
        if nulls.any():
            codes[nulls] = self.null if self.null is not None else 0
        return codes

    def decode(self, tokens: IntArray, rng: np.random.Generator) -> list[Any]:
        """Uniform inside the bin (exact value for point bins); ``__null__`` -> None."""
        tokens = np.asarray(tokens, dtype=np.int64)
        nulls = tokens >= self.bins
        bins = np.minimum(tokens, self.bins - 1)
        lo, hi = self.edges[bins], self.edges[bins + 1]
        if self.spec.type is FieldType.LONG:
            # Integers in [ceil(lo), ceil(hi) - 1]: uniform over the integers the bin holds.
            low = np.ceil(lo)
            high = np.maximum(np.ceil(hi) - 1, low)
            last = bins == self.bins - 1
            high = np.where(last, np.maximum(np.floor(hi), low), high)
            values = low + np.floor(rng.random(len(tokens)) * (high - low + 1))
        else:
            values = lo + rng.random(len(tokens)) * (hi - lo)
        values = np.where(self.point[bins], lo, values)
        values[nulls] = np.nan
        return _from_numbers(values, self.spec)


def codec_from_attribute(spec: FieldSpec, attribute: Attribute, points: Sequence[float] = ()) -> LabelCodec | BinCodec:
    """The codec of a DP domain cell list for field ``spec``."""
    if attribute.kind == "numeric":
        if not _is_numeric(spec):
            raise ModelError(f"field {spec.name!r} has numeric bins but is {spec.type.value}/{spec.role.value}")
        return BinCodec(spec, attribute, points)
    return LabelCodec(spec, attribute)


# ---------------------------------------------------------------------------------------------
# empirical codecs (non-private models)
# ---------------------------------------------------------------------------------------------


class ExactCodec:
    """Every kept value is a token (most frequent first), then an *other* token if any, then a null token.

    A value is kept only when at least ``min_count`` records hold it (at most ``max_values``
    of them). Rare strings go to an *other* token decoding to fresh strings of their shape
    when :func:`~synthstream.models.guards.other_shape` allows it; otherwise rare values are
    folded into the kept ones (a rare number into the nearest kept number, a rare category
    into a kept one drawn by frequency), so no rare value is stored or reproduced.
    """

    def __init__(self, spec: FieldSpec, values: Sequence[Any], has_null: bool, shape: ShapeModel | None = None) -> None:
        self.name = spec.name
        self.spec = spec
        self.values = list(values)
        self.has_null = has_null
        self.shape = shape
        self.other = len(self.values) if shape is not None else None
        self.size = len(self.values) + (1 if shape is not None else 0) + (1 if has_null else 0)
        self._lookup = {_key(v): i for i, v in enumerate(self.values)}
        self._number_lookup: dict[Any, int] = {}
        self._numbers = np.empty(0)
        if _is_numeric(spec):
            numbers = numeric_values(pd.Series(self.values, dtype=object), spec) if self.values else np.empty(0)
            self._number_lookup = {_key(v): i for i, v in enumerate(numbers.tolist())}
            self._numbers = numbers
        self._array = np.asarray([*self.values, *([None] if shape is not None else []), None], dtype=object)
        self.frequencies = np.ones(len(self.values))

    def __repr__(self) -> str:
        return f"ExactCodec(name={self.name!r}, size={self.size})"

    @classmethod
    def fit(cls, spec: FieldSpec, column: pd.Series, max_values: int, min_count: int = DEFAULT_MIN_COUNT) -> ExactCodec:
        """Keep the (at most ``max_values``) values of ``column`` that ``min_count`` records hold."""
        nulls = column.isna()
        present = column[~nulls]
        shape = None
        if _is_numeric(spec):
            counts = pd.Series(numeric_values(present, spec)).value_counts()
            kept = frequent(counts.to_numpy(), min_count, max_values)
            if kept.size == 0 and len(counts):
                kept = np.asarray([int(np.argmin(np.abs(counts.index.to_numpy() - _median(present, spec, min_count))))])
            values = [_from_numbers(np.asarray([v]), spec)[0] for v in counts.index[kept]]
        else:
            counts = present.map(lambda v: canonical(v, spec.type)).value_counts()
            kept = frequent(counts.to_numpy(), min_count, max_values)
            rare = np.setdiff1d(np.arange(len(counts)), kept)
            shape = other_shape(list(counts.index[rare]), counts.to_numpy()[rare].tolist(), int(counts.sum()))
            if kept.size == 0 and shape is None and len(counts):
                if spec.type is FieldType.STRING:
                    shape = ShapeModel().fit([str(v) for v in counts.index], counts.to_numpy().tolist())
                else:
                    kept = np.arange(len(counts), dtype=np.int64)  # booleans: nothing sensitive to hide
            values = list(counts.index[kept])
        codec = cls(spec, values, bool(nulls.any()), shape)
        codec.frequencies = counts.to_numpy(dtype=np.float64)[kept]
        return codec

    def encode(self, column: pd.Series) -> IntArray:
        """Token of each value; a value not kept gets the other token, the nearest kept number or a kept value."""
        lookup = self._lookup
        null = self.size - 1 if self.has_null else -1
        keys: list[Any]
        numbers = None
        if _is_numeric(self.spec):
            numbers = numeric_values(column, self.spec)
            if self.spec.type is FieldType.TIMESTAMP:
                numbers = np.rint(numbers)
            keys = [None if math.isnan(v) else _key(v) for v in numbers.tolist()]
            lookup = self._number_lookup
        else:
            keys = [None if _missing(v) else _key(canonical(v, self.spec.type)) for v in column.tolist()]
        out = np.fromiter((lookup.get(k, -2) if k is not None else null for k in keys), dtype=np.int64, count=len(keys))
        unknown = out < 0
        if unknown.any() and self.other is not None:
            out[unknown] = self.other
        elif unknown.any() and numbers is not None and self._numbers.size:
            rows = np.flatnonzero(unknown)
            out[rows] = np.abs(numbers[rows, None] - self._numbers[None, :]).argmin(axis=1)
        elif unknown.any() and self.values:
            rng = np.random.default_rng(len(out))
            p = self.frequencies / self.frequencies.sum()
            out[unknown] = rng.choice(len(self.values), size=int(unknown.sum()), p=p)
        return out

    def decode(self, tokens: IntArray, rng: np.random.Generator) -> list[Any]:
        """Kept values of the tokens (other token -> a fresh string of the rare values' shape; null -> None)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        out = self._array[tokens]
        if self.other is not None and self.shape is not None:
            hits = np.flatnonzero(tokens == self.other)
            if hits.size:
                out[hits] = self.shape.sample(int(hits.size), rng)
        values: list[Any] = out.tolist()
        return values


def _median(present: pd.Series, spec: FieldSpec, min_count: int) -> float:
    """The supported median of a numeric column (a mean of ``min_count`` middle values)."""
    return float(supported_quantiles(numeric_values(present, spec), np.asarray([0.5]), min_count)[0])


class QuantileCodec:
    """Quantile bins of a continuous field; a token decodes through its bin's quantile grid.

    ``grid[b]`` holds ``points`` quantiles of the training values inside bin ``b``; decoding
    draws ``u ~ U(0, 1)`` and interpolates, so the distribution inside a bin is kept. Every
    grid point is a :func:`~synthstream.models.guards.supported_quantiles` value: clipped to
    the supported range and a mean of ``min_count`` neighbouring values, so no single record's
    value (an outlier least of all) is stored or sampled.
    """

    def __init__(self, spec: FieldSpec, grid: FloatArray, has_null: bool) -> None:
        self.name = spec.name
        self.spec = spec
        self.grid = grid
        self.bins = grid.shape[0]
        self.upper = grid[:, -1]
        self.has_null = has_null
        self.size = self.bins + (1 if has_null else 0)

    def __repr__(self) -> str:
        return f"QuantileCodec(name={self.name!r}, bins={self.bins})"

    @classmethod
    def fit(
        cls, spec: FieldSpec, column: pd.Series, bins: int, points: int = 33, min_count: int = DEFAULT_MIN_COUNT
    ) -> QuantileCodec:
        """Bins at the empirical quantiles (ties merged), each with a ``points``-quantile grid."""
        values = numeric_values(column, spec)
        present = np.sort(values[~np.isnan(values)])
        if present.size == 0:
            raise ModelError(f"field {spec.name!r} has no non-null values to learn bins from")
        lo, hi = supported_bounds(present, min_count)
        present = np.clip(present, lo, hi)
        n = present.size
        # Token t holds ranks [bounds[t], bounds[t+1]); ties never straddle two bins.
        cuts = np.unique(np.searchsorted(present, np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]), "left"))
        bounds = np.unique(np.concatenate([[0], cuts[(cuts > 0) & (cuts < n)], [n]]))
        steps = np.linspace(0, 1, points)
        # Each bin's grid, as levels of the whole sample (so every point averages min_count neighbours).
        levels = [(a + steps * (b - 1 - a)) / max(n - 1, 1) for a, b in itertools.pairwise(bounds)]
        grid = supported_quantiles(present, np.concatenate(levels), min_count).reshape(len(levels), points)
        return cls(spec, grid, bool(np.isnan(values).any()))

    def encode(self, column: pd.Series) -> IntArray:
        """Bin of each value (the first bin whose upper grid point is >= the value)."""
        values = numeric_values(column, self.spec)
        nulls = np.isnan(values)
        codes = np.searchsorted(self.upper, np.where(nulls, self.upper[0], values), side="left")
        codes = np.minimum(codes, self.bins - 1).astype(np.int64)
        if nulls.any():
            codes[nulls] = self.bins if self.has_null else 0
        return codes

    def decode(self, tokens: IntArray, rng: np.random.Generator) -> list[Any]:
        """Interpolated draw inside each token's bin (null token -> None)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        nulls = tokens >= self.bins
        bins = np.minimum(tokens, self.bins - 1)
        position = rng.random(len(tokens)) * (self.grid.shape[1] - 1)
        left = np.floor(position).astype(np.int64)
        right = np.minimum(left + 1, self.grid.shape[1] - 1)
        frac = position - left
        rows = self.grid[bins]
        take = np.arange(len(tokens))
        values = rows[take, left] * (1 - frac) + rows[take, right] * frac
        values[nulls] = np.nan
        return _from_numbers(values, self.spec)


def fit_codec(
    spec: FieldSpec,
    column: pd.Series,
    *,
    max_exact: int,
    bins: int,
    max_categories: int,
    min_count: int = DEFAULT_MIN_COUNT,
) -> ColumnCodec:
    """The empirical codec of one field (see :class:`ExactCodec`, :class:`QuantileCodec`).

    Numeric fields get exact values when there are at most ``max_exact`` distinct ones and
    those held by ``min_count`` records cover 95 % of the rows; otherwise quantile bins.
    """
    if _is_numeric(spec):
        counts = pd.Series(numeric_values(column, spec)).value_counts(dropna=True)
        supported = counts[counts >= min_count].sum()
        if 0 < len(counts) <= max_exact and supported >= (1.0 - OTHER_SHARE) * counts.sum():
            return ExactCodec.fit(spec, column, max_values=max_exact, min_count=min_count)
        return QuantileCodec.fit(spec, column, bins=bins, min_count=min_count)
    return ExactCodec.fit(spec, column, max_values=max_categories, min_count=min_count)


def token_positions(codec: ColumnCodec) -> list[float] | None:
    """Each token's place in ``[-1, 1]`` by value order for an ordered (numeric) codec, else ``None``.

    Bins are ordered by construction; exact numeric values by their value (their tokens are
    ordered by frequency). Null and *other* tokens sit at 0 (their embeddings tell them apart).
    """
    if isinstance(codec, QuantileCodec | BinCodec):
        ordered = codec.bins
        ranks = np.arange(ordered, dtype=np.float64)
    elif isinstance(codec, ExactCodec) and _is_numeric(codec.spec) and codec._numbers.size:
        ordered = int(codec._numbers.size)
        ranks = np.argsort(np.argsort(codec._numbers, kind="stable"), kind="stable").astype(np.float64)
    else:
        return None
    if ordered < 2:
        return None
    out = np.zeros(codec.size)
    out[:ordered] = 2.0 * ranks / (ordered - 1) - 1.0
    return [float(x) for x in out]


def encode_frame(codecs: Sequence[ColumnCodec], frame: pd.DataFrame) -> IntArray:
    """Tokens of every modelled column, shape ``(rows, len(codecs))``."""
    if not codecs:
        return np.zeros((len(frame), 0), dtype=np.int64)
    return np.stack([codec.encode(frame[codec.name]) for codec in codecs], axis=1)


# ---------------------------------------------------------------------------------------------
# identifiers and free text
# ---------------------------------------------------------------------------------------------


class SideFields:
    """Identifiers and free text, never copied from the data.

    Identifiers get fresh random values (``syn-`` + 16 hex digits for strings, random
    non-negative integers, random times in 2000-2030), without looking at the data. Free
    text: given the training ``frame`` (non-DP models), a
    :class:`~synthstream.models.guards.TextModel` (words from a bounded vocabulary of tokens
    used by at least ``min_count`` records); without it (DP models, whose guarantee covers
    nothing read outside the DP mechanisms) the field is dropped: null when nullable, empty
    otherwise, and a warning names it.
    """

    def __init__(
        self, schema: RecordSchema, frame: pd.DataFrame | None = None, *, min_count: int = DEFAULT_MIN_COUNT
    ) -> None:
        self.fields = [f for f in schema.fields if f.role in (FieldRole.IDENTIFIER, FieldRole.FREE_TEXT)]
        self.texts: dict[str, TextModel] = {}
        for spec in self.fields:
            if spec.role is not FieldRole.FREE_TEXT:
                continue
            if frame is None:
                warn_dropped(spec.name, "a DP model learns no text")
                continue
            text = TextModel(spec.name, nullable=spec.nullable, min_count=min_count).fit(frame[spec.name].tolist())
            if text.dropped:
                warn_dropped(spec.name, "no token is used by enough records")
            self.texts[spec.name] = text

    def __repr__(self) -> str:
        return f"SideFields(fields={[f.name for f in self.fields]})"

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, list[Any]]:
        """Values of every side field for ``n`` rows."""
        out: dict[str, list[Any]] = {}
        for spec in self.fields:
            if spec.role is FieldRole.FREE_TEXT:
                text = self.texts.get(spec.name)
                out[spec.name] = text.sample(n, rng) if text is not None else [None if spec.nullable else ""] * n
            elif spec.type is FieldType.STRING:
                digits = rng.integers(0, 16, size=(n, 16))
                alphabet = np.asarray(list(string.hexdigits[:16]))
                out[spec.name] = ["syn-" + "".join(row) for row in alphabet[digits].tolist()]
            elif spec.type is FieldType.LONG:
                out[spec.name] = rng.integers(0, 2**62, size=n).tolist()
            elif spec.type is FieldType.DOUBLE:
                out[spec.name] = rng.random(n).tolist()
            elif spec.type is FieldType.TIMESTAMP:
                seconds = rng.integers(946_684_800, 1_893_456_000, size=n)
                out[spec.name] = [_EPOCH + timedelta(seconds=int(s)) for s in seconds.tolist()]
            else:
                out[spec.name] = [bool(v) for v in (rng.random(n) < 0.5).tolist()]
        return out


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value)) or value is pd.NaT or value is pd.NA
    except TypeError:
        return False


def _key(value: Any) -> Any:
    """Dictionary key of a canonical value (bools and ints stay distinct; floats of ints match ints)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, np.generic):
        return _key(value.item())
    return value


def column_frame(records: Sequence[Mapping[str, Any]] | pd.DataFrame, schema: RecordSchema) -> pd.DataFrame:
    """The training data as a frame with exactly the schema's columns (ModelError when fields are missing)."""
    names = schema.field_names
    if isinstance(records, pd.DataFrame):
        missing = [n for n in names if n not in records.columns]
        if missing:
            raise ModelError(f"training frame lacks schema fields {missing}")
        return records.loc[:, names].reset_index(drop=True)
    required = set(names)
    for i, record in enumerate(records):
        if not required <= record.keys():
            raise ModelError(f"record {i} lacks schema fields {sorted(required - record.keys())}")
    return pd.DataFrame.from_records(list(records), columns=names)
