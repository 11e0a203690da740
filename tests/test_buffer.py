"""The training buffer: bounded ring, and a seeded control set that no model ever trains on."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from synthstream.processors.buffer import TrainingBuffer


def _records(start: int, stop: int) -> list[dict[str, int]]:
    return [{"i": i} for i in range(start, stop)]


def test_without_a_holdout_the_ring_keeps_the_latest_records() -> None:
    buffer = TrainingBuffer(100)
    assert buffer.extend(_records(0, 250)) == 250
    assert [r["i"] for r in buffer.snapshot()] == list(range(150, 250))
    assert len(buffer) == 100 and buffer.total_seen == 250
    assert buffer.holdout() == [] and buffer.holdout_seen == 0


def test_control_records_never_reach_training_and_the_split_follows_the_share() -> None:
    buffer = TrainingBuffer(100_000, holdout_share=0.2, holdout_max=100_000, seed=3)
    buffer.extend(_records(0, 50_000))
    training = {r["i"] for r in buffer.snapshot()}
    control = {r["i"] for r in buffer.holdout()}
    assert training.isdisjoint(control)
    assert training | control == set(range(50_000))  # nothing lost, nothing duplicated
    assert len(control) == buffer.holdout_seen == buffer.holdout_size
    assert 0.19 < len(control) / 50_000 < 0.21
    assert len(buffer) == len(training) and buffer.total_seen == 50_000


def test_the_control_set_is_a_bounded_uniform_sample_of_the_whole_stream() -> None:
    buffer = TrainingBuffer(1_000, holdout_share=0.5, holdout_max=2_000, seed=11)
    for start in range(0, 200_000, 1_000):
        buffer.extend(_records(start, start + 1_000))
        assert buffer.holdout_size <= 2_000
    control = np.array([r["i"] for r in buffer.holdout()])
    assert len(control) == 2_000 and buffer.holdout_seen > 90_000
    assert len(set(control.tolist())) == 2_000
    # A uniform sample of 0..199,999: its mean is near 100,000 and every fifth of the stream is represented.
    assert abs(control.mean() - 100_000) < 5_000
    counts = np.bincount(control // 40_000, minlength=5)
    assert counts.min() > 300
    # The ring still holds the latest training records only.
    assert min(r["i"] for r in buffer.snapshot()) > 190_000


def test_the_split_depends_on_the_seed_and_the_order_not_on_batching() -> None:
    def run(seed: int, batch: int) -> tuple[list[int], list[int]]:
        buffer = TrainingBuffer(10_000, holdout_share=0.3, holdout_max=500, seed=seed)
        for start in range(0, 6_000, batch):
            buffer.extend(_records(start, min(start + batch, 6_000)))
        return [r["i"] for r in buffer.snapshot()], [r["i"] for r in buffer.holdout()]

    assert run(5, 100) == run(5, 100)
    assert run(5, 100) == run(5, 7) == run(5, 6_000)
    assert run(5, 100) != run(6, 100)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="max_records"):
        TrainingBuffer(0)
    with pytest.raises(ValueError, match="holdout_share"):
        TrainingBuffer(10, holdout_share=1.0)
    with pytest.raises(ValueError, match="holdout_max"):
        TrainingBuffer(10, holdout_share=0.1, holdout_max=0)
    assert "holdout_share=0.1" in repr(TrainingBuffer(10, holdout_share=0.1))


def test_concurrent_writers_and_readers_conserve_records() -> None:
    buffer = TrainingBuffer(1_000_000, holdout_share=0.25, holdout_max=1_000_000, seed=1)
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            for start in range(offset, offset + 20_000, 500):
                buffer.extend(_records(start, start + 500))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def read() -> None:
        for _ in range(50):
            training, control = buffer.snapshot(), buffer.holdout()
            if {r["i"] for r in training} & {r["i"] for r in control}:
                errors.append(AssertionError("a record is in both sets"))

    threads = [threading.Thread(target=write, args=(k * 20_000,)) for k in range(4)]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(buffer) + buffer.holdout_size == buffer.total_seen == 80_000
