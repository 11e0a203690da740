"""GaussianCopulaGenerator on real data: contracts, types, privacy of identifiers, fidelity floors."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthstream.errors import ModelError, NotFittedError
from synthstream.evaluation.fidelity import fidelity_report
from synthstream.models.base import Generator
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
from tests.helpers import ADULT_NUMERIC, TRANSACTIONS_CSV, adult_schema

REPO = Path(__file__).resolve().parents[1]


def to_records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return pd.read_csv(REPO / "synthstream" / "data" / "adult_sample.csv")


@pytest.fixture(scope="module")
def schema(adult: pd.DataFrame) -> RecordSchema:
    return adult_schema(adult)


@pytest.fixture(scope="module")
def records(adult: pd.DataFrame) -> list[dict]:
    return to_records(adult)


@pytest.fixture(scope="module")
def transactions() -> tuple[pd.DataFrame, RecordSchema]:
    path = TRANSACTIONS_CSV
    frame = pd.read_csv(path, index_col=0, dtype={"cc_num": str})
    frame["trans_date_trans_time"] = pd.to_datetime(frame["trans_date_trans_time"], utc=True)
    frame["dob"] = pd.to_datetime(frame["dob"], utc=True)
    spec = {
        "trans_date_trans_time": (FieldType.TIMESTAMP, FieldRole.DATETIME),
        "cc_num": (FieldType.STRING, FieldRole.IDENTIFIER),
        "merchant": (FieldType.STRING, FieldRole.CATEGORICAL),
        "category": (FieldType.STRING, FieldRole.CATEGORICAL),
        "amt": (FieldType.DOUBLE, FieldRole.NUMERIC),
        "gender": (FieldType.STRING, FieldRole.CATEGORICAL),
        "street": (FieldType.STRING, FieldRole.FREE_TEXT),
        "city_pop": (FieldType.LONG, FieldRole.NUMERIC),
        "dob": (FieldType.TIMESTAMP, FieldRole.DATETIME),
        "trans_num": (FieldType.STRING, FieldRole.IDENTIFIER),
        "unix_time": (FieldType.LONG, FieldRole.IDENTIFIER),
        "is_fraud": (FieldType.BOOLEAN, FieldRole.CATEGORICAL),
    }
    frame["is_fraud"] = frame["is_fraud"].astype(bool)
    fields = tuple(FieldSpec(name=n, type=t, role=r) for n, (t, r) in spec.items())
    return frame[list(spec)], RecordSchema(name="Transaction", fields=fields)


@pytest.fixture(scope="module")
def fitted(records: list[dict], schema: RecordSchema) -> GaussianCopulaGenerator:
    return GaussianCopulaGenerator(seed=7).fit(records, schema)


def test_is_a_generator_with_useful_repr(fitted: GaussianCopulaGenerator) -> None:
    assert isinstance(fitted, Generator)
    assert isinstance(GaussianCopulaGenerator(), Generator)
    assert repr(GaussianCopulaGenerator(seed=3, n_quantiles=11)) == (
        "GaussianCopulaGenerator(seed=3, max_categories=1000, n_quantiles=11, shrinkage=0.0, min_count=5)"
    )


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"seed": -1}, "seed"),
        ({"max_categories": 0}, "max_categories"),
        ({"n_quantiles": 1}, "n_quantiles"),
        ({"shrinkage": 1.0}, "shrinkage"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_invalid_config_names_the_valid_range(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=rf"{word} must be .* in \["):
        GaussianCopulaGenerator(**kwargs)


def test_same_seed_same_model_and_samples(records: list[dict], schema: RecordSchema) -> None:
    a = GaussianCopulaGenerator(seed=11).fit(records, schema)
    b = GaussianCopulaGenerator(seed=11).fit(records, schema)
    np.testing.assert_array_equal(a.correlation_, b.correlation_)
    assert pickle.dumps(a) == pickle.dumps(b)
    assert a.sample(500) == b.sample(500)
    assert a.sample(300, seed=5) == b.sample(300, seed=5)


def test_different_seeds_differ(records: list[dict], schema: RecordSchema) -> None:
    a = GaussianCopulaGenerator(seed=1).fit(records, schema)
    b = GaussianCopulaGenerator(seed=2).fit(records, schema)
    assert not np.array_equal(a.correlation_, b.correlation_)
    assert a.sample(200) != b.sample(200)
    assert a.sample(200, seed=3) != a.sample(200, seed=4)


def test_stream_continues_and_seed_restarts(fitted: GaussianCopulaGenerator) -> None:
    first = fitted.sample(100, seed=42)
    second = fitted.sample(100)
    assert first != second  # the feed moves on
    assert fitted.sample(100, seed=42) == first  # seed restarts deterministically
    assert fitted.sample(100) == second  # ...and the continuation is deterministic too
    columns = fitted.sample_columns(100, seed=42)
    assert [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)] == first


def test_adult_values_are_canonical_and_in_range(fitted: GaussianCopulaGenerator, adult: pd.DataFrame) -> None:
    rows = fitted.sample(3000, seed=1)
    assert all(list(r) == list(adult.columns) for r in rows)
    synth = pd.DataFrame(rows)
    for name in ADULT_NUMERIC:
        values = synth[name]
        assert all(type(v) is int for v in values), name
        assert values.min() >= adult[name].min() and values.max() <= adult[name].max(), name
    for name in set(adult.columns) - ADULT_NUMERIC:
        real_values = set(adult[name].dropna())
        assert all(v is None or (type(v) is str and v in real_values) for v in synth[name]), name


def test_nulls_at_training_rate(fitted: GaussianCopulaGenerator, adult: pd.DataFrame) -> None:
    synth = pd.DataFrame(fitted.sample_columns(20_000, seed=2))
    for name in ("workclass", "occupation", "native-country"):
        real_rate, synth_rate = adult[name].isna().mean(), synth[name].isna().mean()
        assert real_rate > 0
        assert abs(synth_rate - real_rate) < 0.01, name
    # the two null indicators co-occur in Adult; the copula keeps that
    both = (synth["workclass"].isna() & synth["occupation"].isna()).mean()
    assert both > 0.6 * adult["workclass"].isna().mean()


def test_fidelity_floors_on_adult(fitted: GaussianCopulaGenerator, adult: pd.DataFrame, schema: RecordSchema) -> None:
    synth = pd.DataFrame(fitted.sample(len(adult), seed=3))
    report = fidelity_report(adult, synth, schema)
    # measured: column_shapes ~0.99, pair_trends ~0.93
    assert report["column_shapes"] >= 0.97
    assert report["pair_trends"] >= 0.90


def test_transactions_types_datetimes_and_fresh_identifiers(transactions: tuple[pd.DataFrame, RecordSchema]) -> None:
    frame, schema = transactions
    model = GaussianCopulaGenerator(seed=0, max_categories=50).fit(frame, schema)
    rows = model.sample(2000, seed=9)
    for field in schema.fields:
        values = [r[field.name] for r in rows]
        expected = {
            FieldType.BOOLEAN: bool,
            FieldType.LONG: int,
            FieldType.DOUBLE: float,
            FieldType.STRING: str,
            FieldType.TIMESTAMP: datetime,
        }[field.type]
        assert all(type(v) is expected for v in values), field.name
    for name in ("trans_date_trans_time", "dob"):
        stamps = [r[name] for r in rows]
        assert all(s.tzinfo is not None and s.utcoffset().total_seconds() == 0 for s in stamps)
        assert min(stamps) >= frame[name].min() and max(stamps) <= frame[name].max()
    trans_num = [r["trans_num"] for r in rows]
    assert not set(trans_num) & set(frame["trans_num"])
    assert len(set(trans_num)) == len(trans_num)
    assert all(len(v) == 32 and set(v) <= set("0123456789abcdef") for v in trans_num)
    cc = [r["cc_num"] for r in rows]
    assert not set(cc) & set(frame["cc_num"])
    assert all(v.isdigit() for v in cc)
    assert {len(v) for v in cc} <= set(frame["cc_num"].str.len())
    unix = [r["unix_time"] for r in rows]
    assert frame["unix_time"].min() <= min(unix) and max(unix) <= frame["unix_time"].max()
    street_counts = frame["street"].value_counts()  # free text: never a training text held by < k records
    assert not {r["street"] for r in rows} & set(street_counts[street_counts < model.min_count].index)


def test_errors_before_fit_and_on_bad_data(records: list[dict], schema: RecordSchema) -> None:
    model = GaussianCopulaGenerator()
    assert not model.fitted and model.schema is None
    with pytest.raises(NotFittedError):
        model.sample(1)
    with pytest.raises(NotFittedError):
        model.sample_columns(1)
    with pytest.raises(ModelError, match="zero records"):
        model.fit([], schema)
    broken = [dict(r) for r in records[:10]]
    secret = broken[3].pop("occupation")
    with pytest.raises(ModelError, match="record 3 lacks schema fields") as info:
        model.fit(broken, schema)
    assert str(secret) not in str(info.value)
    garbage = [dict(r) for r in records[:10]]
    garbage[2]["age"] = "Xylophone-9"
    with pytest.raises(ModelError, match="'age'") as info:
        model.fit(garbage, schema)
    assert "Xylophone" not in str(info.value)
    assert not model.fitted


def test_pickle_round_trip_gives_identical_samples(fitted: GaussianCopulaGenerator) -> None:
    fitted.sample(10, seed=123)
    clone = pickle.loads(pickle.dumps(fitted))
    assert clone.sample(400) == fitted.sample(400)
    assert clone.sample(50, seed=1) == fitted.sample(50, seed=1)
    assert clone.schema == fitted.schema


def test_dataframe_and_records_fit_identically(adult: pd.DataFrame, records: list[dict], schema: RecordSchema) -> None:
    a = GaussianCopulaGenerator(seed=5).fit(adult, schema)
    b = GaussianCopulaGenerator(seed=5).fit(records, schema)
    assert a.sample(200, seed=1) == b.sample(200, seed=1)


def test_import_does_not_load_busl_packages() -> None:
    code = (
        "import sys, synthstream.models.copula, synthstream.models.registry, synthstream.evaluation.fidelity\n"
        "busl = {'sdv', 'ctgan', 'copulas', 'rdt', 'deepecho', 'sdmetrics'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in busl)\n"
        "print(','.join(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == ""


def test_fit_at_utc_now_is_stable() -> None:
    schema = RecordSchema(fields=(FieldSpec(name="t", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),))
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    model = GaussianCopulaGenerator().fit([{"t": now}], schema)
    assert model.sample(3, seed=0) == [{"t": now}] * 3
