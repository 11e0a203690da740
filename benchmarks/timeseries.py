"""Time-series synthesis: our sequence generator against SDV's PARSynthesizer on real sequences.

Datasets (SYNTHSTREAM_DATA, default ../shared/data):

* ``beijing_air``: three stations, hourly 2013-03 to 2017-02, real missing values. One
  sequence per station and ISO week (626 sequences of up to 168 hours, 105,192 rows);
  static attribute ``station``; 11 numeric fields and the categorical wind direction.
* ``nyc_taxi`` (NAB): one series of half-hourly passenger counts, July 2014 to January
  2015, cut into daily windows (215 sequences of 48 steps); no static attributes.

Both models get the same sequences. PAR is the peer (BUSL-licensed, benchmark only): it
trains full-batch, one gradient step per epoch, with a per-sequence Python loop; it runs
with its default 128 epochs (``--par-epochs``; quick mode 8) and is fitted once (its fit
takes minutes); ours is fitted ``--repeats`` times (median seconds), with the per-dataset
settings in :func:`beijing` / :func:`nyc_taxi` (chosen in the model's docstring). PAR
samples step by step, one sequence at a time, so each model samples ``--eval-sequences``
sequences (200) and the metrics of :mod:`synthstream.evaluation.timeseries` compare them
with all real sequences.
Peak RSS is sampled every 50 ms during each model's fit and sampling (absolute process
RSS, and the growth over the phase's start).

Run: ``.venv/bin/python -m benchmarks.timeseries [--quick] [--device cuda]``; ``--quick``
uses one year of Beijing and two months of taxi data with fewer epochs.
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import psutil
import torch

from benchmarks.common import dataset, machine, median, target, versions, write_result
from synthstream.evaluation.timeseries import METRICS, SeriesSpec, is_better, timeseries_report
from synthstream.log import configure_logging
from synthstream.models.sequence import SequenceGenerator
from synthstream.processors.sequences import sliding_windows
from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema

DATA = dataset(".")  # SYNTHSTREAM_DATA, default ../shared/data
AIR_NUMERIC = ["PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "WSPM"]
MONDAY = pd.Timestamp("2013-03-04", tz="UTC")


class PeakRss:
    """Samples this process's RSS (MiB) in a thread while a phase runs."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.start_mib = 0.0
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        proc = psutil.Process()
        self.start_mib = self.peak_mib = proc.memory_info().rss / 2**20

        def run() -> None:
            while not self._stop.wait(self.interval):
                self.peak_mib = max(self.peak_mib, proc.memory_info().rss / 2**20)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mib = max(self.peak_mib, psutil.Process().memory_info().rss / 2**20)


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------


