"""The generator contract every fitted model in synthstream follows.

A generator learns the joint distribution of a stream's records from a batch of
(redacted) records and then emits synthetic records with the same schema. The trainer
fits one, the registry pickles it, and the publisher calls :meth:`Generator.sample`
in a loop: successive unseeded calls continue one random stream (a continuous feed),
``seed=`` restarts it deterministically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, Self, runtime_checkable

import pandas as pd

from synthstream.schemas.record import RecordSchema


@runtime_checkable
class Generator(Protocol):
    """A tabular generator: ``fit`` on records, then ``sample`` canonical records.

    ``schema`` is ``None`` until the generator is fitted (a property that raised would
    break ``isinstance`` checks against this runtime-checkable protocol).
    """

    name: str

    def fit(self, records: Sequence[Mapping[str, Any]] | pd.DataFrame, schema: RecordSchema) -> Self:
        """Learn from ``records`` (canonical values keyed by ``schema``'s field names)."""
        ...

    def sample(self, n: int, *, seed: int | None = None) -> list[dict[str, Any]]:
        """Return ``n`` synthetic records with canonical values."""
        ...

    def sample_columns(self, n: int, *, seed: int | None = None) -> dict[str, list[Any]]:
        """Return ``n`` synthetic rows as one list per field (the fast path)."""
        ...

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has completed."""
        ...

    @property
    def schema(self) -> RecordSchema | None:
        """The schema the generator was fitted on, ``None`` before fit."""
        ...
