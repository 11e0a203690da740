"""Distribution profiles: the binning every drift distance is computed on, and a model's training profile.

A :class:`TrainingProfile` summarises a set of records per field: numeric fields as
quantile-bin counts (edges from the data, plus a null bin) with mean and standard
deviation; categorical fields as category counts (the most frequent ``max_categories``
that hold at least ``min_share`` of the rows and at least ``min_count`` records, then
``other`` and null). It is small, JSON-serialisable and holds no record values beyond bin
edges and category labels of redacted data; as defence in depth behind redaction, no label
and no exact edge is a value fewer than ``min_count`` records hold (rare categories fall
into ``other``; edges that are not such atoms are rounded to a coarse grid).

The profile built from a version's training records is stored beside the model
(``profile.json``, written by :class:`synthstream.streams.drift.ProfileHook`): it is what "the promoted model's training
distribution" means to the staleness monitor. The same class, built from the first window
of a stream, fixes the binning of the stream-drift and output-divergence monitors.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from synthstream.models.guards import DEFAULT_MIN_COUNT
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

__all__ = [
    "Column",
    "FieldProfile",
    "TrainingProfile",
    "categorical_column",
    "drift_fields",
    "numeric_column",
]

Record = Mapping[str, Any]
FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]
#: Values of one field over a window: float64 array (NaN = null) or category counts (None = null).
Column: TypeAlias = "FloatArray | Counter[Any]"

#: Version of the profile file layout.
PROFILE_FORMAT = 1


def drift_fields(schema: RecordSchema, names: Sequence[str] | None = None) -> list[FieldSpec]:
    """Fields drift is monitored on: numeric (long/double) and categorical (incl. booleans).

    Identifiers, free text and timestamps are skipped: their values are unique or grow with
    time, so any distance on them measures nothing about the distribution. ``names`` picks a
    subset; naming a field that cannot be monitored raises ``ValueError`` listing the ones that can.
    """
    eligible = [f for f in schema.fields if _kind(f) is not None]
    if names is None:
        return eligible
    by_name = {f.name: f for f in eligible}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"cannot monitor fields {unknown} for drift; choose from {sorted(by_name)}")
    return [by_name[n] for n in names]


def _kind(spec: FieldSpec) -> Literal["numeric", "categorical"] | None:
    if spec.role in (FieldRole.IDENTIFIER, FieldRole.FREE_TEXT, FieldRole.DATETIME):
        return None
    if spec.type is FieldType.TIMESTAMP:
        return None
    if spec.role is FieldRole.NUMERIC and spec.type in (FieldType.LONG, FieldType.DOUBLE):
        return "numeric"
    return "categorical"


def numeric_column(records: Iterable[Record], name: str) -> FloatArray:
    """A field as float64 (missing and null become NaN)."""
    return np.array([r.get(name) for r in records], dtype=np.float64)


def categorical_column(records: Iterable[Record], name: str) -> Counter[Any]:
    """A field's value counts (missing values count as ``None``)."""
    return Counter(r.get(name) for r in records)


