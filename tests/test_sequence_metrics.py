"""Time-series metrics: perfect on identical data, and each one notices the defect it is about."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ks_2samp

from synthstream.evaluation.timeseries import (
    METRICS,
    SeriesSpec,
    autocorrelation_error,
    cross_correlation_error,
    discriminative_score,
    inter_arrival_ks,
    is_better,
    marginal_fidelity,
    missing_rate_error,
    predictive_mae,
    profile_error,
    timeseries_report,
)
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

SPEC = SeriesSpec(key="seq", time="ts", numeric=("x", "y"), categorical=("mode",))
START = pd.Timestamp("2024-01-01", tz="UTC")


def _process(seed: int, n_seq: int = 60, steps: int = 96, phase: float = 0.0, gap_hours: float = 1.0) -> pd.DataFrame:
    """Daily-seasonal AR(1) ``x``, ``y`` following ``x``, a persistent category, 5 % nulls in ``y``."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seq):
        start = START + pd.Timedelta(days=int(rng.integers(0, 60)))
        noise, mode = 0.0, "a"
        for t in range(steps):
            ts = start + pd.Timedelta(hours=t * gap_hours)
            noise = 0.9 * noise + rng.normal(0, 1)
            x = 10 + 5 * np.sin(2 * np.pi * (ts.hour + phase) / 24) + noise
            y = 0.5 * x + rng.normal(0, 0.5)
            if rng.random() < 0.1:
                mode = str(rng.choice(["a", "b", "c"]))
            rows.append({"seq": f"{seed}-{s}", "ts": ts, "x": x, "y": None if rng.random() < 0.05 else y, "mode": mode})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """The recurrent discriminator is small: one torch thread avoids spinning on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return _process(0)


@pytest.fixture(scope="module")
def same() -> pd.DataFrame:
    return _process(1)


@pytest.fixture(scope="module")
def scrambled(real: pd.DataFrame) -> pd.DataFrame:
    """Same marginals, no dynamics: every column shuffled across all rows."""
    rng = np.random.default_rng(3)
    out = real.copy()
    for column in ("x", "y", "mode"):
        out[column] = out[column].to_numpy()[rng.permutation(len(out))]
    return out


def test_an_independent_draw_scores_close_and_each_defect_moves_its_metric(
    real: pd.DataFrame, same: pd.DataFrame
) -> None:
    """Real against a second, independent draw of the same process (not a copy), then defects of it."""
    marginal = marginal_fidelity(real, same, SPEC)
    assert 0.9 < marginal["mean"] < 1.0  # close, and not trivially identical
    # Independent checks of the definitions: scipy's KS on x; null rates counted by pandas.
    assert marginal["x"] == pytest.approx(1 - ks_2samp(real["x"], same["x"]).statistic, abs=1e-3)
    nulls = np.mean([abs(real[c].isna().mean() - same[c].isna().mean()) for c in ("x", "y", "mode")])
    assert missing_rate_error(real, same, SPEC) == pytest.approx(nulls) and 0 < nulls < 0.02
    base = {
        "autocorrelation": autocorrelation_error(real, same, SPEC),
        "cross": cross_correlation_error(real, same, SPEC),
        "profile": profile_error(real, same, SPEC, by="day"),
    }
    assert all(0 < v < 0.15 for v in base.values()), base
    assert inter_arrival_ks(real, same, SPEC) == 0.0  # hourly events in both

    moved = same.assign(x=same["x"] + 5.0)  # a level shift of x
    assert marginal_fidelity(real, moved, SPEC)["x"] < marginal["x"] - 0.3
    holes = same.assign(y=np.where(np.arange(len(same)) % 2 == 0, np.nan, same["y"]))
    assert missing_rate_error(real, holes, SPEC) > nulls + 0.1
    rng = np.random.default_rng(4)
    # x shuffled within each sequence: the same values, no memory, no tie to y
    churned = same.assign(x=same.groupby("seq")["x"].transform(lambda v: rng.permutation(v.to_numpy())))
    assert autocorrelation_error(real, churned, SPEC) > base["autocorrelation"] + 0.15
    assert cross_correlation_error(real, churned, SPEC) > base["cross"] + 0.2
    assert profile_error(real, _process(1, phase=6.0), SPEC, by="day") > base["profile"] + 0.5


def test_dynamics_metrics_tell_the_same_process_from_scrambled_data(
    real: pd.DataFrame, same: pd.DataFrame, scrambled: pd.DataFrame
) -> None:
    assert marginal_fidelity(real, scrambled, SPEC)["mean"] > 0.99  # marginals alone cannot tell
    assert autocorrelation_error(real, same, SPEC) < 0.05
    assert autocorrelation_error(real, scrambled, SPEC) > 0.3
    assert cross_correlation_error(real, same, SPEC) < 0.05
    assert cross_correlation_error(real, scrambled, SPEC) > 0.3
    assert predictive_mae(same, real, SPEC) < 0.8 * predictive_mae(scrambled, real, SPEC)
    assert profile_error(real, same, SPEC) < 0.15
    assert profile_error(real, scrambled, SPEC) > 0.4


def test_discriminators_score_near_half_for_the_same_process_and_near_one_for_scrambled(
    real: pd.DataFrame, same: pd.DataFrame, scrambled: pd.DataFrame
) -> None:
    for classifier in ("rnn", "features"):
        alike = discriminative_score(real, same, SPEC, classifier=classifier, repeats=1, steps=300)
        apart = discriminative_score(real, scrambled, SPEC, classifier=classifier, repeats=1, steps=300)
        assert alike < 0.65, (classifier, alike)
        assert apart > 0.9, (classifier, apart)
    with pytest.raises(ValueError, match="classifier must be one of"):
        discriminative_score(real, same, SPEC, classifier="svm")  # type: ignore[arg-type]  # invalid on purpose


def test_profile_and_timing_defects_are_seen(real: pd.DataFrame) -> None:
    shifted = _process(1, phase=12.0)  # the daily peak at the wrong hour
    slower = _process(1, gap_hours=2.0)  # events twice as far apart
    assert profile_error(real, shifted, SPEC, by="day") > 1.0
    assert inter_arrival_ks(real, slower, SPEC) == 1.0
    holes = real.assign(y=np.where(np.arange(len(real)) % 2 == 0, np.nan, real["y"]))
    assert missing_rate_error(real, holes, SPEC) > 0.1  # y: 5 % -> ~52 % nulls, averaged over 3 fields


def test_report_has_every_metric_and_directions_decide_who_wins(real: pd.DataFrame, same: pd.DataFrame) -> None:
    report = timeseries_report(real, same, SPEC, max_lag=6)
    assert set(METRICS) <= set(report)
    assert set(report["marginal_fields"]) == {"x", "y", "mode"}
    assert is_better("discriminative", 0.55, 0.4) and not is_better("discriminative", 0.7, 0.6)
    assert is_better("marginal", 0.9, 0.8) and is_better("predictive_mae", 0.2, 0.3)
    assert not is_better("predictive_mae", float("nan"), 0.3)


def test_spec_from_schema_skips_identifiers_and_the_key_and_time() -> None:
    schema = RecordSchema(
        fields=(
            FieldSpec(name="card", type=FieldType.STRING, role=FieldRole.IDENTIFIER),
            FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
            FieldSpec(name="amount", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
            FieldSpec(name="kind", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        )
    )
    spec = SeriesSpec.from_schema(schema, key="card", time="ts")
    assert spec == SeriesSpec(key="card", time="ts", numeric=("amount",), categorical=("kind",))
