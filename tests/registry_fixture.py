"""A session-scoped embedded Schema Registry on the session broker, for the registry tests.

Import the fixture into a test module (``from tests.registry_fixture import registry``): it
starts once per session, on its own storage topic, and is shared by every module that imports it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from synthstream.connectors.broker import EmbeddedBroker
from synthstream.connectors.registry_server import EmbeddedRegistry
from synthstream.settings import KafkaSettings


@pytest.fixture(scope="session")
def registry(broker: EmbeddedBroker) -> Iterator[EmbeddedRegistry]:
    """The embedded registry, serving on a free loopback port, stored on a fresh compacted topic."""
    settings = KafkaSettings.for_embedded(broker.bootstrap_servers)
    with EmbeddedRegistry(settings, topic=f"_schemas-{uuid.uuid4().hex[:8]}") as running:
        yield running