class FieldProfile(BaseModel):
    """The binned distribution of one field; :meth:`histogram` bins new data the same way."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Field name.")
    kind: Literal["numeric", "categorical"] = Field(description="numeric = quantile bins; categorical = categories.")
    type: FieldType = Field(description="Physical type of the field.")
    edges: list[float] = Field(default_factory=list, description="Numeric: interior bin edges, ascending.")
    categories: list[str] = Field(default_factory=list, description="Categorical: kept categories (as strings).")
    counts: list[int] = Field(description="Rows per bin: value bins (then other, for categorical), then null.")
    mean: float | None = Field(default=None, description="Numeric: mean of the non-null values.")
    std: float | None = Field(default=None, description="Numeric: standard deviation of the non-null values.")
    _category_index: dict[str, int] | None = PrivateAttr(default=None)

    @property
    def rows(self) -> int:
        """Rows the profile was built from."""
        return int(sum(self.counts))

    @property
    def labels(self) -> list[str]:
        """One label per bin (for metrics and reports)."""
        if self.kind == "numeric":
            bounds = ["-inf", *(f"{e:g}" for e in self.edges), "inf"]
            return [f"[{a},{b})" for a, b in itertools.pairwise(bounds)] + ["<null>"]
        return [*self.categories, "<other>", "<null>"]

    def shares(self) -> FloatArray:
        """Bin shares (zeros when the profile is empty)."""
        counts = np.asarray(self.counts, dtype=np.float64)
        total = counts.sum()
        return counts / total if total > 0 else counts

    def histogram(self, column: Column) -> IntArray:
        """Counts of ``column`` (numeric array or category counts) in this profile's bins."""
        if self.kind == "numeric":
            return _numeric_histogram(np.asarray(column, dtype=np.float64), self.edges)
        if not isinstance(column, Counter):
            raise TypeError(f"field {self.name!r} is categorical: pass category counts, not {type(column).__name__}")
        return _categorical_histogram(column, self._index)

    @property
    def _index(self) -> dict[str, int]:
        if self._category_index is None:
            self._category_index = {c: i for i, c in enumerate(self.categories)}
        return self._category_index

    @classmethod
    def build(
        cls,
        spec: FieldSpec,
        column: Column,
        *,
        bins: int,
        max_categories: int,
        min_share: float,
        min_count: int = DEFAULT_MIN_COUNT,
    ) -> FieldProfile:
        """Profile one field's ``column`` (from :func:`numeric_column` or :func:`categorical_column`).

        Nothing fewer than ``min_count`` records hold is stored: categories below it count as
        other, and a bin edge is kept exactly only when it is a value ``min_count`` records hold
        (an atom such as capital-gain's zeros); any other edge is rounded to a coarse grid
        (:func:`_private_edges`), so a profile never holds one record's value (a real postcode).
        """
        kind = _kind(spec)
        if kind is None:
            raise ValueError(f"field {spec.name!r} ({spec.role.value}) is not monitored for drift")
        if kind == "numeric":
            values = np.asarray(column, dtype=np.float64)
            present = values[~np.isnan(values)]
            edges = _private_edges(present, _quantile_edges(present, bins), min_count)
            counts = _numeric_histogram(values, edges)
            mean = float(present.mean()) if present.size else None
            std = float(present.std()) if present.size else None
            return cls(
                name=spec.name, kind=kind, type=spec.type, edges=edges, counts=counts.tolist(), mean=mean, std=std
            )
        if not isinstance(column, Counter):
            raise TypeError(f"field {spec.name!r} is categorical: pass category counts")
        labelled: Counter[str] = Counter()
        nulls = 0
        for value, n in column.items():
            if value is None:
                nulls += n
            else:
                labelled[str(value)] += n
        total = sum(labelled.values()) + nulls
        floor = max(min_share * total, min_count)
        kept = [c for c, n in sorted(labelled.items(), key=lambda kv: (-kv[1], kv[0])) if n >= floor]
        kept = sorted(kept[:max_categories])
        index = {c: i for i, c in enumerate(kept)}
        counts = _categorical_histogram(column, index)
        return cls(name=spec.name, kind=kind, type=spec.type, categories=kept, counts=counts.tolist())


def _quantile_edges(present: FloatArray, bins: int) -> list[float]:
    if present.size == 0 or bins < 2:
        return []
    qs = np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    # Unique edges only: a field with a heavy atom (capital-gain is mostly 0) gets fewer bins.
    edges = np.unique(qs)
    # Bins are [edge_i, edge_i+1): an edge at the minimum would leave the first bin empty, so
    # it moves just above the minimum, giving the atom (e.g. capital-gain = 0) a bin of its own.
    low = present.min()
    edges = np.unique(np.where(edges <= low, np.nextafter(low, np.inf), edges))
    return [float(e) for e in edges]


