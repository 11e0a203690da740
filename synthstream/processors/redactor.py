"""The redaction hook: the one stage allowed to see raw values.

Only the hook exists so far. :class:`PassThroughRedactor` returns records unchanged and
says so: it performs NO redaction, and nothing downstream may treat its output as
redacted (the spine publishes no ``<stream>.redacted`` topic while it is in place).
The real redactor (Presidio + spaCy, CPF/CNPJ) replaces it behind the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

Record = dict[str, Any]


@runtime_checkable
class Redactor(Protocol):
    """A micro-batch transform that removes PII from records in flight."""

    #: Whether the output is actually redacted (gates the ``<stream>.redacted`` topic).
    redacts: bool

    def process(self, records: Sequence[Record]) -> list[Record]:
        """Return the records with PII removed, in the same order."""
        ...


class PassThroughRedactor:
    """The placeholder hook: returns records unchanged and claims no redaction."""

    redacts = False

    def __repr__(self) -> str:
        return "PassThroughRedactor()"

    def process(self, records: Sequence[Record]) -> list[Record]:
        """Return the records as they are (a new list; the records are not copied)."""
        return list(records)
