"""The embedded broker starts on a free loopback port, serves clients, and stops cleanly."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from synthstream.connectors.broker import EmbeddedBroker, resolve_broker_binary
from synthstream.connectors.kafka import BatchConsumer, OutMessage, Producer, ensure_topics
from synthstream.errors import BrokerError
from synthstream.settings import KafkaSettings


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def test_start_produce_consume_stop():
    broker = EmbeddedBroker()
    assert not broker.running
    with broker:
        assert broker.running and _accepts(broker.host, broker.port)
        settings = KafkaSettings.for_embedded(broker.bootstrap_servers)
        await ensure_topics(settings, ["t.one"], partitions=2)
        async with Producer(settings) as producer:
            await producer.send_batch("t.one", [OutMessage(value=str(i).encode()) for i in range(100)])
        async with BatchConsumer(settings, ["t.one"], group_id="g", assign=True) as consumer:
            seen: list[bytes] = []
            while len(seen) < 100:
                seen.extend(r.value for r in await consumer.getmany(timeout_ms=500))
            await consumer.commit([])
        assert sorted(int(v) for v in seen) == list(range(100))
    assert not broker.running
    assert not _accepts(broker.host, broker.port)


async def test_group_commit_resumes_where_it_left_off(kafka, names):
    topic = names.topic("resume")
    await ensure_topics(kafka, [topic])
    async with Producer(kafka) as producer:
        await producer.send_batch(topic, [OutMessage(value=str(i).encode()) for i in range(50)])
    async with BatchConsumer(kafka, [topic], group_id=names.group(), max_records=20) as consumer:
        first = []
        while not first:
            first = await consumer.getmany(timeout_ms=500)
        await consumer.commit(first)
    async with BatchConsumer(kafka, [topic], group_id=names.group()) as consumer:
        rest = []
        while len(first) + len(rest) < 50:
            rest.extend(await consumer.getmany(timeout_ms=500))
    assert [int(r.value) for r in rest] == list(range(len(first), 50))


def test_missing_binary_is_a_clear_error(tmp_path: Path):
    with pytest.raises(BrokerError, match="does not exist or is not executable"):
        resolve_broker_binary(tmp_path / "no-such-tansu")
    with pytest.raises(BrokerError):
        EmbeddedBroker(binary=tmp_path / "no-such-tansu").start()


def test_broker_that_dies_at_start_is_reported(tmp_path: Path):
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'cannot bind' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerError, match="exited with code 3"):
        EmbeddedBroker(binary=fake).start()
