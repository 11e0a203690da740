"""Config validation of the sequence time field: what kind and grid it found, what it cannot use (issue 16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from synthstream.config import SequenceConfig
from synthstream.config_check import config_problems, sequence_time_found
from synthstream.models.sequence import sequence_generator_from_config
from synthstream.schemas.inference import infer_schema_from_file
from tests.helpers import pipeline_config
from tests.test_sequence_time_model import _panel

SEQ: dict[str, Any] = {"enabled": True, "entity_field": "person", "time_field": "year", "static_fields": []}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("panel") / "panel.csv"
    frame = pd.DataFrame(_panel(n_people=60, seed=2))
    frame["retired"] = frame["age"] > 55
    frame.to_csv(path, index=False)
    return path


def test_an_integer_year_is_accepted_and_its_kind_and_grid_are_reported(sample: Path, tmp_path: Path) -> None:
    config = pipeline_config("p", tmp_path, sample, sequence=SEQ)
    schema = infer_schema_from_file(sample)
    assert config_problems(config, schema) == []
    found, problems = sequence_time_found(config, schema, set(schema.field_names))
    assert problems == [] and (found.kind, found.grid, found.step) == ("year", "yearly", 1)
    assert found.describe() == "time field 'year': year (long), yearly grid"
    model = sequence_generator_from_config(config.sequence, seed=0)
    assert model.time_kind == "auto" and model.quasi_static_share == 0.95


def test_unusable_time_fields_are_rejected_naming_the_field(sample: Path, tmp_path: Path) -> None:
    schema = infer_schema_from_file(sample)
    cases: dict[str, dict[str, Any]] = {
        "retired": {"time_field": "retired"},
        "'year' is a number": {"time_kind": "datetime"},
        "derived.salary": {"derived": {"salary": "year"}},
        "derived.retired": {"derived": {"retired": "month"}},
    }
    for expected, override in cases.items():
        config = pipeline_config("p", tmp_path, sample, sequence={**SEQ, **override})
        problems = config_problems(config, schema)
        assert len(problems) == 1 and expected in problems[0], (expected, problems)
        assert "\n" not in problems[0]
    # a forced kind the values cannot be read as: the sample says so, naming the field
    config = pipeline_config("p", tmp_path, sample, sequence={**SEQ, "time_field": "income", "time_kind": "yyyymmdd"})
    (problem,) = config_problems(config, schema)
    assert "'income'" in problem


def test_a_malformed_derived_mapping_fails_when_the_config_loads() -> None:
    with pytest.raises(ValidationError, match=r"sequence.derived.age"):
        SequenceConfig.model_validate({**SEQ, "derived": {"age": {"grows_with": "year"}}})
    with pytest.raises(ValidationError, match=r"sequence.derived.hour.*'hours'"):
        SequenceConfig.model_validate({**SEQ, "derived": {"hour": "hours"}})


@pytest.mark.parametrize(("min_sequences", "warned"), [(61, True), (60, False)])
def test_a_sample_with_fewer_sequences_than_min_sequences_is_a_warning(
    sample: Path, tmp_path: Path, min_sequences: int, warned: bool
) -> None:
    config = pipeline_config("p", tmp_path, sample, sequence={**SEQ, "min_sequences": min_sequences})
    schema = infer_schema_from_file(sample)
    with capture_logs() as logs:
        assert config_problems(config, schema) == []  # the live stream may bring more entities
    short = [e for e in logs if e["event"] == "config.sequence_sample_short"]
    assert bool(short) == warned
    if warned:
        assert short[0]["log_level"] == "warning" and short[0]["sequences"] == 60
        assert "distinct 'person'" in short[0]["message"] and "min_sequences 61" in short[0]["message"]
