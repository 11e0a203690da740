"""The from-the-stream model: fitted to the windowed DP marginals in the ledger, with no record and no spend."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthstream.errors import ModelError
from synthstream.models.marginal import StreamMarginalGenerator
from synthstream.privacy.accounting import Spend
from synthstream.privacy.ledger import DomainRow, NoisyMarginalRow, PrivacyLedger
from synthstream.processors.dp_release import release_window
from synthstream.processors.windows import Attribute, Discretizer, WindowAggregator
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from tests.helpers import REPO

WINDOW_MS = 60_000
EDUCATION = ["HS-grad", "Some-college", "Bachelors", "Masters", "Assoc-voc", "11th"]


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return pd.read_csv(REPO / "synthstream" / "data" / "adult_sample.csv").head(4_000)


def released(adult: pd.DataFrame, path: Path, windows: int = 4) -> PrivacyLedger:
    """Window the records and release each window with DP into the ledger, as the statistics stage does."""
    attributes = [
        Attribute("age", "numeric", edges=tuple(float(e) for e in np.linspace(17, 90, 9)), nullable=False),
        Attribute("sex", "categorical", labels=("Male", "Female"), nullable=False),
        Attribute("education", "categorical", labels=tuple(EDUCATION), nullable=False),
        Attribute("income", "categorical", labels=("<=50K", ">50K"), nullable=False),
    ]
    discretizer = Discretizer(attributes)
    queries = [
        ("age",),
        ("sex",),
        ("education",),
        ("income",),
        ("age", "income"),
        ("sex", "income"),
        ("education", "income"),
    ]
    aggregator = WindowAggregator(discretizer, queries, window_ms=WINDOW_MS)
    records = adult.to_dict("records")
    per = len(records) // windows
    for i in range(windows):
        aggregator.add(records[i * per : (i + 1) * per], [i * WINDOW_MS + 1] * per)
    ledger = PrivacyLedger(path)
    ledger.save_domains(
        "adult", [DomainRow(a.name, a.kind, a.labels or None, a.edges or None, "declared") for a in attributes]
    )
    for window in aggregator.close_due(flush=True):
        release = release_window(window, discretizer, budget=Spend(rho=0.5), mechanism="gaussian")
        ledger.commit_window(
            stream="adult",
            scope="stats",
            unit="record",
            window_index=window.index,
            window_start=datetime.fromtimestamp(window.start_ms / 1000, UTC),
            window_end=datetime.fromtimestamp(window.end_ms / 1000, UTC),
            releases=[a.release for a in release.answers],
            budget=Spend(rho=10.0),
            w=10,
            payload={"window": window.index},
            marginals=[NoisyMarginalRow(a.query, a.kind, a.values, a.noise_std) for a in release.answers],
        )
    return ledger


def schema(*, extra_required: bool = False) -> RecordSchema:
    fields = [
        FieldSpec(name="age", type=FieldType.LONG, role=FieldRole.NUMERIC),
        FieldSpec(name="sex", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="education", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="occupation", type=FieldType.STRING, role=FieldRole.CATEGORICAL, nullable=True),
        FieldSpec(name="id", type=FieldType.STRING, role=FieldRole.IDENTIFIER),
        FieldSpec(name="income", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
    ]
    if extra_required:
        fields.append(FieldSpec(name="race", type=FieldType.STRING, role=FieldRole.CATEGORICAL))
    return RecordSchema(fields=tuple(fields))


def test_fits_from_the_ledger_alone_at_no_extra_privacy_cost(adult: pd.DataFrame, tmp_path: Path) -> None:
    ledger = released(adult, tmp_path / "privacy.duckdb")
    before = [(s.scope, s.unit, s.releases, s.refusals, s.total) for s in ledger.summaries()]
    model = StreamMarginalGenerator(seed=4, ledger_path=ledger.path, stream="adult", last_windows=3, iters=300)
    model.fit([], schema())  # not a single record
    assert [(s.scope, s.unit, s.releases, s.refusals, s.total) for s in ledger.summaries()] == before
    assert model.windows_ == (1, 3)
    assert model.guarantee_ is not None and model.guarantee_["extra_cost"] == 0.0
    assert model.guarantee_["rho"] == pytest.approx(ledger.window_spend("adult", "stats", "record", 1, 3).rho)
    rows = pd.DataFrame(model.sample_columns(6_000, seed=1))
    assert rows["occupation"].isna().all()  # not released: null, never guessed
    assert rows["id"].str.startswith("syn-").all()
    assert rows["age"].between(17, 90).all()
    # The windows' records (3,000 rows) and the model agree on the released 2-way marginal.
    truth = adult.iloc[1_000:4_000]
    for sex in ("Male", "Female"):
        real = float(((truth["sex"] == sex) & (truth["income"] == ">50K")).mean())
        fake = float(((rows["sex"] == sex) & (rows["income"] == ">50K")).mean())
        assert abs(real - fake) < 0.04, sex
    # Values outside the declared domain were released as __other__; the field is not nullable, so they
    # come back as in-domain labels with the model's shares: the shares within the domain match.
    assert rows["education"].isin(EDUCATION).all()
    real = truth["education"][truth["education"].isin(EDUCATION)].value_counts(normalize=True)
    fake = rows["education"].value_counts(normalize=True).reindex(real.index, fill_value=0.0)
    assert 0.5 * float((real - fake).abs().sum()) < 0.06


def test_same_ledger_same_seed_same_model(adult: pd.DataFrame, tmp_path: Path) -> None:
    ledger = released(adult, tmp_path / "privacy.duckdb", windows=2)
    fits = [
        StreamMarginalGenerator(seed=8, ledger_path=ledger.path, stream="adult", iters=200).fit([], schema())
        for _ in range(2)
    ]
    assert fits[0].sample(400, seed=3) == fits[1].sample(400, seed=3)
    assert fits[0].sample(400, seed=3) != fits[0].sample(400, seed=4)


def test_refuses_fields_the_stream_does_not_release_and_an_empty_ledger(adult: pd.DataFrame, tmp_path: Path) -> None:
    empty = StreamMarginalGenerator(seed=0, ledger_path=tmp_path / "empty.duckdb", stream="adult")
    with pytest.raises(ModelError, match="no released marginals"):
        empty.fit([], schema())
    ledger = released(adult, tmp_path / "privacy.duckdb", windows=1)
    model = StreamMarginalGenerator(seed=0, ledger_path=ledger.path, stream="adult")
    with pytest.raises(ModelError, match="race"):
        model.fit([], schema(extra_required=True))
    with pytest.raises(ValueError, match="ledger_path"):
        StreamMarginalGenerator(seed=0)
