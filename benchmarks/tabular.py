"""Tabular generators benchmark: ours (copula, neural, neural + DP-SGD, AIM, MST, from-the-stream) vs SDV peers.

Data: UCI Adult. Train = ``adult_train_ctgan.csv`` (32,561 rows, leading spaces stripped);
evaluation = the official test split ``adult_test_uci.csv`` (16,281 rows, labels' trailing
``.`` stripped). ``?`` is kept as a category (the data's own missing marker), for every model.

Models, each fitted and sampled in its own spawned process (so fit time and peak RSS are its own):

* ours: ``gaussian_copula`` (baseline), ``neural`` (column-autoregressive, non-DP), ``neural_dp``
  (DP-SGD), ``aim``, ``mst``, ``aim_stream`` (from the stream: the windowed DP statistics stage,
  :class:`~synthstream.streams.stats.StatsStage`, releases the train split as 16 windows of ~2,000
  records into a privacy ledger, then the model fits the ledger's marginals and reads no record);
* peers (SDV 2.0, BUSL-1.1, benchmark-only): GaussianCopulaSynthesizer, CTGANSynthesizer,
  TVAESynthesizer.

DP settings: every DP model is (ε = 1, δ = 1e-9) per record. Categorical domains are public (the
code book: every value of train and test, like Private-PGM's ``adult-domain.json``) for every DP
model; numeric bins are learned with DP. AIM/MST: one fit spends it all (zCDP converted with the
CKS bound), numeric bins from DP quantiles (10 % of ρ; 32 bins),
AIM with 2-way workload, 4 x fields rounds planned, 200 warm-started mirror-descent steps per
round, 1,000 final; MST with domain compression. Neural DP-SGD: noise calibrated by the
accountant to ε = 1 over the same epochs, expected batch 1,024, clip 1.0. aim_stream: the stats
stage with w = 1 (record-level unit: each record is in one window, so the windows compose in
parallel and every record is (1, 1e-9)-DP), 1-way marginals of every field and 20 pairs (each
field with income, plus six a data owner would pick), numeric bins from the stage's DP quantiles.

Every model's process runs torch with one CPU thread (measured: two threads on the shared 2-core
machine made CTGAN's sampling 30x slower). Neural models (ours and peers) get the same **epoch
budget** (``--epochs``, 20 in the full run, 10 in ``--quick``, which also uses 2,000 train and
2,000 test rows), SDV's other defaults unchanged.

Metrics (synthetic rows = as many as the train split):

* SDMetrics QualityReport (``sdmetrics.reports.single_table.QualityReport``) against the train
  split: overall, column shapes, column pair trends;
* TSTR: ``HistGradientBoostingClassifier`` (sklearn defaults, native categorical support) trained
  on synthetic rows to predict income > 50K, scored on the test split (accuracy, F1 of >50K),
  against the same classifier trained on the real train split;
* fit seconds, sampling rows/s (``sample_columns`` of 100,000 rows for ours, median of 3;
  ``sample`` of 20,000 rows for the peers), peak RSS of the model's process;
* workload error for every model (the number that matters for DP ones): every column
  discretised the same way (numeric columns: 16 equal-frequency bins of the real train split,
  categorical columns as they are), then for each of the 105 2-way and 455 3-way marginals the
  total variation distance ``0.5 * sum |p_real - p_syn|`` of the normalised histograms; the mean
  over each set is reported.

Also measured: the publisher's sustained rate to Kafka (embedded broker, Avro, our neural model,
100,000 records, ``rate: 0``), and its rate in the 2 s before and after a hot swap to a newly
promoted version; with ``--device cuda``, the neural model's epoch time on GPU against CPU.

Run: ``.venv/bin/python -m benchmarks.tabular [--quick] [--only NAME ...] [--device cuda]``; the public
tables (issue 17: Wage, HMDA, diamonds, CPS1988, loans and the Adult fixture, with the mostlyai-qa
style accuracy and DCR share): ``.venv/bin/python -m benchmarks.tabular --suite public`` (see
:mod:`benchmarks.tab_public`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import dataset, machine, median, target, versions, write_result

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation", "relationship",
    "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
]  # fmt: skip
NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
EPSILON, DELTA = 1.0, 1e-9
STREAM_PAIRS = [(c, "income") for c in COLUMNS if c != "income"] + [
    ("education", "education-num"),
    ("marital-status", "relationship"),
    ("relationship", "sex"),
    ("age", "marital-status"),
    ("workclass", "occupation"),
    ("education", "occupation"),
]
OURS = ("gaussian_copula", "neural", "neural_dp", "aim", "mst", "aim_stream")
PEERS = ("sdv_gaussian_copula", "sdv_ctgan", "sdv_tvae")
DP_MODELS = ("neural_dp", "aim", "mst", "aim_stream")


@dataclass(frozen=True)
class Settings:
    """What one run uses (the quick run subsamples and shortens everything)."""

    quick: bool
    epochs: int
    train_rows: int | None
    eval_rows: int | None
    device: str
    seed: int = 0


def load(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Adult train and test, as the data README says to read them."""
    train = pd.read_csv(dataset("adult/adult_train_ctgan.csv"), skipinitialspace=True)[COLUMNS]
    test = pd.read_csv(dataset("adult/adult_test_uci.csv"), header=None, names=COLUMNS, skipinitialspace=True)
    test["income"] = test["income"].str.rstrip(".")
    if settings.train_rows is not None:
        train = train.sample(settings.train_rows, random_state=settings.seed).reset_index(drop=True)
    if settings.eval_rows is not None:
        test = test.sample(settings.eval_rows, random_state=settings.seed).reset_index(drop=True)
    return train, test


