"""The independent sequence discriminator and the calendar/trend/null/extreme checks (benchmarks.ts_discriminator).

Seeded synthetic sequences only: each check is shown to pass on data that agrees and to fail on
data with the defect it targets (lost autocorrelation, a calendar column off by one, off-grid
timestamps, a lost trend, extra nulls, a repeated outlier, a drifting quasi-static field).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.ts_discriminator import (
    calendar_consistency,
    discriminator_auc,
    extreme_repetition,
    grid_share,
    null_rates,
    sequence_features,
    step_relations,
    trend_correlation,
)
from synthstream.evaluation.timeseries import SeriesSpec

SPEC = SeriesSpec(key="seq", time="ts", numeric=("x", "y"), categorical=("c",))


def _series(n_seq: int, length: int, phi: float, seed: int, *, trend: float = 0.0) -> pd.DataFrame:
    """AR(1) sequences with unit marginal variance (``phi`` sets the memory), daily, one per 30 days."""
    rng = np.random.default_rng(seed)
    rows = []
    origin = pd.Timestamp("2000-01-01", tz="UTC")
    for s in range(n_seq):
        x = np.empty(length)
        x[0] = rng.normal()
        for t in range(1, length):
            x[t] = phi * x[t - 1] + np.sqrt(1 - phi**2) * rng.normal()
        start = origin + pd.Timedelta(days=30 * s)
        level = trend * s
        for t in range(length):
            rows.append(
                {
                    "seq": f"s{s:03d}",
                    "ts": start + pd.Timedelta(days=t),
                    "x": x[t] + level,
                    "y": 0.5 * x[t] + rng.normal(),
                    "c": "a" if rng.random() < 0.7 else "b",
                }
            )
    return pd.DataFrame(rows)


def test_features_one_row_per_sequence_with_shared_columns() -> None:
    real = _series(6, 20, 0.8, seed=1)
    feats = sequence_features(real, SPEC, categories={"c": ["a", "b"]})
    assert len(feats) == 6
    assert {"length", "start_years", "gap_mean_h", "x.acf1", "x.acf7", "corr.x.y", "c=a", "c=b"} <= set(feats.columns)
    assert np.allclose(feats["length"], 20)
    assert np.allclose(feats["gap_mean_h"], 24.0)
    assert feats["x.acf1"].mean() > 0.4  # AR(0.8) memory is seen


def test_auc_near_half_for_the_same_process_and_high_for_lost_memory() -> None:
    real = _series(60, 30, 0.9, seed=1)
    same = _series(60, 30, 0.9, seed=2)
    white = _series(60, 30, 0.0, seed=3)  # same marginals, no autocorrelation
    alike = discriminator_auc(real, same, SPEC, folds=5, repeats=2, seed=0)
    apart = discriminator_auc(real, white, SPEC, folds=5, repeats=2, seed=0)
    assert alike["n_per_class"] == 60
    assert len(alike["auc_folds"]) == 10
    assert alike["auc_mean"] < 0.7
    assert apart["auc_mean"] > 0.9
    assert any(name.startswith("x.") for name in apart["top_features"])


def test_auc_balances_classes_and_is_seeded() -> None:
    real = _series(40, 15, 0.5, seed=4)
    synthetic = _series(80, 15, 0.5, seed=5)
    first = discriminator_auc(real, synthetic, SPEC, folds=4, repeats=1, seed=3)
    again = discriminator_auc(real, synthetic, SPEC, folds=4, repeats=1, seed=3)
    assert first["n_per_class"] == 40
    assert first["auc_folds"] == again["auc_folds"]


def test_start_time_alone_gives_synthetic_data_away() -> None:
    real = _series(50, 10, 0.5, seed=6)
    shifted = _series(50, 10, 0.5, seed=7)
    shifted["ts"] = shifted["ts"] + pd.Timedelta(days=365 * 30)  # a feed that starts decades later
    with_time = discriminator_auc(real, shifted, SPEC, folds=5, repeats=1)
    values_only = discriminator_auc(real, shifted, SPEC, folds=5, repeats=1, exclude=("start_years",))
    assert with_time["auc_mean"] > 0.95
    assert values_only["auc_mean"] < 0.75


def test_calendar_consistency_in_the_data_time_zone() -> None:
    ts = pd.Series(pd.date_range("2013-01-01 05:00", periods=48, freq="h", tz="UTC"))
    local = ts.dt.tz_convert("America/New_York")
    frame = pd.DataFrame({"ts": ts, "year": local.dt.year, "hour": local.dt.hour})
    good = calendar_consistency(frame, "ts", {"year": "year", "hour": "hour"}, tz="America/New_York")
    assert good == {"year==ts.year": 1.0, "hour==ts.hour": 1.0}
    utc = calendar_consistency(frame, "ts", {"hour": "hour"}, tz="UTC")
    assert utc["hour==ts.hour"] == 0.0  # local hours against UTC timestamps never agree
    frame["year"] = 1970
    assert calendar_consistency(frame, "ts", {"year": "year"})["year==ts.year"] == 0.0
    assert calendar_consistency(frame, "ts", {"month": "month"}) == {"month==ts.month": None}


@pytest.mark.parametrize(
    ("grid", "on", "off"),
    [
        ("yearly", ["1985-01-01", "1986-01-01"], ["1985-01-01 00:33:04", "1985-06-01"]),
        ("weekly", ["1960-01-02", "1960-01-09"], ["1960-01-03", "1960-01-09 12:00"]),
        ("daily", ["2012-01-01", "2012-01-02"], ["2012-01-01 13:00", "2012-01-02 00:00:01"]),
        ("hourly", ["2013-01-01 05:00", "2013-01-01 06:00"], ["2013-01-01 05:30", "2013-01-01 06:00:01"]),
    ],
)
def test_grid_share(grid: str, on: list[str], off: list[str]) -> None:
    def stamps(values: list[str]) -> pd.Series:
        return pd.Series(pd.to_datetime(values, utc=True, format="ISO8601"))

    assert grid_share(stamps(on), grid, reference=stamps(on))["on_grid"] == 1.0
    assert grid_share(stamps(off), grid, reference=stamps(on))["on_grid"] == 0.0


def test_grid_share_span_and_unknown_grid() -> None:
    reference = pd.Series(pd.to_datetime(["1984-01-01", "1988-01-01"], utc=True))
    ts = pd.Series(pd.to_datetime(["1983-01-01", "1985-01-01", "1986-01-01", "2026-01-01"], utc=True))
    out = grid_share(ts, "yearly", reference=reference)
    assert out["in_span"] == 0.5
    assert out["start_before_span"] == 0.25
    with pytest.raises(ValueError, match="unknown grid"):
        grid_share(ts, "fortnightly")


def test_trend_correlation_follows_level_and_catches_a_lost_trend() -> None:
    trended = _series(40, 10, 0.5, seed=8, trend=0.5)
    flat = _series(40, 10, 0.5, seed=9, trend=0.0)
    assert trend_correlation(trended, SPEC, "x")["corr"] > 0.95
    assert abs(trend_correlation(flat, SPEC, "x")["corr"]) < 0.4
    assert trend_correlation(trended, SPEC, "x")["sequences"] == 40


def test_null_rates_in_percentage_points() -> None:
    real = pd.DataFrame({"x": [1.0] * 99 + [None]})
    synthetic = pd.DataFrame({"x": [1.0] * 90 + [None] * 10})
    out = null_rates(real, synthetic, ["x"])
    assert out["fields"]["x"]["real_pct"] == pytest.approx(1.0)
    assert out["max_gap_pp"] == pytest.approx(9.0)


def test_extreme_repetition_counts_a_repeated_outlier() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(10, 2, 1000).round(3)
    real = pd.DataFrame({"wind": np.r_[base, 1048.0]})
    faithful = pd.DataFrame({"wind": rng.normal(10, 2, 1001).round(3)})
    leaky = pd.DataFrame({"wind": np.r_[rng.normal(10, 2, 989).round(3), [1048.0] * 12]})
    assert extreme_repetition(real, faithful, ["wind"])["max_excess"] < 1
    out = extreme_repetition(real, leaky, ["wind"])
    assert out["max_excess"] == pytest.approx(11.0)
    assert out["repeated"] == [{"field": "wind", "value_rank": "max", "real": 1, "synthetic": 12}]
    common_min = pd.DataFrame({"rain": [0.0] * 900 + list(range(1, 101))})
    assert extreme_repetition(common_min, common_min.iloc[::2], ["rain"])["repeated"] == []
    top = [e for e in out["fields"]["wind"]["extremes"] if e["synthetic"] == 12]
    assert top and top[0]["real"] == 1


def test_step_relations_quasi_static_and_age_advancing() -> None:
    years = [1984, 1985, 1986]
    rows = [
        {"seq": p, "ts": pd.Timestamp(f"{y}-01-01", tz="UTC"), "educ": 10.0, "age": 30 + k}
        for p in ("a", "b")
        for k, y in enumerate(years)
    ]
    real = pd.DataFrame(rows)
    spec = SeriesSpec(key="seq", time="ts", numeric=("educ", "age"))
    good = step_relations(real, spec, constant=["educ"], advances={"age": 1.0})
    assert good == {"educ.unchanged": 1.0, "age.advances": 1.0}
    bad = real.assign(educ=[10.0, 11.0, 12.0, 10.0, 10.0, 10.0], age=[30, 30, 32, 30, 31, 32])
    out = step_relations(bad, spec, constant=["educ"], advances={"age": 1.0})
    assert out["educ.unchanged"] == pytest.approx(0.5)
    assert out["age.advances"] == pytest.approx(0.5)  # person a: +0 then +2


def test_cli_error_events_are_extracted_from_a_json_log() -> None:
    from benchmarks.ts_cli import _errors

    failed = {"event": "sequence_publisher.failed", "level": "error", "error": "SerdeError", "message": "encode_failed"}
    lines = ['{"event": "sequence.fitted", "level": "info"}', "not json", json.dumps(failed), json.dumps(failed)]
    log = "\n".join(lines)
    out = _errors(log)
    assert out == [failed]  # once, in order; info lines and non-JSON output left out


def test_cli_time_values_integer_years_and_iso_strings() -> None:
    from benchmarks.ts_cli import _times

    years = _times(pd.Series([1984, 1988]), pd.Series([1984, 1985]))
    assert list(years.dt.year) == [1984, 1988] and set(years.dt.month) == {1}
    iso = _times(pd.Series(["2013-01-01T06:00:00Z", "2013-01-01 07:00:00+00:00"]), pd.Series(["x"]))
    assert list(iso.dt.hour) == [6, 7]


def test_auc_survives_a_field_that_is_always_null() -> None:
    real = _series(30, 12, 0.5, seed=10).assign(y=np.nan)
    synthetic = _series(30, 12, 0.5, seed=11).assign(y=np.nan)
    out = discriminator_auc(real, synthetic, SPEC, folds=3, repeats=1)
    assert out["auc_mean"] is not None


def test_the_own_feature_discriminator_survives_a_summary_that_is_never_finite():
    """A field null in every window gives an all-NaN feature; scikit-learn's binning used to crash on it."""
    from synthstream.evaluation.timeseries import _features_accuracy

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    x[:, 2] = np.nan
    y = np.r_[np.zeros(100), np.ones(100)]
    assert 0.0 <= _features_accuracy(x, y, 0) <= 1.0
