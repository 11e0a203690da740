"""ModelRegistry: versions on disk, promote/reject/rollback, restart survival, lineage."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pandas as pd
import pytest

from synthstream.errors import ModelError
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.models.registry import Lineage, ModelRegistry
from synthstream.schemas.record import RecordSchema
from tests.helpers import adult_schema

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, RecordSchema]:
    frame = pd.read_csv(REPO / "synthstream" / "data" / "adult_sample.csv").head(1500)
    return frame, adult_schema(frame)


def fit(adult: tuple[pd.DataFrame, RecordSchema], seed: int) -> GaussianCopulaGenerator:
    return GaussianCopulaGenerator(seed=seed).fit(adult[0], adult[1])


def lineage(adult: tuple[pd.DataFrame, RecordSchema], seed: int) -> Lineage:
    return Lineage(
        rows=len(adult[0]),
        schema_fingerprint=adult[1].fingerprint(),
        seed=seed,
        config={"generator": "gaussian_copula", "n_quantiles": 1001},
        source_offsets={"adult[0]": 1499},
        fit_seconds=0.05,
        metrics={"column_shapes": 0.99},
    )


def test_register_promote_reject_rollback(tmp_path: Path, adult: tuple[pd.DataFrame, RecordSchema]) -> None:
    registry = ModelRegistry(tmp_path, "adult")
    assert registry.current() is None
    with pytest.raises(ModelError, match="no previously promoted"):
        registry.rollback()
    v1 = registry.register(fit(adult, 1), lineage=lineage(adult, 1))
    v2 = registry.register(fit(adult, 2), lineage=lineage(adult, 2))
    v3 = registry.register(fit(adult, 3), lineage=lineage(adult, 3))
    assert [v.version for v in (v1, v2, v3)] == [1, 2, 3]
    assert v1.status == "candidate" and v1.generator == "gaussian_copula" and v1.artifact.is_file()
    assert registry.current() is None
    assert registry.promote(1).status == "promoted"
    registry.promote(2)
    assert registry.current().version == 2
    assert registry.get(1).status == "retired"
    rejected = registry.reject(3, "pair_trends below floor")
    assert rejected.status == "rejected" and rejected.reason == "pair_trends below floor"
    with pytest.raises(ModelError, match="rejected"):
        registry.promote(3)
    back = registry.rollback()
    assert back.version == 1 and back.status == "promoted"
    assert registry.current().version == 1
    assert registry.get(2).status == "retired"
    with pytest.raises(ModelError, match="no previously promoted"):
        registry.rollback()
    with pytest.raises(ModelError, match="does not exist"):
        registry.promote(99)


def test_state_and_lineage_survive_a_restart(tmp_path: Path, adult: tuple[pd.DataFrame, RecordSchema]) -> None:
    first = ModelRegistry(tmp_path, "adult")
    model = fit(adult, 5)
    version = first.register(model, lineage=lineage(adult, 5))
    first.promote(version.version)
    second = ModelRegistry(tmp_path, "adult")
    assert second.current() == first.current()
    assert [v.version for v in second.versions()] == [1]
    stored = second.versions()[0].lineage
    assert stored == lineage(adult, 5)
    assert stored.source_offsets == {"adult[0]": 1499}
    meta = json.loads((tmp_path / "adult" / "v000001" / "version.json").read_text())
    assert meta["lineage"]["schema_fingerprint"] == adult[1].fingerprint()
    loaded = second.load(1)
    assert loaded is second.load(1)  # cached
    assert loaded.sample(200, seed=4) == model.sample(200, seed=4)
    assert not list((tmp_path / "adult").rglob("*.tmp"))  # atomic writes leave no temp files
    other = ModelRegistry(tmp_path, "other-stream")
    assert other.versions() == [] and other.current() is None


def test_register_refuses_unfitted_models(tmp_path: Path, adult: tuple[pd.DataFrame, RecordSchema]) -> None:
    registry = ModelRegistry(tmp_path, "adult")
    with pytest.raises(ModelError, match="fitted"):
        registry.register(GaussianCopulaGenerator(), lineage=lineage(adult, 0))
    with pytest.raises(ValueError, match="stream"):
        ModelRegistry(tmp_path, "../escape")


def test_concurrent_registers_get_distinct_versions(tmp_path: Path, adult: tuple[pd.DataFrame, RecordSchema]) -> None:
    registry = ModelRegistry(tmp_path, "adult")
    model = fit(adult, 9)
    results: list[int] = []

    def work() -> None:
        version = registry.register(model, lineage=lineage(adult, 9))
        registry.promote(version.version)
        results.append(version.version)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    statuses = [v.status for v in registry.versions()]
    assert statuses.count("promoted") == 1


def test_same_seed_and_data_give_the_same_registered_model(
    tmp_path: Path, adult: tuple[pd.DataFrame, RecordSchema]
) -> None:
    from synthstream.models.neural import NeuralGenerator

    registry = ModelRegistry(tmp_path, "adult")
    options = {"epochs": 2, "min_steps": 0, "batch_size": 256, "device": "cpu"}
    for generator in (lambda: GaussianCopulaGenerator(seed=4), lambda: NeuralGenerator(seed=4, **options)):
        a = registry.register(generator().fit(adult[0], adult[1]), lineage=lineage(adult, 4))
        b = registry.register(generator().fit(adult[0], adult[1]), lineage=lineage(adult, 4))
        fresh = ModelRegistry(tmp_path, "adult")  # from disk, not the cache
        assert fresh.load(a.version).sample(300, seed=1) == fresh.load(b.version).sample(300, seed=1)
    other = registry.register(NeuralGenerator(seed=5, **options).fit(adult[0], adult[1]), lineage=lineage(adult, 5))
    assert ModelRegistry(tmp_path, "adult").load(other.version).sample(300, seed=1) != registry.load(a.version).sample(
        300, seed=1
    )


def test_reserved_versions_and_full_lineage_survive_a_restart(
    tmp_path: Path, adult: tuple[pd.DataFrame, RecordSchema]
) -> None:
    registry = ModelRegistry(tmp_path, "adult")
    number = registry.reserve()
    assert number == 1 and registry.versions() == []  # reserved, not yet a version
    assert registry.reserve() == 2  # a second fit in flight gets its own number
    rich = lineage(adult, 1).model_copy(
        update={
            "records_range": (1_000, 2_500),
            "windows": (40, 49),
            "guarantee": {"kind": "formal", "mechanism": "aim", "epsilon": 1.0, "delta": 1e-9, "unit": "record"},
            "warm_start_from": None,
        }
    )
    version = registry.register(fit(adult, 1), lineage=rich, version=number)
    assert version.version == 1
    with pytest.raises(ModelError, match="reserved"):
        registry.register(fit(adult, 1), lineage=rich, version=1)  # already registered
    with pytest.raises(ModelError, match="reserved"):
        registry.register(fit(adult, 1), lineage=rich, version=7)  # never reserved
    stored = ModelRegistry(tmp_path, "adult").get(1).lineage
    assert stored == rich and stored.records_range == (1_000, 2_500) and stored.windows == (40, 49)
    assert stored.guarantee is not None and stored.guarantee["epsilon"] == 1.0
    assert [v.version for v in ModelRegistry(tmp_path, "adult").versions()] == [1]
    assert registry.register(fit(adult, 3), lineage=rich).version == 3  # the next free number


def test_models_command_lists_generator_guarantee_metrics_progress_and_rolls_back(
    tmp_path: Path, adult: tuple[pd.DataFrame, RecordSchema]
) -> None:
    from typer.testing import CliRunner

    from synthstream.cli import app
    from synthstream.models.training import ProgressFile

    config = tmp_path / "pipeline.yaml"
    config.write_text(
        "stream: adult\nsource: {topic: adult.source, sample_file: "
        f"{REPO / 'synthstream' / 'data' / 'adult_sample.csv'}}}\nstate_dir: {tmp_path / 'state'}\n"
    )
    registry = ModelRegistry(tmp_path / "state" / "models", "adult")
    dp = lineage(adult, 1).model_copy(
        update={"guarantee": {"kind": "formal", "mechanism": "aim", "epsilon": 1.0, "delta": 1e-9, "unit": "record"}}
    )
    registry.promote(registry.register(fit(adult, 1), lineage=dp).version)
    registry.promote(registry.register(fit(adult, 2), lineage=lineage(adult, 2)).version)
    ProgressFile(registry.progress_path, meta={"version": 3, "generator": "neural"})(0.4, "epoch 4/10")
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "--config", str(config)], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    assert "last fit: v3 neural training 40% (epoch 4/10)" in listed.output
    assert "(1, 1e-09)-DP aim" in listed.output and "empirical only" in listed.output
    assert "column_shapes=0.99" in listed.output
    rolled = runner.invoke(app, ["models", "--config", str(config), "--rollback"], env={"COLUMNS": "250"})
    assert rolled.exit_code == 0, rolled.output
    assert "rolled back: version 1 is promoted" in rolled.output
    assert ModelRegistry(tmp_path / "state" / "models", "adult").current().version == 1
