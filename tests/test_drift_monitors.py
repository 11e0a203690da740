"""The drift processors alone: distances, profiles, windows, river detectors and the policy."""

from __future__ import annotations

import math
import pickle
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.processors.drift import (
    BatchCoords,
    DriftPolicy,
    NumericDetectors,
    Observation,
    OffsetWindows,
    StalenessMonitor,
    StreamDistanceMonitor,
    Thresholds,
    TrainingProfile,
    WindowRef,
    drift_fields,
    js_distance,
    psi,
)
from synthstream.processors.drift.profile import categorical_column, numeric_column
from synthstream.schemas.inference import infer_schema
from tests.helpers import ADULT_CSV, shuffled

PSI = Thresholds(0.1, 0.25)


def _adult(n: int = 12_000):
    frame = read_table(ADULT_CSV)
    schema = infer_schema(frame, name="Adult")
    return schema, shuffled(records_from_frame(frame, schema), n, seed=3)


def _ref(index: int = 0, records: int = 100) -> WindowRef:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return WindowRef("src", 0, index, index * records, (index + 1) * records - 1, records, now, now)


# -- distances ------------------------------------------------------------------------------------


def test_distances_are_zero_on_equal_shares_and_grow_with_the_shift():
    base = np.array([100, 200, 300, 400])
    assert psi(base, base * 3) == pytest.approx(0.0, abs=1e-5)  # half-count smoothing: not exactly 0
    assert js_distance(base, base * 3) == pytest.approx(0.0, abs=1e-9)
    small, large = np.array([110, 200, 300, 390]), np.array([300, 200, 300, 200])
    assert 0 < psi(base, small) < psi(base, large)
    assert 0 < js_distance(base, small) < js_distance(base, large) <= 1.0
    assert js_distance(base, large) == pytest.approx(js_distance(large, base))  # symmetric
    assert math.isfinite(psi(np.array([10, 0]), np.array([0, 10])))  # empty bins are smoothed, not infinite
    with pytest.raises(ValueError, match="differ in length"):
        psi(base, base[:3])


# -- profiles -------------------------------------------------------------------------------------


def test_profile_bins_round_trip_and_rebin_new_data_identically():
    schema, records = _adult(5_000)
    profile = TrainingProfile.build(records, schema)
    assert set(profile.fields) == {f.name for f in drift_fields(schema)}
    assert TrainingProfile.from_json(profile.to_json()) == profile
    for name, field in profile.fields.items():
        assert field.rows == 5_000, name
        column = numeric_column(records, name) if field.kind == "numeric" else categorical_column(records, name)
        assert field.histogram(column).tolist() == field.counts, name
    age = profile.fields["age"]
    assert len(age.edges) == 9 and max(age.shares()) < 0.15  # deciles: ~10% each
    gain = profile.fields["capital-gain"]
    assert gain.counts[0] / gain.rows > 0.85  # the zero atom has a bin of its own
    country = profile.fields["native-country"]
    other = country.counts[len(country.categories)]
    assert "United-States" in country.categories and other > 0  # rare countries pooled in <other>
    unseen = Counter({"Atlantis": 5, None: 2, "United-States": 3})
    counts = country.histogram(unseen)
    assert counts[-1] == 2 and counts[len(country.categories)] == 5 and counts.sum() == 10


def test_profile_refuses_fields_it_cannot_monitor():
    schema, _ = _adult(10)
    with pytest.raises(ValueError, match="choose from"):
        drift_fields(schema, ["age", "nope"])


# -- windows --------------------------------------------------------------------------------------


class _Src:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset, self.timestamp = topic, partition, offset, 1_700_000_000_000 + offset


def _feed(windows: OffsetWindows, offsets: list[int], partition: int = 0):
    n = len(offsets)
    numeric = {"x": np.arange(n, dtype=np.float64)}
    categorical = {"c": ["a"] * n}
    return windows.add(numeric, categorical, BatchCoords.of([_Src("s", partition, o) for o in offsets]))


def test_windows_align_to_offsets_so_redelivery_rebuilds_the_same_window():
    windows = OffsetWindows(100, ["x"], ["c"], min_fill=0.5)
    closed = _feed(windows, list(range(0, 70))) + _feed(windows, list(range(70, 250)))
    assert [(w.ref.index, w.ref.first_offset, w.ref.last_offset, w.ref.records) for w in closed] == [
        (0, 0, 99, 100),
        (1, 100, 199, 100),
    ]
    assert closed[0].columns["c"] == Counter({"a": 100}) and closed[0].columns["x"].size == 100
    # A restart from committed offset 140: window 1 is rebuilt with the same key from fewer records.
    again = OffsetWindows(100, ["x"], ["c"], min_fill=0.5)
    rebuilt = _feed(again, list(range(140, 200)))
    assert [w.ref.key for w in rebuilt] == [closed[1].ref.key] and rebuilt[0].ref.records == 60
    # Below min_fill a partial window is skipped, not evaluated.
    assert _feed(again, list(range(230, 260))) == [] and again.skipped == 0  # window 2 still open
    assert _feed(again, list(range(300, 310))) == [] and again.skipped == 1  # window 2 ended with 30 records


