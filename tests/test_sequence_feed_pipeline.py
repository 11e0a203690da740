"""Issue 16, items 4 and 5 through the real broker: ids in the feed and in ``drain``, lifecycle, sequence-only runs.

A sequence-only config (no tabular section) is replayed in full before the pipeline starts,
as a user replays a file: the first sequence fit must wait until the backlog is read (not fit
on the first few hundred entities), single-event entities must be kept, no tabular model,
audit or drift monitor may run, and ``sequence.publisher.max_records`` must end the run on its
own. The drained feed must keep the key, the entity header and the id field, and they agree.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from synthstream.config import PipelineConfig, SequenceConfig, parse_pipeline_config
from synthstream.config_check import config_problems
from synthstream.connectors.files import read_table
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.connectors.replay import replay_file
from synthstream.processors.sequences import EntitySequences
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.status import closing_words, run_status
from tests.helpers import TRANSACTIONS_CSV

FIELDS = ["trans_date_trans_time", "cc_num", "category", "amt", "gender", "is_fraud"]
ROWS = 2_000
FEED = 300


def _sequence_only(prefix: str, state_dir: Path, sample: Path, **extra: Any) -> PipelineConfig:
    """A config with a sequence section and no tabular section (publisher, audit, training.generator)."""
    data: dict[str, Any] = {
        "stream": prefix,
        "source": {"topic": f"{prefix}.source", "sample_file": str(sample)},
        "training": {"every_records": 100_000, "every_seconds": 600, "min_records": 300, "seed": 0},
        "redaction": {"enabled": True},
        "topics": {
            "synthetic": f"{prefix}.synthetic",
            "deadletter": f"{prefix}.deadletter",
            "models": f"{prefix}.models",
            "schemas": f"{prefix}.schemas",
            "privacy_audit": f"{prefix}.privacy-audit",
            "drift": f"{prefix}.drift",
            "pii_findings": f"{prefix}.pii-findings",
        },
        "sequence": {
            "enabled": True,
            "entity_field": "cc_num",
            "time_field": "trans_date_trans_time",
            "static_fields": ["gender"],
            "min_sequences": 20,
            "topic": f"{prefix}.sequences",
            "model": {"epochs": 2, "hidden_size": 16, "head_units": 8, "mixture_components": 2, "batch_size": 32},
            "publisher": {"speedup": 0, "max_records": FEED, "entities_per_sample": 32},
        },
        "state_dir": str(state_dir),
        **extra,
    }
    return parse_pipeline_config(data, source="test config")


def test_sequence_only_configs_run_no_tabular_work_unless_asked(tmp_path: Path) -> None:
    sample = tmp_path / "tx.csv"
    pd.read_csv(TRANSACTIONS_CSV, nrows=50, usecols=FIELDS).to_csv(sample, index=False)
    auto = _sequence_only("a", tmp_path, sample)
    assert not auto.tabular_enabled and not auto.drift_enabled
    assert SequenceConfig().min_events == 1 and auto.sequence.publisher.id_field == "synthetic_entity"
    assert _sequence_only("a", tmp_path, sample, training={"every_records": 10, "tabular": True}).tabular_enabled
    assert _sequence_only("a", tmp_path, sample, publisher={"max_records": 10}).tabular_enabled
    assert _sequence_only("a", tmp_path, sample, drift={"enabled": True}).drift_enabled
    plain = parse_pipeline_config({"stream": "p", "source": {"topic": "p", "sample_file": str(sample)}})
    assert plain.tabular_enabled and plain.drift_enabled
    # The id field must be a new field: a clash is a config problem naming it, found before the run.
    publisher = auto.sequence.publisher.model_copy(update={"id_field": "amt"})
    clash = auto.model_copy(update={"sequence": auto.sequence.model_copy(update={"publisher": publisher})})
    schema = infer_schema(read_table(sample), name="Tx")
    assert any("sequence.publisher.id_field 'amt'" in p for p in config_problems(clash, schema))
    assert not any("id_field" in p for p in config_problems(auto, schema))


async def test_sequence_only_feed_waits_for_the_backlog_ends_itself_and_drains_with_ids(
    kafka: Any, broker: Any, names: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("SYNTHSTREAM_PSEUDONYM_KEY", "sequence-feed-test-key-" + "f" * 16)
    path = tmp_path / "tx.csv"
    frame = pd.read_csv(TRANSACTIONS_CSV, nrows=ROWS, usecols=FIELDS)
    frame.to_csv(path, index=False)
    cards = frame["cc_num"].nunique()
    singles = int((frame["cc_num"].value_counts() == 1).sum())
    assert singles > 0  # the data has single-event cards: min_events 1 must keep them
    schema = infer_schema(read_table(path), name="Tx")
    config = _sequence_only(names.prefix, tmp_path / "state", path)
    await ensure_topics(kafka, [config.source.topic])
    # The whole file is in the topic before the pipeline starts: a backlog to read before the first fit.
    async with Producer(kafka) as producer:
        await replay_file(producer, config.source.topic, path, schema, JsonRecordSerde(schema).encode, progress=False)

    store = InMemorySchemaStore()
    pipeline = Pipeline(config, kafka, schema, store=store)
    summary = await asyncio.wait_for(pipeline.run(), timeout=240)  # no `until`: the feed's limit ends the run

    assert summary.sequences_published == FEED
    assert summary.model_versions == [] and pipeline.scheduler is None and pipeline.gate is None
    # The last log line counts the sequence feed (a sequence-only run once closed with "0 published").
    assert closing_words(pipeline) == ("info", f"stopped: {FEED} synthetic sequence records published")
    assert run_status(pipeline).published == FEED
    assert pipeline.publisher is None
    assert config.synthetic_topic not in pipeline.output_topics()
    assert config.topics.drift not in pipeline.output_topics()
    assert config.topics.privacy_audit not in pipeline.output_topics()
    assert pipeline.sequence_scheduler is not None
    assert pipeline.sequence_scheduler.first_fit_reason == "caught_up"
    first = pipeline.sequence_registry.get(summary.sequence_versions[0])
    # Fitted on every card of the file (single-event ones included), not on a partial read.
    assert first.lineage.source_offsets["sequences"] == cards
    assert first.lineage.rows == ROWS

    parquet = tmp_path / "feed.parquet"
    drained = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "synthstream",
            "drain",
            config.sequence.topic or "",
            "--parquet",
            str(parquet),
            "--schemas-topic",
            config.topics.schemas,
            "-b",
            broker.bootstrap_servers,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert drained.returncode == 0, drained.stderr[-2000:]
    table = pq.read_table(parquet).to_pandas()
    assert len(table) == FEED
    assert {"_key", "_entity", "synthetic_entity", *schema.field_names} <= set(table.columns)
    assert (table["_entity"] == table["synthetic_entity"]).all()
    versions = {int(v) for v in summary.sequence_versions}
    assert all(
        any(key == f"{config.stream}:v{v}:{entity}" for v in versions)
        for key, entity in zip(table["_key"], table["_entity"], strict=True)
    )
    # Sequences can be told apart: several entities, each with its events in time order.
    assert table["synthetic_entity"].nunique() > 5
    for _, events in table.groupby("synthetic_entity"):
        stamps = events.sort_values("_offset")["trans_date_trans_time"].tolist()
        assert stamps == sorted(stamps)


def _scheduler(tmp_path: Path, caught_up: list[bool], **sequence: Any) -> tuple[Any, EntitySequences]:
    """A sequence scheduler over real keyed state; ``caught_up[0]`` says whether the source is read to its end."""
    from concurrent.futures import ThreadPoolExecutor

    from synthstream.config import TrainingConfig
    from synthstream.models.registry import ModelRegistry
    from synthstream.privacy.ledger import PrivacyLedger
    from synthstream.schemas.events import EventSerde, ModelLifecycleEvent
    from synthstream.streams.sequence_trainer import SequenceScheduler

    max_wait = sequence.pop("max_wait", 3_600.0)
    config = SequenceConfig(
        enabled=True, entity_field="card", time_field="ts", min_sequences=3, max_entities=50, **sequence
    )
    training = TrainingConfig(first_fit_max_wait_s=max_wait)
    state = EntitySequences("card", "ts", max_entities=50)
    scheduler = SequenceScheduler(
        config=config,
        training=training,
        state=state,
        registry=ModelRegistry(tmp_path / "models", "s.sequences"),
        schema=infer_schema(pd.DataFrame({"card": ["a"], "ts": [1], "x": [1.0]}), name="S"),
        executor=ThreadPoolExecutor(1),
        producer=None,  # type: ignore[arg-type]  # due() decides without producing anything
        models_topic="models",
        lifecycle_serde=EventSerde(ModelLifecycleEvent, InMemorySchemaStore()),
        stream="s",
        ledger=PrivacyLedger(tmp_path / "ledger.duckdb"),
        caught_up=lambda: caught_up[0],
    )
    return scheduler, state


def test_first_sequence_fit_waits_for_the_backlog_or_enough_sequences(tmp_path: Path) -> None:
    caught_up = [False]
    scheduler, state = _scheduler(tmp_path, caught_up, first_fit_sequences=10)
    state.process([{"card": f"c{i}", "ts": i, "x": 1.0} for i in range(5)])
    assert not scheduler.due()  # min_sequences held, but the backlog is not read and 5 < 10
    caught_up[0] = True
    assert scheduler.due() and scheduler.first_fit_reason == "caught_up"

    caught_up[0] = False
    scheduler, state = _scheduler(tmp_path / "b", caught_up, first_fit_sequences=10)
    state.process([{"card": f"c{i}", "ts": i, "x": 1.0} for i in range(9)])
    assert not scheduler.due()
    state.process([{"card": "c9", "ts": 9, "x": 1.0}])
    assert scheduler.due() and scheduler.first_fit_reason == "sequences"
    assert scheduler.first_fit_target() == 10
    default, _ = _scheduler(tmp_path / "c", caught_up)
    assert default.first_fit_target() == 50  # the keyed state is full

    # A stream always read behind its end: training.first_fit_max_wait_s bounds the wait.
    scheduler, state = _scheduler(tmp_path / "d", caught_up, max_wait=0.2)
    state.process([{"card": f"c{i}", "ts": i, "x": 1.0} for i in range(5)])
    deadline = time.monotonic() + 30
    while not scheduler.due():
        assert time.monotonic() < deadline, "the first fit never became due"
        time.sleep(0.01)  # polling a condition (the deadline above), not a fixed wait
    assert scheduler.first_fit_reason == "max_wait"
