"""Time fields of every kind, calendar-true output and trends tied to absolute time (issue 16, items 1-3).

Three small seeded datasets, each fitted for a few epochs:

* a yearly panel with an integer ``year`` (1-5 rows per person), an ``age`` that advances with
  the year and a quasi-static ``education``: the output keeps int years on the observed range,
  persons never start before the data, ``age`` advances with the year in every step, the
  records fit the Avro schema (the crash of the issue);
* hourly series at several stations with an ``hour`` column (detected, not declared): every
  timestamp is a whole hour and ``hour == ts.hour`` in every row;
* one weekly series with a strong linear trend (ISO date strings), cut in windows: the
  synthetic windows stay on the weekday grid and their level follows their start date.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from synthstream.errors import ModelError
from synthstream.models.sequence import SequenceGenerator
from synthstream.models.sequence_time import DerivedRule, apply_derived, derived_rules, detect_derived, detect_time
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore

TINY: dict[str, Any] = {
    "hidden_size": 24,
    "head_units": 12,
    "mixture_components": 2,
    "batch_size": 16,
    "tbptt": 12,
    "learning_rate": 1e-2,
    "device": "cpu",
    "threads": 1,
}

PANEL = RecordSchema(
    name="Panel",
    fields=(
        FieldSpec(name="person", type=FieldType.STRING, role=FieldRole.IDENTIFIER),
        FieldSpec(name="year", type=FieldType.LONG, role=FieldRole.NUMERIC),
        FieldSpec(name="age", type=FieldType.LONG, role=FieldRole.NUMERIC),
        FieldSpec(name="education", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="income", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
    ),
)
HOURLY = RecordSchema(
    name="Weather",
    fields=(
        FieldSpec(name="station", type=FieldType.STRING, role=FieldRole.IDENTIFIER),
        FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
        FieldSpec(name="hour", type=FieldType.LONG, role=FieldRole.NUMERIC),
        FieldSpec(name="temp", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
    ),
)
WEEKLY = RecordSchema(
    name="Co2",
    fields=(
        FieldSpec(name="week", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="level", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
    ),
)
EDUCATION = ["basic", "secondary", "degree"]


def _panel(n_people: int = 300, seed: int = 0) -> list[dict[str, Any]]:
    """Persons observed 1990-2000 for 1-5 consecutive years; most enter in the first years."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_people):
        first = 1990 + min(int(rng.geometric(0.3)) - 1, 10)
        length = min(int(rng.integers(1, 6)), 2000 - first + 1)
        age = int(rng.integers(20, 60))
        education = EDUCATION[int(rng.integers(0, 3))]
        for j in range(length):
            if rng.random() < 0.01:
                education = EDUCATION[int(rng.integers(0, 3))]
            rows.append(
                {
                    "person": f"p{k:05d}",
                    "year": first + j,
                    "age": age + j,
                    "education": education,
                    "income": round(float(20_000 + 800 * (first + j - 1990) + rng.normal(0, 3_000)), 2),
                }
            )
    return rows


