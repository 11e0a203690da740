"""The embedded broker starts on a free loopback port, serves clients, and stops cleanly."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from synthstream.connectors.broker import EmbeddedBroker, resolve_broker_binary
from synthstream.connectors.kafka import BatchConsumer, OutMessage, Producer, ensure_topics
from synthstream.errors import BrokerError
from synthstream.settings import KafkaSettings
from tests.helpers import read_topic


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


async def test_send_batch_places_records_by_hint_then_key_and_keeps_their_order(kafka, names):
    """Partition hints (mod the partition count) win; keyed records land where librdkafka's murmur2 puts them."""
    from confluent_kafka import Producer as RdProducer

    topic, reference = names.topic("parts"), names.topic("parts-rd")
    await ensure_topics(kafka, [topic, reference], partitions=3)
    hinted = [OutMessage(value=f"h{i}".encode(), partition=i % 5, headers=[("n", str(i).encode())]) for i in range(90)]
    keyed = [OutMessage(value=f"k{i}".encode(), key=f"key-{i}".encode()) for i in range(90)]
    async with Producer(kafka) as producer:
        await producer.send_batch(topic, hinted + keyed)
    got = {r.value: r for r in await read_topic(kafka, topic)}
    assert len(got) == 180
    for i in range(90):
        record = got[f"h{i}".encode()]
        assert record.partition == (i % 5) % 3 and record.headers == (("n", str(i).encode()),)
    # Within a partition the hinted records keep the order they were given.
    for partition in range(3):
        offsets = [got[f"h{i}".encode()].offset for i in range(90) if (i % 5) % 3 == partition]
        assert offsets == sorted(offsets)
    rd = RdProducer({"bootstrap.servers": kafka.bootstrap_servers, "partitioner": "murmur2_random"})
    for i in range(90):
        rd.produce(reference, value=b"x", key=f"key-{i}".encode())
    assert rd.flush(30) == 0
    expected = {r.key: r.partition for r in await read_topic(kafka, reference)}
    assert {got[f"k{i}".encode()].partition for i in range(90)} == {0, 1, 2}
    assert all(got[f"k{i}".encode()].partition == expected[f"key-{i}".encode()] for i in range(90))
