"""Fitting a generator from buffered records: a plain function, so it can run in a worker process.

Training runs off the event loop (and off the ingest process's GIL) in a process pool;
this module holds what crosses into that process: the generator factory and
:func:`fit_generator`, which returns the fitted model and how long it took.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from synthstream.errors import ModelError
from synthstream.models.base import Generator
from synthstream.models.copula import GaussianCopulaGenerator
from synthstream.schemas.record import RecordSchema

GENERATORS: dict[str, type[Any]] = {"gaussian_copula": GaussianCopulaGenerator}


def make_generator(name: str, *, seed: int) -> Generator:
    """Build an unfitted generator by name; :class:`ModelError` lists the known names."""
    try:
        cls = GENERATORS[name]
    except KeyError:
        raise ModelError(f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}") from None
    generator: Generator = cls(seed=seed)
    return generator


def warm_up() -> bool:
    """Import the training stack in a fresh worker so the first real fit does not pay for it."""
    return bool(GENERATORS)


def fit_generator(
    name: str, records: Sequence[dict[str, Any]], schema: RecordSchema, seed: int
) -> tuple[Generator, float]:
    """Fit generator ``name`` on ``records``; return it with the fit time in seconds."""
    started = time.perf_counter()
    model = make_generator(name, seed=seed).fit(records, schema)
    return model, time.perf_counter() - started
