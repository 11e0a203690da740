"""The pipeline file: what one synthstream pipeline reads, learns and publishes.

Loaded from YAML and validated by pydantic; :func:`load_pipeline_config` reports every
problem in one :class:`~synthstream.errors.ConfigError`, not just the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthstream.errors import ConfigError
from synthstream.schemas.record import FieldRole


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceConfig(_Strict):
    """The source topic and how its records are decoded and validated."""

    topic: str = Field(min_length=1, description="Topic of sensitive source records.")
    format: Literal["auto", "json", "avro"] = Field(
        default="auto", description="Wire format; auto = Confluent Avro when the magic byte is present, else JSON."
    )
    schema_file: Path | None = Field(default=None, description="Avro schema (.avsc) of the source records.")
    sample_file: Path | None = Field(
        default=None, description="CSV/Parquet/JSONL sample to infer the schema from when no schema_file is given."
    )
    group_id: str | None = Field(default=None, description="Consumer group; default synthstream-<stream>.")
    assign_partitions: bool = Field(
        default=False, description="Take all partitions directly instead of joining a consumer group."
    )
    max_record_bytes: int = Field(default=1_048_576, ge=1, description="Larger records are dead-lettered.")
    extra_fields: Literal["drop", "reject"] = Field(
        default="drop", description="What to do with fields the schema does not know."
    )
    batch_size: int = Field(default=2_000, ge=1, description="Most records per micro-batch.")

    @model_validator(mode="after")
    def _schema_source(self) -> SourceConfig:
        if self.schema_file is None and self.sample_file is None:
            raise ValueError("give source.schema_file (.avsc) or source.sample_file to infer the schema from")
        return self


RedactOperator = Literal["auto", "keep", "drop", "mask", "pseudonymize", "fake", "generalize", "scan"]


class FieldOverride(_Strict):
    """Per-field overrides of what schema inference and PII detection decided."""

    role: FieldRole | None = Field(default=None, description="Semantic role to use instead of the inferred one.")
    redact: RedactOperator = Field(
        default="auto",
        description="Redaction operator; auto = chosen from the detected entity; scan = NER + recognizers over text.",
    )
    entity: str | None = Field(default=None, description="Entity the field holds (e.g. PERSON), overriding detection.")
    generalize: Literal["year", "month", "prefix", "band"] | None = Field(
        default=None, description="How to generalize (date -> year/month, zip/CEP -> prefix, age -> band)."
    )


class RedactionConfig(_Strict):
    """In-flight PII redaction: the one stage that sees raw values."""

    enabled: bool = Field(default=True, description="Redact before anything is buffered, counted or published.")
    locale: Literal["en_US", "pt_BR"] = Field(default="en_US", description="Locale of format-preserving fakes.")
    language: Literal["en", "pt"] = Field(default="en", description="NER language for free-text fields.")
    key_env: str = Field(
        default="SYNTHSTREAM_PSEUDONYM_KEY", description="Environment variable holding the pseudonym (HMAC) key."
    )
    ephemeral_key: bool = Field(
        default=False,
        description="Use a random per-process key when the variable is unset (demo only: pseudonyms then change "
        "across restarts).",
    )
    sample_records: int = Field(default=1_000, ge=10, description="Sample rows used to detect what each field holds.")
    findings_window_s: float = Field(default=60.0, gt=0, description="Window of the pii-findings events.")


class BufferConfig(_Strict):
    """The bounded training buffer (most recent records)."""

    max_records: int = Field(default=20_000, ge=10, description="Records kept for training; older ones fall out.")


class TrainingConfig(_Strict):
    """When and how generators are retrained."""

    generator: Literal["gaussian_copula"] = Field(default="gaussian_copula", description="Generator to train.")
    every_records: int | None = Field(default=5_000, ge=1, description="Retrain after this many new records.")
    every_seconds: float | None = Field(default=60.0, gt=0, description="Retrain after this much time.")
    min_records: int = Field(default=500, ge=10, description="Do not train on fewer records than this.")
    seed: int = Field(default=0, ge=0, description="Seed of the first version; version v uses seed + v.")

    @model_validator(mode="after")
    def _some_trigger(self) -> TrainingConfig:
        if self.every_records is None and self.every_seconds is None:
            raise ValueError("set training.every_records, training.every_seconds, or both")
        return self


class PublisherConfig(_Strict):
    """The synthetic feed."""

    rate: float = Field(default=1_000.0, ge=0, description="Synthetic records per second; 0 = as fast as possible.")
    batch_size: int = Field(default=500, ge=1, description="Records sampled and produced per batch.")
    format: Literal["avro", "json"] = Field(default="avro", description="Wire format of synthetic records.")
    max_records: int | None = Field(
        default=None, ge=1, description="End the run after publishing this many (None = run until stopped)."
    )


class TopicsConfig(_Strict):
    """Output topic names; empty ones get the defaults of DESIGN.md."""

    synthetic: str | None = None
    redacted: str | None = None
    stats: str | None = None
    deadletter: str = "synthstream.deadletter"
    models: str = "synthstream.models"
    drift: str = "synthstream.drift"
    privacy_audit: str = "synthstream.privacy-audit"
    pii_findings: str = "synthstream.pii-findings"
    schemas: str = Field(default="synthstream.schemas", description="Where Avro schemas are published by id.")


class PipelineConfig(_Strict):
    """One pipeline: a source stream and everything synthstream derives from it."""

    stream: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$", description="Name of the stream.")
    source: SourceConfig
    fields: dict[str, FieldOverride] = Field(default_factory=dict, description="Per-field overrides.")
    redaction: RedactionConfig = Field(default_factory=RedactionConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    publisher: PublisherConfig = Field(default_factory=PublisherConfig)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    state_dir: Path = Field(default=Path(".synthstream"), description="Model registry and local stores.")

    @property
    def group_id(self) -> str:
        """Consumer group of the ingest role."""
        return self.source.group_id or f"synthstream-{self.stream}"

    @property
    def redacted_topic(self) -> str:
        """Topic of redacted source records."""
        return self.topics.redacted or f"{self.stream}.redacted"

    @property
    def synthetic_topic(self) -> str:
        """Topic of the synthetic feed."""
        return self.topics.synthetic or f"{self.stream}.synthetic"

    def role_overrides(self) -> dict[str, FieldRole]:
        """Field roles forced by configuration."""
        return {name: o.role for name, o in self.fields.items() if o.role is not None}


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"{where}: {err['msg']}")
    return problems


def parse_pipeline_config(data: Any, *, source: str = "pipeline config") -> PipelineConfig:
    """Validate a mapping as a pipeline config; every problem is reported at once."""
    if not isinstance(data, dict):
        raise ConfigError(["the file must hold a mapping at the top level"], source)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), source) from None


def load_pipeline_config(path: Path) -> PipelineConfig:
    """Read and validate a pipeline YAML file; relative paths resolve against its folder."""
    if not path.is_file():
        raise ConfigError([f"{path} does not exist"], str(path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(path)) from None
    config = parse_pipeline_config(data, source=str(path))
    return _resolve_paths(config, path.parent)


def _resolve_paths(config: PipelineConfig, base: Path) -> PipelineConfig:
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    source = config.source.model_copy(
        update={"schema_file": fix(config.source.schema_file), "sample_file": fix(config.source.sample_file)}
    )
    return config.model_copy(update={"source": source, "state_dir": fix(config.state_dir)})
