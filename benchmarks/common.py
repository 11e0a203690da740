"""Shared helpers for the benchmarks: machine facts, versions, RSS sampling, result files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(__file__).resolve().parent / "results"

#: The full public datasets the benchmarks read. They are not part of the repository (the tests use
#: the small copies in ``tests/fixtures``): set ``SYNTHSTREAM_DATA`` to their folder; the default is
#: ``../shared/data`` beside the checkout. Its layout and provenance: ``tests/fixtures/README.md``.
DATA = Path(os.environ.get("SYNTHSTREAM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def dataset(relative: str) -> Path:
    """A file or folder of the full benchmark datasets; exits with one clear line when it is missing."""
    path = DATA / relative
    if not path.exists():
        raise SystemExit(
            f"benchmark data {path} is missing: set SYNTHSTREAM_DATA to the folder of the full datasets "
            "(default ../shared/data beside the checkout)"
        )
    return path


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def target(goal: float, value: float, *, higher_is_better: bool = True) -> dict[str, Any]:
    met = value >= goal if higher_is_better else value <= goal
    return {"goal": goal, "value": round(value, 3), "met": bool(met)}


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    return path


class RssSampler:
    """Samples this process's RSS (MiB) every ``interval`` seconds while running."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (progress 0..1 or -1, MiB)
        self.progress = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        proc = psutil.Process()
        while True:
            self.samples.append((self.progress, proc.memory_info().rss / 2**20))
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.samples.append((self.progress, psutil.Process().memory_info().rss / 2**20))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def at(self, progress: float) -> float:
        later = [mib for p, mib in self.samples if p >= progress]
        return later[0] if later else float("nan")

    @property
    def peak(self) -> float:
        return max((mib for _, mib in self.samples), default=float("nan"))
