"""Synthetic record keys never repeat: not after a publisher restart, not between two replicas."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest

from synthstream.config import PublisherConfig
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.connectors.key_sequence import KeySequence
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.models.registry import Lineage, ModelRegistry
from synthstream.schemas.serde import JsonRecordSerde
from synthstream.streams.publisher import SyntheticPublisher
from tests.helpers import read_topic
from tests.test_trainer import _records


def _take_many(directory: str, rounds: int, out: multiprocessing.Queue) -> None:
    keys = KeySequence(Path(directory), "feed", block=7)
    taken = []
    for _ in range(rounds):
        start = keys.take(5, scope="v1")
        taken.extend(f"{keys.instance_id}:{start + i}" for i in range(5))
    out.put(taken)


def test_sequences_survive_restarts_and_are_disjoint_between_processes(tmp_path):
    first = KeySequence(tmp_path, "feed", block=10)
    assert first.take(3) == 0
    assert first.take(3) == 3
    # A restart (a new object on the same directory) never hands out a reserved number again.
    again = KeySequence(tmp_path, "feed", block=10)
    assert again.instance_id == first.instance_id
    assert again.take(3) >= 10
    # Scopes (model versions) count separately, from 0.
    assert again.take(2, scope="v2") == 0
    # Two processes sharing the directory reserve disjoint blocks.
    ctx = multiprocessing.get_context("fork")  # the child only takes numbers from a file
    queue = ctx.Queue()
    procs = [ctx.Process(target=_take_many, args=(str(tmp_path), 40, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    taken = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    everything = taken[0] + taken[1]
    assert len(everything) == len(set(everything)) == 400
    # A replica with its own state directory gets its own instance id.
    assert KeySequence(tmp_path / "other", "feed").instance_id != first.instance_id
    with pytest.raises(ValueError, match="instance_id"):
        KeySequence(tmp_path, "feed", instance_id="a:b")


async def test_restarted_and_replicated_publishers_never_repeat_a_key(kafka, names, tmp_path):
    schema, records = _records()
    registry = ModelRegistry(tmp_path / "models", "s")
    model = GaussianCopulaGenerator(seed=1).fit(records[:500], schema)
    lineage = Lineage(rows=500, schema_fingerprint=schema.fingerprint(), seed=1, fit_seconds=0.0)
    registry.promote(registry.register(model, lineage=lineage).version)
    topic = names.topic("synthetic")
    await ensure_topics(kafka, [topic])
    serde = JsonRecordSerde(schema)

    def publisher(producer: Producer, n: int, reg: ModelRegistry) -> SyntheticPublisher:
        return SyntheticPublisher(
            registry=reg,
            producer=producer,
            topic=topic,
            encode_many=lambda rows: [serde.encode(r) for r in rows],
            config=PublisherConfig(rate=0, batch_size=250, format="json", max_records=n),
            stream="s",
        )

    async with Producer(kafka) as producer:
        await publisher(producer, 1_000, registry).run(asyncio.Event())
        # Restart: a new publisher on the same state directory.
        await publisher(producer, 1_000, ModelRegistry(tmp_path / "models", "s")).run(asyncio.Event())
        # Two replicas at once, sharing the state directory.
        await asyncio.gather(
            publisher(producer, 1_000, ModelRegistry(tmp_path / "models", "s")).run(asyncio.Event()),
            publisher(producer, 1_000, ModelRegistry(tmp_path / "models", "s")).run(asyncio.Event()),
        )
        # A replica with a state directory of its own (same model files copied).
        other = tmp_path / "replica" / "models"
        other_registry = ModelRegistry(other, "s")
        other_registry.promote(other_registry.register(model, lineage=lineage).version)
        await publisher(producer, 1_000, other_registry).run(asyncio.Event())
    keys = [r.key for r in await read_topic(kafka, topic)]
    assert len(keys) == 5_000
    assert len(set(keys)) == len(keys), "a synthetic key was reused"
    assert all(k.startswith(b"s:v1:") for k in keys)
