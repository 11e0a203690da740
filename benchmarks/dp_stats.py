"""Windowed DP statistics benchmark: accuracy per ε and stage throughput, ours beside OpenDP's own pipeline.

Data (replays, in stream order):
- Adult (UCI, ../shared/data/adult/adult_train_ctgan.csv, 32,561 rows): no event time, so row i
  gets event time i x 30 ms: windows of 60 s hold 2,000 records (16 windows).
- Card transactions (../shared/data/transactions/fraudTrain_prefix.csv, 5,039 rows): event time is
  ``trans_date_trans_time``; windows of 6 h (~380 records, 14 windows).

Accuracy: for ε in {0.1, 1, 10} *per window* (w = 1, so each window spends exactly ε; Gaussian
mechanism under zCDP converted at δ = 1e-6, budget split evenly over the window's queries),
every window is released 5 times and compared with the exact answers:
- count: |noisy - true| / true;
- marginals: L1 error / true count (twice the total-variation distance of the normalised
  histograms), per 1-way and 2-way marginal, then averaged over the window's marginals; for the
  raw noisy answers (``marginal_l1_rel_error_median``, what OpenDP's histogram gives too) and for
  the consistent ones the stats topic publishes beside them (non-negative, summing to the
  window's estimated size: ``consistent_marginal_l1_rel_error_median``, the target).
Medians over windows and repeats are reported.

Peer: OpenDP used directly, the way its docs build a histogram: per window and per marginal
``make_count_by_categories`` over the same cells, then the Gaussian measurement, with the same
budget split (each query gets ρ / #queries), so errors must agree and throughput can be compared.

Throughput:
- stage: our window aggregator + release over the replays (no Kafka), records/s;
- peer: OpenDP count_by_categories + noise over the same windows, records/s;
- pipeline: ingest of 100,000 Adult records through the embedded broker with statistics on vs
  off (validate -> redact -> buffer [-> windows -> ledger -> stats topic]), records/s.

Run: .venv/bin/python -m benchmarks.dp_stats [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from benchmarks.common import dataset, machine, median, target, versions, write_result
from synthstream.privacy.accounting import Spend, epsilon_to_rho
from synthstream.processors.dp_release import release_window
from synthstream.processors.windows import Attribute, ClosedWindow, Discretizer, WindowAggregator

EPSILONS = (0.1, 1.0, 10.0)
DELTA = 1e-6
ADULT_CATEGORICAL = ("workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
                     "native-country", "income")  # fmt: skip
ADULT_NUMERIC = {"age": (17.0, 90.0, 8), "hours-per-week": (1.0, 99.0, 10)}
ADULT_PAIRS = (("sex", "income"), ("age", "income"), ("education", "income"))
TX_CATEGORICAL = ("category", "gender", "state", "is_fraud")
TX_NUMERIC = {"amt": (0.0, 1000.0, 10), "city_pop": (0.0, 3_000_000.0, 10)}
TX_PAIRS = (("category", "gender"), ("category", "is_fraud"))


def _adult() -> tuple[list[dict[str, Any]], list[int]]:
    frame = pd.read_csv(dataset("adult/adult_train_ctgan.csv"), skipinitialspace=True)
    rows = frame.to_dict("records")
    return rows, [i * 30 for i in range(len(rows))]


def _transactions() -> tuple[list[dict[str, Any]], list[int]]:
    frame = pd.read_csv(dataset("transactions/fraudTrain_prefix.csv"))
    frame["is_fraud"] = frame["is_fraud"].astype(str)
    times = (pd.to_datetime(frame["trans_date_trans_time"], utc=True).astype("int64") // 1_000_000).tolist()
    return frame.to_dict("records"), times


def _aggregator(rows: list[dict[str, Any]], categorical, numeric, pairs, window_ms: int) -> WindowAggregator:
    attrs = [
        Attribute(name, "categorical", labels=tuple(sorted({str(r[name]) for r in rows})), nullable=False)
        for name in categorical
    ]  # the domains are declared (public) for the benchmark: every observed value, plus __other__
    attrs += [
        Attribute(name, "numeric", edges=tuple(np.linspace(lo, hi, bins + 1).tolist()), nullable=False)
        for name, (lo, hi, bins) in numeric.items()
    ]
    queries = [(a.name,) for a in attrs] + [tuple(p) for p in pairs]
    return WindowAggregator(Discretizer(attrs), queries, window_ms=window_ms)


def _windows(rows, times, categorical, numeric, pairs, window_ms: int) -> tuple[list[ClosedWindow], WindowAggregator]:
    for r in rows:
        for name in categorical:
            r[name] = str(r[name])
    agg = _aggregator(rows, categorical, numeric, pairs, window_ms)
    for i in range(0, len(rows), 2_000):
        agg.add(rows[i : i + 2_000], times[i : i + 2_000])
    return agg.close_due(flush=True), agg


def _errors(window: ClosedWindow, answers) -> tuple[float, float]:
    true_n = max(1, window.count)
    count = next(a for a in answers if a.kind == "count")
    count_err = abs(count.values[0] - window.count) / true_n
    marg = [
        float(np.abs(np.asarray(a.values) - window.marginals[a.query]).sum()) / true_n
        for a in answers
        if a.kind == "marginal"
    ]
    return count_err, float(np.mean(marg))


def _consistent_error(window: ClosedWindow, answers) -> float:
    true_n = max(1, window.count)
    marg = [
        float(np.abs(np.asarray(a.consistent) - window.marginals[a.query]).sum()) / true_n
        for a in answers
        if a.kind == "marginal"
    ]
    return float(np.mean(marg))


def ours_accuracy(windows: list[ClosedWindow], agg: WindowAggregator, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for eps in EPSILONS:
        rho = epsilon_to_rho(eps, DELTA)
        count_errs, marg_errs, consistent_errs = [], [], []
        for window in windows:
            for _ in range(repeats):
                release = release_window(window, agg.discretizer, budget=Spend(rho=rho), mechanism="gaussian")
                c, m = _errors(window, release.answers)
                count_errs.append(c)
                marg_errs.append(m)
                consistent_errs.append(_consistent_error(window, release.answers))
        out[f"eps_{eps:g}"] = {
            "rho_per_window": rho,
            "count_rel_error_median": median(count_errs),
            "marginal_l1_rel_error_median": median(marg_errs),
            "consistent_marginal_l1_rel_error_median": median(consistent_errs),
            "windows": len(windows),
            "repeats": repeats,
        }
    return out


def peer_opendp(windows_rows: list[tuple[list[dict[str, Any]], ClosedWindow]], agg: WindowAggregator, repeats: int):
    """OpenDP directly: count_by_categories per marginal (+ a count), Gaussian noise, same budget split."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    disc = agg.discretizer
    queries = agg.queries
    n_queries = len(queries) + 1
    acc: dict[str, Any] = {}
    seconds = 0.0
    records = 0
    for eps in EPSILONS:
        rho_q = epsilon_to_rho(eps, DELTA) / n_queries
        count_errs, marg_errs = [], []
        for rows, window in windows_rows:
            # cells as strings: the categories the peer counts over (same cells as ours)
            columns = {a: disc.encode(a, [r.get(a) for r in rows]) for a in {x for q in queries for x in q}}
            started = time.perf_counter()
            for _ in range(repeats):
                answers = []
                for query in queries:
                    shape = agg.shape(query)
                    flat = columns[query[0]] if len(query) == 1 else columns[query[0]] * shape[1] + columns[query[1]]
                    cats = [str(i) for i in range(int(np.prod(shape)))]
                    space = dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance()
                    counts = dp.t.make_count_by_categories(
                        *space, categories=cats, null_category=False, MO="L2Distance<i64>", TOA="i64"
                    )
                    meas = counts >> dp.m.then_gaussian(scale=1.0 / np.sqrt(2 * rho_q))
                    answers.append((query, np.asarray(meas([str(int(v)) for v in flat]), dtype=float)))
                count = dp.t.make_count(dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance(), TO="i64")
                count_meas = count >> dp.m.then_gaussian(scale=1.0 / np.sqrt(2 * rho_q))
                noisy_count = float(count_meas(["x"] * window.count))
                true_n = max(1, window.count)
                count_errs.append(abs(noisy_count - window.count) / true_n)
                marg_errs.append(float(np.mean([np.abs(v - window.marginals[q]).sum() / true_n for q, v in answers])))
            seconds += time.perf_counter() - started
            records += len(rows) * repeats
        acc[f"eps_{eps:g}"] = {
            "count_rel_error_median": median(count_errs),
            "marginal_l1_rel_error_median": median(marg_errs),
        }
    return acc, records / seconds