def public_labels() -> dict[str, list[str]]:
    """Adult's categorical domains as published with the data set (every value of train and test).

    Treated as public knowledge, as Private-PGM's ``adult-domain.json`` is: every DP model gets the
    same declared labels, so the budget goes to the data, not to rediscovering the code book.
    """
    full = Settings(quick=False, epochs=0, train_rows=None, eval_rows=None, device="cpu")
    train, test = load(full)
    return {c: sorted(set(train[c].astype(str)) | set(test[c].astype(str))) for c in COLUMNS if c not in NUMERIC}


def schema_of(frame: pd.DataFrame) -> Any:
    from tests.helpers import adult_schema

    return adult_schema(frame)


# ---------------------------------------------------------------------------------------------
# one model, in its own process
# ---------------------------------------------------------------------------------------------


def run_model(name: str, settings: Settings) -> dict[str, Any]:
    """Fit and sample one model; return timings, peak RSS and the synthetic rows (runs in a child process)."""
    import torch

    # One torch thread for every model, ours and the peers': on this 2-core machine, shared with other
    # work, two threads made SDV's CTGAN sample 2,000 rows in 2.4 s instead of 0.08 s (OpenMP spin-waits).
    torch.set_num_threads(1)
    train, _ = load(settings)
    started = time.perf_counter()
    sampler, extra = FITTERS[name](train, settings)
    fit_seconds = time.perf_counter() - started
    n = len(train)
    synthetic = sampler(n, 1)
    peer = name.startswith("sdv")
    speed_rows = (2_000 if peer else 20_000) if settings.quick else (20_000 if peer else 100_000)
    timings = []
    for rep in range(1 if peer or settings.quick else 3):
        t0 = time.perf_counter()
        sampler(speed_rows, 100 + rep)
        timings.append(time.perf_counter() - t0)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # SDV's preprocessing starts joblib's loky workers, which idle for 300 s before exiting and keep
    # this process from ending: stop them now.
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(loky, "_executor", None) if loky is not None else None
    if executor is not None:
        executor.shutdown(wait=True)
    return {
        "fit_seconds": fit_seconds,
        "sample_rows_per_s": speed_rows / median(timings),
        "sample_rows": speed_rows,
        "peak_rss_mib": peak_mib,
        "synthetic": synthetic[COLUMNS].to_dict("list"),
        **extra,
    }


