"""Per-core throughput floors that used to live inside tests (issue 15: no timing assertions in tests).

Measured on the bundled Adult sample (``synthstream/data/adult_sample.csv``, in the repository), best
of ``--repeats`` runs, one process:

- JSON validation (``RecordValidator``): goal >= 50,000 records/s (about 200,000 on a quiet core);
- file replay conversion (``records_from_frame``): goal >= 100,000 rows/s;
- copula sampling (``GaussianCopulaGenerator.sample_columns`` / ``sample``): goals >= 100,000 and
  >= 50,000 rows/s.

    .venv/bin/python -m benchmarks.throughput            # writes benchmarks/results/throughput.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import pandas as pd

from benchmarks.common import machine, target, versions, write_result
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.demo import sample_path
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.processors.validator import RecordValidator
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.serde import JsonRecordSerde


def best_rate(work: Callable[[], int], repeats: int) -> float:
    """Items per second of the fastest of ``repeats`` runs of ``work`` (which returns its item count)."""
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        n = work()
        best = max(best, n / (time.perf_counter() - started))
    return best


def main() -> None:
    """Measure the three rates and write them with their goals."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="Runs per measurement; the best counts.")
    args = parser.parse_args()
    frame = read_table(sample_path())
    schema = infer_schema(frame, name="Adult")
    records = records_from_frame(frame, schema)
    serde = JsonRecordSerde(schema)
    values = [serde.encode(r) for r in records]
    validator = RecordValidator(schema)
    big = pd.concat([frame] * 4, ignore_index=True)
    model = GaussianCopulaGenerator(seed=0).fit(records, schema)
    model.sample_columns(1_000)
    rates = {
        "validate_json_records_per_s": (
            best_rate(lambda: sum(1 for v in values if validator(v) is not None), args.repeats),
            50_000,
        ),
        "replay_conversion_rows_per_s": (
            best_rate(lambda: len(records_from_frame(big, schema)), args.repeats),
            100_000,
        ),
        "copula_sample_columns_rows_per_s": (
            best_rate(lambda: len(model.sample_columns(100_000)[schema.field_names[0]]), args.repeats),
            100_000,
        ),
        "copula_sample_rows_per_s": (best_rate(lambda: len(model.sample(50_000)), args.repeats), 50_000),
    }
    result = {
        "machine": machine(),
        "versions": versions("synthstream", "numpy", "pandas", "fastavro", "orjson"),
        "rates": {name: target(goal, value) for name, (value, goal) in rates.items()},
    }
    path = write_result("throughput", result)
    for name, (value, goal) in rates.items():
        print(f"{name:<36} {value:>12,.0f}  (goal {goal:,})")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
