"""Neural tabular generator on GPU against CPU: epoch time, non-DP and DP-SGD, and sampling speed.

Kept apart from ``benchmarks/tabular.py`` so it runs on a lent GPU machine that has torch but
not the SDV peers, SDMetrics or the embedded broker: it imports only the neural generator and
what it needs (pydantic, structlog, duckdb, opacus). Same model, same data, same epochs on each
device; the CPU runs use our default (one torch thread, the setting the pipeline uses on shared
machines) and every core of the machine.

DP-SGD runs with the token domains stored in a fresh privacy ledger as declared domains (the
data's code book and fixed numeric edges), so no domain budget is learned here: the timing is
DP-SGD's alone (opacus per-sample gradients, Poisson batches of 1,024, ε = 1, δ = 1e-9).

Run: ``python -m benchmarks.tabular_gpu [--data adult_train_ctgan.csv] [--epochs 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthstream.models.dp_budget import DPContext
from synthstream.models.neural import NeuralGenerator
from synthstream.privacy.ledger import DomainRow, PrivacyLedger
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
RESULTS = Path(__file__).resolve().parent / "results"


def schema_of(frame: pd.DataFrame) -> RecordSchema:
    """Adult's schema by hand (as the tests write it)."""
    fields = tuple(
        FieldSpec(
            name=c,
            type=FieldType.LONG if c in NUMERIC else FieldType.STRING,
            role=FieldRole.NUMERIC if c in NUMERIC else FieldRole.CATEGORICAL,
            nullable=bool(frame[c].isna().any()),
        )
        for c in frame.columns
    )
    return RecordSchema(name="Adult", fields=fields)


def declared_domains(frame: pd.DataFrame, ledger: PrivacyLedger) -> None:
    """Declared domains (the code book, 32 fixed-width numeric bins): DP-SGD is all that is measured."""
    rows = []
    for c in frame.columns:
        if c in NUMERIC:
            lo, hi = float(frame[c].min()), float(frame[c].max())
            rows.append(DomainRow(c, "numeric", None, tuple(np.linspace(lo, hi, 33).tolist()), "declared"))
        else:
            rows.append(DomainRow(c, "categorical", tuple(sorted(frame[c].astype(str).unique())), None, "declared"))
    ledger.save_domains("adult", rows)


def timed_fit(frame: pd.DataFrame, schema: RecordSchema, epochs: int, **options: Any) -> dict[str, Any]:
    started = time.perf_counter()
    model = NeuralGenerator(seed=0, epochs=epochs, **options).fit(frame, schema)
    seconds = time.perf_counter() - started
    sample_started = time.perf_counter()
    model.sample_columns(100_000, seed=1)
    return {
        "fit_seconds": round(seconds, 2),
        "epoch_seconds": round(seconds / epochs, 3),
        "device_used": model.device_used_,
        "sample_rows_per_s": round(100_000 / (time.perf_counter() - sample_started)),
        "dp_spend": model.dp_spend_,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("SYNTHSTREAM_DATA", "../shared/data")) / "adult" / "adult_train_ctgan.csv"
    parser.add_argument("--data", type=Path, default=default, help="Adult train split (CSV).")
    parser.add_argument("--epochs", type=int, default=5, help="Epochs of every fit.")
    parser.add_argument("--name", default="tabular_gpu", help="Result file name (benchmarks/results/<name>.json).")
    args = parser.parse_args()
    frame = pd.read_csv(args.data, skipinitialspace=True)
    schema = schema_of(frame)
    cuda = torch.cuda.is_available()
    cores = os.cpu_count() or 1
    runs: dict[str, dict[str, Any]] = {}
    plans: list[tuple[str, dict[str, Any]]] = [
        ("cpu_1_thread", {"device": "cpu", "threads": 1}),
        (f"cpu_{cores}_threads", {"device": "cpu", "threads": cores}),
    ]
    if cuda:
        plans.append(("cuda", {"device": "cuda"}))
    for name, options in plans:
        runs[name] = timed_fit(frame, schema, args.epochs, **options)
        print(f"[tabular_gpu] neural {name}: {runs[name]}", flush=True)
    dp_runs: dict[str, dict[str, Any]] = {}
    for name, options in [("cpu_1_thread", {"device": "cpu", "threads": 1}), *([("cuda", {"device": "cuda"})] * cuda)]:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = PrivacyLedger(Path(tmp) / "privacy.duckdb")
            declared_domains(frame, ledger)
            dp = DPContext(
                ledger_path=ledger.path, stream="adult", epsilon=1.0, delta=1e-9, epsilon_per_fit=1.0, key=name
            )
            dp_runs[name] = timed_fit(frame, schema, args.epochs, dp=dp, secure_noise=False, **options)
        print(f"[tabular_gpu] neural_dp {name}: {dp_runs[name]}", flush=True)
    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": cores,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "torch": torch.__version__,
        },
        "settings": {"rows": len(frame), "epochs": args.epochs, "model": "NeuralGenerator defaults"},
        "neural": runs,
        "neural_dp": dp_runs,
    }
    if cuda:
        result["speedup_epoch_cuda_vs_cpu_1_thread"] = round(
            runs["cpu_1_thread"]["epoch_seconds"] / runs["cuda"]["epoch_seconds"], 2
        )
        result["speedup_epoch_cuda_vs_cpu_all_threads"] = round(
            runs[f"cpu_{cores}_threads"]["epoch_seconds"] / runs["cuda"]["epoch_seconds"], 2
        )
        result["speedup_dp_epoch_cuda_vs_cpu_1_thread"] = round(
            dp_runs["cpu_1_thread"]["epoch_seconds"] / dp_runs["cuda"]["epoch_seconds"], 2
        )
    out = Path(os.environ.get("OUT", RESULTS))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=True, default=str) + "\n")
    print(f"[tabular_gpu] wrote {path}")


if __name__ == "__main__":
    main()