def _ours(name: str, options: dict[str, Any]) -> Any:
    def fit(train: pd.DataFrame, settings: Settings) -> tuple[Any, dict[str, Any]]:
        from synthstream.models.training import make_generator

        model = make_generator(name, seed=settings.seed, options=options).fit(train, schema_of(train))
        extra: dict[str, Any] = {"settings": {k: v for k, v in options.items() if k != "dp"}}
        history = getattr(model, "history_", None)
        if history:
            extra["epochs"] = len(history)
            extra["final_loss"] = history[-1]["loss"]
        if getattr(model, "dp_spend_", None):
            extra["dp"] = model.dp_spend_
        if getattr(model, "guarantee_", None):
            extra["dp"] = model.guarantee_
        if hasattr(model, "rounds_"):
            extra["rounds"] = model.rounds_
        return (lambda n, s: pd.DataFrame(model.sample_columns(n, seed=s))), extra

    return fit


def _dp_context(key: str) -> Any:
    from synthstream.models.dp_budget import DPContext

    folder = Path(tempfile.mkdtemp(prefix="tabular-ledger-"))
    return DPContext(
        ledger_path=folder / "privacy.duckdb",
        stream="adult",
        epsilon=EPSILON,
        delta=DELTA,
        epsilon_per_fit=EPSILON,
        key=key,
    )


def fit_copula(train: pd.DataFrame, settings: Settings) -> tuple[Any, dict[str, Any]]:
    return _ours("gaussian_copula", {})(train, settings)


def fit_neural(train: pd.DataFrame, settings: Settings) -> tuple[Any, dict[str, Any]]:
    return _ours("neural", {"epochs": settings.epochs, "device": settings.device})(train, settings)


def fit_neural_dp(train: pd.DataFrame, settings: Settings) -> tuple[Any, dict[str, Any]]:
    options = {
        "epochs": settings.epochs,
        "device": settings.device,
        "dp": _dp_context("neural-dp"),
        "labels": public_labels(),
    }
    return _ours("neural", options)(train, settings)


def fit_aim(train: pd.DataFrame, settings: Settings) -> tuple[Any, dict[str, Any]]:
    options: dict[str, Any] = {"dp": _dp_context("aim"), "labels": public_labels()}
    if settings.quick:
        options.update(rounds=1, round_iters=60, iters=300, bins=16)  # rounds: the minimum, 2 x fields
    return _ours("aim", options)(train, settings)


def fit_mst(train: pd.DataFrame, settings: Settings) -> tuple[Any, dict[str, Any]]:
    options: dict[str, Any] = {"dp": _dp_context("mst"), "labels": public_labels()}
    if settings.quick:
        options.update(iters=300, bins=16)
    return _ours("mst", options)(train, settings)


