"""``synthstream models`` in a pipe, and ``drain --parquet`` of every topic the service writes (issue 17)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.connectors.schema_topic import publish_schema
from synthstream.connectors.sinks import ParquetSink
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.models.registry import Lineage, ModelRegistry
from synthstream.schemas.events import EventSerde, StatsEvent, StatsQuery
from synthstream.schemas.inference import infer_schema_from_file
from synthstream.schemas.serde import InMemorySchemaStore
from tests.helpers import adult_schema

REPO = Path(__file__).resolve().parents[1]
ADULT = REPO / "synthstream" / "data" / "adult_sample.csv"
CLI = [sys.executable, "-m", "synthstream"]


def run_cli(*args: str, columns: int = 40) -> subprocess.CompletedProcess[str]:
    # A narrow terminal width: rich would cut cells to fit it; a pipe must not.
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False, env=env)


def _register(registry: ModelRegistry, frame: pd.DataFrame, seed: int) -> None:
    schema = adult_schema(frame)
    model = GaussianCopulaGenerator(seed=seed).fit(frame, schema)
    lineage = Lineage(
        rows=len(frame),
        schema_fingerprint=schema.fingerprint(),
        seed=seed,
        config={"generator": "gaussian_copula"},
        source_offsets={"adult[0]": len(frame) - 1},
        fit_seconds=0.05,
        metrics={"column_shapes": 0.9876},
    )
    registry.promote(registry.register(model, lineage=lineage).version)


def test_models_prints_plain_untruncated_text_and_sequence_versions(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"stream: adult\nsource: {{topic: adult.source, sample_file: {ADULT}}}\nstate_dir: {tmp_path / 'state'}\n"
    )
    frame = pd.read_csv(ADULT).head(600)
    _register(ModelRegistry(tmp_path / "state" / "models", "adult"), frame, 1)
    _register(ModelRegistry(tmp_path / "state" / "models", "adult.sequences"), frame, 7)
    listed = run_cli("models", "--config", str(config))
    assert listed.returncode == 0, listed.stderr[-2000:]
    text = listed.stdout
    assert "…" not in text
    assert "─" not in text and "┃" not in text  # no box drawing in a pipe
    assert "gaussian_copula" in text and "column_shapes=0.988" in text
    assert "models of adult" in text and "sequence models of adult" in text
    rows = [line.split() for line in text.splitlines() if line[:1].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("1", "promoted"), ("1", "promoted")]
    assert rows[1][4] == "7"  # the sequence version's own seed


def test_models_without_sequences_creates_no_sequence_registry(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"stream: adult\nsource: {{topic: adult.source, sample_file: {ADULT}}}\nstate_dir: {tmp_path / 'state'}\n"
    )
    listed = run_cli("models", "--config", str(config))
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "sequence models" not in listed.stdout
    assert not (tmp_path / "state" / "models" / "adult.sequences").exists()


def test_parquet_sink_writes_empty_and_varying_nested_values(tmp_path: Path) -> None:
    path = tmp_path / "nested.parquet"
    sink = ParquetSink(path)
    sink.write([{"window": 1, "means": {}, "pairs": []}, {"window": 2, "means": {"amt": 1.5}, "pairs": [["a", "b"]]}])
    sink.write([{"window": 3, "means": None, "pairs": []}])
    sink.close()
    table = pq.read_table(path).to_pylist()
    assert [json.loads(r["means"]) if r["means"] else r["means"] for r in table] == [{}, {"amt": 1.5}, None]
    assert json.loads(table[1]["pairs"]) == [["a", "b"]]


def test_drain_parquet_of_stats_and_schemas_topics(broker, kafka, names, tmp_path: Path) -> None:
    stats_topic, schemas_topic = names.topic("stats"), names.topic("schemas")
    store = InMemorySchemaStore()
    serde = EventSerde(StatsEvent, store)
    record_schema = infer_schema_from_file(ADULT, name="adult")

    async def produce() -> None:
        await ensure_topics(kafka, [stats_topic, schemas_topic])
        async with Producer(kafka) as producer:
            # The service publishes event schemas and record schemas on the schemas topic.
            await publish_schema(producer, schemas_topic, f"{stats_topic}-value", serde.schema_id, serde.avro)
            await publish_schema(producer, schemas_topic, "adult-value", 99, record_schema.to_avro())
            for window, means in ((0, {}), (1, {"age": 38.5})):
                event = _stats_event(window, means)
                await producer.send(stats_topic, OutMessage(value=serde.encode(event), key=str(window).encode()))

    asyncio.run(produce())
    for topic, rows in ((stats_topic, 2), (schemas_topic, 2)):
        out = tmp_path / f"{topic}.parquet"
        drained = run_cli(
            "drain", topic, "--parquet", str(out), "--schemas-topic", schemas_topic, "-b", broker.bootstrap_servers
        )
        assert drained.returncode == 0, drained.stderr[-2000:]
        table = pq.read_table(out)
        assert table.num_rows == rows
    stats = pq.read_table(tmp_path / f"{stats_topic}.parquet").to_pylist()
    assert [json.loads(r["means"]) for r in stats] == [{}, {"age": 38.5}]


def _stats_event(window: int, means: dict[str, float | None]) -> StatsEvent:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=window)
    return StatsEvent(
        event_id=f"stats-{window}",
        occurred_at=start,
        stream="adult",
        window_index=window,
        window_start=start,
        window_end=start + timedelta(minutes=1),
        queries=[StatsQuery(query=[], kind="count", cells=["total"], values=[10.0], noise_scale=1.0)],
        means=means,
        mechanism="gaussian",
        rho=0.01,
        epsilon=0.5,
        delta=1e-6,
        unit="record",
        max_records_per_entity=1,
        w=10,
        guarantee_epsilon=1.0,
        guarantee_delta=1e-6,
    )
