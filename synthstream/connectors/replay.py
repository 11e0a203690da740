"""Replay a CSV/Parquet/JSONL file into a topic, paced or as fast as possible.

This is how sample data, benchmarks and the demo feed a source topic. Records are
encoded with the given serde (JSON or Confluent Avro) and produced in micro-batches;
pacing sleeps between batches so the long-run rate matches the target.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from synthstream.connectors.files import iter_file_records
from synthstream.connectors.kafka import OutMessage, Producer
from synthstream.schemas.record import RecordSchema

Encoder = Callable[[dict[str, Any]], bytes]


@dataclass(frozen=True)
class ReplayReport:
    """What a replay produced."""

    records: int
    bytes: int
    seconds: float

    @property
    def rate(self) -> float:
        """Achieved records per second."""
        return self.records / self.seconds if self.seconds > 0 else float("inf")


class Pacer:
    """Sleeps so that ``n`` items sent since start are never ahead of ``rate`` per second."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for as fast as possible)")
        self.rate = rate
        self._start = time.monotonic()

    def batch_size(self, preferred: int) -> int:
        """Batch size that keeps pacing smooth: about 50 batches per second at most."""
        if self.rate is None:
            return preferred
        return max(1, min(preferred, int(self.rate / 50) or 1))

    async def wait(self, sent: int) -> None:
        """Sleep until ``sent`` items are due."""
        if self.rate is None:
            return
        due = self._start + sent / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def replay_messages(
    producer: Producer,
    topic: str,
    values: Iterable[bytes],
    *,
    rate: float | None = None,
    batch_size: int = 1_000,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Produce already-encoded values to ``topic`` at ``rate`` per second (None = unpaced)."""
    pacer = Pacer(rate)
    size = pacer.batch_size(batch_size)
    start = time.monotonic()
    sent = 0
    nbytes = 0
    batch: list[OutMessage] = []
    for value in values:
        batch.append(OutMessage(value=value))
        nbytes += len(value)
        if len(batch) >= size:
            sent = await _flush(producer, topic, batch, sent, pacer, on_progress)
            batch = []
    if batch:
        sent = await _flush(producer, topic, batch, sent, pacer, on_progress)
    return ReplayReport(records=sent, bytes=nbytes, seconds=time.monotonic() - start)


async def _flush(
    producer: Producer,
    topic: str,
    batch: Sequence[OutMessage],
    sent: int,
    pacer: Pacer,
    on_progress: Callable[[int], None] | None,
) -> int:
    await pacer.wait(sent)
    await producer.send_batch(topic, batch)
    if on_progress is not None:
        on_progress(len(batch))
    return sent + len(batch)


def encoded_file_values(
    path: Path, schema: RecordSchema, encode: Encoder, *, limit: int | None = None, repeat: int = 1
) -> Iterable[bytes]:
    """Yield the file's records encoded, ``repeat`` times over, stopping after ``limit``."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    produced = 0
    for _ in range(repeat):
        for chunk in iter_file_records(path, schema):
            for record in chunk:
                if limit is not None and produced >= limit:
                    return
                yield encode(record)
                produced += 1


async def replay_file(
    producer: Producer,
    topic: str,
    path: Path,
    schema: RecordSchema,
    encode: Encoder,
    *,
    rate: float | None = None,
    limit: int | None = None,
    repeat: int = 1,
    progress: bool = True,
    total: int | None = None,
) -> ReplayReport:
    """Replay ``path`` into ``topic`` with a progress bar on stderr (``progress=False`` hides it)."""
    values = encoded_file_values(path, schema, encode, limit=limit, repeat=repeat)
    if not progress:
        return await replay_messages(producer, topic, values, rate=rate)
    columns = (
        TextColumn("replay {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(f"{path.name} -> {topic}", total=total)
        return await replay_messages(producer, topic, values, rate=rate, on_progress=lambda n: bar.advance(task, n))
