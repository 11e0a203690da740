"""The versioned, on-disk model registry of one stream.

Layout under ``root/<stream>/``::

    v000001/model.pkl      the pickled fitted generator
    v000001/version.json   its :class:`ModelVersion` (status, lineage, artifact path)
    v000001/extra/<name>   side artifacts of the version (training profile, audit report...)
    promotions.json        the promotion history, newest last (what ``rollback`` walks back)
    training.json          progress of the running (or last) fit: fraction, detail, version

Every file is written to a temporary file in the same folder and moved into place with
``os.replace``, so a crash never leaves a half-written version or state file; a version
folder without ``version.json`` is ignored. State is read from disk on every call, so a
second :class:`ModelRegistry` on the same root (a restarted process) sees the same
versions. A lock serialises writers within a process (the trainer thread registers while
the publisher reads :meth:`ModelRegistry.current`); version numbers are claimed with an
atomic ``mkdir``, so two processes never get the same number, but concurrent promotes
from two processes are not coordinated. Artifacts are pickles the service wrote itself:
never point a registry at files from an untrusted source.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthstream.errors import ModelError
from synthstream.models.base import Generator

__all__ = ["Lineage", "ModelRegistry", "ModelVersion", "VersionStatus"]

VersionStatus = Literal["candidate", "promoted", "rejected", "retired"]
_ARTIFACT = "model.pkl"
_META = "version.json"
_PROMOTIONS = "promotions.json"
_PROGRESS = "training.json"


class Lineage(BaseModel):
    """Where a model came from: data, schema, seed, configuration and measured quality."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int = Field(ge=0, description="Training rows.")
    schema_fingerprint: str = Field(description="RecordSchema.fingerprint() of the training schema.")
    seed: int = Field(description="Seed the generator was fitted with.")
    config: dict[str, Any] = Field(default_factory=dict, description="Generator and training configuration.")
    source_offsets: dict[str, int] = Field(
        default_factory=dict, description='Last source offset seen, e.g. {"topic[0]": 1234}.'
    )
    fit_seconds: float = Field(ge=0.0, description="Wall time of the fit.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Quality/privacy metrics of the model.")
    records_range: tuple[int, int] | None = Field(
        default=None,
        description="Which records of the stream the buffer held: (first, last) by arrival count, last exclusive.",
    )
    windows: tuple[int, int] | None = Field(
        default=None, description="Window range (first, last) of the DP statistics a from-the-stream model used."
    )
    guarantee: dict[str, Any] | None = Field(
        default=None,
        description="Formal DP guarantee of the model (epsilon, delta, unit, mechanism...) or None (empirical only).",
    )
    warm_start_from: int | None = Field(default=None, description="Version whose weights this fit continued.")


