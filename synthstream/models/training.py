"""Fitting a generator from buffered records: plain functions, so a fit can run in a worker process.

Training runs off the event loop (and off the ingest process's GIL) in a process pool;
this module holds what crosses into that process: the generator registry
(:data:`GENERATORS`), :func:`make_generator`, and :func:`fit_generator`, which returns the
fitted model and how long it took. Generators that report progress (the neural and the
DP marginal models) write it to a small JSON file (:class:`ProgressFile`) the scheduler
and the ``synthstream models`` command read; the file is replaced atomically, so a reader
never sees half of it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synthstream.errors import ModelError
from synthstream.models.base import Generator
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.schemas.record import RecordSchema

__all__ = [
    "GENERATORS",
    "ProgressFile",
    "fit_generator",
    "generator_class",
    "make_generator",
    "read_progress",
    "warm_up",
]

#: Generator classes by name; heavy ones as ``"module:Class"`` paths, imported on first use
#: (the pipeline process need not import torch or jax unless it trains those models).
GENERATORS: dict[str, type[Any] | str] = {
    "gaussian_copula": GaussianCopulaGenerator,
    "neural": "synthstream.models.neural:NeuralGenerator",
    "aim": "synthstream.models.marginal:AIMGenerator",
    "mst": "synthstream.models.marginal:MSTGenerator",
    "aim_stream": "synthstream.models.marginal:StreamMarginalGenerator",
}


def generator_class(name: str) -> type[Any]:
    """The class registered as ``name``; :class:`ModelError` lists the known names."""
    try:
        entry = GENERATORS[name]
    except KeyError:
        raise ModelError(f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}") from None
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        cls: type[Any] = getattr(importlib.import_module(module), attribute)
        return cls
    return entry


def make_generator(name: str, *, seed: int, options: Mapping[str, Any] | None = None) -> Generator:
    """Build an unfitted generator by name with its options; :class:`ModelError` lists the known names."""
    generator: Generator = generator_class(name)(seed=seed, **dict(options or {}))
    return generator


def warm_up() -> bool:
    """Import the training stack in a fresh worker so the first real fit does not pay for it."""
    import torch
    import torch._dynamo  # noqa: F401 - torch.optim imports it on the first optimizer built (2-6 s here)

    return bool(GENERATORS)


class ProgressFile:
    """Writes a fit's progress (fraction, what is happening) to ``path``, at most every ``interval`` seconds."""

    def __init__(self, path: Path, *, interval: float = 0.5, meta: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.interval = interval
        self.meta = dict(meta or {})
        self._last = 0.0
        self._started = time.time()

    def __repr__(self) -> str:
        return f"ProgressFile(path={str(self.path)!r})"

    def __call__(self, fraction: float, detail: str, **extra: Any) -> None:
        """Record progress (always written at 0 and 1, otherwise throttled); ``extra`` keys are added."""
        now = time.monotonic()
        if 0.0 < fraction < 1.0 and now - self._last < self.interval and not extra:
            return
        self._last = now
        payload = {
            **self.meta,
            **extra,
            "fraction": max(0.0, min(1.0, float(fraction))),
            "detail": detail,
            "started_at": self._started,
            "updated_at": time.time(),
            "pid": os.getpid(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(payload, handle)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def read_progress(path: Path) -> dict[str, Any] | None:
    """The last progress a fit wrote to ``path``, or ``None`` when there is none (or it is unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None
    return data if isinstance(data, dict) else None


def fit_generator(
    name: str,
    records: Sequence[dict[str, Any]],
    schema: RecordSchema,
    seed: int,
    options: Mapping[str, Any] | None = None,
    warm_start: Generator | None = None,
    progress_path: Path | None = None,
    progress_meta: Mapping[str, Any] | None = None,
) -> tuple[Generator, float]:
    """Fit generator ``name`` on ``records``; return it with the fit time in seconds.

    ``warm_start`` (a fitted model of the same kind) and a :class:`ProgressFile` on
    ``progress_path`` (with ``progress_meta`` in every write) are passed on to generators
    whose ``fit`` accepts them.
    """
    started = time.perf_counter()
    model = make_generator(name, seed=seed, options=options)
    parameters = inspect.signature(model.fit).parameters
    kwargs: dict[str, Any] = {}
    if progress_path is not None and "progress" in parameters:
        kwargs["progress"] = ProgressFile(progress_path, meta=progress_meta)
    if warm_start is not None and "warm_start" in parameters and type(warm_start) is type(model):
        kwargs["warm_start"] = warm_start
    fitted = model.fit(records, schema, **kwargs)
    return fitted, time.perf_counter() - started
