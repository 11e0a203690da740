"""Process-wide settings: how to reach Kafka, read once at the entry point.

One frozen :class:`KafkaSettings` per process, from CLI flags or ``SYNTHSTREAM_KAFKA_*``
environment variables. Credentials are ``SecretStr``. Raw client options pass through one
named escape hatch, ``extra_config``. The per-client keyword dicts are built here so no
component reads the environment or threads config dicts around.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """Connection settings for a Kafka cluster (the embedded broker or a real one)."""

    # hide_input_in_errors: a validation error must not print the input (pydantic's
    # ``input_value=`` would echo a SASL password or a password passed through extra_config).
    model_config = SettingsConfigDict(
        env_prefix="SYNTHSTREAM_KAFKA_", frozen=True, extra="forbid", hide_input_in_errors=True
    )

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Comma-separated host:port list.")
    client_id: str = Field(default="synthstream", description="Client id reported to the broker.")
    security_protocol: SecurityProtocol = Field(default="PLAINTEXT", description="Kafka security protocol.")
    sasl_mechanism: SaslMechanism | None = Field(default=None, description="SASL mechanism for SASL_* protocols.")
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (never logged).")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle that signs the broker certificates.")
    ssl_certfile: Path | None = Field(default=None, description="Client certificate for mutual TLS.")
    ssl_keyfile: Path | None = Field(default=None, description="Client private key for mutual TLS.")
    session_timeout_ms: int = Field(default=10_000, ge=1, description="Consumer-group session timeout.")
    rebalance_timeout_ms: int = Field(
        default=10_000,
        ge=1,
        description="Consumer-group rebalance timeout. The embedded broker holds a join for about half of it.",
    )
    heartbeat_interval_ms: int = Field(default=3_000, ge=1, description="Consumer-group heartbeat interval.")
    fetch_max_wait_ms: int = Field(
        default=10,
        ge=0,
        description="Longest a fetch waits for data; latency follows it on the embedded broker.",
    )
    unavailable_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a worker keeps retrying a lost broker before it exits with one clear line.",
    )
    extra_config: dict[str, Any] = Field(
        default_factory=dict,
        repr=False,
        description="Raw aiokafka keyword arguments (kept out of repr: they may hold credentials).",
    )

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        problems: list[str] = []
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                problems.append("sasl_mechanism is required for SASL protocols")
            if not self.sasl_username or self.sasl_password is None:
                problems.append("sasl_username and sasl_password are required for SASL protocols")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            problems.append("ssl_certfile and ssl_keyfile go together")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def for_embedded(cls, bootstrap_servers: str) -> KafkaSettings:
        """Return settings tuned for the embedded broker: short group timeouts so a join takes ~1 s."""
        return cls(
            bootstrap_servers=bootstrap_servers,
            session_timeout_ms=1_500,
            rebalance_timeout_ms=500,
            heartbeat_interval_ms=300,
        )

    def _common(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = self.ssl_context()
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """Build the TLS context from the configured CA and client certificate."""
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile and self.ssl_keyfile:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
        return context

    def producer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``.

        Idempotence stays off: the embedded broker rejects InitProducerId. Delivery is
        at-least-once with stable record ids for downstream de-duplication.
        """
        return {
            **self._common(),
            "acks": "all",
            "enable_idempotence": False,
            "linger_ms": 5,
            "max_batch_size": 1_048_576,
            "max_request_size": 4_194_304,
            **self.extra_config,
        }

    def consumer_kwargs(self, group_id: str | None) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaConsumer`` (manual commits, earliest reset)."""
        return {
            **self._common(),
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "session_timeout_ms": self.session_timeout_ms,
            "rebalance_timeout_ms": self.rebalance_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "max_partition_fetch_bytes": 4_194_304,
            **self.extra_config,
        }

    def admin_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaAdminClient``."""
        return self._common()
