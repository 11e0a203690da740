"""Event-time windows, late records, contribution bounding and the per-window DP release (no Kafka)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from synthstream.privacy.accounting import Spend, gaussian_sigma
from synthstream.processors.dp_release import consistent_counts, release_window
from synthstream.processors.windows import NULL, OTHER, Attribute, Discretizer, WindowAggregator

W = 1_000  # window length in ms


def _agg(**kwargs) -> WindowAggregator:
    disc = Discretizer(
        [
            Attribute("sex", "categorical", labels=("F", "M")),
            Attribute("age", "numeric", edges=(0.0, 30.0, 60.0, 90.0)),
        ]
    )
    return WindowAggregator(
        disc, [("sex",), ("age",), ("sex", "age")], sums={"age": (0.0, 90.0)}, window_ms=W, **kwargs
    )


def test_discretizer_bins_clips_and_marks_nulls_and_unknowns() -> None:
    disc = Discretizer(
        [Attribute("age", "numeric", edges=(0.0, 10.0, 20.0)), Attribute("c", "categorical", labels=("a", "b"))]
    )
    assert disc.encode("age", [-5, 0, 9.9, 10, 19, 25, None]).tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert disc.attributes["age"].cells == ("[0, 10)", "[10, 20)", NULL)
    assert disc.encode("c", ["a", "b", "zzz", None]).tolist() == [0, 1, 2, 3]
    assert disc.attributes["c"].cells == ("a", "b", OTHER, NULL)
    with pytest.raises(ValueError, match="increasing"):
        Attribute("x", "numeric", edges=(1.0, 1.0))


def test_windows_hold_exact_aggregates_and_close_in_order_including_empty_ones() -> None:
    agg = _agg()
    records = [{"sex": "F", "age": 20}, {"sex": "M", "age": 70}, {"sex": "F", "age": 40}, {"sex": None, "age": 5}]
    times = [100, 900, 2_100, 2_500]  # windows 0, 0, 2, 2 (window 1 is empty)
    result = agg.add(records, times)
    assert result.counted == 4 and result.late == ()
    closed = agg.close_due(now_ms=3_000)  # watermark 3,000: windows 0, 1 and 2 have ended
    assert [w.index for w in closed] == [0, 1, 2]
    w0, w1, w2 = closed
    assert (w0.count, w1.count, w2.count) == (2, 0, 2)
    assert w0.marginals[("sex",)].tolist() == [1, 1, 0, 0]
    assert w2.marginals[("sex",)].tolist() == [1, 0, 0, 1]
    assert w0.marginals[("age",)].tolist() == [1, 0, 1, 0]
    # 2-way, row-major over (sex cells) x (age cells): F&[0,30) and M&[60,90).
    grid = w0.marginals[("sex", "age")].reshape(4, 4)
    assert grid[0, 0] == 1 and grid[1, 2] == 1 and grid.sum() == 2
    assert w0.sums["age"] == 90.0
    assert w1.marginals[("age",)].sum() == 0


def test_records_of_closed_windows_are_late_and_returned_never_counted() -> None:
    agg = _agg(grace_ms=200)
    agg.add([{"sex": "F", "age": 1}], [1_500])
    assert agg.close_due() == []  # watermark 1,300: window 1 still open
    agg.add([{"sex": "F", "age": 1}], [2_300])  # watermark 2,100: window 1 closes
    assert [w.index for w in agg.close_due()] == [1]
    result = agg.add([{"sex": "M", "age": 1}, {"sex": "M", "age": 2}], [1_900, 2_400])
    assert result.late == (0,) and result.counted == 1
    assert agg.late_total == 1


def test_one_entity_flooding_a_window_is_bounded_and_the_excess_counted() -> None:
    agg = _agg(entity_field="card", max_per_entity=2)
    flood = [{"card": "c1", "sex": "F", "age": 30}] * 1_000
    others = [{"card": f"c{i}", "sex": "M", "age": 30} for i in range(2, 12)]
    result = agg.add(flood + others, [10] * 1_010)
    assert result.dropped == 998 and result.counted == 12
    (window,) = agg.close_due(flush=True)
    assert window.count == 12 and window.dropped_by_bounding == 998
    assert window.marginals[("sex",)].tolist()[:2] == [2, 10]
    # The bound holds per window: the same card counts again in the next one.
    agg.add(flood[:5], [W + 5] * 5)
    (nxt,) = agg.close_due(flush=True)
    assert nxt.count == 2


def test_release_noise_is_calibrated_to_the_unit_sensitivity() -> None:
    agg = _agg(entity_field="card", max_per_entity=3)
    agg.add([{"card": "a", "sex": "F", "age": 30}], [5])
    (window,) = agg.close_due(flush=True)
    budget = Spend(rho=0.5)
    release = release_window(
        window, agg.discretizer, budget=budget, mechanism="gaussian", max_per_entity=3, sum_bounds={"age": (0, 90)}
    )
    kinds = [a.kind for a in release.answers]
    assert kinds == ["count", "marginal", "marginal", "marginal", "sum"]
    share = 0.5 / 5
    count = release.answers[0]
    assert count.release.sensitivity == 3
    assert count.release.spend.rho == pytest.approx(share)
    sigma = gaussian_sigma(share, 3.0)
    assert count.noise_std == pytest.approx(sigma, rel=0.01)
    total = release.answers[-1]
    assert total.release.sensitivity == 3 * 90
    assert total.noise_std == pytest.approx(gaussian_sigma(share, 270.0), rel=1e-9)
    assert release.spend.rho == pytest.approx(0.5)


def test_release_at_a_huge_budget_recovers_the_exact_answers() -> None:
    frame = pd.DataFrame({"sex": np.random.default_rng(0).choice(["F", "M"], 5_000), "age": np.arange(5_000) % 90})
    agg = _agg()
    agg.add(frame.to_dict("records"), [10] * len(frame))
    (window,) = agg.close_due(flush=True)
    release = release_window(
        window,
        agg.discretizer,
        budget=Spend(rho=1e6),
        mechanism="gaussian",
        sum_bounds={"age": (0, 90)},
    )
    by_query = {a.query: a for a in release.answers if a.kind == "marginal"}
    truth = frame["sex"].value_counts()
    assert by_query[("sex",)].values[:2] == pytest.approx((truth["F"], truth["M"]), abs=2)
    assert release.means["age"] == pytest.approx(frame["age"].mean(), rel=1e-3)


def test_laplace_release_spends_pure_epsilon() -> None:
    agg = _agg()
    agg.add([{"sex": "F", "age": 30}], [5])
    (window,) = agg.close_due(flush=True)
    release = release_window(window, agg.discretizer, budget=Spend(epsilon=1.0), mechanism="laplace")
    assert release.spend.epsilon == pytest.approx(1.0)
    assert release.spend.rho == 0
    count = release.answers[0]
    b = 1 / (1.0 / 4)  # four queries (count + three marginals), sensitivity 1
    assert count.noise_std == pytest.approx(math.sqrt(2 * math.exp(-1 / b)) / (1 - math.exp(-1 / b)))


def test_bad_options_are_reported_together() -> None:
    disc = Discretizer([Attribute("a", "categorical", labels=("x",))])
    with pytest.raises(ValueError) as err:
        WindowAggregator(disc, [("a", "b", "c"), ("zz",)], window_ms=0, max_per_entity=0)
    message = str(err.value)
    for part in ("window_ms", "max_per_entity", "only 1-way and 2-way", "unknown attributes"):
        assert part in message


def test_consistent_marginals_are_non_negative_sum_to_the_size_and_sit_closer_to_the_truth() -> None:
    assert consistent_counts([5.0, -2.0, 1.0], 4.0) == pytest.approx((4.0, 0.0, 0.0))
    assert consistent_counts([3.0, 1.0, -1.0], 6.0) == pytest.approx((4.0, 2.0, 0.0))
    assert consistent_counts([1.0, 2.0], -3.0) == (0.0, 0.0)
    # A small window at a tight budget: many cells near zero, where raw noise hurts most.
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"sex": rng.choice(["F", "M"], 300, p=[0.3, 0.7]), "age": rng.integers(18, 90, 300)})
    raw_errors, consistent_errors = [], []
    for _ in range(40):
        agg = _agg()
        agg.add(frame.to_dict("records"), [10] * len(frame))
        (window,) = agg.close_due(flush=True)
        release = release_window(window, agg.discretizer, budget=Spend(rho=0.05), mechanism="gaussian")
        for answer in release.answers:
            if answer.kind != "marginal":
                assert answer.consistent is None
                continue
            assert answer.consistent is not None and min(answer.consistent) >= 0.0
            total = next(a for a in release.answers if a.kind == "count").values[0]
            assert abs(sum(answer.consistent) - total) < 6 * answer.noise_std * np.sqrt(len(answer.values))
            truth = window.marginals[answer.query]
            raw_errors.append(np.abs(np.asarray(answer.values) - truth).sum())
            consistent_errors.append(np.abs(np.asarray(answer.consistent) - truth).sum())
    assert np.median(consistent_errors) < 0.9 * np.median(raw_errors), (
        np.median(consistent_errors),
        np.median(raw_errors),
    )


@pytest.mark.parametrize(
    ("values", "total"),
    [
        ([1e6, 5.0], 1e-11),
        ([3.0, 2.0], 1e-300),
        ([1e17, 1.0], 0.5),
        ([float("nan"), 1.0], 3.0),
        ([2.0, 1.0], float("inf")),
    ],
)
def test_the_consistent_projection_never_fails_on_extreme_totals(values: list[float], total: float) -> None:
    """A window estimated at 1e-11 beside a noisy cell of 1e6 raised IndexError and ended `synthstream demo`."""
    out = consistent_counts(values, total)
    assert len(out) == len(values) and all(x >= 0 and np.isfinite(x) for x in out)
    if np.isfinite(total):
        assert sum(out) <= max(total, 0.0) * (1 + 1e-9) + 1e-9 * max(abs(v) for v in values if np.isfinite(v))
