"""The exception hierarchy of synthstream: part of the public API.

Every error the package raises on purpose derives from :class:`SynthstreamError`, so
callers can catch "anything synthstream refused" in one place. Control-flow signals
(a record that must be dead-lettered, a stage asking to back off) are separate types:
they are expected outcomes, not failures of the service.

Messages never contain record values: they name fields, types, sizes and offsets only.
"""

from __future__ import annotations

from collections.abc import Sequence


class SynthstreamError(Exception):
    """Root of every error raised by synthstream on purpose."""


class ConfigError(SynthstreamError):
    """Configuration is invalid; ``problems`` lists every issue found, not just the first."""

    def __init__(self, problems: Sequence[str], source: str = "configuration") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} has {len(self.problems)} problem(s):\n{lines}")


class SchemaError(SynthstreamError):
    """A record schema could not be inferred, parsed or converted."""


class SerdeError(SynthstreamError):
    """Bytes could not be turned into a record (or back); ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class UnknownSchemaIdError(SerdeError):
    """A Confluent-framed payload names a schema id the schema store does not hold."""

    def __init__(self, schema_id: int) -> None:
        self.schema_id = schema_id
        super().__init__("unknown_schema_id", f"schema id {schema_id} is not in the schema store")


class BrokerError(SynthstreamError):
    """The embedded broker could not be found, started or reached."""


class BrokerUnavailableError(BrokerError):
    """Kafka could not be reached at the configured bootstrap servers (at start, or for too long)."""


class StateDirError(SynthstreamError):
    """The state directory cannot be used (read-only, full, no permission); the message names the cause."""


class AuditError(SynthstreamError):
    """A privacy audit could not measure what it must: the version it was auditing fails closed."""


class AttackError(AuditError):
    """One privacy attack crashed; ``attack`` and ``cause`` (the exception type) name it, never values."""

    def __init__(self, attack: str, cause: str) -> None:
        self.attack = attack
        self.cause = cause
        super().__init__(f"attack {attack} crashed ({cause})")


class ModelError(SynthstreamError):
    """A generator could not be fitted, sampled, stored or loaded."""


class NotFittedError(ModelError):
    """``sample`` was called on a generator that has not been fitted."""


class RecordRejected(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Signal: this record cannot be processed and belongs in the dead-letter topic.

    Raised by processors for one record; the stream catches it, routes the record's
    coordinates and ``reason`` to the dead-letter topic and carries on.
    ``detail`` names fields and types only, never values.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")

    @classmethod
    def from_exception(cls, stage: str, exc: BaseException) -> RecordRejected:
        """The rejection of a record on which ``stage`` raised ``exc``: reason ``<stage>_failed``.

        Only the exception's *type* is kept: its message (``invalid literal for int() with base
        10: 'Maria'``) can hold the very value that broke the stage, so it never reaches a
        dead-letter event or a log line.
        """
        return cls(f"{stage}_failed", f"{type(exc).__name__} raised in stage {stage} (message withheld)")
