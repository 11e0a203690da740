"""Issue 17 item 3: the audit is fair on small tables and never a dead end.

A table of 2,000 Adult rows and 8 categorical fields, through the real broker: before, every
version was rejected (``only 1410 of 3000 attack attempts could be built``: univariate
singling out has no value to build on, linkability only as many targets as control records)
and nothing was ever published. Now attack counts are scaled to the data, the identical-match
share is judged against real unseen records (on this table about half of them equal some
training row), and verbatim copies of training rows still fail. Retries after a rejection and
the stalled stream: ``test_audit_small_retry.py``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pandas as pd

from synthstream.config import AuditConfig
from synthstream.connectors.files import read_table
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.connectors.replay import replay_file
from synthstream.connectors.schema_topic import publish_schema
from synthstream.evaluation.privacy_risk import attack_frame, audited_fields, distance_metrics
from synthstream.processors.auditor import Auditor
from synthstream.schemas.events import EventSerde, PrivacyAuditEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import RecordSchema
from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore
from synthstream.settings import KafkaSettings
from synthstream.streams.pipeline import Pipeline
from tests.helpers import ADULT_CSV, adult_schema, pipeline_config, read_topic

COLUMNS = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex", "income"]
ROWS = 2_000
#: The default attack count (1,000 per attack), kept small elsewhere so the audit takes seconds.
SMALL_TABLE_AUDIT = {
    "enabled": True,
    "holdout_share": 0.2,
    "synthetic_rows": 1_000,
    "n_attacks": 1_000,
    "singling_out_max_attempts": 2_000,
}


def _table(tmp_path: Path, rows: int = ROWS, skip: int = 0) -> tuple[Path, pd.DataFrame]:
    frame = pd.read_csv(ADULT_CSV, skipinitialspace=True).iloc[skip : skip + rows][COLUMNS].reset_index(drop=True)
    path = tmp_path / f"adult_{skip}_{rows}.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _schema(sample: Path) -> RecordSchema:
    """The schema a new user gets for the file (inferred), as the replay encodes it."""
    return infer_schema(read_table(sample), name="Adult")


async def _replay(kafka: KafkaSettings, config, sample: Path, frame: pd.DataFrame) -> InMemorySchemaStore:
    schema = _schema(sample)
    store = InMemorySchemaStore()
    serde = AvroRecordSerde(schema, store, subject=f"{config.source.topic}-value")
    await ensure_topics(kafka, [config.source.topic, config.topics.schemas])
    async with Producer(kafka) as producer:
        await publish_schema(
            producer, config.topics.schemas, serde.subject, serde.schema_id, store.get(serde.schema_id)
        )
        report = await replay_file(producer, config.source.topic, sample, schema, serde.encode, progress=False)
    assert report.records == len(frame)
    return store


async def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_small_table_reaches_coverage_and_publishes(kafka: KafkaSettings, names, tmp_path: Path) -> None:
    sample, frame = _table(tmp_path)
    config = pipeline_config(
        names.prefix,
        tmp_path,
        sample,
        audit=SMALL_TABLE_AUDIT,
        training={"generator": "gaussian_copula", "every_records": 100_000, "every_seconds": None},
        publisher={"max_records": 500},
    )
    store = await _replay(kafka, config, sample, frame)
    pipeline = Pipeline(config, kafka, _schema(sample), store=store)
    summary = await asyncio.wait_for(pipeline.run(), timeout=240)

    assert summary.synthetic_published >= 500  # before: every version rejected, nothing ever published
    [event] = [
        EventSerde(PrivacyAuditEvent, store).decode(r.value)
        for r in await read_topic(kafka, config.topics.privacy_audit)
    ]
    assert event.verdict == "pass", event.reasons
    # Scaled to the data: at most one attempt per attacked record (the control set), never 1,000.
    assert event.attacks_requested < 4 * 1_000
    assert event.attacks_built >= 0.5 * event.attacks_requested
    assert "scaled to the data" in event.reasons[0]
    [univariate] = [a for a in event.attacks if a.name == "singling_out_univariate"]
    # Univariate singling out gets as many attempts as synthetic values single out a row (often none here).
    assert univariate.attacks_requested < 1_000
    assert (univariate.attacks_requested == 0) == ("does not apply" in (univariate.detail or ""))
    # Real rows repeat on this table, and that is not held against the model.
    assert event.risks["identical_match_share_holdout"] > 0.3
    assert event.risks["identical_match_excess_ci_low"] <= 0.01


def test_identical_matches_are_judged_against_real_unseen_rows_and_copies_still_fail(tmp_path: Path) -> None:
    _, frame = _table(tmp_path, rows=4_000)
    schema = adult_schema(frame)
    fields = audited_fields(schema)
    training, control, fresh = frame.iloc[:1_600], frame.iloc[1_600:2_000], frame.iloc[2_000:]
    ori, ctrl = attack_frame(training, fields), attack_frame(control, fields)

    # Fresh real rows stand for a model that generalises perfectly: they repeat training rows as
    # often as the control does, so there is no excess, however many of them repeat.
    honest = distance_metrics(ori, ctrl, attack_frame(fresh, fields))
    assert honest.identical_match_share > 0.3 and honest.identical_match_share_holdout > 0.3
    assert honest.identical_match_excess_ci_low() == 0.0

    # A model that copies training rows nobody else has: 30 % verbatim copies fail the gate.
    unique = ori[~ori.apply(tuple, axis=1).isin(set(ctrl.apply(tuple, axis=1))) & ~ori.duplicated(keep=False)]
    rng = np.random.default_rng(0)
    copies = unique.iloc[rng.choice(len(unique), size=600)]
    leaky = pd.concat([attack_frame(fresh, fields).iloc[:1_400], copies], ignore_index=True)
    copied = distance_metrics(ori, ctrl, leaky)
    assert copied.identical_match_excess_ci_low() > 0.01 and copied.dcr_share > 0.6
    auditor = Auditor(schema, AuditConfig(synthetic_rows=2_000, n_attacks=50, singling_out_max_attempts=200))
    report = auditor.audit(training, control, leaky.to_dict("records"), seed=0)
    assert any(r.startswith("identical_match_excess") for r in report.reasons), report.reasons