class _Sink:
    """Where the statistics stage's events go in this benchmark: counted, not sent (no broker needed here)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send_batch(self, topic: str, messages: Any) -> None:
        self.sent += len(messages)

    async def send(self, topic: str, message: Any) -> None:
        self.sent += 1


@dataclass(frozen=True)
class _Source:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes | None = None
    key: bytes | None = None


def release_stream(train: pd.DataFrame, path: Path, quick: bool) -> dict[str, Any]:
    """Run the windowed DP statistics stage over the train split (16 windows) into a ledger at ``path``."""
    from synthstream.config import StatsConfig
    from synthstream.privacy.ledger import PrivacyLedger
    from synthstream.schemas.events import BudgetEvent, DeadLetterEvent, EventSerde, StatsEvent
    from synthstream.schemas.serde import InMemorySchemaStore
    from synthstream.streams.stats import StatsStage

    schema = schema_of(train)
    bounds = {c: (float(train[c].min()), float(train[c].max())) for c in NUMERIC}  # declared, public ranges
    config = StatsConfig.model_validate(
        {
            "enabled": True,
            "window_s": 60,
            "grace_s": 0,
            "epsilon_w": EPSILON,
            "delta": DELTA,
            "threshold_delta": 1e-11,
            "w": 1,
            "numeric": {
                c: {"bounds": bounds[c], "bins": 16 if quick else 32, "edges": "dp_quantiles"} for c in NUMERIC
            },
            "categorical": {c: {"values": labels} for c, labels in public_labels().items()},
            "pairs": [list(p) for p in STREAM_PAIRS],
        }
    )
    store = InMemorySchemaStore()
    sink = _Sink()
    stage = StatsStage(
        config=config,
        stream="adult",
        schema=schema,
        ledger=PrivacyLedger(path),
        producer=sink,
        stats_topic="adult.stats",
        budget_topic="budget",
        deadletter_topic="dead",
        stats_serde=EventSerde(StatsEvent, store),
        budget_serde=EventSerde(BudgetEvent, store),
        deadletter_serde=EventSerde(DeadLetterEvent, store),
    )
    records = train.to_dict("records")
    per_window = -(-len(records) // 16)
    base = 1_700_000_000_000 // 60_000 * 60_000

    async def feed() -> None:
        for start in range(0, len(records), 1_000):
            batch = records[start : start + 1_000]
            sources = [
                _Source("adult", 0, i, base + (i // per_window) * 60_000 + 1) for i in range(start, start + len(batch))
            ]
            await stage.observe(batch, sources)
        await stage.close()

    started = time.perf_counter()
    asyncio.run(feed())
    return {
        "windows_released": int(stage.counters["windows_released"]),
        "release_seconds": time.perf_counter() - started,
    }


def fit_stream(train: pd.DataFrame, settings: Settings) -> tuple[Any, dict[str, Any]]:
    from synthstream.models.marginal import StreamMarginalGenerator

    path = Path(tempfile.mkdtemp(prefix="tabular-stream-")) / "privacy.duckdb"
    stream_info = release_stream(train, path, settings.quick)
    started = time.perf_counter()
    model = StreamMarginalGenerator(
        seed=settings.seed, ledger_path=path, stream="adult", last_windows=16, iters=300 if settings.quick else 1_000
    )
    model.fit([], schema_of(train))  # reads the ledger only
    stream_info["fit_only_seconds"] = time.perf_counter() - started
    stream_info["dp"] = {**(model.guarantee_ or {}), "per_record": f"({EPSILON}, {DELTA})-DP: w=1, record unit"}
    return (lambda n, s: pd.DataFrame(model.sample_columns(n, seed=s))), stream_info


def _sdv(kind: str) -> Any:
    def fit(train: pd.DataFrame, settings: Settings) -> tuple[Any, dict[str, Any]]:
        import torch
        from sdv.metadata import Metadata
        from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

        torch.manual_seed(settings.seed)
        np.random.seed(settings.seed)
        metadata = Metadata.detect_from_dataframes({"adult": train})
        gpu = settings.device == "cuda" and torch.cuda.is_available()
        if kind == "gaussian_copula":
            synthesizer: Any = GaussianCopulaSynthesizer(metadata)
        elif kind == "ctgan":
            synthesizer = CTGANSynthesizer(metadata, epochs=settings.epochs, enable_gpu=gpu)
        else:
            synthesizer = TVAESynthesizer(metadata, epochs=settings.epochs, enable_gpu=gpu)
        synthesizer.fit({"adult": train})

        def sample(n: int, seed: int) -> pd.DataFrame:
            np.random.seed(seed)
            torch.manual_seed(seed)
            out = synthesizer.sample(n)
            return out["adult"] if isinstance(out, dict) else out

        return sample, {"settings": {"epochs": settings.epochs} if kind != "gaussian_copula" else {}}

    return fit


FITTERS: dict[str, Any] = {
    "gaussian_copula": fit_copula,
    "neural": fit_neural,
    "neural_dp": fit_neural_dp,
    "aim": fit_aim,
    "mst": fit_mst,
    "aim_stream": fit_stream,
    "sdv_gaussian_copula": _sdv("gaussian_copula"),
    "sdv_ctgan": _sdv("ctgan"),
    "sdv_tvae": _sdv("tvae"),
}


def in_child(name: str, settings: Settings) -> dict[str, Any]:
    """Run :func:`run_model` in a fresh spawned process (its own imports, RSS and CPU threads)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_model, name, settings).result()


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


