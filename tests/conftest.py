"""Shared fixtures: one embedded broker per session, fresh topic and group names per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from synthstream.connectors.broker import EmbeddedBroker
from synthstream.log import configure_logging
from synthstream.settings import KafkaSettings


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
