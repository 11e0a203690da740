"""End-to-end CLI runs of the four public series (issue 16's done criterion): replay -> run -> drain.

For each dataset of :mod:`benchmarks.ts_data`, on a fresh embedded broker and a fresh state
directory, exactly as a user would type it (subprocesses of the ``synthstream`` command):

1. the package's table is written to CSV unchanged (no manual data fixes) and replayed with
   ``synthstream replay <csv> --topic <name>``;
2. ``synthstream run --config <name>.yaml`` runs a pipeline whose ``sequence:`` section names the
   dataset's entity/time/static layout (:attr:`TsDataset.cli`), first fit after the whole replay
   (``training.every_records`` = the table's rows), the feed unpaced (``speedup: 0``) and capped at
   ``max_records``; the run is stopped with SIGINT once the sequence topic holds ``max_records``
   (the feed does not end the run by itself), or at the deadline;
3. ``synthstream drain <name>.sequences --parquet ...`` drains the feed, and the drained table is
   checked against the real one: sequence ids present, calendar columns vs the timestamp,
   timestamps on the grid and inside the real span, null rates, repeated extremes.

Each step's exit status, the error events of the run's JSON log (event, error type, message) and
the last lines of its stderr are kept: where a dataset fails, the result names the exact error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmarks.cli_steps import count_records as _count
from benchmarks.cli_steps import drained_count as _drained_count
from benchmarks.cli_steps import errors as _errors
from benchmarks.cli_steps import step as _step
from benchmarks.cli_steps import tail as _tail
from benchmarks.ts_data import TsDataset
from benchmarks.ts_discriminator import (
    calendar_consistency,
    extreme_repetition,
    grid_share,
    null_rates,
    step_relations,
    trend_correlation,
)
from synthstream.evaluation.timeseries import SeriesSpec

__all__ = ["cli_run"]

_CLI = [str(Path(sys.executable).with_name("synthstream"))]
_META = ("_topic", "_partition", "_offset", "_timestamp_ms", "_key", "_entity")


def _config(ds: TsDataset, csv: Path, state: Path, *, epochs: int, max_records: int) -> dict[str, Any]:
    rows = len(ds.raw)
    return {
        "stream": ds.name.replace("_", "-"),
        "source": {"topic": ds.name, "sample_file": str(csv)},
        "training": {"every_records": rows, "every_seconds": 3600, "min_records": 100},
        "sequence": {
            "enabled": True,
            **ds.cli,
            "min_sequences": 20,
            "model": {"epochs": epochs, "device": "cpu"},
            "publisher": {"speedup": 0, "max_records": max_records},
        },
        "state_dir": str(state),
    }


def _times(values: pd.Series, raw: pd.Series) -> pd.Series:
    """Drained time values as UTC timestamps; integer years (the raw field is an integer) as 1 January."""
    if pd.api.types.is_numeric_dtype(raw) and pd.api.types.is_numeric_dtype(values):
        return pd.to_datetime(values.astype("Int64").astype(str) + "-01-01", errors="coerce", utc=True)
    if pd.api.types.is_numeric_dtype(values):  # epoch milliseconds or microseconds
        unit = "us" if values.abs().max() > 1e14 else "ms"
        return pd.to_datetime(values, unit=unit, utc=True, errors="coerce")
    return pd.to_datetime(values, utc=True, errors="coerce", format="mixed")


def _per_sequence(ds: TsDataset, out: pd.DataFrame, raw: pd.DataFrame, numeric: list[str]) -> dict[str, Any]:
    """Per synthetic sequence (the ``synthstream-entity`` header): lengths, trend, quasi-static and age steps.

    The real reference groups by the entity field (panel, airports x week) or by windows of the
    configured length (single series).
    """
    spec = SeriesSpec(key="_entity", time="_ts", numeric=tuple(numeric))
    if ds.cli.get("entity_field"):
        real_key = raw[ds.cli["entity_field"]].astype(str)
        if ds.cli.get("period") == "week":
            real_key = real_key + ":" + raw["_ts"].dt.strftime("%G-%V")
    else:
        real_key = pd.Series(np.arange(len(raw)) // int(ds.cli.get("window_length", 52)), index=raw.index).astype(str)
    real = raw.assign(_entity=real_key)
    sizes, real_sizes = out.groupby("_entity").size(), real.groupby("_entity").size()
    report: dict[str, Any] = {
        "count": int(sizes.size),
        "length_mean": float(sizes.mean()),
        "length_mean_real": float(real_sizes.mean()),
        "one_event_share": float((sizes == 1).mean()),
        "one_event_share_real": float((real_sizes == 1).mean()),
    }
    if ds.trend_field and ds.trend_field in out.columns:
        report["trend"] = trend_correlation(out, spec, ds.trend_field)
        report["trend_real"] = trend_correlation(real, spec, ds.trend_field)
    advances = {"age": 1.0} if "age" in numeric else {}
    if ds.quasi_static or advances:
        constant = [c for c in ds.quasi_static if c in out.columns]
        report["steps"] = step_relations(out, spec, constant=constant, advances=advances)
        report["steps_real"] = step_relations(real, spec, constant=constant, advances=advances)
    return report


def _check_drained(ds: TsDataset, path: Path) -> dict[str, Any]:
    out = pd.read_parquet(path)
    raw = ds.raw
    fields = [c for c in raw.columns if c in out.columns]
    missing = [c for c in raw.columns if c not in out.columns]
    time_field = ds.cli["time_field"]
    entity = ds.cli.get("entity_field")
    report: dict[str, Any] = {
        "rows": len(out),
        "fields_missing": missing,
        "key_distinct": int(out["_key"].nunique()) if "_key" in out.columns else None,
        "entity_header_share": float(out["_entity"].notna().mean()) if "_entity" in out.columns else 0.0,
        "entity_field_distinct": int(out[entity].nunique()) if entity and entity in out.columns else None,
    }
    if time_field in out.columns:
        raw_ts = _times(raw[time_field], raw[time_field])
        ts = _times(out[time_field], raw[time_field])
        report["time_parsed_share"] = float(ts.notna().mean())
        report["time_min"] = str(ts.min())
        report["time_max"] = str(ts.max())
        report["real_time_span"] = [str(raw_ts.min()), str(raw_ts.max())]
        report["grid"] = grid_share(ts.dropna(), ds.grid, reference=raw_ts.dropna())
        report["grid_real"] = grid_share(raw_ts.dropna(), ds.grid, reference=raw_ts.dropna())
        if ds.derived:
            frame = out.assign(_ts=ts).dropna(subset=["_ts"])
            report["calendar"] = calendar_consistency(frame, "_ts", ds.derived, tz=ds.calendar_tz)
            real = raw.assign(_ts=raw_ts)
            report["calendar_real"] = calendar_consistency(real, "_ts", ds.derived, tz=ds.calendar_tz)
    numeric = [c for c in fields if c != time_field and pd.api.types.is_numeric_dtype(raw[c])]
    if time_field in out.columns and "_entity" in out.columns:
        report["sequences"] = _per_sequence(ds, out.assign(_ts=ts), raw.assign(_ts=raw_ts), numeric)
    report["nulls"] = null_rates(raw, out, [c for c in fields if c != time_field])
    report["extremes"] = {"max_excess": extreme_repetition(raw, out, numeric)["max_excess"]}
    return report


def cli_run(
    ds: TsDataset,
    *,
    epochs: int,
    max_records: int,
    deadline_s: float,
    work: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Replay, run and drain one dataset through the ``synthstream`` command; what happened at each step."""
    from synthstream.connectors.broker import EmbeddedBroker

    with contextlib.ExitStack() as stack:
        tmp = work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"ts-cli-{ds.name}-")))
        tmp.mkdir(parents=True, exist_ok=True)
        csv = tmp / f"{ds.name}.csv"
        ds.raw.to_csv(csv, index=False)
        cfg = _config(ds, csv, tmp / "state", epochs=epochs, max_records=max_records)
        cfg_path = tmp / f"{ds.name}.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        feed = f"{cfg['stream']}.sequences"
        result: dict[str, Any] = {"config": cfg["sequence"], "rows_replayed": len(ds.raw), "feed_topic": feed}
        broker = stack.enter_context(EmbeddedBroker())
        boot = ["--bootstrap-servers", broker.bootstrap_servers]

        replay = _step([*_CLI, "replay", str(csv), "--topic", ds.name, *boot], 300, tmp / "replay.log")
        result["replay"] = replay
        log(f"  cli {ds.name}: replay rc={replay['rc']} {replay['seconds']}s")
        if replay["rc"] != 0:
            result["succeeded"] = False
            result["failed_at"] = "replay"
            return result

        run_log = tmp / "run.log"
        started = time.perf_counter()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [*_CLI, "run", "--config", str(cfg_path), "--json-logs", *boot]
        with run_log.open("w") as sink:
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
            ended_by, published, first_record_s = "deadline", 0, None
            while True:
                time.sleep(5.0)
                if proc.poll() is not None:
                    ended_by = "exited"
                    break
                published = _count(broker.bootstrap_servers, feed)
                if published and first_record_s is None:
                    first_record_s = round(time.perf_counter() - started, 1)
                if published >= max_records:
                    ended_by = "max_records reached (SIGINT sent)"
                    break
                if time.perf_counter() - started > deadline_s:
                    break
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    ended_by += "; killed after SIGINT did not stop it in 60 s"
        text = run_log.read_text(errors="replace")
        result["run"] = {
            "rc": proc.returncode,
            "ended_by": ended_by,
            "seconds": round(time.perf_counter() - started, 1),
            "first_feed_record_s": first_record_s,
            "feed_records_at_stop": published,
            "errors": _errors(text),
            "output_tail": _tail(text),
        }
        log(f"  cli {ds.name}: run rc={proc.returncode} {ended_by} after {result['run']['seconds']}s")

        parquet = tmp / "feed.parquet"
        drain = _step([*_CLI, "drain", feed, "--parquet", str(parquet), *boot], 300, tmp / "drain.log")
        result["drain"] = drain
        log(f"  cli {ds.name}: drain rc={drain['rc']} {drain['output_tail'].splitlines()[-1:]} ")
        if drain["rc"] == 0 and parquet.exists():
            try:
                result["feed"] = _check_drained(ds, parquet)
            except Exception as exc:  # the check itself must not hide the run's outcome
                result["feed"] = {"check_failed": f"{type(exc).__name__}: {exc}"[:500]}
        drained = _drained_count(drain["output_tail"])
        result["succeeded"] = bool(drain["rc"] == 0 and drained and not result["run"]["errors"])
        if not result["succeeded"]:
            result["failed_at"] = "drain" if drain["rc"] != 0 else "run"
        return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


jsonable = _jsonable
