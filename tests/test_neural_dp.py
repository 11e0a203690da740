"""DP-SGD neural generator: spend in the ledger, the accountant carried across warm starts and restarts, refusal."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dp_accounting import GaussianDpEvent, PoissonSampledDpEvent, SelfComposedDpEvent, ZCDpEvent, rdp

from synthstream.errors import ModelError
from synthstream.models.dp_budget import DPContext, ModelAccountant, compose_epsilon
from synthstream.models.encoding import BinCodec, LabelCodec
from synthstream.models.neural import NeuralGenerator
from synthstream.privacy.ledger import BudgetExceeded, DomainRow, PrivacyLedger
from synthstream.schemas.record import RecordSchema
from tests.helpers import REPO, adult_schema

FIELDS = ["age", "workclass", "education", "sex", "hours-per-week", "income"]
# secure_noise on, as in production (OS entropy for DP-SGD noise); only the reproducibility test turns it off.
TINY = {"epochs": 2, "warm_start_epochs": 1, "dp_batch_size": 300, "device": "cpu", "secure_noise": True}
# 1,500 rows and a 0.1 ε domain share are too little for a DP threshold to keep any of education's 16
# labels (measured threshold ~500, top count 484): declare them, as a user would; the other fields learn theirs.
EDUCATION = sorted(pd.read_csv(REPO / "synthstream" / "data" / "adult_sample.csv")["education"].unique())
TINY["labels"] = {"education": EDUCATION}


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, RecordSchema]:
    frame = pd.read_csv(REPO / "synthstream" / "data" / "adult_sample.csv")[FIELDS].head(1_500)
    return frame, adult_schema(frame)


def dp(path: Path, key: str) -> DPContext:
    return DPContext(ledger_path=path, stream="adult", epsilon=2.5, delta=1e-6, epsilon_per_fit=1.0, key=key)


def test_dpsgd_spend_is_recorded_and_never_resets_across_warm_starts_and_restarts(
    adult: tuple[pd.DataFrame, RecordSchema], tmp_path: Path
) -> None:
    frame, schema = adult
    path = tmp_path / "privacy.duckdb"
    first = NeuralGenerator(seed=1, dp=dp(path, "fit-1"), **TINY).fit(frame, schema)
    spend = first.dp_spend_
    assert spend is not None and spend["epsilon_before"] == 0.0
    assert spend["epsilon_total"] == pytest.approx(1.0, rel=0.02)  # calibrated to the per-fit budget
    ledger = PrivacyLedger(path)
    assert ledger.dpsgd_history("adult", "model", "record") == [
        (pytest.approx(spend["noise_multiplier"]), pytest.approx(spend["sample_rate"]), int(spend["steps"]))
    ]
    after_one = ModelAccountant(ledger, "adult").epsilon(1e-6)
    assert after_one == pytest.approx(spend["epsilon_total"], rel=1e-6)
    # Token domains were learned with DP (quantiles, a threshold) and charged with the fit.
    with duckdb.connect(str(path), read_only=True) as con:
        queries = [r[0] for r in con.execute("SELECT query FROM releases WHERE scope='model'").fetchall()]
    assert "dpsgd:fit" in queries and any(q.startswith("domain:quantiles:") for q in queries)

    # Warm start on newer data: the accountant continues from the ledger.
    second = NeuralGenerator(seed=2, dp=dp(path, "fit-2"), **TINY).fit(frame.iloc[500:], schema, warm_start=first)
    assert second.dp_spend_ is not None and second.dp_spend_["epsilon_before"] == pytest.approx(after_one)
    # A "restart": a fresh ledger object and accountant read the same, larger, history.
    restarted = ModelAccountant(PrivacyLedger(path), "adult")
    after_two = restarted.epsilon(1e-6)
    assert after_two > after_one and after_two == pytest.approx(second.dp_spend_["epsilon_total"], rel=1e-6)
    assert len(restarted.ledger.dpsgd_history("adult", "model", "record")) == 2
    assert [repr(c) for c in second.codecs] == [repr(c) for c in first.codecs]  # no new domain spend

    # 2.5 is the lifetime budget: the third fit may only add what is left, the fourth is refused.
    third = NeuralGenerator(seed=3, dp=dp(path, "fit-3"), **TINY).fit(frame, schema, warm_start=second)
    assert third.dp_spend_ is not None and third.dp_spend_["epsilon_total"] <= 2.5 * (1 + 1e-6)
    with pytest.raises(BudgetExceeded):
        NeuralGenerator(seed=4, dp=dp(path, "fit-4"), **TINY).fit(frame, schema, warm_start=third)
    assert PrivacyLedger(path).refusal_count("adult", "model") == 1
    assert len(PrivacyLedger(path).dpsgd_history("adult", "model", "record")) == 3
    # A reused key is refused: its spend was recorded once and must not be recomputed against itself.
    with pytest.raises(ModelError, match="already charged"):
        NeuralGenerator(seed=5, dp=dp(path, "fit-2"), **TINY).fit(frame, schema, warm_start=first)


def test_dp_tokens_reuse_the_streams_released_domains_for_free(
    adult: tuple[pd.DataFrame, RecordSchema], tmp_path: Path
) -> None:
    frame, schema = adult
    path = tmp_path / "privacy.duckdb"
    ledger = PrivacyLedger(path)
    ledger.save_domains(
        "adult",
        [
            DomainRow("age", "numeric", None, (17.0, 30.0, 40.0, 50.0, 90.0), "declared"),
            DomainRow("hours-per-week", "numeric", None, (1.0, 35.0, 41.0, 99.0), "declared"),
            *(
                DomainRow(name, "categorical", tuple(sorted(frame[name].dropna().unique())[:5]), None, "declared")
                for name in ("workclass", "education", "sex", "income")
            ),
        ],
    )
    model = NeuralGenerator(seed=1, dp=dp(path, "fit-1"), **TINY).fit(frame, schema)
    kinds = {c.name: type(c) for c in model.codecs}
    assert kinds["age"] is BinCodec and kinds["income"] is LabelCodec
    age = next(c for c in model.codecs if isinstance(c, BinCodec) and c.name == "age")
    assert tuple(age.edges) == (17.0, 30.0, 40.0, 50.0, 90.0)
    with duckdb.connect(str(path), read_only=True) as con:
        queries = [r[0] for r in con.execute("SELECT query FROM releases WHERE scope='model'").fetchall()]
    assert queries == ["dpsgd:fit"]  # no domain learning was paid for
    rows = pd.DataFrame(model.sample_columns(1_000, seed=3))
    assert rows["age"].between(17, 90).all()


def _declare_domains(path: Path, frame: pd.DataFrame) -> None:
    """Declared domains: no DP quantile draws (OpenDP's own entropy), so a seeded fit is reproducible."""
    PrivacyLedger(path).save_domains(
        "adult",
        [
            DomainRow("age", "numeric", None, (17.0, 30.0, 40.0, 50.0, 90.0), "declared"),
            DomainRow("hours-per-week", "numeric", None, (1.0, 35.0, 41.0, 99.0), "declared"),
            *(
                DomainRow(name, "categorical", tuple(sorted(frame[name].dropna().unique())), None, "declared")
                for name in ("workclass", "education", "sex", "income")
            ),
        ],
    )


def test_same_seed_same_dp_model_when_noise_is_seeded(adult: tuple[pd.DataFrame, RecordSchema], tmp_path: Path) -> None:
    """secure_noise=False seeds DP-SGD's noise from the seed: reproducible (for tests); the default is OS entropy."""
    frame, schema = adult
    seeded = {**TINY, "secure_noise": False}
    for name in ("a", "b", "c"):
        _declare_domains(tmp_path / f"{name}.duckdb", frame)
    a = NeuralGenerator(seed=6, dp=dp(tmp_path / "a.duckdb", "k"), **seeded).fit(frame, schema)
    b = NeuralGenerator(seed=6, dp=dp(tmp_path / "b.duckdb", "k"), **seeded).fit(frame, schema)
    assert a.dp_spend_ == b.dp_spend_
    assert [repr(c) for c in a.codecs] == [repr(c) for c in b.codecs]
    assert a.sample(200, seed=1) == b.sample(200, seed=1)
    other = NeuralGenerator(seed=7, dp=dp(tmp_path / "c.duckdb", "k"), **seeded).fit(frame, schema)
    assert other.sample(200, seed=1) != a.sample(200, seed=1)  # the comparison can fail


@pytest.mark.parametrize(("rho", "steps"), [(0.0, 10), (0.0, 400), (0.02, 50)])
def test_compose_epsilon_agrees_with_dp_accounting(rho: float, steps: int) -> None:
    """Our RDP composition (opacus' curves) against Google's dp-accounting on the same events."""
    noise_multiplier, sample_rate, delta = 1.1, 0.2, 1e-6
    ours = compose_epsilon(rho, [(noise_multiplier, sample_rate, steps)], delta)
    acc = rdp.RdpAccountant()
    acc.compose(SelfComposedDpEvent(PoissonSampledDpEvent(sample_rate, GaussianDpEvent(noise_multiplier)), steps))
    if rho:
        acc.compose(ZCDpEvent(rho))
    theirs = float(acc.get_epsilon(delta))
    assert ours == pytest.approx(theirs, rel=0.05)