def _metadata() -> dict[str, Any]:
    return {"columns": {c: {"sdtype": "numerical" if c in NUMERIC else "categorical"} for c in COLUMNS}}


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[COLUMNS].copy()
    for c in NUMERIC:
        out[c] = pd.to_numeric(out[c], errors="coerce")
    for c in COLUMNS:
        if c not in NUMERIC:
            out[c] = out[c].astype(str)
    return out


def quality(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, float]:
    """SDMetrics QualityReport: overall, column shapes, column pair trends."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from sdmetrics.reports.single_table import QualityReport

        report = QualityReport()
        report.generate(_clean(real), _clean(synthetic), _metadata(), verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return {
        "overall": float(report.get_score()),
        "column_shapes": float(props["Column Shapes"]),
        "pair_trends": float(props["Column Pair Trends"]),
    }


def tstr(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """HistGradientBoosting trained on ``train`` for income > 50K, scored on ``test``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, f1_score

    x, xt = _clean(train).drop(columns=["income"]), _clean(test).drop(columns=["income"])
    y = (_clean(train)["income"].str.strip() == ">50K").astype(int)
    yt = (_clean(test)["income"].str.strip() == ">50K").astype(int)
    for c in x.columns:
        if c not in NUMERIC:
            dtype = pd.CategoricalDtype(sorted(set(x[c]) | set(xt[c])))
            x[c], xt[c] = x[c].astype(dtype), xt[c].astype(dtype)
    if y.nunique() < 2:
        return {"accuracy": float(accuracy_score(yt, np.full(len(yt), y.iloc[0]))), "f1": 0.0}
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0).fit(x, y)
    predicted = model.predict(xt)
    return {"accuracy": float(accuracy_score(yt, predicted)), "f1": float(f1_score(yt, predicted))}


def workload_error(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, float]:
    """Mean total-variation distance over all 2- and 3-way marginals (see the module docstring)."""
    real, synthetic = _clean(real), _clean(synthetic)
    codes_real, codes_syn, sizes = {}, {}, {}
    for c in COLUMNS:
        if c in NUMERIC:
            edges = np.unique(np.quantile(real[c].dropna(), np.linspace(0, 1, 17)))[1:-1]
            codes_real[c] = np.searchsorted(edges, real[c].fillna(edges[0] if len(edges) else 0), side="right")
            codes_syn[c] = np.searchsorted(edges, synthetic[c].fillna(edges[0] if len(edges) else 0), side="right")
            sizes[c] = len(edges) + 1
        else:
            cats = sorted(set(real[c]) | set(synthetic[c]))
            lookup = {v: i for i, v in enumerate(cats)}
            codes_real[c] = real[c].map(lookup).to_numpy()
            codes_syn[c] = synthetic[c].map(lookup).to_numpy()
            sizes[c] = len(cats)
    out = {}
    for k in (2, 3):
        errors = []
        for clique in itertools.combinations(COLUMNS, k):
            hist = []
            for codes in (codes_real, codes_syn):
                flat = np.zeros(len(codes[clique[0]]), dtype=np.int64)
                for c in clique:
                    flat = flat * sizes[c] + codes[c]
                counts = np.bincount(flat, minlength=int(np.prod([sizes[c] for c in clique])))
                hist.append(counts / max(counts.sum(), 1))
            errors.append(0.5 * float(np.abs(hist[0] - hist[1]).sum()))
        out[f"{k}way"] = float(np.mean(errors))
    return out


# ---------------------------------------------------------------------------------------------
# publisher throughput and hot swap
# ---------------------------------------------------------------------------------------------


