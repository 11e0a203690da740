"""Processors: the bounded buffer and the pass-through redaction hook."""

from __future__ import annotations

import pytest

from synthstream.connectors.files import read_table, records_from_frame
from synthstream.demo import sample_path
from synthstream.processors.buffer import TrainingBuffer
from synthstream.processors.redactor import PassThroughRedactor, Redactor
from synthstream.schemas.inference import infer_schema


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


# The contract every processor, generator and connector meets (repr, seeding, input left alone,
# pickling, typed errors, empty batches) is in test_contract_components.py, discovered, not listed.
