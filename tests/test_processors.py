"""Processors: the bounded buffer, the pass-through redaction hook, and shared contracts."""

from __future__ import annotations

import copy
import pickle

import pytest

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.demo import sample_path
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.processors.buffer import TrainingBuffer
from synthstream.processors.redactor import PassThroughRedactor, Redactor
from synthstream.processors.validator import RecordValidator
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import JsonRecordSerde


@pytest.fixture(scope="module")
def adult():
    frame = read_table(sample_path(), nrows=500)
    schema = infer_schema(frame, name="Adult")
    return schema, records_from_frame(frame, schema)


def test_buffer_is_bounded_and_keeps_the_latest():
    buffer = TrainingBuffer(max_records=100)
    for start in range(0, 1_000, 30):
        buffer.extend({"i": i} for i in range(start, min(start + 30, 1_000)))
    assert len(buffer) == 100
    assert buffer.total_seen == 1_000
    assert [r["i"] for r in buffer.snapshot()] == list(range(900, 1_000))
    with pytest.raises(ValueError, match="max_records"):
        TrainingBuffer(0)


def test_pass_through_redactor_claims_no_redaction(adult):
    _, records = adult
    redactor = PassThroughRedactor()
    assert isinstance(redactor, Redactor)
    assert redactor.redacts is False
    assert redactor.process(records[:10]) == records[:10]


def _processors(schema):
    return [TrainingBuffer(50), PassThroughRedactor(), RecordValidator(schema)]


def test_processor_contracts(adult):
    """Every processor has a useful repr and leaves its input alone (processors stay in-process)."""
    schema, records = adult
    encoded = [JsonRecordSerde(schema).encode(r) for r in records[:50]]
    for processor in _processors(schema):
        text = repr(processor)
        assert type(processor).__name__ in text and "object at 0x" not in text
        before = copy.deepcopy(records[:50])
        if isinstance(processor, TrainingBuffer):
            processor.extend(records[:50])
        elif isinstance(processor, RecordValidator):
            assert [processor(v) for v in encoded] == records[:50]
        else:
            processor.process(records[:50])
        assert records[:50] == before


def test_generator_contract(adult):
    """Generators cross into the training process and back: they must pickle and stay seeded."""
    schema, records = adult
    model = GaussianCopulaGenerator(seed=3).fit(records, schema)
    assert "GaussianCopulaGenerator(" in repr(model)
    again = pickle.loads(pickle.dumps(model))
    assert again.sample(20, seed=1) == model.sample(20, seed=1)
