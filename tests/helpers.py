"""Test helpers: shared datasets, a hand-built Adult schema, per-test pipeline configs, topic readers."""

from __future__ import annotations

import os
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
SHARED = Path(os.environ.get("SYNTHSTREAM_SHARED_DATA", REPO.parent / "shared" / "data"))
ADULT_NUMERIC = {"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}


def shared(relative: str) -> Path:
    """A file of the shared datasets (../shared/data); the test fails, never skips, when it is missing."""
    path = SHARED / relative
    if not path.is_file():
        pytest.fail(f"shared dataset {path} is missing; set SYNTHSTREAM_SHARED_DATA to the shared data directory")
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


def pipeline_config(prefix: str, state_dir: Path, sample: Path, **sections: Any) -> PipelineConfig:
    """A pipeline whose every topic name starts with ``prefix`` (fresh per test)."""
    data: dict[str, Any] = {
        "stream": prefix,
        "source": {"topic": f"{prefix}.source", "sample_file": str(sample)},
        "training": {"every_records": 1_500, "every_seconds": 30, "min_records": 300, "seed": 0},
        "publisher": {"rate": 0, "batch_size": 500, "format": "avro", "max_records": 3_000},
        "topics": {
            "synthetic": f"{prefix}.synthetic",
            "deadletter": f"{prefix}.deadletter",
            "models": f"{prefix}.models",
            "schemas": f"{prefix}.schemas",
        },
        "state_dir": str(state_dir),
        # The audit gate has its own tests (test_audit_*); pipeline tests publish without waiting for it.
        "audit": {"enabled": False},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_pipeline_config(data, source="test config")


async def read_topic(settings: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the beginning to its current end."""
    return [rec async for batch in read_to_end(settings, topic) for rec in batch]
