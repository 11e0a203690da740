"""Generator choice: auto by data shape and privacy requirement, explicit choices override, bad combinations refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from synthstream.config import StatsConfig, TrainingConfig
from synthstream.errors import ConfigError
from synthstream.models.choice import (
    AIM_MAX_FIELDS,
    MST_MAX_FIELDS,
    NEURAL_MIN_ROWS,
    VALIDATE_MIN_ROWS,
    choose_generator,
    generator_options,
    stats_cover,
)
from synthstream.models.dp_budget import DPContext
from synthstream.models.training import make_generator
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from tests.helpers import REPO, adult_schema


@pytest.fixture(scope="module")
def schema() -> RecordSchema:
    return adult_schema(pd.read_csv(REPO / "synthstream" / "data" / "adult_sample.csv", nrows=200))


def wide(fields: int) -> RecordSchema:
    return RecordSchema(
        fields=tuple(FieldSpec(name=f"f{i}", type=FieldType.STRING, role=FieldRole.CATEGORICAL) for i in range(fields))
    )


def covering(schema: RecordSchema) -> StatsConfig:
    numeric = {f.name: {"bounds": (0, 1e6)} for f in schema.fields if f.role is FieldRole.NUMERIC}
    categorical = {f.name: {} for f in schema.fields if f.role is FieldRole.CATEGORICAL}
    return StatsConfig.model_validate({"enabled": True, "numeric": numeric, "categorical": categorical})


def test_auto_without_a_privacy_requirement_validates_copula_against_neural(schema: RecordSchema) -> None:
    config = TrainingConfig(generator="auto")
    many = choose_generator(config, schema, rows=NEURAL_MIN_ROWS)
    some = choose_generator(config, schema, rows=VALIDATE_MIN_ROWS)
    few = choose_generator(config, schema, rows=VALIDATE_MIN_ROWS - 1)
    # Both candidates from VALIDATE_MIN_ROWS; the name is the fallback when there is no control set.
    assert (many.name, many.dp, many.candidates) == ("neural", False, ("gaussian_copula", "neural"))
    assert (some.name, some.candidates) == ("gaussian_copula", ("gaussian_copula", "neural"))
    assert (few.name, few.dp, few.candidates) == ("gaussian_copula", False, ())
    # A DP requirement or an explicit choice never validates against a non-DP model.
    assert choose_generator(TrainingConfig(generator="neural"), schema, rows=10_000).candidates == ()
    dp = TrainingConfig(generator="auto", privacy={"required": True})
    assert choose_generator(dp, schema, rows=10_000).candidates == ()


def test_auto_with_dp_required_prefers_the_free_stream_model_then_aim_mst_dpsgd(schema: RecordSchema) -> None:
    config = TrainingConfig(generator="auto", privacy={"required": True})
    stats = covering(schema)
    assert stats_cover(schema, stats)
    assert choose_generator(config, schema, rows=50_000, stats=stats).name == "aim_stream"
    # Statistics that leave out a non-nullable field cannot carry the model: AIM measures itself.
    partial = StatsConfig.model_validate({"enabled": True, "categorical": {"sex": {}, "income": {}}})
    assert not stats_cover(schema, partial)
    assert choose_generator(config, schema, rows=50_000, stats=partial).name == "aim"
    assert choose_generator(config, schema, rows=50_000, stats=None).name == "aim"
    assert choose_generator(config, wide(AIM_MAX_FIELDS + 1), rows=10).name == "mst"
    last = choose_generator(config, wide(MST_MAX_FIELDS + 1), rows=10)
    assert (last.name, last.dp) == ("neural", True)  # DP-SGD
    disabled = StatsConfig.model_validate({**covering(schema).model_dump(), "enabled": False})
    assert choose_generator(config, schema, rows=10, stats=disabled).name == "aim"


def test_every_choice_is_overridable_and_impossible_ones_are_refused(schema: RecordSchema) -> None:
    for name in ("gaussian_copula", "neural", "aim", "mst"):
        assert choose_generator(TrainingConfig(generator=name), schema, rows=10).name == name
    dp_neural = choose_generator(TrainingConfig(generator="neural", privacy={"required": True}), schema, rows=10)
    assert dp_neural.dp and dp_neural.reason == "configured"
    assert choose_generator(TrainingConfig(generator="mst"), schema, rows=10).dp  # MST is DP by construction
    with pytest.raises(ConfigError, match=r"stats\.enabled"):
        choose_generator(TrainingConfig(generator="aim_stream"), schema, rows=10, stats=None)
    with pytest.raises(ValueError, match="not DP"):
        TrainingConfig(generator="gaussian_copula", privacy={"required": True})


def test_options_carry_the_budget_and_build_the_generators(schema: RecordSchema, tmp_path: Path) -> None:
    config = TrainingConfig(
        generator="auto",
        privacy={"required": True, "epsilon": 2.0, "delta": 1e-8, "epsilon_per_fit": 0.5},
        marginal={"bins": 8, "rounds": 40},
    )
    choice = choose_generator(config, schema, rows=1_000)
    options = generator_options(choice, config, ledger_path=tmp_path / "l.duckdb", stream="adult", key="k1")
    dp = options["dp"]
    assert isinstance(dp, DPContext)
    assert (dp.epsilon, dp.delta, dp.epsilon_per_fit, dp.key, dp.stream) == (2.0, 1e-8, 0.5, "k1", "adult")
    model = make_generator(choice.name, seed=3, options=options)
    assert repr(model).startswith("AIMGenerator(seed=3, bins=8") and "rounds=40" in repr(model)
    neural = generator_options(
        choose_generator(TrainingConfig(generator="neural"), schema, rows=10),
        TrainingConfig(generator="neural", neural={"epochs": 3}),
        ledger_path=None,
        stream="adult",
        key="k2",
    )
    assert neural["dp"] is None and neural["epochs"] == 3
    with pytest.raises(ConfigError, match="ledger"):
        generator_options(choice, config, ledger_path=None, stream="adult", key="k3")
