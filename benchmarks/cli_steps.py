"""Helpers shared by the CLI end-to-end benchmarks (:mod:`benchmarks.ts_cli`, :mod:`benchmarks.tab_cli`).

Run a CLI step with a timeout and keep its log tail, read a JSON log's events and error events,
read ``synthstream drain``'s count, and count a topic's records while a run is going.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["count_records", "drained_count", "errors", "events", "step", "tail"]


def errors(log_text: str) -> list[dict[str, Any]]:
    """Error/critical events of a JSON log (event, error type, message), in order, deduplicated."""
    seen: set[str] = set()
    out = []
    for event in events(log_text):
        level = str(event.get("level", "")).lower()
        if level not in ("error", "critical") and "error" not in event:
            continue
        item = {
            "event": event.get("event"),
            "level": level,
            "error": str(event.get("error") or event.get("exc_type") or "")[:300],
            "message": str(event.get("message") or event.get("reason") or event.get("exception") or "")[-800:],
        }
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out[:20]


def events(log_text: str) -> list[dict[str, Any]]:
    """The JSON lines of a log, parsed (other lines skipped)."""
    out = []
    for line in log_text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])[-4000:]


def step(cmd: list[str], timeout_s: float, log_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    with log_path.open("w") as log:
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    text = log_path.read_text(errors="replace")
    return {"rc": rc, "seconds": round(time.perf_counter() - started, 1), "output_tail": tail(text, 8)}


def drained_count(output: str) -> int:
    """Records written, from ``synthstream drain``'s last line (``drained N records from ...``)."""
    for line in reversed(output.splitlines()):
        words = line.split()
        if len(words) > 1 and words[0] == "drained" and words[1].replace(",", "").isdigit():
            return int(words[1].replace(",", ""))
    return 0


class _Counter:
    """A drain sink that only counts rows (to poll how far the synthetic topic got)."""

    def __init__(self) -> None:
        self.rows = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.rows += len(rows)

    def close(self) -> None:
        """Nothing to release."""


def count_records(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` now (decoded or not: the Avro schemas are not looked up); 0 before it exists."""
    from synthstream.connectors.sinks import AutoDecoder, TopicDrain
    from synthstream.schemas.serde import InMemorySchemaStore
    from synthstream.settings import KafkaSettings

    async def main() -> int:
        sink = _Counter()
        try:
            drain = TopicDrain(KafkaSettings.for_embedded(bootstrap), topic, AutoDecoder(InMemorySchemaStore()))
            report = await drain.into(sink)  # duck-typed sink: write/close
        except Exception:  # the topic may not exist yet
            return 0
        return int(report.written + report.undecodable)

    return asyncio.run(main())
