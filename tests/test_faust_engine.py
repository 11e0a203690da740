"""The faust-streaming engine runs the same stages: a worker subprocess against the session broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import yaml

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.demo import sample_path
from synthstream.schemas.events import DeadLetterEvent, EventSerde
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.publisher import HEADER_SYNTHETIC
from tests.helpers import read_topic


async def test_faust_worker_turns_a_source_topic_into_a_synthetic_feed(kafka, names, tmp_path: Path):
    frame = read_table(sample_path(), nrows=1_000)
    schema = infer_schema(read_table(sample_path()), name="Adult")
    source = names.topic("src")
    config = {
        "stream": names.prefix,
        "source": {"topic": source, "sample_file": str(sample_path())},
        "training": {"every_records": 500, "min_records": 200},
        "publisher": {"rate": 0, "max_records": 1_000},
        # This test is about the engine. On 1,000 rows the default audit can build too few singling-out
        # attacks (coverage < 50 %) and rejects every version; scaling attacks to small tables is issue 17.
        "audit": {"enabled": False},
        "topics": {k: names.topic(k) for k in ("synthetic", "deadletter", "models", "schemas")},
        "state_dir": str(tmp_path / "state"),
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    serde = JsonRecordSerde(schema)
    values = [serde.encode(r) for r in records_from_frame(frame, schema)] + [b"{not json"]
    await ensure_topics(kafka, [source])
    async with Producer(kafka) as producer:
        await producer.send_batch(source, [OutMessage(value=v) for v in values])

    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "synthstream",
            "run",
            "--engine",
            "faust",
            "--config",
            str(path),
            "-b",
            kafka.bootstrap_servers,
            "--log-level",
            "WARNING",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    synthetic = await read_topic(kafka, names.topic("synthetic"))
    assert len(synthetic) >= 1_000
    assert all(dict(r.headers)[HEADER_SYNTHETIC] == b"true" for r in synthetic)
    dead = await read_topic(kafka, names.topic("deadletter"))
    store = InMemorySchemaStore()
    events = [EventSerde(DeadLetterEvent, store).decode(r.value) for r in dead]
    assert [(e.offset, e.reason) for e in events] == [(1_000, "malformed_json")]
