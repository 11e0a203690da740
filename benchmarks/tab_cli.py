"""End-to-end CLI runs of the public tables: a new user's own table, no hand edits (init -> replay -> run -> drain).

For each table of :mod:`benchmarks.tab_data` (its training part, at most ``--rows`` rows), on a
fresh embedded broker and in a fresh temporary folder, exactly as a user would type it
(subprocesses of the ``synthstream`` command):

1. the table is written to CSV as loaded (``index=False``; no value, name or type edited);
2. ``synthstream init <csv> --topic <fresh topic> -o <name>.yaml`` writes the pipeline, used
   unchanged (the result's ``edits`` lists every change made to it: none);
3. ``synthstream replay <csv> --topic <topic>`` feeds the table into the source topic;
4. ``synthstream run --config <name>.yaml --json-logs --state-dir ... --metrics-port 0`` runs it.
   The generated file leaves ``publisher.max_records`` commented out, so the run does not end by
   itself: it is stopped the way a user stops it, with Ctrl-C (SIGINT), once the synthetic topic
   holds ``--records`` records, or once a fit failed (after a short grace), or at ``--deadline``;
5. ``synthstream drain <stream>.synthetic --parquet ...`` drains the synthetic topic, and the
   drained columns are compared with the table's.

Per table the result keeps each step's exit status and seconds, the records drained, the columns
drained vs the table's, the versions trained / promoted / rejected and the generator chosen
(from the run's ``training.*`` JSON log events), the run's error events (event, error type,
message) and, where a step failed, the tail of its log. Written to
``benchmarks/results/tabular_cli.json``.

Run (one table at a time keeps a small machine responsive)::

    .venv/bin/python -m benchmarks.tab_cli                     # all six tables, 2,000 rows each
    .venv/bin/python -m benchmarks.tab_cli --only wage --rows 1000

``--only`` runs add their tables to the existing result file. ``--pseudonym-key`` exports
``SYNTHSTREAM_PSEUDONYM_KEY`` for ``run`` (what ``init``'s comment asks a user to do when it plans
pseudonyms; recorded in the table's ``env``); without it the pipeline runs with the environment as is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.cli_steps import count_records as _count
from benchmarks.cli_steps import drained_count as _drained_count
from benchmarks.cli_steps import errors as _errors
from benchmarks.cli_steps import events as _events
from benchmarks.cli_steps import step as _step
from benchmarks.cli_steps import tail as _tail
from benchmarks.common import machine, versions, write_result
from benchmarks.tab_data import LOADERS, Table, load

__all__ = ["cli_table", "main"]

_CLI = [str(Path(sys.executable).with_name("synthstream"))]
_META = ("_topic", "_partition", "_offset", "_timestamp_ms", "_key", "_entity")
_BENCH_KEY = "tab-cli-benchmark-key-" + "k" * 16  # only with --pseudonym-key: what init asks a user to export
_FAILED_EVENTS = ("training.failed", "training.misconfigured", "cli.failed", "publisher.load_failed")


def _training(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Versions trained / promoted / rejected and the generators chosen, from the run's ``training.*`` events."""
    started = [e for e in events if e.get("event") == "training.started"]
    validated = [e for e in events if e.get("event") == "training.validated"]
    finished = [e for e in events if e.get("event") == "training.finished"]
    rejected = [e for e in events if e.get("event") == "training.rejected"]
    failed = [e for e in events if e.get("event") in ("training.failed", "training.misconfigured")]
    chosen = {e.get("version"): e.get("chosen") for e in validated}
    fits = [
        {
            "version": e.get("version"),
            "rows": e.get("rows"),
            "generator": chosen.get(e.get("version")) or e.get("generator"),
            "candidates": e.get("candidates"),
            "why": str(e.get("why") or "")[:300],
            "scores": next((v.get("scores") for v in validated if v.get("version") == e.get("version")), None),
        }
        for e in started
    ]
    promoted = [e.get("version") for e in finished]
    last_promoted = next((f for f in reversed(fits) if f["version"] in promoted), None)
    return {
        "fits_started": len(started),
        "versions_promoted": promoted,
        "versions_rejected": [
            {"version": e.get("version"), "reasons": [str(r)[:300] for r in e.get("reasons") or []]} for e in rejected
        ],
        "fits_failed": [{"error": e.get("error"), "message": str(e.get("message") or "")[:500]} for e in failed],
        "fits": fits,
        "generator": last_promoted["generator"] if last_promoted else None,
    }


def _check_drained(table: Table, path: Path) -> dict[str, Any]:
    """Drained columns vs the table's; per-column null shares where both have the column."""
    out = pd.read_parquet(path)
    data = [c for c in out.columns if c not in _META]
    real = [str(c) for c in table.train.columns]
    common = [c for c in real if c in data]
    null_gap = {c: round(abs(float(out[c].isna().mean()) - float(table.train[c].isna().mean())), 3) for c in common}
    return {
        "rows": len(out),
        "columns": len(data),
        "columns_table": len(real),
        "columns_missing": [c for c in real if c not in data],
        "columns_extra": [c for c in data if c not in real],
        "null_share_gap_max": max(null_gap.values(), default=None),
        "null_share_gap_worst": max(null_gap, key=lambda c: null_gap[c]) if null_gap else None,
    }