def test_windows_are_kept_per_partition():
    windows = OffsetWindows(10, ["x"], ["c"])
    sources = [_Src("s", p, o) for o in range(10) for p in (0, 1)]
    closed = windows.add({"x": np.zeros(20)}, {"c": ["a"] * 20}, BatchCoords.of(sources))
    assert sorted(w.ref.key for w in closed) == [("s", 0, 0), ("s", 1, 0)]
    assert all(w.ref.records == 10 for w in closed)


# -- river detectors ------------------------------------------------------------------------------


def _detect(kind: str, values: np.ndarray, *, seed: int = 0) -> list[tuple[int, float, float]]:
    detectors = NumericDetectors({"v": kind}, warmup=1_000, seed=seed)
    hits = []
    for start in range(0, values.size, 2_000):
        for hit in detectors.update({"v": values[start : start + 2_000]}):
            hits.append((start + hit.position, hit.value, hit.threshold))
    return hits


@pytest.mark.parametrize("kind", ["adwin", "page_hinkley"])
def test_detectors_stay_quiet_on_iid_data_and_fire_after_a_mean_shift(kind):
    _, records = _adult(32_000)
    ages = numeric_column(records, "age")
    assert _detect(kind, ages) == []
    shifted = ages.copy()
    shifted[16_000:] += 8
    hits = _detect(kind, shifted)
    assert hits, f"{kind} missed an 8-year age shift"
    first, value, threshold = hits[0]
    assert 16_000 <= first < 18_000 and value >= threshold


def test_detectors_ignore_nulls_and_are_reproducible():
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, 20_000)
    values[10_000:] += 1.0
    values[::7] = np.nan
    assert _detect("kswin", values, seed=1) == _detect("kswin", values, seed=1)
    hits = _detect("adwin", values)
    assert hits and not math.isnan(hits[0][1])
    with pytest.raises(ValueError, match="choose from"):
        NumericDetectors({"v": "cusum"})  # type: ignore[dict-item]  # an invalid kind on purpose


# -- monitors -------------------------------------------------------------------------------------


def test_stream_distance_compares_with_trailing_windows_and_forgets():
    monitor = StreamDistanceMonitor(statistic="psi", thresholds=PSI, reference_windows=2)
    calm, moved = {"f": np.array([50, 50])}, {"f": np.array([90, 10])}
    assert monitor.observe(_ref(0), calm) == []  # no reference yet
    assert monitor.observe(_ref(1), calm)[0].severity is None
    first = monitor.observe(_ref(2), moved)[0]
    assert first.severity == "critical" and first.fields == ("f",) and first.window.index == 2
    monitor.observe(_ref(3), moved)
    assert monitor.observe(_ref(4), moved)[0].severity is None  # the trailing reference caught up


def test_staleness_measures_against_the_profile_until_a_new_one_is_used():
    schema, records = _adult(8_000)
    old, new = records[:4_000], [dict(r, age=r["age"] + 12) for r in records[4_000:]]
    monitor = StalenessMonitor(statistic="psi", thresholds=PSI)
    window = {"age": numeric_column(new, "age")}
    assert monitor.observe(_ref(), window) == []  # no profile: nothing measured
    monitor.use(TrainingProfile.build(old, schema), version=1)
    (stale,) = monitor.observe(_ref(), window)
    assert stale.monitor == "staleness" and stale.model_version == 1 and stale.severity == "critical"
    monitor.use(TrainingProfile.build(new, schema), version=2)
    (fresh,) = monitor.observe(_ref(), window)
    assert fresh.value < 0.01 and fresh.model_version == 2


# -- policy ---------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _obs(value: float, index: int, field: str = "age", monitor: str = "staleness") -> Observation:
    return Observation(monitor, (field,), "psi", value, PSI, _ref(index))  # type: ignore[arg-type]