def beijing(quick: bool) -> dict[str, Any]:
    frames = [pd.read_csv(f) for f in sorted(glob.glob(str(DATA / "sequences" / "beijing_air" / "*.csv")))]
    df = pd.concat(frames, ignore_index=True)
    df["ts"] = pd.to_datetime(df[["year", "month", "day", "hour"]]).dt.tz_localize("UTC")
    if quick:
        df = df[(df.ts >= pd.Timestamp("2014-03-03", tz="UTC")) & (df.ts < pd.Timestamp("2015-03-02", tz="UTC"))]
    fields = [
        FieldSpec(name="station", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
        *(FieldSpec(name=c, type=FieldType.DOUBLE, role=FieldRole.NUMERIC, nullable=True) for c in AIR_NUMERIC),
        FieldSpec(name="wd", type=FieldType.STRING, role=FieldRole.CATEGORICAL, nullable=True),
    ]
    schema = RecordSchema(name="AirQuality", fields=tuple(fields))
    real = df[schema.field_names].reset_index(drop=True)
    week = ((real["ts"] - MONDAY).dt.days // 7).astype(str)
    real["seq"] = real["station"] + ":" + week
    return {
        "name": "beijing_air",
        "schema": schema,
        "real": real,
        "spec": SeriesSpec(key="seq", time="ts", numeric=tuple(AIR_NUMERIC), categorical=("wd",)),
        "ours": {
            "entity_field": "station",
            "static_fields": ["station"],
            "period": "week",
            "batch_size": 128,
            "learning_rate": 0.01,
            "epochs": 40,
        },
        "fit": lambda model, frame: model.fit(frame[schema.field_names], schema),
        "par_context": ["station"],
        "par_categorical": ["station", "wd"],
        "entity": "station x ISO week (<=168 hourly steps)",
        "window": 24,
    }


def nyc_taxi(quick: bool) -> dict[str, Any]:
    series = pd.read_csv(DATA / "nab" / "nyc_taxi.csv")
    series["ts"] = pd.to_datetime(series["timestamp"]).dt.tz_localize("UTC")
    if quick:
        series = series[series.ts < pd.Timestamp("2014-09-01", tz="UTC")]
    schema = RecordSchema(
        name="NycTaxi",
        fields=(
            FieldSpec(name="ts", type=FieldType.TIMESTAMP, role=FieldRole.DATETIME),
            FieldSpec(name="value", type=FieldType.LONG, role=FieldRole.NUMERIC),
        ),
    )
    records = [{"ts": t.to_pydatetime(), "value": int(v)} for t, v in zip(series.ts, series.value, strict=True)]
    windows = sliding_windows(records, 48, 48)  # one day per window, as the keyed state's windows mode cuts it
    real = pd.DataFrame([dict(r, seq=f"w{k:04d}") for k, w in enumerate(windows) for r in w])
    return {
        "name": "nyc_taxi",
        "schema": schema,
        "real": real,
        "spec": SeriesSpec(key="seq", time="ts", numeric=("value",)),
        "ours": {"entity_field": None, "batch_size": 64, "learning_rate": 0.015, "epochs": 60},
        "fit": lambda model, frame: model.fit_sequences(
            [g[schema.field_names].to_dict("records") for _, g in frame.groupby("seq", sort=True)], schema
        ),
        "par_context": [],
        "par_categorical": [],
        "entity": "daily window of the single series (48 half-hourly steps)",
        "window": 48,
    }


# ---------------------------------------------------------------------------------------------
# the two models
# ---------------------------------------------------------------------------------------------


def run_ours(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    real: pd.DataFrame = data["real"]
    options: dict[str, Any] = {"time_field": "ts", "seed": 0, "device": args.device, **data["ours"]}
    if args.epochs_scale != 1.0:
        options["epochs"] = max(1, round(options["epochs"] * args.epochs_scale))
    fit_seconds = []
    model: SequenceGenerator | None = None
    with PeakRss() as rss:
        for _ in range(args.repeats):
            model = SequenceGenerator(**options)
            started = time.perf_counter()
            data["fit"](model, real)
            fit_seconds.append(time.perf_counter() - started)
        assert model is not None
        started = time.perf_counter()
        sequences = model.sample_sequences(args.eval_sequences, seed=1)
        sample_seconds = time.perf_counter() - started
    synthetic = pd.DataFrame([dict(e, seq=s.entity_id) for s in sequences for e in s.events])
    return {
        "synthetic": synthetic,
        "sequences_sampled": len(sequences),
        "events_sampled": len(synthetic),
        "fit_seconds": median(fit_seconds),
        "fit_seconds_runs": [round(s, 2) for s in fit_seconds],
        "sample_seconds": sample_seconds,
        "peak_rss_mib": rss.peak_mib,
        "rss_growth_mib": rss.peak_mib - rss.start_mib,
        "config": {**model.config(), "device_used": model.fit_report_["device"]},
        "training": {k: v for k, v in model.fit_report_.items() if k != "seconds"},
    }


def run_par(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from sdv.metadata import Metadata
    from sdv.sequential import PARSynthesizer

    real: pd.DataFrame = data["real"]
    spec: SeriesSpec = data["spec"]
    columns = ["seq", "ts", *data["par_context"], *spec.numeric, *spec.categorical]
    columns = list(dict.fromkeys(columns))
    table = real[columns].copy()
    table["ts"] = table["ts"].dt.tz_localize(None)
    metadata = Metadata.detect_from_dataframes({"series": table})
    metadata.update_column("seq", sdtype="id", table_name="series")
    metadata.set_sequence_key("seq", table_name="series")
    metadata.set_sequence_index("ts", table_name="series")
    for column in spec.numeric:
        metadata.update_column(column, sdtype="numerical", table_name="series")
    for column in data["par_categorical"]:
        metadata.update_column(column, sdtype="categorical", table_name="series")
    par = PARSynthesizer(
        metadata,
        epochs=args.par_epochs,
        context_columns=data["par_context"] or None,
        cuda=args.device == "cuda",
        verbose=False,
    )
    with PeakRss() as rss:
        started = time.perf_counter()
        par.fit({"series": table})
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        synthetic = par.sample_sequences(args.eval_sequences)["series"]
        sample_seconds = time.perf_counter() - started
    synthetic["ts"] = pd.to_datetime(synthetic["ts"]).dt.tz_localize("UTC")
    return {
        "synthetic": synthetic,
        "sequences_sampled": int(synthetic["seq"].nunique()),
        "events_sampled": len(synthetic),
        "fit_seconds": fit_seconds,
        "fit_seconds_per_epoch": fit_seconds / max(args.par_epochs, 1),
        "sample_seconds": sample_seconds,
        "peak_rss_mib": rss.peak_mib,
        "rss_growth_mib": rss.peak_mib - rss.start_mib,
        "config": {
            "epochs": args.par_epochs,
            "default_epochs": 128,
            "context_columns": data["par_context"],
            "cuda": args.device == "cuda",
            "fits": 1,
        },
    }


def _clean(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in report.items():
        if isinstance(value, dict):
            out[key] = _clean(value)
        elif isinstance(value, float):
            out[key] = None if not np.isfinite(value) else round(value, 4)
        else:
            out[key] = value
    return out


def evaluate(data: dict[str, Any], args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    real, spec, window = data["real"], data["spec"], data["window"]
    log(f"{data['name']}: {real['seq'].nunique()} sequences, {len(real)} rows")
    ours = run_ours(data, args)
    log(f"  ours fit {ours['fit_seconds']:.1f}s sample {ours['sample_seconds']:.1f}s")
    ours["metrics"] = timeseries_report(real, ours.pop("synthetic"), spec, window=window)
    log(f"  ours metrics {json.dumps(_clean(ours['metrics']))}")
    gc.collect()
    result: dict[str, Any] = {"rows": len(real), "sequences": int(real["seq"].nunique()), "entity": data["entity"]}
    result["ours"] = _clean(ours)
    if args.par_epochs > 0:
        par = run_par(data, args)
        log(f"  PAR fit {par['fit_seconds']:.1f}s sample {par['sample_seconds']:.1f}s")
        par["metrics"] = timeseries_report(real, par.pop("synthetic"), spec, window=window)
        log(f"  PAR metrics {json.dumps(_clean(par['metrics']))}")
        result["par"] = _clean(par)
    gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (< 5 min on 2 cores)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="device of both models")
    parser.add_argument(
        "--epochs-scale", type=float, default=None, help="scale our per-dataset epochs (default 1, quick 0.5)"
    )
    parser.add_argument("--par-epochs", type=int, default=None, help="PAR epochs (default 128, quick 8; 0 skips)")
    parser.add_argument("--repeats", type=int, default=None, help="fits of ours for the median (default 3, quick 1)")
    parser.add_argument(
        "--eval-sequences", type=int, default=None, help="sequences each model samples (default 200, quick 40)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both models (default 1)")
    parser.add_argument("--datasets", default="beijing_air,nyc_taxi", help="comma-separated")
    parser.add_argument("--name", default="timeseries", help="result file name (benchmarks/results/<name>.json)")
    args = parser.parse_args()
    args.epochs_scale = args.epochs_scale or (0.5 if args.quick else 1.0)
    args.par_epochs = (8 if args.quick else 128) if args.par_epochs is None else args.par_epochs
    args.eval_sequences = args.eval_sequences or (40 if args.quick else 200)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    configure_logging(level="WARNING")
    logging.getLogger("sdv").setLevel(logging.ERROR)
    logging.getLogger("rdt").setLevel(logging.ERROR)
    logging.getLogger("copulas").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)

    loaders = {"beijing_air": beijing, "nyc_taxi": nyc_taxi}
    datasets: dict[str, Any] = {}
    for name in args.datasets.split(","):
        datasets[name] = evaluate(loaders[name](args.quick), args, log)

    targets: dict[str, Any] = {}
    for name, res in datasets.items():
        ours_m = res["ours"]["metrics"]
        targets[f"{name}.discriminative"] = target(0.65, ours_m["discriminative"] or 1.0, higher_is_better=False)
        if "par" in res:
            par_m = res["par"]["metrics"]
            outcomes = {m: outcome(m, ours_m[m], par_m[m]) for m in METRICS}
            res["outcomes_vs_par"] = outcomes
            informative = [m for m, o in outcomes.items() if o in ("win", "loss")]
            targets[f"{name}.metrics_better_than_par"] = {
                "goal": len(informative),
                "value": sum(outcomes[m] == "win" for m in informative),
                "met": bool(informative) and all(outcomes[m] == "win" for m in informative),
                "lost": [m for m in informative if outcomes[m] == "loss"],
                "not_informative": {m: o for m, o in outcomes.items() if o not in ("win", "loss")},
            }
            speedup = res["par"]["fit_seconds"] / max(res["ours"]["fit_seconds"], 1e-9)
            res["fit_speedup_vs_par"] = round(speedup, 2)
            targets[f"{name}.fit_speedup_vs_par"] = target(10.0, speedup)
    result = {
        "machine": {**machine(), "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
        "versions": versions("torch", "opacus", "sdv", "deepecho", "scikit-learn", "numpy", "pandas"),
        "settings": {
            "quick": args.quick,
            "device": args.device,
            "ours_epochs_scale": args.epochs_scale,
            "par_epochs": args.par_epochs,
            "repeats": args.repeats,
            "eval_sequences": args.eval_sequences,
        },
        "ours": {name: res["ours"] for name, res in datasets.items()},
        "peers": {"sdv.PARSynthesizer": {name: res["par"] for name, res in datasets.items() if "par" in res}},
        "comparison": {
            name: {
                k: res[k] for k in ("rows", "sequences", "entity", "wins_over_par", "fit_speedup_vs_par") if k in res
            }
            for name, res in datasets.items()
        },
        "targets": targets,
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = write_result(args.name, result)
    log(f"wrote {path}")
    for key, value in targets.items():
        log(f"  {key}: {value}")


def outcome(metric: str, ours: float | None, peer: float | None) -> str:
    """``win``/``loss``; ``tie`` when both are equal (e.g. both 0 on data without nulls); ``n/a`` when undefined.

    A metric undefined on a dataset (cross-correlation of a single field) or tied at the same
    value cannot separate the two models, so it is reported but not counted as won or lost.
    """
    if ours is None or peer is None:
        return "n/a"
    if ours == peer:
        return "tie"
    return "win" if is_better(metric, float(ours), float(peer)) else "loss"


if __name__ == "__main__":
    main()
