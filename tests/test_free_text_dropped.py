"""A free-text field that comes out empty is never silent: a warning and the ``trained`` event name it."""

from __future__ import annotations

import random
import string
from concurrent.futures import ThreadPoolExecutor

from synthstream.config import TrainingConfig
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.models.guards import silent_text_fields
from synthstream.models.registry import ModelRegistry
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from synthstream.schemas.serde import InMemorySchemaStore
from synthstream.streams.trainer import RetrainScheduler
from tests.helpers import read_topic


def _table(n: int, seed: int) -> tuple[RecordSchema, list[dict]]:
    """A category, an amount and a text field whose every token is unique and capitalised (no k-frequent word)."""
    rng = random.Random(seed)
    schema = RecordSchema(
        name="Notes",
        fields=[
            FieldSpec(name="kind", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
            FieldSpec(name="amount", type=FieldType.DOUBLE, role=FieldRole.NUMERIC),
            FieldSpec(name="note", type=FieldType.STRING, role=FieldRole.FREE_TEXT),
        ],
    )

    def word() -> str:
        return rng.choice(string.ascii_uppercase) + "".join(rng.choices(string.ascii_lowercase, k=9))

    rows = [
        {"kind": rng.choice("abc"), "amount": rng.gauss(50, 10), "note": f"{word()} {word()} {word()}"}
        for _ in range(n)
    ]
    return schema, rows


def test_silent_fields_are_those_empty_in_the_sample_but_not_in_training():
    training = [{"note": "some words", "other": None}]
    sample = {"note": [None, "  "], "other": [None, None]}
    assert silent_text_fields(sample, ["note", "other"], training) == ["note"]  # `other` was empty anyway
    assert silent_text_fields({"note": [None, "words"]}, ["note"], training) == []


async def test_a_version_whose_text_field_comes_out_empty_says_so_on_its_trained_event(kafka, names, tmp_path):
    schema, rows = _table(600, seed=3)
    topic = names.topic("models")
    await ensure_topics(kafka, [topic])
    store = InMemorySchemaStore()
    buffer = TrainingBuffer(5_000)
    config = TrainingConfig(generator="gaussian_copula", every_records=10_000, min_records=100, seed=1)
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = RetrainScheduler(
                config=config,
                buffer=buffer,
                registry=ModelRegistry(tmp_path, "s"),
                schema=schema,
                executor=executor,
                producer=producer,
                models_topic=topic,
                lifecycle_serde=EventSerde(ModelLifecycleEvent, store),
                stream="s",
            )
            buffer.extend(rows)
            version = await scheduler.retrain()
    assert version is not None
    events = [EventSerde(ModelLifecycleEvent, store).decode(r.value) for r in await read_topic(kafka, topic)]
    trained = [e for e in events if e.action == "trained"]
    assert len(trained) == 1
    assert trained[0].reason == "free text generated empty: note"
