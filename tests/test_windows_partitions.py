"""The watermark across source partitions: a lagging partition holds windows open; a quiet one does not."""

from __future__ import annotations

from synthstream.processors.windows import Attribute, Discretizer, WindowAggregator

W = 1_000  # window length in ms


class Clock:
    """A processing-time clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _agg(clock: Clock) -> WindowAggregator:
    disc = Discretizer([Attribute("c", "categorical", labels=("a", "b"))])
    return WindowAggregator(disc, [("c",)], window_ms=W, grace_ms=100, partition_idle_s=10.0, clock=clock)


def test_a_lagging_partition_keeps_its_windows_open_and_none_of_its_records_is_late() -> None:
    clock = Clock()
    agg = _agg(clock)
    # Partition 0 reads ahead to window 5 while partition 1 is still in window 1 (a backlog read unevenly).
    ahead = agg.add([{"c": "a"}] * 6, [100, 1_100, 2_100, 3_100, 4_100, 5_100], [0] * 6)
    behind = agg.add([{"c": "b"}] * 2, [150, 1_150], [1] * 2)
    assert ahead.late == () and behind.late == ()
    closed = agg.close_due()
    # The slowest partition is at 1,150: only window 0 has ended for both.
    assert [w.index for w in closed] == [0]
    assert closed[0].count == 2
    lagging = agg.add([{"c": "b"}] * 3, [1_500, 1_900, 2_150], [1] * 3)
    assert lagging.late == (), "records of the lagging partition must count, not be late"
    closed = agg.close_due()
    assert [(w.index, w.count) for w in closed] == [(1, 4)]


def test_the_global_maximum_would_have_made_them_late() -> None:
    """The same reads without partitions: the bug the partition watermark fixes."""
    clock = Clock()
    agg = _agg(clock)
    agg.add([{"c": "a"}] * 6, [100, 1_100, 2_100, 3_100, 4_100, 5_100])
    agg.add([{"c": "b"}] * 2, [150, 1_150])
    agg.close_due()
    assert len(agg.add([{"c": "b"}] * 3, [1_500, 1_900, 2_050]).late) == 3


def test_a_quiet_partition_stops_holding_the_watermark_after_its_idle_time() -> None:
    clock = Clock()
    agg = _agg(clock)
    agg.add([{"c": "a"}], [100], [1])  # partition 1 delivers once, then goes quiet
    agg.add([{"c": "a"}] * 3, [100, 1_100, 2_500], [0] * 3)
    assert [w.index for w in agg.close_due()] == []  # held by partition 1 at 100
    clock.now = 9.0
    agg.add([{"c": "a"}], [3_500], [0])
    assert [w.index for w in agg.close_due()] == []  # still within partition 1's idle time
    clock.now = 12.0
    agg.add([{"c": "a"}], [3_600], [0])
    assert [w.index for w in agg.close_due()] == [0, 1, 2]  # partition 1 idle: partition 0 sets the watermark


def test_a_lagging_partition_that_has_delivered_nothing_holds_every_window_however_long_it_takes() -> None:
    clock = Clock()
    agg = _agg(clock)
    agg.add([{"c": "a"}] * 4, [100, 1_100, 2_100, 3_100], [0] * 4)
    agg.hold({0, 1})  # partition 1 has unread records but none has arrived yet
    clock.now = 60.0  # far past the idle time: being slow is not being quiet
    assert agg.close_due() == []
    agg.add([{"c": "b"}] * 2, [200, 1_200], [1] * 2)
    assert agg.add([{"c": "b"}], [900], [1]).late == ()
    assert [(w.index, w.count) for w in agg.close_due()] == [(0, 3)]  # partition 1 is at 1,200
    agg.hold({0})  # partition 1 caught up: only partition 0 (at 3,100) holds the watermark
    assert [w.index for w in agg.close_due()] == [1, 2]
    agg.hold(set())  # everything read: the largest event time rules
    assert agg.close_due() == []  # 3,100 - 100 grace: window 3 has not ended