def _hourly(n_stations: int = 6, days: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    t0 = datetime(2021, 3, 1, tzinfo=UTC)
    for k in range(n_stations):
        base = 5.0 + 2 * k
        for h in range(days * 24):
            ts = t0 + timedelta(hours=h)
            rows.append(
                {
                    "station": f"s{k}",
                    "ts": ts,
                    "hour": ts.hour,
                    "temp": round(base + 6 * np.sin(2 * np.pi * (ts.hour - 9) / 24) + rng.normal(0, 1), 2),
                }
            )
    return rows


def _weekly_windows(weeks: int = 520, length: int = 26, stride: int = 4, seed: int = 0) -> list[list[dict[str, Any]]]:
    """A weekly series (Sundays) with a strong linear trend plus seasonality, cut in sliding windows."""
    rng = np.random.default_rng(seed)
    first = datetime(2000, 1, 2, tzinfo=UTC)  # a Sunday
    series = [
        {
            "week": (first + timedelta(weeks=w)).strftime("%Y-%m-%d"),
            "level": round(float(340 + 0.05 * w + 3 * np.sin(2 * np.pi * w / 52.18) + rng.normal(0, 0.5)), 2),
        }
        for w in range(weeks)
    ]
    return [series[s : s + length] for s in range(0, weeks - length + 1, stride)]


@pytest.fixture(scope="module")
def panel() -> list[dict[str, Any]]:
    return _panel()


@pytest.fixture(scope="module")
def panel_model(panel: list[dict[str, Any]]) -> SequenceGenerator:
    model = SequenceGenerator(entity_field="person", time_field="year", epochs=12, seed=3, **TINY)
    return model.fit(panel, PANEL)


# -- the codec, pure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "ftype", "kind", "grid"),
    [
        ([1987, 1988, 1990], FieldType.LONG, "year", "yearly"),
        ([198703, 198704, 198801], FieldType.LONG, "yearmonth", "monthly"),
        ([20200106, 20200113, 20200120], FieldType.LONG, "yyyymmdd", "weekly"),
        ([1_600_000_000_000, 1_600_003_600_000], FieldType.LONG, "epoch_ms", "hourly"),
        ([1.6e9, 1.6e9 + 0.5], FieldType.DOUBLE, "epoch_s", "irregular"),
        ([18_000, 18_001, 18_003], FieldType.LONG, "day_index", "daily"),
        (["2020-01-01", "2020-01-02"], FieldType.STRING, "iso", "daily"),
        (["1987", "1989"], FieldType.STRING, "year", "yearly"),
        # dated text is written back the way the data writes it
        (["2010/01/01 00:00", "2010/01/01 01:00"], FieldType.STRING, "iso", "hourly"),
        (["Jan 01 2000", "Feb 01 2000", "Mar 01 2000"], FieldType.STRING, "iso", "monthly"),
        (["01/30/2020", "01/31/2020"], FieldType.STRING, "iso", "daily"),
    ],
)
def test_the_kind_and_grid_of_a_time_field_are_detected_and_values_round_trip(
    values: list[Any], ftype: FieldType, kind: str, grid: str
) -> None:
    codec = detect_time(pd.Series(values), ftype, name="t")
    assert (codec.kind, codec.grid) == (kind, grid)
    us = codec.to_us(values).astype(np.int64)
    assert codec.on_grid(us).all()
    back = codec.from_us(us)
    assert back == [type(values[0])(v) for v in values]  # the field's own type and kind
    assert "'t'" in codec.describe() and kind in codec.describe()


def test_timestamps_snap_onto_the_grid_and_never_go_back() -> None:
    stamps = pd.Series(pd.date_range("2021-01-01", periods=40, freq="3h", tz="UTC"))
    codec = detect_time(stamps, FieldType.TIMESTAMP, name="ts")
    assert (codec.grid, codec.step, codec.ties) == ("hourly", 3, False)
    prev = codec.to_us(stamps[:2]).astype(np.int64)
    proposed = prev + np.array([20 * 60e6, 200 * 60e6])  # 20 min and 3h20 later
    nxt = codec.advance(prev, proposed, first=False)
    assert codec.on_grid(nxt).all()
    assert (nxt - prev).tolist() == [3 * 3_600_000_000, 3 * 3_600_000_000]


def test_a_forced_kind_that_cannot_fit_the_field_is_refused_naming_it() -> None:
    with pytest.raises(ModelError, match=r"'when'.*timestamp"):
        detect_time(pd.Series([datetime(2020, 1, 1, tzinfo=UTC)]), FieldType.TIMESTAMP, name="when", kind="year")
    with pytest.raises(ModelError, match="'flag'"):
        detect_time(pd.Series([True, False]), FieldType.BOOLEAN, name="flag")
    with pytest.raises(ValueError, match="advance_with"):
        derived_rules({"age": {"grows": "year"}})


def test_derived_columns_are_enforced_on_every_row() -> None:
    codec = detect_time(pd.Series([2000, 2001, 2002]), FieldType.LONG, name="year")
    times = codec.to_us([2000, 2001, 2003, 1995, 1996]).astype(np.int64)
    owner = np.array([0, 0, 0, 1, 1])
    columns: dict[str, list[Any]] = {"yr": [1, 2, 3, 4, 5], "age": [30, 99, None, None, 41]}
    rules = [DerivedRule("yr", component="year"), DerivedRule("age", advance_with="year")]
    apply_derived(rules, columns, times, owner, {"yr": FieldType.LONG, "age": FieldType.LONG})
    assert columns["yr"] == [2000, 2001, 2003, 1995, 1996]
    assert columns["age"] == [30, 31, 33, 40, 41]  # first generated value kept, then + years elapsed


