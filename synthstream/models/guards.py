"""Defence in depth for every generator: what a fitted model may keep from its training data.

Redaction upstream is the first line; this module is the second. Whatever a redaction
misses (a CPF in a field the plan kept, a name in free text), a generator must not turn it
into a synthetic value or keep it inside the model file the registry pickles. The rules,
shared by the copula, the neural model, AIM/MST and the sequence model:

* **k-support for categories** (:func:`frequent`): a category is kept only when at least
  ``min_count`` distinct training records hold it. Rare values are dropped from the
  vocabulary before it is stored; their rows go to an *other* bucket that decodes to
  synthesised values of the rare values' shape (:class:`ShapeModel`) when they are strings
  with a large shape space and a noticeable share of rows (an id-like or mixed field),
  otherwise they are folded into the kept categories by frequency;
* **supported numeric summaries** (:func:`supported_bounds`, :func:`supported_quantiles`):
  numeric grids and encoders are clipped to the quantiles held by at least ``min_count``
  records at each tail (and at least the 0.5 %/99.5 % quantiles), and every stored grid
  point is the mean of ``min_count`` consecutive order statistics (micro-aggregation), so a
  single outlier (one real postcode, a wind speed of 1048) is neither stored nor sampled;
* **identifiers**: fresh strings of the observed shape (:class:`ShapeModel`: lengths and a
  per-position character class), never a training value;
* **free text** (:class:`TextModel`): word sequences drawn from a bounded vocabulary of
  tokens that at least ``min_count`` records use, written in lower case, with no digit and
  no ``@`` (so numbers, dates, document numbers, e-mail addresses and capitalised names never
  enter the vocabulary); a field with no such token is dropped (null, or empty when not
  nullable) with a warning.

Nothing here stores a rare training value; errors and log lines name fields, never values.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from synthstream.log import get_logger

__all__ = [
    "DEFAULT_MIN_COUNT",
    "MIN_SHAPE_SPACE",
    "OTHER_SHARE",
    "TAIL",
    "ShapeModel",
    "TextModel",
    "check_min_count",
    "frequent",
    "other_shape",
    "silent_text_fields",
    "supported_bounds",
    "supported_quantiles",
    "warn_dropped",
]

FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]

#: Default k: a value must be held by at least this many training records to be kept.
DEFAULT_MIN_COUNT = 5
#: Share of each tail that numeric summaries always clip (0.5 %).
TAIL = 0.005
#: Rare values holding at least this share of rows get an *other* bucket of synthesised values.
OTHER_SHARE = 0.05
#: Least number of distinct strings a shape must allow before it is used to synthesise values.
MIN_SHAPE_SPACE = 1e9
_MAX_LENGTHS = 32
_DIGITS = string.digits
_HEX_LOWER = "abcdef"
_HEX_UPPER = "ABCDEF"
_log = get_logger("models.guards")


def check_min_count(value: Any) -> int:
    """``value`` as k (an integer in [1, 1,000,000]); ValueError otherwise (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= 1_000_000:
        raise ValueError(f"min_count must be an integer in [1, 1000000]; got {value!r}")
    return int(value)


def frequent(counts: Sequence[int] | NDArray[Any], min_count: int, limit: int | None = None) -> IntArray:
    """Indices of the counts held by at least ``min_count`` records, most frequent first, at most ``limit``.

    Ties keep their input order (a stable sort), so callers that pass values in a fixed order
    get a deterministic vocabulary.
    """
    array = np.asarray(counts, dtype=np.int64)
    order = np.argsort(-array, kind="stable")
    kept = order[array[order] >= min_count]
    if limit is not None:
        kept = kept[:limit]
    return kept.astype(np.int64)


def supported_bounds(values: NDArray[Any], min_count: int, tail: float = TAIL) -> tuple[float, float]:
    """The interval numeric summaries are clipped to: the order statistics with ``min_count`` records beyond.

    Low bound: the ``r``-th smallest value with ``r = max(min_count - 1, ceil(tail (n - 1)))``
    (0-based; at least ``min_count`` records are at or below it), the high bound likewise from
    the top; both meet at the median when the data is too small. ``values`` may hold NaN
    (ignored); ValueError when none is finite.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("no finite values to bound")
    n = x.size
    r = min(max(min_count - 1, math.ceil(tail * (n - 1))), (n - 1) // 2)
    return float(x[r]), float(x[n - 1 - r])


def supported_quantiles(values: NDArray[Any], levels: NDArray[Any], min_count: int, tail: float = TAIL) -> FloatArray:
    """Quantiles at ``levels`` that are each the mean of ``min_count`` neighbouring (clipped) values.

    The values are clipped to :func:`supported_bounds` first; the quantile at level ``q`` is
    then the mean of the ``min_count`` order statistics around rank ``q (n - 1)`` (a window
    that stays inside the data). The result is non-decreasing in ``q``; an atom held by at
    least ``min_count`` records (Adult's zero capital gains) stays exactly that value; a value
    held by fewer records is never stored on its own.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("no finite values to take quantiles of")
    lo, hi = supported_bounds(x, min_count, tail)
    origin = lo
    clipped = np.clip(x, lo, hi) - origin  # offset first: epoch microseconds keep their precision in the sums
    n = clipped.size
    k = min(min_count, n)
    sums = np.concatenate(([0.0], np.cumsum(clipped)))
    ranks = np.clip(np.asarray(levels, dtype=np.float64), 0.0, 1.0) * (n - 1)
    start = np.clip(np.rint(ranks - (k - 1) / 2.0).astype(np.int64), 0, n - k)
    means: FloatArray = (sums[start + k] - sums[start]) / k + origin
    return np.maximum.accumulate(np.clip(means, lo, hi))


# ---------------------------------------------------------------------------------------------
# shapes: synthesised strings that look like the training values without being any of them
# ---------------------------------------------------------------------------------------------


class ShapeModel:
    """Fresh strings of the observed shape: the length distribution and a character class per position.

    Each position draws from whole character classes (all digits, all letters of the case
    seen, hexadecimal digits when every value is hexadecimal) plus the punctuation seen there,
    so ``123.456.789-09`` gives ``ddd.ddd.ddd-dd`` strings and ``LOTE-123`` gives
    ``AAAA-ddd``. Nothing but lengths, classes and punctuation is stored. :attr:`space` is the
    number of distinct strings the least varied kept length allows (a collision with a real
    value is then about ``samples x real values / space`` likely).
    """

    def __init__(self) -> None:
        self.lengths: IntArray = np.empty(0, dtype=np.int64)
        self.length_cum: FloatArray = np.empty(0)
        self.alphabets: dict[int, list[NDArray[np.uint8]]] = {}
        self.space = 0.0

    def __repr__(self) -> str:
        return f"ShapeModel(lengths={self.lengths.tolist()}, space={self.space:.3g})"

    @property
    def fitted(self) -> bool:
        """Whether the model has at least one length to draw."""
        return self.lengths.size > 0

    def fit(self, values: Sequence[str], weights: Sequence[int] | None = None, *, min_space: float = 0.0) -> ShapeModel:
        """Learn lengths and position classes of ``values`` (``weights``: records per value).

        Lengths whose shape allows fewer than ``min_space`` strings are left out (they would
        repeat real values by chance); :attr:`fitted` is false when none remains.
        """
        strings = [str(v) for v in values]
        w = np.ones(len(strings), dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
        if not strings:
            return self
        lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
        uniques = np.unique(lengths)
        totals = np.asarray([w[lengths == u].sum() for u in uniques.tolist()])
        top = np.argsort(-totals, kind="stable")[:_MAX_LENGTHS]
        chars = set("".join(strings[:10_000]))
        hexish = chars <= set(_DIGITS + _HEX_LOWER + _HEX_UPPER)
        kept_lengths: list[int] = []
        kept_weights: list[float] = []
        spaces: list[float] = []
        for length in uniques[top].tolist():
            if length == 0:
                continue
            group = [s for s, n in zip(strings, lengths.tolist(), strict=True) if n == length]
            columns = [set(position) for position in zip(*group, strict=True)]
            alphabets = [_alphabet(c, hexish) for c in columns]
            space = float(np.prod([a.size for a in alphabets], dtype=np.float64))
            if space < min_space:
                continue
            self.alphabets[length] = alphabets
            kept_lengths.append(length)
            kept_weights.append(float(w[lengths == length].sum()))
            spaces.append(space)
        if kept_lengths:
            self.lengths = np.asarray(kept_lengths, dtype=np.int64)
            self.length_cum = np.cumsum(kept_weights) / sum(kept_weights)
            self.length_cum[-1] = 1.0
            self.space = min(spaces)
        return self

    def sample(self, n: int, rng: np.random.Generator) -> list[Any]:
        """``n`` fresh strings (empty strings when the model kept no length)."""
        if not self.fitted:
            return [""] * n
        which = np.minimum(np.searchsorted(self.length_cum, rng.random(n), side="right"), self.lengths.size - 1)
        out = np.empty(n, dtype=object)
        for k, length in enumerate(self.lengths.tolist()):
            rows = np.flatnonzero(which == k)
            if rows.size == 0:
                continue
            codes = np.empty((rows.size, length), dtype=np.uint8)
            for j, alphabet in enumerate(self.alphabets[length]):
                codes[:, j] = alphabet[rng.integers(0, alphabet.size, rows.size)]
            out[rows] = codes.view(f"S{length}").ravel().astype(f"U{length}")
        result: list[Any] = out.tolist()
        return result


def _alphabet(chars: set[str], hexish: bool) -> NDArray[np.uint8]:
    """The ASCII alphabet of one position: whole character classes, punctuation as seen."""
    pieces: list[str] = []
    if chars & set(_DIGITS):
        pieces.append(_DIGITS)
    lower = any(c.islower() for c in chars)
    upper = any(c.isupper() for c in chars)
    if lower:
        pieces.append(_HEX_LOWER if hexish else string.ascii_lowercase)
    if upper:
        pieces.append(_HEX_UPPER if hexish else string.ascii_uppercase)
    pieces.extend(sorted(c for c in chars if c.isascii() and not c.isalnum()))
    alphabet = "".join(pieces) or string.ascii_letters + _DIGITS
    return np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8).copy()


def other_shape(rare: Sequence[Any], counts: Sequence[int], total: int) -> ShapeModel | None:
    """A :class:`ShapeModel` for an *other* bucket, or ``None`` when the rare values should be folded instead.

    Used when the rare values are strings holding at least :data:`OTHER_SHARE` of ``total``
    rows (an id-like or mixed field: 30 % CPFs among lot codes) and their shape allows at
    least :data:`MIN_SHAPE_SPACE` strings; a few rare categories (a country seen twice) are
    better folded into the kept ones.
    """
    if not rare or total <= 0 or not all(isinstance(v, str) for v in rare):
        return None
    if sum(int(c) for c in counts) < OTHER_SHARE * total:
        return None
    model = ShapeModel().fit(list(rare), list(counts), min_space=MIN_SHAPE_SPACE)
    return model if model.fitted else None


# ---------------------------------------------------------------------------------------------
# free text
# ---------------------------------------------------------------------------------------------


class TextModel:
    """Synthetic free text: words from a bounded vocabulary of frequent, lower-case, digit-free tokens.

    Fitting counts, per whitespace token, the records that use it; tokens used by at least
    ``min_count`` records, in lower case, with no digit and no ``@``, form the vocabulary (at most
    ``max_vocabulary``, most used first). A sample is a number of words drawn from the
    training texts' word counts (clipped to the supported range), each word drawn by
    frequency. The text reads as word salad; it keeps the field's vocabulary and length,
    never a sentence. With an empty vocabulary the field is *dropped* (null when nullable,
    else empty) and :attr:`dropped` says so; the caller logs it.
    """

    def __init__(self, name: str, *, nullable: bool, min_count: int, max_vocabulary: int = 1_000) -> None:
        self.name = name
        self.nullable = nullable
        self.min_count = check_min_count(min_count)
        self.max_vocabulary = max_vocabulary
        self.vocabulary: list[str] = []
        self.word_cum: FloatArray = np.ones(1)
        self.lengths: IntArray = np.ones(1, dtype=np.int64)
        self.length_cum: FloatArray = np.ones(1)
        self.null_rate = 0.0

    def __repr__(self) -> str:
        return f"TextModel(name={self.name!r}, vocabulary={len(self.vocabulary)}, dropped={self.dropped})"

    @property
    def dropped(self) -> bool:
        """Whether no token qualified: the field is generated as null/empty."""
        return not self.vocabulary

    def fit(self, values: Sequence[Any]) -> TextModel:
        """Learn the vocabulary and word counts of the non-null ``values``."""
        texts = [v for v in values if isinstance(v, str)]
        self.null_rate = 1.0 - len(texts) / len(values) if len(values) else 0.0
        documents: Counter[str] = Counter()
        uses: Counter[str] = Counter()
        words = np.zeros(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            tokens = text.split()
            words[i] = len(tokens)
            uses.update(tokens)
            documents.update(set(tokens))
        eligible = sorted(
            (t for t, n in documents.items() if n >= self.min_count and _plain_word(t)),
            key=lambda t: (-uses[t], t),
        )[: self.max_vocabulary]
        self.vocabulary = eligible
        if eligible:
            freq = np.asarray([uses[t] for t in eligible], dtype=np.float64)
            self.word_cum = np.cumsum(freq) / freq.sum()
            self.word_cum[-1] = 1.0
            present = words[words > 0]
            if present.size:
                lo, hi = supported_bounds(present, self.min_count)
                counts = np.bincount(np.clip(present, int(lo), int(hi)))
                support = np.flatnonzero(counts)
                self.lengths = support.astype(np.int64)
                self.length_cum = np.cumsum(counts[support]) / counts[support].sum()
                self.length_cum[-1] = 1.0
        return self

    def sample(self, n: int, rng: np.random.Generator) -> list[Any]:
        """``n`` synthetic texts (nulls at the training null rate when the field is nullable)."""
        empty: Any = None if self.nullable else ""
        if self.dropped:
            return [empty] * n
        counts = self.lengths[
            np.minimum(np.searchsorted(self.length_cum, rng.random(n), side="right"), len(self.lengths) - 1)
        ]
        picks = np.minimum(
            np.searchsorted(self.word_cum, rng.random(int(counts.sum())), side="right"), len(self.vocabulary) - 1
        )
        words = np.asarray(self.vocabulary, dtype=object)[picks].tolist()
        out: list[Any] = []
        start = 0
        for size in counts.tolist():
            out.append(" ".join(words[start : start + size]))
            start += size
        if self.nullable and self.null_rate > 0:
            for i in np.flatnonzero(rng.random(n) < self.null_rate).tolist():
                out[i] = None
        return out


def _draw(cum: FloatArray, n: int, rng: np.random.Generator) -> IntArray:
    """``n`` indices drawn from the cumulative probabilities ``cum``."""
    picks: IntArray = np.minimum(np.searchsorted(cum, rng.random(n), side="right"), cum.size - 1).astype(np.int64)
    return picks


def _plain_word(token: str) -> bool:
    """A token that may enter a text vocabulary: lower case, no digit, no ``@``.

    Numbers, dates, document numbers and e-mail addresses hold digits or ``@``; names (and
    redaction placeholders such as ``<PERSON>``) are capitalised, so a common first name used
    by many records still stays out of the vocabulary.
    """
    return token == token.lower() and not any(c.isdigit() for c in token) and "@" not in token


def warn_dropped(field: str, reason: str) -> None:
    """Log that a free-text field is generated without content (names the field, never a value)."""
    _log.warning("generator.free_text_dropped", field=field, reason=reason)


def silent_text_fields(
    columns: dict[str, list[Any]], text_fields: Sequence[str], training: Sequence[dict[str, Any]]
) -> list[str]:
    """Free-text fields a fitted generator produces no content for although training had some.

    Whatever the generator (a DP model learns no text; a vocabulary can come out empty),
    a user must be told, not handed a column of nulls: the trainer turns this into a warning
    and names the fields on the ``trained`` event. ``columns`` is a synthetic sample by field.
    """

    def empty(value: Any) -> bool:
        return value is None or (isinstance(value, str) and not value.strip())

    silent = []
    for name in text_fields:
        had_content = any(not empty(row.get(name)) for row in training)
        if had_content and all(empty(v) for v in columns.get(name, [])):
            silent.append(name)
    return silent
