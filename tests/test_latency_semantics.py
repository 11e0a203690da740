"""Latency counts from when a record could first be read by this process, not from a replay's timestamps."""

from __future__ import annotations

import time

from synthstream.streams.ingest import LatencyTracker


def test_a_record_waiting_before_the_start_counts_from_the_start_not_from_its_timestamp():
    tracker = LatencyTracker()
    an_hour_ago = time.time() * 1000.0 - 3_600_000
    tracker.add_records([an_hour_ago] * 10)
    # Measured from the tracker's start (moments ago), never the hour since the replay.
    assert tracker.quantiles()["max_ms"] < 600_000


def test_a_live_record_counts_from_its_own_timestamp():
    tracker = LatencyTracker()
    tracker.started_ms -= 7_200_000  # the process has been consuming for two hours
    ten_minutes_ago = time.time() * 1000.0 - 600_000
    tracker.add_records([ten_minutes_ago])
    quantiles = tracker.quantiles()
    assert 600_000 <= quantiles["max_ms"] < 1_200_000
    assert quantiles["samples"] == 1