def _private_edges(present: FloatArray, edges: Sequence[float], min_count: int) -> list[float]:
    """``edges`` with every edge not backed by ``min_count`` records rounded to a coarse grid.

    An edge equal to a value held by at least ``min_count`` records (or just above such a
    minimum, the atom bin) stays exact; every other edge is an interpolation of a few records'
    values, so it is rounded to the power of ten just below a thousandth of the supported
    spread (the 0.5 %-99.5 % range): postcodes spread over 1e8 round to multiples of 1e4.
    """
    if not edges or present.size == 0:
        return list(edges)
    values, counts = np.unique(present, return_counts=True)
    backed = set(values[counts >= min_count].tolist())
    backed |= {float(np.nextafter(v, np.inf)) for v in backed}
    lo, hi = np.quantile(present, [0.005, 0.995])
    spread = float(hi - lo) or float(values[-1] - values[0])
    step = 10.0 ** math.floor(math.log10(spread / 1000.0)) if spread > 0 else 1.0
    out = [e if e in backed else float(np.round(e / step) * step) for e in edges]
    return sorted(set(out))


def _numeric_histogram(values: FloatArray, edges: Sequence[float]) -> IntArray:
    nulls = np.isnan(values)
    present = values[~nulls]
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.int64)
    return np.append(counts, np.int64(nulls.sum()))


def _categorical_histogram(column: Counter[Any], index: Mapping[str, int]) -> IntArray:
    counts = np.zeros(len(index) + 2, dtype=np.int64)
    other, null = len(index), len(index) + 1
    for value, n in column.items():
        if value is None:
            counts[null] += n
        else:
            counts[index.get(str(value), other)] += n
    return counts


class TrainingProfile(BaseModel):
    """Per-field binned distributions of a set of records (e.g. a model version's training data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = Field(default=PROFILE_FORMAT, description="Layout version of the profile file.")
    rows: int = Field(ge=0, description="Records the profile was built from.")
    schema_fingerprint: str = Field(description="Fingerprint of the record schema the fields belong to.")
    created_at: datetime = Field(description="When the profile was built (UTC).")
    fields: dict[str, FieldProfile] = Field(description="Profile of every monitored field, by name.")

    @classmethod
    def build(
        cls,
        records: Sequence[Record],
        schema: RecordSchema,
        *,
        fields: Sequence[str] | None = None,
        bins: int = 10,
        max_categories: int = 50,
        min_share: float = 0.005,
        min_count: int = DEFAULT_MIN_COUNT,
    ) -> TrainingProfile:
        """Profile ``records`` on the monitored fields of ``schema`` (all of them when ``fields`` is None)."""
        specs = drift_fields(schema, fields)
        columns: dict[str, Column] = {
            spec.name: (
                numeric_column(records, spec.name)
                if _kind(spec) == "numeric"
                else categorical_column(records, spec.name)
            )
            for spec in specs
        }
        return cls.from_columns(
            columns,
            specs,
            rows=len(records),
            schema_fingerprint=schema.fingerprint(),
            bins=bins,
            max_categories=max_categories,
            min_share=min_share,
            min_count=min_count,
        )

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Column],
        specs: Sequence[FieldSpec],
        *,
        rows: int,
        schema_fingerprint: str,
        bins: int = 10,
        max_categories: int = 50,
        min_share: float = 0.005,
        min_count: int = DEFAULT_MIN_COUNT,
    ) -> TrainingProfile:
        """Profile columns already extracted (numeric arrays, category counts) for the fields ``specs``."""
        if bins < 2:
            raise ValueError("bins must be at least 2")
        if max_categories < 1:
            raise ValueError("max_categories must be at least 1")
        if not 0.0 <= min_share < 1.0:
            raise ValueError("min_share must be in [0, 1)")
        profiles = {
            spec.name: FieldProfile.build(
                spec,
                columns[spec.name],
                bins=bins,
                max_categories=max_categories,
                min_share=min_share,
                min_count=min_count,
            )
            for spec in specs
            if spec.name in columns
        }
        return cls(rows=rows, schema_fingerprint=schema_fingerprint, created_at=datetime.now(UTC), fields=profiles)

    def to_json(self) -> bytes:
        """The profile as JSON bytes (what ``profile.json`` holds)."""
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> TrainingProfile:
        """Read a profile written by :meth:`to_json`."""
        return cls.model_validate_json(data)

    def histograms(self, columns: Mapping[str, Column]) -> dict[str, IntArray]:
        """Bin each column that this profile knows (others are ignored)."""
        return {name: self.fields[name].histogram(col) for name, col in columns.items() if name in self.fields}