async def publisher_rate(train: pd.DataFrame, records: int, epochs: int) -> dict[str, Any]:
    """Our neural model through the publisher into the embedded broker (Avro), with a hot swap midway."""
    from synthstream.config import PublisherConfig
    from synthstream.connectors.broker import EmbeddedBroker
    from synthstream.connectors.kafka import Producer, ensure_topics
    from synthstream.models.neural import NeuralGenerator
    from synthstream.models.registry import Lineage, ModelRegistry
    from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore
    from synthstream.settings import KafkaSettings
    from synthstream.streams.publisher import SyntheticPublisher

    schema = schema_of(train)
    folder = Path(tempfile.mkdtemp(prefix="tabular-publisher-"))
    registry = ModelRegistry(folder, "adult")
    lineage = Lineage(rows=len(train), schema_fingerprint=schema.fingerprint(), seed=0, fit_seconds=0.0)
    first = NeuralGenerator(seed=1, epochs=epochs).fit(train, schema)
    second = NeuralGenerator(seed=2, epochs=epochs).fit(train, schema)
    registry.promote(registry.register(first, lineage=lineage).version)
    v2 = registry.register(second, lineage=lineage).version
    serde = AvroRecordSerde(schema, InMemorySchemaStore(), subject="adult.synthetic-value")
    with EmbeddedBroker() as broker:
        settings = KafkaSettings.for_embedded(broker.bootstrap_servers)
        await ensure_topics(settings, ["adult.synthetic"])
        async with Producer(settings) as producer:
            publisher = SyntheticPublisher(
                registry=registry,
                producer=producer,
                topic="adult.synthetic",
                encode_many=serde.encode_many,
                config=PublisherConfig(rate=0, batch_size=2_000, max_records=records),
                stream="adult",
            )
            marks: list[tuple[float, int]] = []
            stop = asyncio.Event()

            async def watch() -> None:
                while not publisher.done.is_set():
                    marks.append((time.perf_counter(), publisher.published))
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            started = time.perf_counter()
            run = asyncio.create_task(publisher.run(stop))
            while publisher.published < records // 2:  # noqa: ASYNC110 - the publisher has no event for its count
                await asyncio.sleep(0.01)
            swapped_at = time.perf_counter()
            registry.promote(v2)
            await run
            elapsed = time.perf_counter() - started
            await watcher

    def rate(lo: float, hi: float) -> float:
        inside = [(t, n) for t, n in marks if lo <= t <= hi]
        if len(inside) < 2:
            return float("nan")
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    return {
        "records": publisher.published,
        "records_per_s": publisher.published / elapsed,
        "rate_2s_before_swap": rate(swapped_at - 2.0, swapped_at),
        "rate_2s_after_swap": rate(swapped_at, swapped_at + 2.0),
        "versions_used": publisher.versions_used,
    }


