"""Schema inference and file sources on real public data (UCI Adult, simulated card transactions)."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from synthstream.connectors.files import iter_file_records, read_table, records_from_frame
from synthstream.errors import SchemaError
from synthstream.schemas.inference import infer_schema, infer_schema_from_file
from synthstream.schemas.record import FieldRole, FieldType, RecordSchema
from tests.helpers import ADULT_CSV, TRANSACTIONS_CSV

SAMPLE = Path(__file__).resolve().parents[1] / "synthstream" / "data" / "adult_sample.csv"


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return read_table(ADULT_CSV)


@pytest.fixture(scope="module")
def adult_schema(adult: pd.DataFrame) -> RecordSchema:
    return infer_schema(adult, name="Adult")


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    return read_table(TRANSACTIONS_CSV)


@pytest.fixture(scope="module")
def tx_schema(transactions: pd.DataFrame) -> RecordSchema:
    return infer_schema(transactions, name="Transactions")


def kinds(schema: RecordSchema, name: str) -> tuple[FieldType, FieldRole, bool]:
    f = schema.field(name)
    return f.type, f.role, f.nullable


# -- reading -------------------------------------------------------------------------------------


def test_adult_csv_strips_spaces_and_reads_question_marks_as_null(adult: pd.DataFrame) -> None:
    assert len(adult) == 8_000
    assert adult.loc[0, "workclass"] == "State-gov"  # " State-gov" in the file
    with ADULT_CSV.open(newline="") as handle:  # an independent count with the csv module
        marks = sum(row[1].strip() == "?" for row in list(csv.reader(handle))[1:])
    assert marks > 400 and adult["workclass"].isna().sum() == marks  # " ?" in the file
    assert not (adult.select_dtypes("object") == "?").any().any()


def test_read_table_nrows_and_errors(tmp_path: Path) -> None:
    assert len(read_table(ADULT_CSV, nrows=10)) == 10
    with pytest.raises(SchemaError, match=r"\.csv.*\.parquet.*\.jsonl.*\.ndjson"):
        read_table(tmp_path / "data.xlsx")
    with pytest.raises(SchemaError, match="no such file"):
        read_table(tmp_path / "absent.csv")


# -- Adult -----------------------------------------------------------------------------------------


def test_adult_types_nullability_and_roles(adult_schema: RecordSchema) -> None:
    assert adult_schema.field_names[0] == "age" and len(adult_schema.fields) == 15
    for name in ("workclass", "occupation", "native-country"):
        assert kinds(adult_schema, name) == (FieldType.STRING, FieldRole.CATEGORICAL, True)
    assert kinds(adult_schema, "age") == (FieldType.LONG, FieldRole.NUMERIC, False)
    assert kinds(adult_schema, "income") == (FieldType.STRING, FieldRole.CATEGORICAL, False)
    # Named like an id ("-num") but with 16 levels: a number, not an identifier.
    assert kinds(adult_schema, "education-num") == (FieldType.LONG, FieldRole.NUMERIC, False)
    assert kinds(adult_schema, "fnlwgt")[:2] == (FieldType.LONG, FieldRole.NUMERIC)
    assert kinds(adult_schema, "sex")[:2] == (FieldType.STRING, FieldRole.CATEGORICAL)


def test_bundled_sample_matches_the_full_adult_schema(adult_schema: RecordSchema) -> None:
    sample = infer_schema_from_file(SAMPLE, name="Adult")
    assert [(f.name, f.type, f.role) for f in sample.fields] == [(f.name, f.type, f.role) for f in adult_schema.fields]


def test_inference_is_deterministic(adult: pd.DataFrame, adult_schema: RecordSchema) -> None:
    again = infer_schema(adult, name="Adult")
    assert again == adult_schema
    assert again.fingerprint() == adult_schema.fingerprint()
    assert infer_schema(adult, name="Adult", max_rows=2_000) == infer_schema(adult, name="Adult", max_rows=2_000)


def test_role_overrides_and_unknown_names(adult: pd.DataFrame) -> None:
    schema = infer_schema(adult, name="Adult", roles={"fnlwgt": FieldRole.IDENTIFIER, "age": "categorical"})
    assert schema.field("fnlwgt").role is FieldRole.IDENTIFIER
    assert schema.field("age").role is FieldRole.CATEGORICAL
    with pytest.raises(SchemaError, match=r"'nope'.*fields are.*'age'"):
        infer_schema(adult, roles={"nope": FieldRole.NUMERIC})
    with pytest.raises(SchemaError, match="valid roles"):
        infer_schema(adult, roles={"age": "weird"})


def test_invalid_record_name_is_refused(adult: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="not a valid Avro name"):
        infer_schema(adult.head(5), name="my stream")


# -- transactions ----------------------------------------------------------------------------------


def test_transactions_roles(tx_schema: RecordSchema) -> None:
    assert kinds(tx_schema, "trans_date_trans_time")[:2] == (FieldType.TIMESTAMP, FieldRole.DATETIME)
    assert kinds(tx_schema, "dob")[:2] == (FieldType.TIMESTAMP, FieldRole.DATETIME)
    assert kinds(tx_schema, "trans_num")[:2] == (FieldType.STRING, FieldRole.IDENTIFIER)
    # 821 cards over 3,000 transactions: an entity key, not a number.
    assert kinds(tx_schema, "cc_num")[:2] == (FieldType.LONG, FieldRole.IDENTIFIER)
    assert kinds(tx_schema, "amt")[:2] == (FieldType.DOUBLE, FieldRole.NUMERIC)
    assert kinds(tx_schema, "category")[:2] == (FieldType.STRING, FieldRole.CATEGORICAL)
    assert kinds(tx_schema, "is_fraud")[:2] == (FieldType.LONG, FieldRole.CATEGORICAL)
    assert kinds(tx_schema, "zip")[:2] == (FieldType.LONG, FieldRole.NUMERIC)
    # pandas names the unnamed index column "Unnamed: 0": kept as the record key, an identifier.
    assert kinds(tx_schema, "Unnamed: 0")[:2] == (FieldType.LONG, FieldRole.IDENTIFIER)


def test_transaction_records_are_canonical(transactions: pd.DataFrame, tx_schema: RecordSchema) -> None:
    records = records_from_frame(transactions.head(50), tx_schema)
    first = records[0]
    assert list(first) == tx_schema.field_names
    assert first["trans_date_trans_time"] == datetime(2019, 1, 1, 0, 0, 18, tzinfo=UTC)
    assert first["dob"] == datetime(1988, 3, 9, tzinfo=UTC)
    assert type(first["cc_num"]) is int and first["cc_num"] == 2703186189652095
    assert type(first["amt"]) is float and first["amt"] == pytest.approx(4.97)
    assert type(first["trans_num"]) is str


# -- inference edge cases --------------------------------------------------------------------------


def test_types_from_a_constructed_frame() -> None:
    n = 300
    frame = pd.DataFrame(
        {
            "flag": [i % 2 == 0 for i in range(n)],
            "count_with_gaps": [float(i % 7) if i % 5 else np.nan for i in range(n)],
            "ratio": [i / 3 for i in range(n)],
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
            "day": [f"2024-02-{1 + i % 28:02d}" if i else "not a date" for i in range(n)],
            "note": [f"free text number {i} with several words" for i in range(n)],
            "code": [f"C{i % 30:03d}" for i in range(n)],
            "customer_id": [f"cust{i % 60}" for i in range(n)],  # an entity key: 60 customers
            "": list(range(n)),
            "empty": [None] * n,
        }
    )
    schema = infer_schema(frame)
    assert kinds(schema, "flag") == (FieldType.BOOLEAN, FieldRole.CATEGORICAL, False)
    assert kinds(schema, "count_with_gaps") == (FieldType.LONG, FieldRole.CATEGORICAL, True)
    assert kinds(schema, "ratio") == (FieldType.DOUBLE, FieldRole.NUMERIC, False)
    assert kinds(schema, "when") == (FieldType.TIMESTAMP, FieldRole.DATETIME, False)
    # 299 of 300 parse (>= 95 %): a timestamp, nullable because one value will not convert.
    assert kinds(schema, "day") == (FieldType.TIMESTAMP, FieldRole.DATETIME, True)
    assert kinds(schema, "note") == (FieldType.STRING, FieldRole.FREE_TEXT, False)
    assert kinds(schema, "code") == (FieldType.STRING, FieldRole.CATEGORICAL, False)
    assert kinds(schema, "customer_id") == (FieldType.STRING, FieldRole.IDENTIFIER, False)
    assert kinds(schema, "Unnamed: 8") == (FieldType.LONG, FieldRole.IDENTIFIER, False)
    assert kinds(schema, "empty") == (FieldType.STRING, FieldRole.CATEGORICAL, True)

    records = records_from_frame(frame, schema)
    assert records[0]["count_with_gaps"] is None and records[1]["count_with_gaps"] == 1
    assert type(records[1]["count_with_gaps"]) is int
    assert records[0]["day"] is None and records[1]["day"] == datetime(2024, 2, 2, tzinfo=UTC)
    assert records[0]["when"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert records[0]["flag"] is True and records[0]["empty"] is None


def test_records_from_frame_requires_non_nullable_columns(adult_schema: RecordSchema) -> None:
    with pytest.raises(SchemaError, match="income"):
        records_from_frame(pd.DataFrame({"age": [1]}), adult_schema)


# -- round trips through other file formats ----------------------------------------------------------


def _same_records(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        assert left.keys() == right.keys()
        for key in left:
            x, y = left[key], right[key]
            if isinstance(x, float) and math.isnan(x):
                assert isinstance(y, float) and math.isnan(y)
            else:
                assert x == y, key
                assert type(x) is type(y), key


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".ndjson"])
def test_parquet_and_jsonl_round_trip(
    tmp_path: Path, transactions: pd.DataFrame, tx_schema: RecordSchema, suffix: str
) -> None:
    head = transactions.head(500)
    expected = records_from_frame(head, tx_schema)
    path = tmp_path / f"tx{suffix}"
    if suffix == ".parquet":
        head.to_parquet(path)
    else:
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in expected))
    again = read_table(path)
    schema = infer_schema(again, name="Transactions")
    assert [(f.name, f.type, f.role, f.nullable) for f in schema.fields] == [
        (f.name, f.type, f.role, f.nullable) for f in infer_schema(head, name="Transactions").fields
    ]
    _same_records(records_from_frame(again, tx_schema), expected)
    chunks = list(iter_file_records(path, tx_schema, chunk_rows=120))
    assert [len(c) for c in chunks] == [120, 120, 120, 120, 20]
    _same_records([r for c in chunks for r in c], expected)
    assert len(read_table(path, nrows=7)) == 7


def test_csv_chunks_match_whole_file(adult: pd.DataFrame, adult_schema: RecordSchema) -> None:
    path = ADULT_CSV
    chunks = list(iter_file_records(path, adult_schema, chunk_rows=3_000))
    assert [len(c) for c in chunks] == [3_000, 3_000, 2_000]
    flat = [r for c in chunks for r in c]
    _same_records(flat[::97], records_from_frame(adult, adult_schema)[::97])
    assert flat[14]["native-country"] is None  # a "?" in the file
    assert infer_schema_from_file(path).name == "adult_train_8k"


def test_small_samples_do_not_make_everything_unique(adult: pd.DataFrame, adult_schema: RecordSchema) -> None:
    tiny = infer_schema(adult.head(5), name="Adult")
    assert all(f.role is not FieldRole.IDENTIFIER for f in tiny.fields)
    assert tiny.field("education").role is FieldRole.CATEGORICAL
    assert tiny.field("age").role is FieldRole.NUMERIC
    # A few hundred rows already give the full-data roles (the demo infers from such samples).
    small = infer_schema(adult.head(400), name="Adult")
    assert [(f.type, f.role) for f in small.fields] == [(f.type, f.role) for f in adult_schema.fields]


@pytest.mark.parametrize(
    ("values", "first"),
    [
        (["2010/01/01 00:00", "2010/01/01 01:00", "2010/01/01 02:00"], datetime(2010, 1, 1, tzinfo=UTC)),
        (["Jan 1 2000", "Feb 1 2000", "Mar 1 2000"], datetime(2000, 1, 1, tzinfo=UTC)),
        (["01/31/2020", "02/01/2020", "02/02/2020"], datetime(2020, 1, 31, tzinfo=UTC)),
    ],
)
def test_dated_text_in_one_pattern_is_a_timestamp_and_reads_back_as_written(
    tmp_path: Path, values: list[str], first: datetime
) -> None:
    """Dated text was free text: NER scanned it and replaced 94 % of an hourly series' times."""
    path = tmp_path / "series.csv"
    pd.DataFrame({"when": values * 40, "temp": np.arange(120) / 10}).to_csv(path, index=False)
    schema = infer_schema_from_file(path)
    spec = schema.field("when")
    assert (spec.type, spec.role, spec.nullable) == (FieldType.TIMESTAMP, FieldRole.DATETIME, False)
    records = [r for chunk in iter_file_records(path, schema) for r in chunk]
    assert records[0]["when"] == first and len(records) == 120


@pytest.mark.parametrize(
    "values",
    [
        ["31/01/2020", "03/04/2020", "05/06/2020", "14/07/2020"],  # day first: the month-first reading disagrees
        ["12:30", "13:45", "09:10", "08:00"],  # no year or month: a date would come from today
        ["Q1 2020", "Q2 2020", "Q3 2020", "Q4 2020"],
        ["red bus 2020", "blue car 2021", "a train", "2019 bike"],
    ],
)
def test_text_that_is_not_one_dated_pattern_stays_text(values: list[str]) -> None:
    schema = infer_schema(pd.DataFrame({"v": values * 30}))
    assert schema.field("v").type is FieldType.STRING
