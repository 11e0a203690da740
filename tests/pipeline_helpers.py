"""Helpers for end-to-end tests: per-test pipeline configs and topic readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord

from synthstream.config import PipelineConfig, parse_pipeline_config
from synthstream.connectors.kafka import read_to_end
from synthstream.settings import KafkaSettings


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
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_pipeline_config(data, source="test config")


async def read_topic(settings: KafkaSettings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the beginning to its current end."""
    return [rec async for batch in read_to_end(settings, topic) for rec in batch]
