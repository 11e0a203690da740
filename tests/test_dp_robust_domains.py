"""DP domains do not suppress well-populated values at random (issue 17, item 4).

The bug: at ε = 1 a field with 7 levels of >= 300 rows each came out empty on one run and not
the next (``the DP domain of non-nullable fields ['year'] is empty``). The threshold was
OpenDP's stability histogram at a budget share too small for the table (τ ≈ 560 records at
ε = 1, δ = 1e-9 for a 15-field table). Now the share, δ and τ are stated and tested here: with
the budget a default AIM fit gives its domains, every level of 400 rows survives on every one
of 20 fits, the labels are the same each time (ordered by value), and a field that cannot be
learned fails with a message naming it and its threshold, never a value.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from synthstream.errors import ModelError
from synthstream.models.dp_budget import DPContext
from synthstream.models.dp_domain import DomainPlan, check_domains, learn_domains, stable_labels
from synthstream.models.encoding import modelled_fields
from synthstream.models.marginal import AIMGenerator, MSTGenerator
from synthstream.privacy.accounting import epsilon_to_rho
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

YEARS = list(range(2015, 2022))
DELTA = 1e-9


def year_table(seed: int = 0, rows_per_year: int = 400) -> pd.DataFrame:
    """A 12-column table (5 categorical, 7 numeric) whose ``year`` has 7 levels of ``rows_per_year`` rows."""
    rng = np.random.default_rng(seed)
    year = np.repeat(YEARS, rows_per_year)
    n = len(year)
    return pd.DataFrame(
        {
            "year": rng.permutation(year),
            "region": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "segment": rng.choice([f"s{i}" for i in range(8)], n),
            "channel": rng.choice(["web", "store", "phone"], n),
            "status": rng.choice(["active", "closed"], n, p=[0.8, 0.2]),
            "amount": rng.lognormal(3.0, 1.0, n).round(2),
            "age": rng.integers(18, 90, n),
            "tenure": rng.integers(0, 400, n),
            "score": rng.normal(600, 80, n).round(1),
            "balance": rng.normal(1_000, 500, n).round(2),
            "items": rng.integers(1, 60, n),
            "discount": rng.uniform(0, 0.3, n).round(3),
        }
    )


def aim_domain_budget(tmp_path: Path) -> tuple[float, float]:
    """(ρ, δ) a default AIM fit at ε = 1, δ = 1e-9 gives its learned domains (the fit's split, stated in its report)."""
    model = AIMGenerator(dp=DPContext(tmp_path / "p.duckdb", "s", 1.0, DELTA, 1.0, "k"))
    delta = DELTA * model.domain_delta_share
    return epsilon_to_rho(1.0, DELTA - delta) * model.domain_share, delta


def test_seven_well_populated_levels_survive_every_one_of_twenty_fits(tmp_path: Path) -> None:
    frame = year_table()
    schema = infer_schema(frame, name="Years")
    assert schema.field("year").role is FieldRole.CATEGORICAL  # 7 distinct integers: a categorical long
    fields = modelled_fields(schema)
    rho, delta = aim_domain_budget(tmp_path)
    seen = set()
    for _ in range(20):  # fresh OS noise each time, as in 20 separate fits
        # bins only set how many quantiles each numeric field asks for, not the budget split: 4 keeps it fast.
        learned = learn_domains(frame, DomainPlan(fields, bins=4, min_count=5), rho=rho, delta=delta)
        check_domains(fields, learned.attributes, learned.report)  # never raises here
        year = next(a for a in learned.attributes if a.name == "year")
        assert year.labels == tuple(str(y) for y in YEARS)
        seen.add(year.labels)
        report = learned.report["year"]
        assert report["source"] == "dp_threshold"
        assert report["well_populated"] <= 400  # the stated bound covers these levels
    assert len(seen) == 1  # the same domain on every fit


def test_the_threshold_is_stated_and_matches_its_formula() -> None:
    rho, delta = 4e-4, 5e-11
    release = stable_labels({"a": 1_000, "b": 3, "c": 0}, rho, delta)
    sigma = 1 / np.sqrt(2 * rho)
    assert release.sigma == pytest.approx(sigma, rel=1e-6)
    closed = 1 + sigma * NormalDist().inv_cdf(1 - delta)
    assert closed <= release.threshold <= closed + 3  # OpenDP's map confirms δ within a few steps of the formula
    assert release.spend.rho <= rho * (1 + 1e-9) and release.spend.delta <= delta
    assert release.well_populated == pytest.approx(release.threshold + 5 * sigma)
    assert set(release.counts) == {"a"}  # 1,000 records clear τ (≈ 227); 3 never do


def test_a_field_that_cannot_be_learned_fails_naming_it_and_its_threshold(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = year_table()
    frame["city"] = [f"city-{i:03d}" for i in rng.integers(0, 200, len(frame))]  # ~14 rows per value
    schema = infer_schema(frame, name="Cities").with_roles({"city": FieldRole.CATEGORICAL})
    fields = modelled_fields(schema)
    rho, delta = aim_domain_budget(tmp_path)
    learned = learn_domains(frame, DomainPlan(fields, bins=4), rho=rho, delta=delta)
    with pytest.raises(ModelError) as caught:
        check_domains(fields, learned.attributes, learned.report)
    message = str(caught.value)
    assert "['city']" in message and f"threshold {learned.report['city']['threshold']}" in message
    assert "city-" not in message  # no value of the data in the error


def test_a_boolean_field_falls_back_to_its_two_values() -> None:
    frame = pd.DataFrame({"flag": [True, False, True] * 5})
    spec = FieldSpec(name="flag", type=FieldType.BOOLEAN, role=FieldRole.CATEGORICAL, nullable=False)
    learned = learn_domains(frame, DomainPlan([spec], bins=8), rho=1e-4, delta=1e-10)
    assert learned.attributes[0].labels == ("False", "True")
    assert learned.report["flag"]["source"] == "fallback"
    assert "flag" not in learned.label_counts  # nothing released to reuse as a measurement


def test_a_dp_fit_on_the_year_table_keeps_every_year_and_reports_its_domain_budget(tmp_path: Path) -> None:
    frame = year_table(seed=3)
    schema = infer_schema(frame, name="Years")
    context = DPContext(tmp_path / "privacy.duckdb", "years", 1.0, DELTA, 1.0, "fit")
    model = MSTGenerator(seed=0, dp=context, iters=100, bins=16).fit(frame, schema)
    report = model.domain_report_
    assert report["rho_share"] == model.domain_share  # nothing declared: the whole domain share is paid
    assert report["delta"] == pytest.approx(DELTA / 100)
    assert report["fields"]["year"]["labels"] == 7
    synthetic = pd.DataFrame(model.sample_columns(3_000, seed=1))
    shares = synthetic["year"].value_counts(normalize=True)
    assert set(shares.index) == set(YEARS)
    assert shares.max() - shares.min() < 0.1  # seven equal levels stay roughly equal
    assert model.domain_measurements_  # the released label counts were used as 1-way measurements


def test_the_schema_helper_keeps_a_nullable_field_without_labels_fitting() -> None:
    frame = pd.DataFrame({"note": [f"n{i}" for i in range(50)], "x": np.arange(50.0)})
    fields = [
        FieldSpec(name="note", type=FieldType.STRING, role=FieldRole.CATEGORICAL, nullable=True),
        FieldSpec(name="x", type=FieldType.DOUBLE, role=FieldRole.NUMERIC, nullable=False),
    ]
    learned = learn_domains(frame, DomainPlan(fields, bins=4), rho=1e-3, delta=1e-10)
    assert learned.attributes[0].labels == ()
    check_domains(fields, learned.attributes, learned.report)  # nullable: generated as null, no error
    assert RecordSchema(name="N", fields=tuple(fields)).field("note").nullable


def test_an_undeclared_timestamp_field_gets_bins_where_its_dates_are() -> None:
    """Epoch microseconds (~1e15) lay beyond the old 1e12 grid: every date was binned at 1970-01-12."""
    rng = np.random.default_rng(2)
    born = pd.to_datetime("1950-01-01") + pd.to_timedelta(rng.integers(0, 50 * 365, 3_000), unit="D")
    frame = pd.DataFrame({"dob": born.strftime("%Y-%m-%d")})
    spec = FieldSpec(name="dob", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME, nullable=False)
    learned = learn_domains(frame, DomainPlan([spec], bins=8), rho=2e-3, delta=1e-10)
    edges = pd.to_datetime(np.asarray(learned.attributes[0].edges), unit="us")
    inner = edges[1:-1]
    assert len(inner) >= 3  # several bins, not one
    assert inner.min().year >= 1940 and inner.max().year <= 2010
    assert (inner.max() - inner.min()).days > 20 * 365  # spread over the decades the dates span
