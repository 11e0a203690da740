"""Replay pacing and progress; draining a topic into Parquet and DuckDB with nothing lost."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.connectors.replay import Pacer, replay_file, replay_messages
from synthstream.connectors.sinks import AutoDecoder, DuckDBSink, ParquetSink, TopicDrain
from synthstream.demo import sample_path
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore, JsonRecordSerde
from tests.helpers import read_topic


async def test_paced_replay_never_runs_ahead_of_its_rate(kafka, names):
    topic = names.topic("paced")
    await ensure_topics(kafka, [topic])
    progress: list[int] = []
    async with Producer(kafka) as producer:
        started = time.monotonic()
        report = await replay_messages(
            producer, topic, (b"x" for _ in range(600)), rate=1_000, on_progress=progress.append
        )
        elapsed = time.monotonic() - started
    assert report.records == 600 == sum(progress)
    # A lower bound only: pacing may be slower on a busy machine, never faster.
    assert elapsed >= 0.58
    assert len(progress) > 1, "paced replay must send several small batches, not one burst"
    assert len(await read_topic(kafka, topic)) == 600


def test_pacer_batches_follow_the_rate():
    assert Pacer(None).batch_size(1_000) == 1_000
    assert Pacer(1_000).batch_size(1_000) == 20
    assert Pacer(10).batch_size(1_000) == 1


async def test_file_replay_limit_and_repeat(kafka, names):
    topic = names.topic("file")
    frame = read_table(sample_path(), nrows=10)
    schema = infer_schema(read_table(sample_path()), name="Adult")
    serde = JsonRecordSerde(schema)
    await ensure_topics(kafka, [topic])
    async with Producer(kafka) as producer:
        report = await replay_file(
            producer, topic, sample_path(), schema, serde.encode, limit=7_500, repeat=2, progress=False
        )
    assert report.records == 7_500
    values = [r.value for r in await read_topic(kafka, topic)]
    assert len(values) == 7_500
    assert serde.decode(values[5_000])["age"] == int(frame["age"][0])  # second pass starts over


async def test_drain_avro_and_json_into_parquet_and_duckdb(kafka, names, tmp_path: Path):
    topic = names.topic("mixed")
    frame = read_table(sample_path(), nrows=300)
    schema = infer_schema(frame, name="Adult")
    store = InMemorySchemaStore()
    avro = AvroRecordSerde(schema, store, subject="s")
    json_serde = JsonRecordSerde(schema)
    records = records_from_frame(frame, schema)
    values = [avro.encode(r) for r in records[:200]] + [json_serde.encode(r) for r in records[200:]] + [b"\xffjunk"]
    await ensure_topics(kafka, [topic])
    async with Producer(kafka) as producer:
        await producer.send_batch(topic, [OutMessage(value=v) for v in values])

    parquet = tmp_path / "out.parquet"
    with contextlib.closing(ParquetSink(parquet)) as sink:
        report = await TopicDrain(kafka, topic, AutoDecoder(store), batch_size=64).into(sink)
    assert (report.written, report.undecodable) == (300, 1)
    table = pq.read_table(parquet)
    assert table.num_rows == 300
    assert sorted(table.column("_offset").to_pylist()) == list(range(300))
    assert table.column("age").to_pylist() == [r["age"] for r in records]

    db = tmp_path / "out.duckdb"
    with contextlib.closing(DuckDBSink(db, "adult")) as sink:
        report = await TopicDrain(kafka, topic, AutoDecoder(store)).into(sink)
    with duckdb.connect(str(db)) as con:
        rows = con.execute('SELECT count(*), count(DISTINCT "_offset"), avg(age) FROM adult').fetchone()
    assert rows[0] == rows[1] == 300
    assert abs(rows[2] - frame["age"].mean()) < 1e-9
