"""Test helpers: the committed fixtures, a hand-built Adult schema, per-test pipeline configs, topic readers."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiokafka import ConsumerRecord

from synthstream.config import PipelineConfig, parse_pipeline_config
from synthstream.connectors.kafka import read_to_end
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from synthstream.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[1]
#: Small data files committed with the tests (provenance and licence in fixtures/README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ADULT_NUMERIC = {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}

#: The fixture files by what they hold; tests never read data outside the repository.
ADULT_CSV = FIXTURES / "adult_train_8k.csv"
TRANSACTIONS_CSV = FIXTURES / "transactions_3k.csv"
FAKE_IDENTITIES_CSV = FIXTURES / "fake_identities_br.csv"


def fixture(name: str) -> Path:
    """A committed fixture file; a missing one fails the test (a broken checkout), never skips it."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.fail(f"test fixture {path} is missing from the checkout")
    return path


def adult_schema(frame: pd.DataFrame) -> RecordSchema:
    """Adult's schema written by hand (independent of schema inference)."""
    fields = tuple(
        FieldSpec(
            name=c,
            type=FieldType.LONG if c in ADULT_NUMERIC else FieldType.STRING,
            role=FieldRole.NUMERIC if c in ADULT_NUMERIC else FieldRole.CATEGORICAL,
            nullable=bool(frame[c].isna().any()),
        )
        for c in frame.columns
    )
    return RecordSchema(name="Adult", fields=fields)


#: The audit gate on, sized for a test (a few seconds per version on 2 cores): fewer synthetic rows
#: and attack attempts than production, the same attacks, ceilings and verdict logic.
FAST_AUDIT: dict[str, Any] = {
    "enabled": True,
    "holdout_share": 0.3,
    "synthetic_rows": 1_000,
    "n_attacks": 100,
    "singling_out_max_attempts": 2_000,
}


def pipeline_config(prefix: str, state_dir: Path, sample: Path, **sections: Any) -> PipelineConfig:
    """A pipeline whose every topic name starts with ``prefix`` (fresh per test)."""
    data: dict[str, Any] = {
        "stream": prefix,
        "source": {"topic": f"{prefix}.source", "sample_file": str(sample)},
        # min_steps 0: test fits run exactly their configured epochs (the default stretches small tables).
        "training": {
            "every_records": 1_500,
            "every_seconds": 30,
            "min_records": 300,
            "seed": 0,
            "neural": {"min_steps": 0},
        },
        "publisher": {"rate": 0, "batch_size": 500, "format": "avro", "max_records": 3_000},
        "topics": {
            "synthetic": f"{prefix}.synthetic",
            "deadletter": f"{prefix}.deadletter",
            "models": f"{prefix}.models",
            "schemas": f"{prefix}.schemas",
            "privacy_audit": f"{prefix}.privacy-audit",
            "drift": f"{prefix}.drift",
            "pii_findings": f"{prefix}.pii-findings",
        },
        "state_dir": str(state_dir),
        # Off unless a test asks for it: tests of one stage (stats, drift, sequences, faults) publish
        # without waiting for an audit. Tests of the whole pipeline pass ``audit=FAST_AUDIT``.
        "audit": {"enabled": False},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_pipeline_config(data, source="test config")


async def read_topic(settings: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the beginning to its current end."""
    return [rec async for batch in read_to_end(settings, topic) for rec in batch]


def shuffled(records: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` records as seeded shuffles of ``records``, one whole shuffled pass after another.

    The fixtures are small (a few thousand rows); a test that streams more records than a fixture
    holds replays it in fresh seeded orders, so every pass has exactly the fixture's distribution.
    """
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        batch = list(records)
        rng.shuffle(batch)
        out.extend(batch)
    return out[:n]


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """A plain HTTP/1.1 GET on the loopback (status, body): the /health and /metrics endpoints."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body