def test_no_relation_is_detected_without_evidence() -> None:
    """A flag constant within entities over one day is no age (the unit never advances); a constant is no hour."""
    rng = np.random.default_rng(0)
    n_entities, per = 200, 10
    times = datetime(2019, 1, 1, tzinfo=UTC).timestamp() * 1e6 + np.sort(rng.uniform(0, 8.64e10, (n_entities, per)))
    frame = pd.DataFrame(
        {
            "flag": np.repeat((np.arange(n_entities) == 3).astype(int), per),
            "minute_like": np.zeros(n_entities * per, dtype=int),  # equals ts.minute only if the data were on hours
            "hour": [datetime.fromtimestamp(t / 1e6, UTC).hour for t in times.ravel()],
        }
    )
    frame.loc[55, "flag"] = 1  # one row of one entity flips: it does change within an entity (0.05 % of rows)
    starts = np.arange(0, n_entities * per, per)
    rules = detect_derived(frame, times.ravel().astype(np.int64), starts, ["flag", "minute_like", "hour"])
    assert rules == [DerivedRule("hour", component="hour")]


# -- a yearly integer panel ----------------------------------------------------------------------------


def test_an_integer_year_panel_stays_in_int_years_inside_the_observed_range(
    panel: list[dict[str, Any]], panel_model: SequenceGenerator
) -> None:
    codec = panel_model.time_codec
    assert codec is not None and (codec.kind, codec.grid) == ("year", "yearly")
    seqs = panel_model.sample_sequences(300, seed=1)
    rows = [e for s in seqs for e in s.events]
    assert all(type(r["year"]) is int and type(r["age"]) is int for r in rows)
    years = np.array([r["year"] for r in rows])
    assert years.min() >= 1990 and years.max() <= 2000  # inside the observed years: no 1970, no 2030
    assert min(s.events[0]["year"] for s in seqs) >= 1990  # nobody starts before the data begins
    real_first = pd.Series([r["year"] for r in panel]).groupby([r["person"] for r in panel]).min()
    synth_first = pd.Series([s.events[0]["year"] for s in seqs])
    assert abs(float((synth_first == 1990).mean()) - float((real_first == 1990).mean())) < 0.15
    for s in seqs:
        ys = [e["year"] for e in s.events]
        assert all(b > a for a, b in itertools.pairwise(ys))  # one row per person-year, in order
    # the record keeps the field's own type: it fits the Avro schema (the crash of the issue)
    serde = AvroRecordSerde(PANEL, InMemorySchemaStore(), subject="panel-value")
    assert len(serde.encode_many(rows[:200])) == 200


def test_age_advances_with_the_year_and_education_stays_stable(
    panel: list[dict[str, Any]], panel_model: SequenceGenerator
) -> None:
    assert DerivedRule("age", advance_with="year") in panel_model.derived_rules_  # detected, not declared
    assert "education" in panel_model.quasi_static_
    seqs = panel_model.sample_sequences(300, seed=2)
    steps = advancing = 0
    for s in seqs:
        for a, b in itertools.pairwise(s.events):
            steps += 1
            advancing += int(b["age"] - a["age"] == b["year"] - a["year"])
    assert steps > 100 and advancing == steps  # 100 % (real: 100 %)
    multi = [s for s in seqs if len(s.events) > 1]
    constant = np.mean([len({e["education"] for e in s.events}) == 1 for s in multi])
    frame = pd.DataFrame(panel)
    real_constant = float(
        (frame.groupby("person")["education"].nunique()[frame.groupby("person").size() > 1] == 1).mean()
    )
    assert constant >= real_constant - 0.02  # without the quasi-static rule: 0.92 vs real 0.97


# -- hourly stations with an hour column -------------------------------------------------------------