def gpu_epochs(train: pd.DataFrame, epochs: int) -> dict[str, Any]:
    """Neural epoch time on CUDA against CPU (same data, same epochs)."""
    import torch

    from synthstream.models.neural import NeuralGenerator

    out: dict[str, Any] = {"cuda_available": torch.cuda.is_available()}
    if not torch.cuda.is_available():
        return out
    schema = schema_of(train)
    for device in ("cpu", "cuda"):
        started = time.perf_counter()
        NeuralGenerator(seed=0, epochs=epochs, device=device).fit(train, schema)  # type: ignore[arg-type]
        out[f"{device}_epoch_seconds"] = (time.perf_counter() - started) / epochs
    out["device_name"] = torch.cuda.get_device_name(0)
    return out


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Subsample and shorten everything (< 5 minutes).")
    parser.add_argument("--only", nargs="*", choices=[*OURS, *PEERS], help="Run only these models.")
    parser.add_argument("--epochs", type=int, default=None, help="Epoch budget of every neural model.")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="Device of the neural models.")
    parser.add_argument("--name", default=None, help="Result file name (benchmarks/results/<name>.json).")
    parser.add_argument(
        "--suite",
        choices=["adult", "public"],
        default="adult",
        help="adult: every model of ours (DP included) on UCI Adult; public: ours vs SDV on the public tables of "
        "benchmarks/tab_data.py with accuracy and DCR share (benchmarks/tab_public.py).",
    )
    parser.add_argument("--tables", nargs="*", default=None, help="public suite: only these tables.")
    parser.add_argument("--max-train", type=int, default=5_000, help="public suite: training rows per table.")
    parser.add_argument("--no-peers", action="store_true", help="public suite: ours only.")
    args = parser.parse_args()
    if args.suite == "public":
        from benchmarks.tab_public import run_public

        max_train = 2_000 if args.quick else args.max_train
        run_public(only=args.tables, max_train=max_train, peers=not args.no_peers, name=args.name or "tabular_public")
        return
    args.name = args.name or "tabular"
    quick = bool(args.quick)
    settings = Settings(
        quick=quick,
        epochs=args.epochs or (10 if quick else 20),
        train_rows=2_000 if quick else None,
        eval_rows=2_000 if quick else None,
        device=args.device,
    )
    train, test = load(settings)
    names = list(args.only or [*OURS, *PEERS])
    results: dict[str, dict[str, Any]] = {}
    real = tstr(train, test)
    for name in names:
        print(f"[tabular] {name} ...", flush=True)
        started = time.perf_counter()
        raw = in_child(name, settings)
        child_seconds = time.perf_counter() - started
        synthetic = pd.DataFrame(raw.pop("synthetic"))
        raw["quality"] = quality(train, synthetic)
        raw["tstr"] = tstr(synthetic, test)
        raw["workload_error"] = workload_error(train, synthetic)
        results[name] = raw
        print(
            f"[tabular] {name}: {time.perf_counter() - started:.0f}s (child {child_seconds:.0f}s) "
            f"quality={raw['quality']['overall']:.3f} "
            f"f1={raw['tstr']['f1']:.3f} 2way={raw['workload_error']['2way']:.3f} fit={raw['fit_seconds']:.0f}s",
            flush=True,
        )
    publisher = asyncio.run(publisher_rate(train, 20_000 if quick else 100_000, 2 if quick else 5))
    gpu = gpu_epochs(train, settings.epochs) if args.device == "cuda" else {"cuda_available": False}
    ours = {k: v for k, v in results.items() if k in OURS}
    peers = {k: v for k, v in results.items() if k in PEERS}
    targets: dict[str, Any] = {}
    if "neural" in results:
        neural = results["neural"]
        targets["neural_quality_overall"] = target(0.90, neural["quality"]["overall"])
        peer_best = max((p["quality"]["overall"] for p in peers.values()), default=float("nan"))
        targets["neural_quality_minus_best_peer"] = target(0.0, neural["quality"]["overall"] - peer_best)
        targets["neural_tstr_f1_gap_to_real"] = target(0.05, real["f1"] - neural["tstr"]["f1"], higher_is_better=False)
        targets["neural_sampling_rows_per_s"] = target(100_000, neural["sample_rows_per_s"])
    if "aim" in results and "mst" in results:
        gap = results["mst"]["workload_error"]["2way"] - results["aim"]["workload_error"]["2way"]
        targets["aim_minus_mst_2way_workload_error_advantage"] = target(0.0, gap)
        gap3 = results["mst"]["workload_error"]["3way"] - results["aim"]["workload_error"]["3way"]
        targets["aim_minus_mst_3way_workload_error_advantage"] = target(0.0, gap3)
    if "aim" in results:
        targets["aim_fit_seconds"] = target(600, results["aim"]["fit_seconds"], higher_is_better=False)
    targets["publisher_records_per_s"] = target(20_000, publisher["records_per_s"])
    result = {
        "machine": machine(),
        "versions": versions(
            "synthstream", "torch", "opacus", "mbi", "jax", "opendp", "sdv", "sdmetrics", "scikit-learn"
        ),
        "settings": {
            "quick": quick,
            "epochs_every_neural_model": settings.epochs,
            "train_rows": len(train),
            "eval_rows": len(test),
            "dp": f"({EPSILON}, {DELTA}) per record for neural_dp, aim, mst, aim_stream",
            "repeats": "one fit per model (CPU budget); sampling speed: median of 3 (ours)",
        },
        "real": {"tstr": real},
        "ours": ours,
        "peers": peers,
        "publisher": publisher,
        "gpu": gpu,
        "targets": targets,
    }
    path = write_result(args.name, result)
    print(f"[tabular] wrote {path}")


if __name__ == "__main__":
    main()
