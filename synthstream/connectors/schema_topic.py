"""Publish Avro schemas on a Kafka topic so that any process or client can find them by id.

The topic plays the part of Confluent Schema Registry's ``_schemas`` topic: key = the
schema id, value = ``{"id", "subject", "schema"}`` as JSON. Ids are deterministic (a hash
of the canonical schema), so every process that registers the same schema agrees on its
id without coordination, and a reader only ever needs to catch up.

Why it stays: it is how workers share schemas when no Schema Registry is configured (no
server to run, ids agreed without coordination). The topic is created compacted (see
:mod:`synthstream.connectors.topics`): the key is the id, so compaction keeps one record per
schema however often workers republish. With ``schema_registry.url`` set it is not used: the
registry's ids are what Confluent clients understand (see :mod:`synthstream.connectors.registry`).
"""

from __future__ import annotations

import json
from typing import Any

from synthstream.connectors.kafka import BatchSender, OutMessage, read_to_end
from synthstream.errors import SchemaError
from synthstream.log import get_logger
from synthstream.schemas.serde import SchemaStore
from synthstream.settings import KafkaSettings

_log = get_logger("schema_topic")


async def publish_schema(
    producer: BatchSender, topic: str, subject: str, schema_id: int, schema: dict[str, Any]
) -> None:
    """Publish one schema under its id (idempotent: same id, same content)."""
    value = json.dumps({"id": schema_id, "subject": subject, "schema": schema}, sort_keys=True).encode()
    await producer.send(topic, OutMessage(value=value, key=str(schema_id).encode()))


class SchemaTopicReader:
    """Catches a :class:`SchemaStore` up with the schemas published on the topic."""

    def __init__(self, settings: KafkaSettings, topic: str, store: SchemaStore) -> None:
        self.topic = topic
        self.store = store
        self._settings = settings
        self._positions: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"SchemaTopicReader(topic={self.topic!r})"

    async def refresh(self) -> int:
        """Read schemas published since the last refresh into the store; return how many.

        A registry-backed store (``registry_backed``) reads nothing: its ids are the registry's,
        and the content-derived ids of this topic would only pollute the registry's subjects.
        """
        if getattr(self.store, "registry_backed", False):
            return 0
        loaded = 0
        async for batch in read_to_end(self._settings, self.topic, start=self._positions, ends_out=self._positions):
            for rec in batch:
                if self._load(rec.value, rec.partition, rec.offset):
                    loaded += 1
        return loaded

    def _load(self, value: bytes | None, partition: int, offset: int) -> bool:
        try:
            doc = json.loads(value or b"")
            schema_id = self.store.register(doc["subject"], doc["schema"])
        except (ValueError, KeyError, TypeError, SchemaError) as exc:
            # A bad entry must not stop the others from loading; it is logged with its coordinates.
            _log.warning("schema.unreadable", topic=self.topic, partition=partition, offset=offset, error=str(exc))
            return False
        if schema_id != doc.get("id"):
            _log.warning("schema.id_mismatch", topic=self.topic, partition=partition, offset=offset)
        return True