def _run(
    cmd: list[str],
    run_log: Path,
    bootstrap: str,
    topic: str,
    *,
    records: int,
    deadline_s: float,
    grace_s: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``synthstream run`` until it exits, ``topic`` holds ``records``, a fit failed (+ grace), or the deadline."""
    started = time.perf_counter()
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    with run_log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        ended_by, published, first_record_s, failed_at = "deadline", 0, None, None
        while True:
            time.sleep(5.0)
            if proc.poll() is not None:
                ended_by = "exited"
                break
            published = _count(bootstrap, topic)
            if published and first_record_s is None:
                first_record_s = round(time.perf_counter() - started, 1)
            if published >= records:
                ended_by = f"{records} synthetic records reached (SIGINT sent)"
                break
            if failed_at is None and any(
                e.get("event") in _FAILED_EVENTS for e in _events(run_log.read_text(errors="replace"))
            ):
                failed_at = time.perf_counter()
            if failed_at is not None and time.perf_counter() - failed_at > grace_s and not published:
                ended_by = "a fit failed and nothing was published (SIGINT sent)"
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
    return {
        "rc": proc.returncode,
        "ended_by": ended_by,
        "seconds": round(time.perf_counter() - started, 1),
        "first_synthetic_record_s": first_record_s,
        "synthetic_records_at_stop": published,
        "training": _training(_events(text)),
        "errors": _errors(text),
        "_text": text,
    }


def cli_table(
    table: Table,
    *,
    records: int,
    deadline_s: float,
    grace_s: float = 30.0,
    pseudonym_key: bool = False,
    work: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """init, replay, run and drain one table through the ``synthstream`` command; what happened at each step."""
    from synthstream.connectors.broker import EmbeddedBroker

    with contextlib.ExitStack() as stack:
        tmp = work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"tab-cli-{table.name}-")))
        tmp.mkdir(parents=True, exist_ok=True)
        csv = tmp / f"{table.name}.csv"
        table.train.to_csv(csv, index=False)
        topic = f"{table.name}-{int(time.time())}"
        cfg_path = tmp / f"{table.name}.yaml"
        result: dict[str, Any] = {
            "rows_replayed": len(table.train),
            "columns": len(table.train.columns),
            "source_topic": topic,
            "edits": [],  # nothing is changed in the CSV or in the generated pipeline
            "stopped_with": "SIGINT (Ctrl-C): the generated pipeline sets no publisher.max_records",
            "env": ["SYNTHSTREAM_PSEUDONYM_KEY (a fixed benchmark key)"] if pseudonym_key else [],
        }

        def failed(step: str, entry: dict[str, Any], text: str | None = None) -> dict[str, Any]:
            result["succeeded"] = False
            result["failed_at"] = step
            if text is not None:
                entry["log_tail"] = _tail(text)
            return result

        init = _step([*_CLI, "init", str(csv), "--topic", topic, "-o", str(cfg_path)], 300, tmp / "init.log")
        result["init"] = init
        log(f"  cli {table.name}: init rc={init['rc']} {init['seconds']}s")
        if init["rc"] != 0 or not cfg_path.exists():
            return failed("init", init, (tmp / "init.log").read_text(errors="replace"))
        stream = _stream_name(cfg_path) or topic
        synthetic = f"{stream}.synthetic"
        result["synthetic_topic"] = synthetic

        broker = stack.enter_context(EmbeddedBroker())
        boot = ["--bootstrap-servers", broker.bootstrap_servers]

        replay = _step([*_CLI, "replay", str(csv), "--topic", topic, *boot], 300, tmp / "replay.log")
        result["replay"] = replay
        log(f"  cli {table.name}: replay rc={replay['rc']} {replay['seconds']}s")
        if replay["rc"] != 0:
            return failed("replay", replay, (tmp / "replay.log").read_text(errors="replace"))

        cmd = [*_CLI, "run", "--config", str(cfg_path), "--json-logs", "--state-dir", str(tmp / "state")]
        cmd += ["--metrics-port", "0", *boot]
        run = _run(
            cmd,
            tmp / "run.log",
            broker.bootstrap_servers,
            synthetic,
            records=records,
            deadline_s=deadline_s,
            grace_s=grace_s,
            env={"SYNTHSTREAM_PSEUDONYM_KEY": _BENCH_KEY} if pseudonym_key else None,
        )
        text = run.pop("_text")
        result["run"] = run
        training = run["training"]
        log(
            f"  cli {table.name}: run rc={run['rc']} {run['ended_by']} after {run['seconds']}s; "
            f"promoted {training['versions_promoted']} rejected {len(training['versions_rejected'])} "
            f"generator {training['generator']}"
        )

        parquet = tmp / "synthetic.parquet"
        drain = _step([*_CLI, "drain", synthetic, "--parquet", str(parquet), *boot], 300, tmp / "drain.log")
        drain["records"] = _drained_count(drain["output_tail"])
        result["drain"] = drain
        log(f"  cli {table.name}: drain rc={drain['rc']} {drain['records']} records")
        if drain["rc"] == 0 and parquet.exists():
            try:
                result["drained"] = _check_drained(table, parquet)
            except Exception as exc:  # the check itself must not hide the run's outcome
                result["drained"] = {"check_failed": f"{type(exc).__name__}: {exc}"[:500]}
        missing = result.get("drained", {}).get("columns_missing")
        run_ok = run["rc"] in (0, -signal.SIGINT, 130) and not run["errors"]
        result["succeeded"] = bool(run_ok and drain["rc"] == 0 and drain["records"] and missing == [])
        if not result["succeeded"]:
            step = "drain" if run_ok and drain["rc"] != 0 else "run"
            return failed(step, run if step == "run" else drain, text if step == "run" else None)
        return result


def _stream_name(cfg_path: Path) -> str | None:
    import yaml

    try:
        cfg = yaml.safe_load(cfg_path.read_text())
    except yaml.YAMLError:
        return None
    return str(cfg["stream"]) if isinstance(cfg, dict) and cfg.get("stream") else None


def _earlier(name: str, keep: list[str]) -> dict[str, Any]:
    """Results of the tables in ``keep`` from an earlier run's file (``--only`` runs add up to one file)."""
    from benchmarks.common import RESULTS

    try:
        earlier = json.loads((RESULTS / f"{name}.json").read_text()).get("tables", {})
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return {}
    return {n: earlier[n] for n in keep if n in earlier}


def _summary(name: str, r: dict[str, Any]) -> str:
    def rc(step: str) -> str:
        return str(r[step]["rc"]) if step in r else "-"

    run = r.get("run", {})
    training = run.get("training", {})
    drained = r.get("drained", {})
    status = "ok" if r.get("succeeded") else f"FAILED at {r.get('failed_at')}"
    errors = "; ".join(f"{e['event']}: {e['error']}" for e in run.get("errors", [])[:2])
    return (
        f"{name:9s} {status:18s} rc init/replay/run/drain {rc('init')}/{rc('replay')}/{rc('run')}/{rc('drain')} "
        f"drained {r.get('drain', {}).get('records', 0)} x {drained.get('columns', '?')}/{r.get('columns')} cols "
        f"gen {training.get('generator')} promoted {training.get('versions_promoted')} "
        f"rejected {len(training.get('versions_rejected', []))} run {run.get('seconds')}s"
        + (f" [{errors}]" if errors else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=LOADERS, default=list(LOADERS), help="tables to run")
    parser.add_argument("--rows", type=int, default=2000, help="training rows per table (load's max_train)")
    parser.add_argument("--records", type=int, default=2000, help="stop the run once this many are published")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds before the run is stopped anyway")
    parser.add_argument(
        "--pseudonym-key",
        action="store_true",
        help="export SYNTHSTREAM_PSEUDONYM_KEY for run (what init's comment asks for when it plans pseudonyms)",
    )
    parser.add_argument("--name", default="tabular_cli", help="result file name under benchmarks/results")
    args = parser.parse_args()

    started = time.perf_counter()
    tables = _earlier(args.name, keep=[n for n in LOADERS if n not in args.only])
    for name in args.only:
        print(f"{name}:", flush=True)
        try:
            table = load(name, max_train=args.rows)
        except Exception as exc:  # a missing package or data file: recorded, the other tables still run
            tables[name] = {"succeeded": False, "failed_at": "load", "error": f"{type(exc).__name__}: {exc}"[:500]}
            continue
        outcome = cli_table(
            table,
            records=args.records,
            deadline_s=args.deadline,
            pseudonym_key=args.pseudonym_key,
            log=lambda s: print(s, flush=True),
        )
        settings = {k: getattr(args, k) for k in ("rows", "records", "deadline", "pseudonym_key")}
        tables[name] = {"source": table.source, "target": table.target, "settings": settings, **outcome}
        write_result(f"{args.name}.partial", {"settings": vars(args), "tables": tables})  # a crash keeps these
    result = {
        "benchmark": "tabular CLI: init -> replay -> run -> drain per public table, no hand edits",
        "machine": machine(),
        "versions": versions("synthstream", "pandas", "torch"),
        "settings": vars(args),
        "seconds": round(time.perf_counter() - started, 1),
        "tables": {n: tables[n] for n in LOADERS if n in tables},
        "succeeded": [n for n, r in tables.items() if r.get("succeeded")],
        "failed": {n: r.get("failed_at") for n, r in tables.items() if not r.get("succeeded")},
    }
    path = write_result(args.name, result)
    with contextlib.suppress(FileNotFoundError):
        (path.parent / f"{args.name}.partial.json").unlink()
    for name, r in tables.items():
        print(_summary(name, r))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
