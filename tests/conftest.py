"""Shared fixtures: one embedded broker per session, fresh topic and group names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from synthstream.connectors.broker import EmbeddedBroker
from synthstream.log import configure_logging
from synthstream.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Real public datasets beside the checkout (../shared/data), or SYNTHSTREAM_SHARED_DATA."""
    return Path(os.environ.get("SYNTHSTREAM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"shared datasets not found at {path}; set SYNTHSTREAM_SHARED_DATA")
    return path


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    configure_logging(level="WARNING")


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> KafkaSettings:
    return KafkaSettings.for_embedded(broker.bootstrap_servers)


@dataclass(frozen=True)
class Names:
    """Fresh names for one test: nothing is shared between tests on the session broker."""

    prefix: str

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def group(self, name: str = "g") -> str:
        return f"{self.prefix}-{name}"


@pytest.fixture
def names() -> Names:
    return Names(prefix=f"t{uuid.uuid4().hex[:10]}")