def test_hourly_output_is_on_whole_hours_and_the_hour_column_agrees() -> None:
    model = SequenceGenerator(entity_field="station", time_field="ts", period="day", epochs=6, seed=1, **TINY)
    model.fit(_hourly(), HOURLY)
    codec = model.time_codec
    assert codec is not None and (codec.kind, codec.grid, codec.step) == ("datetime", "hourly", 1)
    assert DerivedRule("hour", component="hour") in model.derived_rules_
    rows = [e for s in model.sample_sequences(40, seed=3) for e in s.events]
    assert len(rows) > 200
    stamps = [r["ts"] for r in rows]
    assert all(isinstance(t, datetime) and t.minute == t.second == t.microsecond == 0 for t in stamps)
    assert all(r["hour"] == r["ts"].hour for r in rows)  # 100 % (the issue: 3.8 %)
    assert min(stamps) >= datetime(2021, 3, 1, tzinfo=UTC) and max(stamps) < datetime(2021, 3, 9, tzinfo=UTC)


# -- a weekly single series with a trend, in windows ---------------------------------------------------


def _level_trend(windows: list[list[dict[str, Any]]], codec: Any) -> float:
    starts = np.array([codec.to_us([w[0]["week"]])[0] for w in windows])
    levels = np.array([np.mean([e["level"] for e in w]) for w in windows])
    return float(np.corrcoef(starts, levels)[0, 1])


def _mean_slope(windows: list[list[dict[str, Any]]]) -> float:
    """Mean within-window least-squares slope of the level, per week."""
    return float(np.mean([np.polyfit(np.arange(len(w)), [e["level"] for e in w], 1)[0] for w in windows]))


def test_a_window_level_follows_its_start_date() -> None:
    windows = _weekly_windows()
    model = SequenceGenerator(entity_field=None, time_field="week", epochs=15, seed=2, **TINY)
    model.fit_sequences(windows, WEEKLY)
    codec = model.time_codec
    assert codec is not None and (codec.kind, codec.grid) == ("iso", "weekly")
    synthetic = [s.events for s in model.sample_sequences(120, seed=4)]
    weeks = [e["week"] for w in synthetic for e in w]
    assert all(isinstance(v, str) and len(v) == 10 for v in weeks)
    assert {pd.Timestamp(v).dayofweek for v in weeks} == {6}  # every date a Sunday, like the data
    real, synth = _level_trend(windows, codec), _level_trend(synthetic, codec)
    assert real > 0.95
    assert synth > real - 0.05  # without absolute time: 0.15
    assert 0.5 < _mean_slope(synthetic) / _mean_slope(windows) < 2.0  # the within-window slope keeps its sign


def _complete_panel(n_people: int = 500, seed: int = 0) -> list[dict[str, Any]]:
    """Every person stays until the data ends (2004): a 2000 starter has 5 rows, a 2004 starter one."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_people):
        first = 2000 + int(rng.integers(0, 5))
        age = int(rng.integers(20, 60))
        for year in range(first, 2005):
            rows.append(
                {"person": f"p{k:05d}", "year": year, "age": age + year - first, "education": "basic", "income": 1.0}
            )
    return rows


def test_lengths_follow_the_start_date_so_a_cut_panel_keeps_its_one_row_share() -> None:
    from synthstream.models.sequence_codecs import ArrivalModel

    real = pd.DataFrame(_complete_panel())
    lengths = real.groupby("person").size()
    starts = real.groupby("person")["year"].min()
    # The arrival model alone: each start year gets its own lengths (5 distinct years, 100 persons each).
    us = pd.to_datetime(starts.astype(str) + "-01-01", utc=True).astype("int64").to_numpy() // 1_000
    arrival = ArrivalModel(min_count=5).fit(us, lengths.to_numpy())
    drawn = arrival.sample_lengths(len(us), np.random.default_rng(1), us)
    assert (drawn == 2005 - starts.to_numpy()).all()
    assert arrival.sample_lengths(2_000, np.random.default_rng(1)).std() > 1.0  # no start: all lengths
    # Through the model: lengths drawn regardless of the start, then cut at the data's end, gave
    # 2000 starters one row as often as any other length (one-row share 0.34 here, real 0.20; 0.19 with bands).
    model = SequenceGenerator(entity_field="person", time_field="year", epochs=3, seed=3, **TINY)
    model.fit(_complete_panel(), PANEL)
    synthetic = pd.DataFrame(model.sample(3_000, seed=4))
    one_row = float((synthetic.groupby("person").size() == 1).mean())
    assert abs(one_row - float((lengths == 1).mean())) < 0.08, one_row
