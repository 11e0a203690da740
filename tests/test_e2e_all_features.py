"""Every stage on at once: redaction, DP statistics, drift monitors, the audit gate and the sequence path.

Each stage's own tests run it alone; this one runs the pipeline as the example configuration does,
on the committed card transactions, and checks what each stage must produce when the others share
the process, the records and the state directory with it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from synthstream.connectors.files import read_table
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.connectors.replay import replay_file
from synthstream.connectors.sinks import AutoDecoder
from synthstream.privacy.accounting import epsilon_to_rho
from synthstream.schemas.events import EventSerde, PrivacyAuditEvent, StatsEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import InMemorySchemaStore, JsonRecordSerde
from synthstream.streams.drift import DriftStage
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.publisher import HEADER_MODEL_VERSION
from synthstream.streams.sequence_publisher import HEADER_ENTITY
from tests.helpers import FAST_AUDIT, TRANSACTIONS_CSV, pipeline_config, read_topic

ROWS = 2_000
DRIFT_WINDOW = 500
FIELDS = ["trans_date_trans_time", "cc_num", "first", "last", "street", "category", "amt", "gender", "city_pop"]


@pytest.mark.timeout(600)
async def test_every_stage_on_together_produces_what_each_promises(kafka, names, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SYNTHSTREAM_PSEUDONYM_KEY", "all-features-test-key-" + "a" * 16)
    frame = pd.read_csv(TRANSACTIONS_CSV, nrows=ROWS, usecols=FIELDS)
    frame["cc_num"] = frame["cc_num"].astype(str)
    path = tmp_path / "tx.csv"
    frame.to_csv(path, index=False)
    schema = infer_schema(read_table(path), name="Tx")
    config = pipeline_config(
        names.prefix,
        tmp_path / "state",
        path,
        fields={"cc_num": {"role": "identifier", "redact": "pseudonymize"}},
        redaction={"enabled": True},
        training={"every_records": 100_000, "min_records": 600},
        publisher={"rate": 0, "max_records": 1_000},
        # Floors below what fakes of many distinct names allow the copula (about 0.74 / 0.48 measured).
        audit={**FAST_AUDIT, "min_column_shapes": 0.6, "min_pair_trends": 0.35},
        stats={
            "enabled": True,
            "window_s": 6 * 3600,
            "grace_s": 600,
            "idle_flush_s": 1.0,
            "time_field": "trans_date_trans_time",
            "w": 4,
            "epsilon_w": 4.0,
            "categorical": {"category": {}, "gender": {"values": ["F", "M"]}},
            "numeric": {"amt": {"bounds": [0, 1000], "bins": 5, "sum": True}},
        },
        drift={"enabled": True, "window_records": DRIFT_WINDOW, "fields": ["category", "amt", "gender"]},
        sequence={
            "enabled": True,
            "entity_field": "cc_num",
            "time_field": "trans_date_trans_time",
            "min_sequences": 50,
            "topic": names.topic("sequences"),
            "model": {"epochs": 1, "hidden_size": 16, "head_units": 8, "mixture_components": 2, "batch_size": 32},
            "publisher": {"speedup": 0, "max_records": 200, "entities_per_sample": 16},
        },
    )
    await ensure_topics(kafka, [config.source.topic, config.topics.drift, config.topics.privacy_audit])
    store = InMemorySchemaStore()
    pipeline = Pipeline(config, kafka, schema, store=store)

    progress: dict[str, object] = {}

    def done(p: Pipeline) -> bool:
        s = p.summary()
        progress.update(
            records_in=s.counters.records_in,
            synthetic=s.synthetic_published,
            sequences=s.sequences_published,
            versions=s.model_versions,
            sequence_versions=s.sequence_versions,
            windows=None if p.stats is None else p.stats.counters["windows_released"],
        )
        return (
            s.counters.records_in >= ROWS
            and s.synthetic_published >= 1_000
            and s.sequences_published >= 200
            and p.stats is not None
            and p.stats.counters["windows_released"] >= 4
        )

    run = asyncio.create_task(asyncio.wait_for(pipeline.run(until=done), timeout=420))
    async with Producer(kafka) as producer:
        await replay_file(producer, config.source.topic, path, schema, JsonRecordSerde(schema).encode, progress=False)
    try:
        summary = await run
    except TimeoutError:
        pytest.fail(f"the run did not finish; where it stood: {progress}")
    decode = AutoDecoder(store)
    raw_cards = {str(v) for v in frame["cc_num"]}

    # Redaction: every record reached the redacted topic, each with its card, names and street replaced.
    # (The source was itself made with Faker, so a fake first name equals the real one by chance in
    # about 1 record of 700: names are checked per record with that allowance, cards and streets exactly.)
    assert summary.counters.records_in == ROWS and summary.counters.dead_letters == 0
    redacted = [decode(r.value) for r in await read_topic(kafka, config.redacted_topic)]
    assert len(redacted) == ROWS
    source = frame.to_dict("records")
    for name, allowed in (("cc_num", 0), ("street", 0), ("first", 0.02 * ROWS), ("last", 0.02 * ROWS)):
        same = sum(str(r[name]) == str(s[name]) for r, s in zip(redacted, source, strict=True))
        assert same <= allowed, (name, same)
    assert not {str(r["cc_num"]) for r in redacted} & raw_cards

    # DP statistics: every 6-hour window of the replay released once, within the w-window budget.
    stats = [EventSerde(StatsEvent, store).decode(r.value) for r in await read_topic(kafka, config.stats_topic)]
    ms = pd.to_datetime(frame["trans_date_trans_time"], utc=True).astype("int64") // 1_000_000
    windows = sorted(set((ms // (6 * 3600 * 1000)).tolist()))
    assert sorted(e.window_index for e in stats) == windows
    with duckdb.connect(str(config.state_dir / "privacy.duckdb"), read_only=True) as con:
        spend = dict(con.execute("SELECT window_index, sum(rho) FROM releases GROUP BY 1").fetchall())
    budget = epsilon_to_rho(4.0, config.stats.delta)
    assert all(sum(spend.get(j, 0.0) for j in range(i - 3, i + 1)) <= budget * (1 + 1e-9) for i in spend)

    # Drift: every full window of redacted records was measured (a stationary replay: nothing critical).
    (stage,) = [o for o in pipeline.observers if isinstance(o, DriftStage)]
    assert stage.windows_evaluated == ROWS // DRIFT_WINDOW
    assert stage.retrains_requested == 0

    # The audit gate: each version in the tabular feed passed its audit before it published.
    audits = {
        e.model_version: e
        for e in (
            EventSerde(PrivacyAuditEvent, store).decode(r.value)
            for r in await read_topic(kafka, config.topics.privacy_audit)
        )
    }
    synthetic = await read_topic(kafka, config.synthetic_topic)
    published = {int(dict(r.headers)[HEADER_MODEL_VERSION]) for r in synthetic}
    assert published and all(audits[v].verdict == "pass" for v in published)
    assert not {str(decode(r.value)["cc_num"]) for r in synthetic} & raw_cards

    # Sequences: trained on pseudonymised entities, published with pseudonyms, never a real card.
    assert summary.sequence_versions
    sequences = await read_topic(kafka, names.topic("sequences"))
    entities = {dict(r.headers)[HEADER_ENTITY].decode() for r in sequences}
    assert len(sequences) >= 200 and len(entities) > 5
    assert not entities & raw_cards
    assert not {str(decode(r.value)["cc_num"]) for r in sequences} & raw_cards