def stage_throughput(rows, times, categorical, numeric, pairs, window_ms: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        agg = _aggregator(rows, categorical, numeric, pairs, window_ms)
        started = time.perf_counter()
        for i in range(0, len(rows), 2_000):
            agg.add(rows[i : i + 2_000], times[i : i + 2_000])
            for window in agg.close_due():
                release_window(window, agg.discretizer, budget=Spend(rho=0.1), mechanism="gaussian")
        for window in agg.close_due(flush=True):
            release_window(window, agg.discretizer, budget=Spend(rho=0.1), mechanism="gaussian")
        rates.append(len(rows) / (time.perf_counter() - started))
    return median(rates)


def _split_rows(rows, times, window_ms: int) -> list[list[dict[str, Any]]]:
    groups: dict[int, list[dict[str, Any]]] = {}
    for r, t in zip(rows, times, strict=True):
        groups.setdefault(t // window_ms, []).append(r)
    return [groups.get(i, []) for i in range(min(groups), max(groups) + 1)]


async def pipeline_throughput(n: int, stats_on: bool) -> float:
    from benchmarks.pipeline import Clock, _config, _preload, _schema_and_values
    from synthstream.connectors.broker import EmbeddedBroker
    from synthstream.settings import KafkaSettings
    from synthstream.streams.pipeline import Pipeline

    schema, values = _schema_and_values()
    stats = {
        "enabled": stats_on,
        "window_s": 1.0,
        "grace_s": 0.5,
        "epsilon_w": 1.0,
        "w": 10,
        "numeric": {"age": {"bounds": [17, 90], "bins": 8}, "hours-per-week": {"bounds": [1, 99], "bins": 10}},
        "categorical": {c: {} for c in ("workclass", "education", "sex", "race", "income")},
        "pairs": [["sex", "income"], ["age", "income"]],
    }
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as state:
        settings = KafkaSettings.for_embedded(broker.bootstrap_servers)
        config = _config("dps", Path(state), stats=stats)
        config = config.model_copy(update={"topics": config.topics.model_copy(update={"stats": "dps.stats"})})
        await _preload(settings, config.source.topic, values, n)
        clock = Clock(n)
        await Pipeline(config, settings, schema, role="ingest").run(until=clock)
    return clock.rate()


def main(quick: bool) -> dict[str, Any]:
    repeats = 2 if quick else 5
    adult_rows, adult_times = _adult()
    tx_rows, tx_times = _transactions()
    datasets = {
        "adult": (adult_rows, adult_times, ADULT_CATEGORICAL, ADULT_NUMERIC, ADULT_PAIRS, 60_000),
        "transactions": (tx_rows, tx_times, TX_CATEGORICAL, TX_NUMERIC, TX_PAIRS, 6 * 3_600_000),
    }
    ours: dict[str, Any] = {}
    peers: dict[str, Any] = {}
    for name, (rows, times, cat, num, pairs, window_ms) in datasets.items():
        windows, agg = _windows(rows, times, cat, num, pairs, window_ms)
        windows = [w for w in windows if w.count > 0]
        ours[name] = {
            "records": len(rows),
            "accuracy": ours_accuracy(windows, agg, repeats),
            "stage_records_per_s": stage_throughput(rows, times, cat, num, pairs, window_ms, 1 if quick else 3),
        }
        per_window = [r for r in _split_rows(rows, times, window_ms) if r]
        peer_acc, peer_rps = peer_opendp(list(zip(per_window, windows, strict=True)), agg, 1 if quick else 2)
        peers[name] = {"opendp_count_by_categories": {"accuracy": peer_acc, "records_per_s": peer_rps}}
    n = 50_000 if quick else 100_000
    off = asyncio.run(pipeline_throughput(n, stats_on=False))
    on = asyncio.run(pipeline_throughput(n, stats_on=True))
    ours["pipeline_ingest_rps"] = {"stats_off": off, "stats_on": on, "records": n}
    eps1 = ours["adult"]["accuracy"]["eps_1"]
    return {
        "machine": machine(),
        "versions": versions("synthstream", "opendp", "duckdb", "numpy"),
        "mode": "quick" if quick else "full",
        "ours": ours,
        "peers": peers,
        "targets": {
            # The issue sets no numeric goals; these record that the stage keeps up with the pipeline
            # target and that accuracy at ε=1 per window is useful on Adult-sized windows.
            "pipeline_rps_with_stats": target(10_000, on),
            # What the stats topic's `consistent` cells carry (raw noisy cells: marginal_l1_rel_error_median).
            "adult_marginal_l1_rel_error_eps1": target(
                0.10, eps1["consistent_marginal_l1_rel_error_median"], higher_is_better=False
            ),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under 5 minutes on 2 cores")
    args = parser.parse_args()
    result = main(args.quick)
    path = write_result("dp_stats", result)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(f"wrote {path}")