def test_policy_hysteresis_reports_a_flapping_field_once():
    policy = DriftPolicy(action="alert", clear_ratio=0.5, clear_windows=3)
    values = [0.02, 0.15, 0.06, 0.14, 0.04, 0.12, 0.03, 0.02, 0.01, 0.3]
    decisions = [(i, d.transition, d.severity) for i, v in enumerate(values) for d in policy.decide([_obs(v, i)])]
    # Enters once; values between 0.05 and 0.1 or single quiet windows do not clear it;
    # three windows below 0.05 do; a later critical value enters again.
    assert decisions == [(1, "enter", "warning"), (8, "clear", "info"), (9, "enter", "critical")]


def test_policy_escalates_and_leaves_other_fields_alone():
    policy = DriftPolicy()
    out = policy.decide([_obs(0.12, 0, "age"), _obs(0.01, 0, "sex")])
    assert [(d.observation.fields, d.severity, d.action) for d in out] == [(("age",), "warning", "alert")]
    assert [(d.transition, d.severity) for d in policy.decide([_obs(0.3, 1, "age")])] == [("escalate", "critical")]
    assert policy.decide([_obs(0.2, 2, "age")]) == []  # back within the drifting band: no event


def test_cooldown_holds_under_flapping_fields_and_defers_one_retrain():
    clock = _Clock()
    policy = DriftPolicy(action="retrain", retrain_on=["staleness"], cooldown_s=60, clear_windows=1, clock=clock)
    actions = []
    for i in range(40):  # two fields flapping every window, one window per second
        clock.now = float(i)
        value = 0.3 if i % 2 == 0 else 0.0
        for d in policy.decide([_obs(value, i, "age"), _obs(value, i, "sex"), _obs(0.5, i, "race", "distance")]):
            actions.append((i, d.observation.fields[0], d.action))
    retrains = [a for a in actions if a[2] == "retrain"]
    assert retrains == [(0, "age", "retrain")]  # one request in 40 s, whatever flaps
    assert sum(1 for a in actions if a[2] == "cooldown") >= 30  # the rest held back, and said so
    assert all(a[2] == "alert" for a in actions if a[1] == "race")  # distance is not a retrain trigger here
    clock.now = 61.0
    (deferred,) = [d for d in policy.decide([_obs(0.3, 61, "age")]) if d.action == "retrain"]
    assert deferred.transition in ("enter", "deferred") and policy.retrains_requested == 2


def test_a_held_retrain_is_sent_when_the_cooldown_ends_even_if_the_stream_went_quiet():
    clock = _Clock()
    policy = DriftPolicy(action="retrain", cooldown_s=30, clock=clock)
    assert [d.action for d in policy.decide([_obs(0.3, 0, "age")])] == ["retrain"]
    clock.now = 10.0
    assert [d.action for d in policy.decide([_obs(0.3, 1, "sex")])] == ["cooldown"]
    assert policy.due() is None  # still cooling down
    clock.now = 31.0
    deferred = policy.due()  # no new window arrived
    assert deferred is not None and deferred.action == "retrain" and deferred.transition == "deferred"
    assert deferred.observation.fields == ("sex",) and deferred.observation.window.index == 1
    assert policy.due() is None and policy.retrains_requested == 2  # sent once
    # A held drift that cleared before the cool-down ended asks for nothing.
    calm = DriftPolicy(action="retrain", cooldown_s=30, clear_windows=1, clock=clock)
    clock.now = 0.0
    calm.decide([_obs(0.3, 0, "age")])
    calm.decide([_obs(0.3, 1, "sex")])
    calm.decide([_obs(0.0, 2, "sex"), _obs(0.0, 2, "age")])
    clock.now = 40.0
    assert calm.due() is None


def test_policy_and_detectors_validate_their_options():
    with pytest.raises(ValueError, match="choose from"):
        DriftPolicy(action="page")  # type: ignore[arg-type]  # invalid on purpose
    with pytest.raises(ValueError, match="choose from"):
        DriftPolicy(retrain_on=["everything"])  # type: ignore[list-item]  # invalid on purpose
    with pytest.raises(ValueError, match="warning"):
        Thresholds(0.3, 0.1)
    with pytest.raises(ValueError, match="choose from"):
        StreamDistanceMonitor(statistic="kl", thresholds=PSI)  # type: ignore[arg-type]  # invalid on purpose


def test_monitors_have_useful_reprs_and_pickle():
    policy = DriftPolicy(action="retrain", cooldown_s=5)
    detectors = NumericDetectors({"age": "adwin"})
    for obj in (policy, detectors, StreamDistanceMonitor(thresholds=PSI), OffsetWindows(10, ["a"], [])):
        assert type(obj).__name__ in repr(obj)
    assert "cooldown_s=5" in repr(policy)
    clone = pickle.loads(pickle.dumps(detectors))
    assert clone.kinds == {"age": "adwin"}