class ModelVersion(BaseModel):
    """One registered model version and its lifecycle state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stream: str
    version: int = Field(ge=1)
    generator: str = Field(description="The generator's ``name``.")
    status: VersionStatus = "candidate"
    created_at: datetime
    lineage: Lineage
    artifact: Path = Field(description="Path of the pickled generator.")
    promoted_at: datetime | None = None
    reason: str | None = Field(default=None, description="Why it was rejected or retired.")


class ModelRegistry:
    """Versioned store of one stream's fitted generators with promote/reject/rollback."""

    def __init__(self, root: Path, stream: str) -> None:
        if not stream or "/" in stream or "\\" in stream or stream in {".", ".."}:
            raise ValueError(f"stream must be a non-empty name without path separators; got {stream!r}")
        self.root = Path(root)
        self.stream = stream
        self.path = self.root / stream
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._cache: dict[int, Generator] = {}

    def __repr__(self) -> str:
        return f"ModelRegistry(root={str(self.root)!r}, stream={self.stream!r})"

    @property
    def progress_path(self) -> Path:
        """Where the running fit of this stream reports its progress (read by ``synthstream models``)."""
        return self.path / _PROGRESS

    # -- writes ------------------------------------------------------------------------------

    def reserve(self) -> int:
        """Claim the next version number before a fit (so progress events can name it).

        The folder exists but holds no ``version.json`` until :meth:`register` fills it, so
        listings ignore it; a fit that fails leaves a gap in the numbering, nothing else.
        """
        with self._lock:
            number, _ = self._claim_version()
            return number

    def register(self, model: Generator, *, lineage: Lineage, version: int | None = None) -> ModelVersion:
        """Store a fitted ``model`` as the next version (or the ``version`` :meth:`reserve` returned)."""
        if not model.fitted:
            raise ModelError("only a fitted generator can be registered")
        try:
            payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ModelError(f"generator {type(model).__name__} cannot be pickled: {type(exc).__name__}") from None
        with self._lock:
            if version is None:
                number, folder = self._claim_version()
            else:
                number, folder = version, self._folder(version)
                if not folder.is_dir() or (folder / _META).exists():
                    raise ModelError(f"version {version} of {self.stream!r} was not reserved or is already registered")
            artifact = folder / _ARTIFACT
            _atomic_write(artifact, payload)
            registered = ModelVersion(
                stream=self.stream,
                version=number,
                generator=model.name,
                created_at=datetime.now(UTC),
                lineage=lineage,
                artifact=artifact,
            )
            self._save(registered)
            self._cache[number] = model
            return registered

    def promote(self, version: int) -> ModelVersion:
        """Make ``version`` the promoted one; the previously promoted version is retired."""
        with self._lock:
            target = self.get(version)
            if target.status == "rejected":
                raise ModelError(f"version {version} of {self.stream!r} was rejected and cannot be promoted")
            if target.status == "promoted":
                return target
            self._retire_current(reason=f"superseded by version {version}")
            now = datetime.now(UTC)
            promoted = target.model_copy(update={"status": "promoted", "promoted_at": now, "reason": None})
            self._save(promoted)
            self._write_promotions([*self._read_promotions(), version])
            return promoted

    def reject(self, version: int, reason: str) -> ModelVersion:
        """Mark ``version`` rejected (never promoted again); a promoted version is withdrawn first."""
        with self._lock:
            target = self.get(version)
            rejected = target.model_copy(update={"status": "rejected", "reason": reason})
            self._save(rejected)
            if target.status == "promoted":
                self._write_promotions([v for v in self._read_promotions() if v != version])
            return rejected

    def rollback(self) -> ModelVersion:
        """Re-promote the previously promoted version; the current one is retired.

        Walks the promotion history back past versions since rejected, so repeated
        rollbacks step further back. :class:`ModelError` when there is nothing to go back to.
        """
        with self._lock:
            current = self.current()
            history = [v for v in self._read_promotions() if current is None or v != current.version]
            for number in reversed(history):
                candidate = self.get(number)
                if candidate.status == "rejected":
                    continue
                if current is not None:
                    self._save(current.model_copy(update={"status": "retired", "reason": "rolled back"}))
                promoted = candidate.model_copy(
                    update={"status": "promoted", "promoted_at": datetime.now(UTC), "reason": None}
                )
                self._save(promoted)
                self._write_promotions([*[v for v in history if v != number], number])
                return promoted
            raise ModelError(f"no previously promoted version of {self.stream!r} to roll back to")

    def save_extra(self, version: int, name: str, payload: bytes) -> Path:
        """Store a side artifact of ``version`` (e.g. ``profile.json``, ``audit.json``); return its path."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"extra artifact names are plain file names; got {name!r}")
        self.get(version)  # the version must exist
        folder = self._folder(version) / "extra"
        folder.mkdir(exist_ok=True)
        path = folder / name
        _atomic_write(path, payload)
        return path

    # -- reads -------------------------------------------------------------------------------

    def load_extra(self, version: int, name: str) -> bytes | None:
        """A side artifact of ``version`` stored by :meth:`save_extra`, or ``None`` when absent."""
        path = self._folder(version) / "extra" / name
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def get(self, version: int) -> ModelVersion:
        """Return version ``version``; :class:`ModelError` if it does not exist."""
        meta = self._folder(version) / _META
        try:
            return ModelVersion.model_validate_json(meta.read_bytes())
        except FileNotFoundError:
            raise ModelError(f"version {version} of {self.stream!r} does not exist") from None

    def current(self) -> ModelVersion | None:
        """Return the promoted version, or ``None`` when none is promoted."""
        promotions = self._read_promotions()
        if not promotions:
            return None
        version = self.get(promotions[-1])
        return version if version.status == "promoted" else None

    def versions(self) -> list[ModelVersion]:
        """Return every registered version, oldest first."""
        return [self.get(number) for number in self._numbers() if (self._folder(number) / _META).exists()]

    def load(self, version: int) -> Generator:
        """Return the fitted generator of ``version`` (cached: the same object on every call)."""
        with self._lock:
            if version in self._cache:
                return self._cache[version]
            meta = self.get(version)
            try:
                model: Generator = pickle.loads(meta.artifact.read_bytes())
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
                problem = type(exc).__name__
                raise ModelError(f"artifact of v{version} of {self.stream!r} cannot be loaded: {problem}") from None
            self._cache[version] = model
            return model

    # -- internals ---------------------------------------------------------------------------

    def _folder(self, version: int) -> Path:
        return self.path / f"v{version:06d}"

    def _numbers(self) -> list[int]:
        numbers = []
        for child in self.path.iterdir():
            if child.is_dir() and child.name.startswith("v") and child.name[1:].isdigit():
                numbers.append(int(child.name[1:]))
        return sorted(numbers)

    def _claim_version(self) -> tuple[int, Path]:
        number = max(self._numbers(), default=0) + 1
        while True:
            folder = self._folder(number)
            try:
                folder.mkdir()
            except FileExistsError:
                number += 1
                continue
            return number, folder

    def _retire_current(self, reason: str) -> None:
        current = self.current()
        if current is not None:
            self._save(current.model_copy(update={"status": "retired", "reason": reason}))

    def _save(self, version: ModelVersion) -> None:
        _atomic_write(self._folder(version.version) / _META, version.model_dump_json(indent=2).encode())

    def _read_promotions(self) -> list[int]:
        try:
            data = json.loads((self.path / _PROMOTIONS).read_bytes())
        except FileNotFoundError:
            return []
        return [int(v) for v in data["history"]]

    def _write_promotions(self, history: list[int]) -> None:
        _atomic_write(self.path / _PROMOTIONS, json.dumps({"history": history}).encode())


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
