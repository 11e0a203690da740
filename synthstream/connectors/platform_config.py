"""Pipeline-file sections for fitting a Kafka platform: the Schema Registry and the topic layout.

Pure pydantic (no client imports), so :mod:`synthstream.config` can hold them. Secrets never
appear in the file: the sections name the environment variables that hold them, read once at
the entry point (:func:`synthstream.connectors.registry.registry_client_conf`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Environment variable that supplies ``schema_registry.url`` when the pipeline file leaves it out.
URL_ENV = "SYNTHSTREAM_SCHEMA_REGISTRY_URL"
#: How a subject is named for a topic's value schema (Confluent's SubjectNameStrategy).
SubjectNameStrategy = Literal["topic", "record", "topic_record"]
CompatibilityLevel = Literal[
    "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"
]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class SchemaRegistryConfig(_Strict):
    """Where Avro schemas are registered and looked up: a Confluent-compatible Schema Registry.

    With ``url`` set, every Avro schema synthstream writes is registered there (subject per
    ``subject_name_strategy``, ``<topic>-value`` by default) and records carry the registry's
    ids; Avro source records are decoded by the ids their producers got. Without it, schemas
    stay in the process and on ``topics.schemas`` (content-derived ids).
    """

    url: str | None = Field(
        default_factory=lambda: os.environ.get(URL_ENV) or None,
        description=(
            "Base URL(s), comma separated (Confluent Schema Registry, Karapace, Apicurio's ccompat API); "
            f"default: ${URL_ENV} when set (read when the pipeline file is loaded)."
        ),
    )
    basic_auth_user_info_env: str = Field(
        default="SYNTHSTREAM_SCHEMA_REGISTRY_BASIC_AUTH",
        description="Environment variable holding 'user:password' for HTTP basic auth (unset: none).",
    )
    bearer_token_env: str = Field(
        default="SYNTHSTREAM_SCHEMA_REGISTRY_TOKEN",
        description="Environment variable holding a static bearer token (unset: none).",
    )
    bearer_logical_cluster: str | None = Field(default=None, description="Confluent Cloud logical cluster id.")
    bearer_identity_pool_id: str | None = Field(default=None, description="Confluent Cloud identity pool id.")
    ssl_ca_location: Path | None = Field(default=None, description="CA bundle that signs the registry's certificate.")
    ssl_certificate_location: Path | None = Field(default=None, description="Client certificate for mutual TLS.")
    ssl_key_location: Path | None = Field(default=None, description="Client private key for mutual TLS.")
    subject_name_strategy: SubjectNameStrategy = Field(
        default="topic",
        description="topic: <topic>-value; record: <namespace.Name>; topic_record: <topic>-<namespace.Name>.",
    )
    auto_register: bool = Field(
        default=True, description="Register output schemas; off: they must already be registered (looked up)."
    )
    compatibility: CompatibilityLevel | None = Field(
        default=None, description="Set this level on every subject synthstream registers (None: leave it)."
    )
    cache_capacity: int = Field(default=1_000, ge=1, description="Schemas cached by the client.")
    timeout_s: float = Field(default=10.0, gt=0, description="HTTP timeout of one registry request.")

    @model_validator(mode="after")
    def _tls_pairs(self) -> SchemaRegistryConfig:
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("ssl_certificate_location and ssl_key_location go together")
        return self

    @property
    def enabled(self) -> bool:
        """Whether a registry is configured."""
        return bool(self.url)


class TopicLayoutConfig(_Strict):
    """How synthstream creates the topics it writes (existing topics are used as they are)."""

    partitions: int | None = Field(
        default=None, ge=1, description="Partitions of created output topics; None = as many as the source topic."
    )
    replication_factor: int = Field(default=1, ge=1, description="Replication factor of created topics.")
    retention_ms: int | None = Field(
        default=None, ge=-1, description="retention.ms of created (non-compacted) topics; None = the broker's."
    )
    compacted: list[str] = Field(
        default_factory=lambda: ["schemas"],
        description=(
            "Topics created with cleanup.policy=compact, by their key in `topics` (schemas, models, ...) or by name. "
            "Only topics whose records are keyed by what they describe fit (the schemas topic: one record per id)."
        ),
    )
    configs: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Extra topic configs per topic (by `topics` key or by name)."
    )
