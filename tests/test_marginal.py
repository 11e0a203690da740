"""AIM and MST: DP spend in the ledger, refusal beyond budget, retries not charged twice, seeded refits, bins."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from synthstream.models.dp_budget import DPContext, ModelAccountant, compose_epsilon
from synthstream.models.encoding import BinCodec
from synthstream.models.marginal import AIMGenerator, MSTGenerator
from synthstream.privacy.accounting import epsilon_to_rho, rho_to_epsilon
from synthstream.privacy.ledger import BudgetExceeded, PrivacyLedger
from synthstream.schemas.record import RecordSchema
from tests.helpers import REPO, adult_schema

FIELDS = ["age", "workclass", "education", "sex", "capital-gain", "hours-per-week", "income"]
FAST = {"bins": 16, "iters": 150}


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, RecordSchema]:
    frame = pd.read_csv(REPO / "synthstream" / "data" / "adult_sample.csv")[FIELDS].head(3_000)
    return frame, adult_schema(frame)


def context(path: Path, key: str, *, epsilon: float = 2.0, per_fit: float | None = None) -> DPContext:
    return DPContext(
        ledger_path=path, stream="adult", epsilon=epsilon, delta=1e-9, epsilon_per_fit=per_fit or epsilon, key=key
    )


def releases(path: Path) -> list[tuple[str, str, float, float]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return [
            (str(r[0]), str(r[1]), float(r[2]), float(r[3]))
            for r in con.execute(
                "SELECT release_id, mechanism, rho, delta FROM releases WHERE scope='model' ORDER BY release_id"
            ).fetchall()
        ]


@pytest.fixture(scope="module")
def aim(
    adult: tuple[pd.DataFrame, RecordSchema], tmp_path_factory: pytest.TempPathFactory
) -> tuple[AIMGenerator, Path]:
    path = tmp_path_factory.mktemp("aim") / "privacy.duckdb"
    model = AIMGenerator(seed=3, dp=context(path, "fit-1", per_fit=1.0), rounds=14, round_iters=60, **FAST)
    return model.fit(adult[0], adult[1]), path


def test_aim_records_every_measurement_in_the_ledger_within_its_budget(aim: tuple[AIMGenerator, Path]) -> None:
    model, path = aim
    rows = releases(path)
    kinds = {mechanism for _, mechanism, _, _ in rows}
    assert kinds == {"gaussian", "noisy_max"}  # measurements, selections and DP domains
    assert sum(1 for r in rows if ":aim:1way:" in r[0]) == len(FIELDS)
    assert sum(1 for r in rows if ":aim:select:" in r[0]) == model.rounds_ >= 1
    assert sum(1 for r in rows if ":domain:quantiles:" in r[0]) == 3  # age, capital-gain, hours-per-week
    assert all(r[0].startswith("adult/model/record/fit-1/") for r in rows)
    spent_rho = sum(r[2] for r in rows)
    spent_delta = sum(r[3] for r in rows)
    # The fit spent (almost exactly) the ρ that makes ε = 1 at the δ left after the learned labels.
    assert spent_rho == pytest.approx(epsilon_to_rho(1.0, 1e-9 - spent_delta), rel=1e-3)
    assert 0 < spent_delta <= 1e-11
    accountant = ModelAccountant(PrivacyLedger(path), "adult")
    assert accountant.epsilon(1e-9) == pytest.approx(1.0, rel=1e-3)
    assert model.guarantee_ is not None and model.guarantee_["epsilon"] == pytest.approx(1.0, rel=1e-3)
    assert len(model.measurements_) == len(FIELDS) + model.rounds_


def test_a_second_fit_is_refused_when_the_budget_is_spent_and_a_retry_is_not_charged_twice(
    adult: tuple[pd.DataFrame, RecordSchema], aim: tuple[AIMGenerator, Path]
) -> None:
    _, path = aim
    ledger = PrivacyLedger(path)
    before = ledger.scope_spend("adult", "model", "record")
    # The stream's lifetime budget is ε = 1: the first fit used it all; a new fit (new key) is refused.
    with pytest.raises(BudgetExceeded, match="model epsilon"):
        MSTGenerator(seed=1, dp=context(path, "fit-2", epsilon=1.0), **FAST).fit(adult[0], adult[1])
    assert ledger.refusal_count("adult", "model") == 1
    assert ledger.scope_spend("adult", "model", "record") == before
    # A retry of fit-1 (its model was never published) redoes its work within fit-1's recorded spend.
    retry = MSTGenerator(seed=1, dp=context(path, "fit-1", epsilon=1.0), **FAST).fit(adult[0], adult[1])
    assert retry.fitted and ledger.scope_spend("adult", "model", "record") == before
    assert ledger.refusal_count("adult", "model") == 1


def test_a_refit_from_the_recorded_measurements_is_reproducible(
    adult: tuple[pd.DataFrame, RecordSchema], aim: tuple[AIMGenerator, Path]
) -> None:
    """DP noise is OS entropy by design; everything after it (estimation, sampling) follows the seed."""
    model, _ = aim
    schema = adult[1]
    first = AIMGenerator(seed=5, dp=model.dp, iters=150).fit_measurements(model.measurements_, schema, model._codecs)
    second = AIMGenerator(seed=5, dp=model.dp, iters=150).fit_measurements(model.measurements_, schema, model._codecs)
    assert first.sample(500, seed=2) == second.sample(500, seed=2)
    assert first.sample(500, seed=2) != first.sample(500, seed=3)
    assert model.sample(300, seed=9) == model.sample(300, seed=9)


def test_numeric_fields_come_back_from_their_bins(
    adult: tuple[pd.DataFrame, RecordSchema], aim: tuple[AIMGenerator, Path]
) -> None:
    model, _ = aim
    frame = adult[0]
    rows = pd.DataFrame(model.sample_columns(5_000, seed=1))
    codec = next(c for c in model._codecs if c.name == "capital-gain")
    assert isinstance(codec, BinCodec)
    zero = list(codec.edges).index(0.0)
    assert codec.point[zero]  # the DP quantiles found the zero atom: a bin of its own
    zeros_real = float((frame["capital-gain"] == 0).mean())
    zeros_fake = float((rows["capital-gain"] == 0).mean())
    assert abs(zeros_real - zeros_fake) < 0.06  # the atom comes back exactly, not smeared over its bin
    assert all(isinstance(v, int) for v in rows["age"])
    age = next(c for c in model._codecs if c.name == "age")
    assert isinstance(age, BinCodec)
    assert rows["age"].between(age.edges[0], age.edges[-1]).all()
    share = float((rows["income"] == ">50K").mean())
    assert abs(share - float((frame["income"] == ">50K").mean())) < 0.08


def test_mst_selects_a_tree_and_compresses_rare_cells(adult: tuple[pd.DataFrame, RecordSchema], tmp_path: Path) -> None:
    frame, schema = adult
    path = tmp_path / "privacy.duckdb"
    # Education's code book declared: its rare levels (a few rows each) are the cells compression must merge.
    book = {"education": sorted(set(frame["education"]))}
    model = MSTGenerator(seed=2, dp=context(path, "mst-1", epsilon=1.0), labels=book, **FAST).fit(frame, schema)
    pairs = [c for c in model.cliques_ if len(c) == 2]
    assert len(pairs) == len(FIELDS) - 1  # a spanning tree
    rows = releases(path)
    assert sum(1 for r in rows if ":mst:2way:" in r[0]) == len(FIELDS) - 1
    assert sum(1 for r in rows if ":mst:select:" in r[0]) == len(FIELDS) - 1
    assert rho_to_epsilon(sum(r[2] for r in rows), 1e-9 - sum(r[3] for r in rows)) == pytest.approx(1.0, rel=1e-3)
    # At ε = 1 on 3,000 rows some cells are below 3σ: compression merged them, sampling maps them back.
    merged = {name: groups for name, groups in model._expand.items() if any(len(g) > 1 for g in groups)}
    assert merged
    synthetic = pd.DataFrame(model.sample_columns(4_000, seed=4))
    assert set(synthetic["education"]) <= set(frame["education"])
    for name in merged:
        codec = next(c for c in model._codecs if c.name == name)
        tokens = codec.encode(synthetic[name])
        assert {int(t) for t in tokens} <= {int(t) for group in model._expand[name] for t in group}
    real = frame["sex"].value_counts(normalize=True)
    fake = synthetic["sex"].value_counts(normalize=True).reindex(real.index, fill_value=0)
    assert float(np.abs(real - fake).sum()) / 2 < 0.05


def test_dp_generators_need_a_ledger_and_compose_with_dpsgd_history(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DPContext"):
        AIMGenerator(seed=0)
    ledger = PrivacyLedger(tmp_path / "l.duckdb")
    # zCDP alone converts exactly; adding DP-SGD steps can only increase the composed ε.
    assert compose_epsilon(0.01, [], 1e-9) == pytest.approx(rho_to_epsilon(0.01, 1e-9))
    assert compose_epsilon(0.01, [(1.0, 0.01, 1_000)], 1e-9) > compose_epsilon(0.01, [], 1e-9)
    assert ModelAccountant(ledger, "s").epsilon(1e-9) == 0.0
