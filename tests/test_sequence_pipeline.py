"""Time series through the whole pipeline: keyed state -> sequence model -> sequence feed, plus DP-SGD in the ledger."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dp_accounting import GaussianDpEvent, PoissonSampledDpEvent, SelfComposedDpEvent, rdp

from synthstream.connectors.files import read_table
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.connectors.replay import replay_file
from synthstream.connectors.sinks import AutoDecoder
from synthstream.privacy.ledger import PrivacyLedger
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.sequence_publisher import HEADER_ENTITY
from tests.helpers import TRANSACTIONS_CSV, pipeline_config, read_topic

FIELDS = ["trans_date_trans_time", "cc_num", "category", "amt", "gender", "is_fraud"]


def _transactions(tmp_path: Path, rows: int) -> Path:
    frame = pd.read_csv(TRANSACTIONS_CSV, nrows=rows, usecols=FIELDS)
    path = tmp_path / "tx.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("dp", [False, True], ids=["plain", "dp_sgd"])
async def test_keyed_state_trains_a_sequence_model_and_feeds_the_sequence_topic(
    kafka, names, tmp_path, monkeypatch, dp: bool
):
    # Redaction on, as in production: the sequence path runs on pseudonymised entity keys.
    monkeypatch.setenv("SYNTHSTREAM_PSEUDONYM_KEY", "sequence-test-key-" + "s" * 16)
    path = _transactions(tmp_path, 2_500)
    raw_cards = {str(v) for v in pd.read_csv(path)["cc_num"]}
    schema = infer_schema(read_table(path), name="Tx")
    sequence = {
        "enabled": True,
        "entity_field": "cc_num",
        "time_field": "trans_date_trans_time",
        "static_fields": ["gender"],
        "min_sequences": 50,
        "topic": names.topic("sequences"),
        "model": {"epochs": 2, "hidden_size": 16, "head_units": 8, "mixture_components": 2, "batch_size": 32},
        "publisher": {"speedup": 0, "max_records": 400, "entities_per_sample": 32},
        "dp": {"enabled": dp, "noise_multiplier": 1.0},
    }
    config = pipeline_config(
        names.prefix,
        tmp_path / "state",
        path,
        sequence=sequence,
        redaction={"enabled": True},
        publisher={"max_records": None, "rate": 100},
        training={"every_records": 100_000, "min_records": 300, "privacy": {"epsilon": 50.0, "delta": 1e-5}},
    )
    await ensure_topics(kafka, [config.source.topic])
    store = InMemorySchemaStore()
    pipeline = Pipeline(config, kafka, schema, store=store)
    run = asyncio.create_task(
        asyncio.wait_for(pipeline.run(until=lambda p: p.summary().sequences_published >= 400), timeout=240)
    )
    async with Producer(kafka) as producer:
        await replay_file(producer, config.source.topic, path, schema, JsonRecordSerde(schema).encode, progress=False)
    summary = await run

    assert summary.sequence_versions, "no sequence model was trained"
    assert summary.sequences_published >= 400
    records = await read_topic(kafka, names.topic("sequences"))
    decode = AutoDecoder(store)
    times: dict[bytes, list] = defaultdict(list)
    for rec in records:
        row = decode(rec.value)
        assert set(row) == {*schema.field_names, "synthetic_entity"}  # the id field (issue 16)
        times[dict(rec.headers)[HEADER_ENTITY]].append(row["trans_date_trans_time"])
    assert len(times) > 5
    # Entities are pseudonyms: no real card number in a key, a header or a field of the feed.
    assert not {entity.decode() for entity in times} & raw_cards
    assert not {str(decode(rec.value)["cc_num"]) for rec in records} & raw_cards
    assert not {rec.key.decode() for rec in records if rec.key} & raw_cards
    assert all(t == sorted(t) for t in times.values()), "an entity's events went back in event time"

    events = [
        EventSerde(ModelLifecycleEvent, store).decode(r.value) for r in await read_topic(kafka, config.topics.models)
    ]
    assert any(e.generator == "sequence" and e.action == "promoted" for e in events)
    version = pipeline.sequence_registry.get(summary.sequence_versions[0])
    spend = PrivacyLedger(config.state_dir / "privacy.duckdb").summaries()
    if dp:
        assert version.lineage.guarantee is not None and version.lineage.guarantee["mechanism"] == "dpsgd"
        (charged,) = [s for s in spend if s.unit == "entity:cc_num"]
        # The fit's σ, q and steps as the ledger recorded them; σ is the configured one, q and steps fit
        # two epochs of Poisson batches; ε is recomputed from them by dp-accounting, not read back.
        with duckdb.connect(str(config.state_dir / "privacy.duckdb"), read_only=True) as con:
            (query,) = [r[0] for r in con.execute("SELECT query FROM releases WHERE query LIKE 'dpsgd:%'").fetchall()]
        fields = dict(part.split("=") for part in query.split(":")[1:])
        sigma, q, steps = float(fields["sigma"]), float(fields["q"]), int(fields["steps"])
        assert sigma == pytest.approx(1.0) and 0 < q < 1
        assert 2 * round(1 / q) - 3 <= steps <= 2 * round(1 / q)  # (rare empty Poisson batches take no step)
        acc = rdp.RdpAccountant()
        acc.compose(SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), steps))
        expected = float(acc.get_epsilon(charged.total.delta))
        assert charged.total.epsilon == pytest.approx(expected, rel=0.03)
    else:
        assert version.lineage.guarantee is None
        assert not [s for s in spend if s.unit == "entity:cc_num"]
