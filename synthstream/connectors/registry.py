"""A :class:`~synthstream.schemas.serde.SchemaStore` backed by a Confluent-compatible Schema Registry.

Built on confluent-kafka's ``SchemaRegistryClient`` (Confluent Schema Registry, Karapace,
Apicurio's ccompat API, or synthstream's embedded registry). Plugged in where the in-process
store was, it makes every serde use the registry's ids:

- ``register(subject, schema)`` registers the standard-Avro form (:func:`~synthstream.schemas.confluent.to_registry`)
  under the subject of the configured strategy (``<topic>-value`` by default) and returns the
  registry's id; the registry runs its compatibility check (409 -> :class:`RegistryClientError`);
- ``get(id)`` fetches a writer schema by id, whichever subject or producer registered it, so
  Confluent-framed records of any subject strategy decode, and a new version a producer
  registers mid-stream is picked up by the first record that carries its id.

Everything is cached by id and by ``(subject, schema)``: the per-record path makes no HTTP call.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

from synthstream.connectors.platform_config import SchemaRegistryConfig, SubjectNameStrategy
from synthstream.errors import SchemaError, SynthstreamError, UnknownSchemaIdError
from synthstream.log import get_logger
from synthstream.schemas.confluent import from_registry, full_name, to_registry
from synthstream.schemas.serde import canonical_json

_log = get_logger("registry")

STRATEGIES: tuple[SubjectNameStrategy, ...] = ("topic", "record", "topic_record")
_VALUE_SUFFIX = "-value"
_KEY_SUFFIX = "-key"
_LEGACY_SUBJECT = re.compile(r"id-\d+")


class RegistryClientError(SynthstreamError):
    """The Schema Registry refused a request or could not be reached; carries its HTTP and error codes."""

    def __init__(self, message: str, *, http_status: int | None = None, error_code: int | None = None) -> None:
        self.http_status = http_status
        self.error_code = error_code
        super().__init__(message)


def registry_client_conf(config: SchemaRegistryConfig, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The confluent-kafka ``SchemaRegistryClient`` configuration, secrets read from the environment.

    Read once, at the entry point. Basic auth comes from ``config.basic_auth_user_info_env``
    (``user:password``); a static bearer token from ``config.bearer_token_env``.
    """
    if not config.url:
        raise ValueError("schema_registry.url is not set")
    env = os.environ if environ is None else environ
    conf: dict[str, Any] = {
        "url": config.url,
        "cache.capacity": config.cache_capacity,
        "timeout": config.timeout_s,
    }
    user_info = env.get(config.basic_auth_user_info_env)
    if user_info:
        if ":" not in user_info:
            raise ValueError(f"{config.basic_auth_user_info_env} must hold 'user:password'")
        conf["basic.auth.user.info"] = user_info
    token = env.get(config.bearer_token_env)
    if token:
        conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
        conf["bearer.auth.token"] = token
        conf["bearer.auth.logical.cluster"] = config.bearer_logical_cluster or ""
        conf["bearer.auth.identity.pool.id"] = config.bearer_identity_pool_id or ""
    if config.ssl_ca_location is not None:
        conf["ssl.ca.location"] = str(config.ssl_ca_location)
    if config.ssl_certificate_location is not None:
        conf["ssl.certificate.location"] = str(config.ssl_certificate_location)
    if config.ssl_key_location is not None:
        conf["ssl.key.location"] = str(config.ssl_key_location)
    return conf


def subject_for(subject: str, schema: dict[str, Any], strategy: SubjectNameStrategy) -> str:
    """The subject ``schema`` goes under when synthstream asks for ``subject`` (``<topic>-value``).

    ``topic`` keeps it; ``record`` is the schema's full name; ``topic_record`` is ``<topic>-<full name>``
    (Confluent's TopicNameStrategy, RecordNameStrategy and TopicRecordNameStrategy).
    """
    if strategy == "topic":
        return subject
    name = full_name(schema)
    if strategy == "record":
        return name
    if strategy == "topic_record":
        topic = subject.removesuffix(_VALUE_SUFFIX).removesuffix(_KEY_SUFFIX)
        return f"{topic}-{name}"
    raise ValueError(f"unknown subject_name_strategy {strategy!r}; choose one of {list(STRATEGIES)}")


class RegistrySchemaStore:
    """Schemas registered in, and looked up from, a Schema Registry (cached: no per-record HTTP call).

    ``subject_aliases`` maps a subject a component asks for to the one to use (the pipeline maps
    each event model's default subject to ``<its topic>-value``). ``ids()`` is empty: nothing needs
    republishing on ``topics.schemas``, the registry is the source of truth.
    """

    #: Tells the schemas-topic reader and publisher that this store needs neither.
    registry_backed = True

    def __init__(
        self,
        client: Any,
        *,
        strategy: SubjectNameStrategy = "topic",
        auto_register: bool = True,
        compatibility: str | None = None,
        subject_aliases: Mapping[str, str] | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown subject_name_strategy {strategy!r}; choose one of {list(STRATEGIES)}")
        self.client = client
        self.strategy = strategy
        self.auto_register = auto_register
        self.compatibility = compatibility
        self.subject_aliases = dict(subject_aliases or {})
        self._by_id: dict[int, dict[str, Any]] = {}
        self._registered: dict[tuple[str, str], int] = {}
        self._configured: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        urls = getattr(getattr(self.client, "_rest_client", None), "base_urls", None)
        return f"RegistrySchemaStore(urls={urls!r}, strategy={self.strategy!r}, auto_register={self.auto_register})"

    @classmethod
    def from_config(
        cls, config: SchemaRegistryConfig, *, subject_aliases: Mapping[str, str] | None = None
    ) -> RegistrySchemaStore:
        """A store on a new client built from ``config`` (secrets from the environment)."""
        from confluent_kafka.schema_registry import SchemaRegistryClient

        return cls(
            SchemaRegistryClient(registry_client_conf(config)),
            strategy=config.subject_name_strategy,
            auto_register=config.auto_register,
            compatibility=config.compatibility,
            subject_aliases=subject_aliases,
        )

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register ``schema`` (standard-Avro form) under the strategy's subject; the registry's id."""
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        if not isinstance(schema, dict):
            raise SchemaError(f"an Avro schema to register must be a JSON object, not {type(schema).__name__}")
        if _LEGACY_SUBJECT.fullmatch(subject):
            # An entry of the legacy schemas topic (content-derived id): the registry has its own ids.
            raise SchemaError(f"subject {subject!r} belongs to the schemas topic, not to a Schema Registry")
        target = subject_for(self.subject_aliases.get(subject, subject), schema, self.strategy)
        text = canonical_json(to_registry(schema))
        cached = self._registered.get((target, text))
        if cached is not None:
            return cached
        registry_schema = Schema(text, "AVRO")
        try:
            if self.compatibility is not None and target not in self._configured:
                self.client.set_compatibility(subject_name=target, level=self.compatibility)
                self._configured.add(target)
            if self.auto_register:
                schema_id = int(self.client.register_schema(target, registry_schema))
            else:
                schema_id = int(self.client.lookup_schema(target, registry_schema).schema_id)
        except SchemaRegistryError as exc:
            raise _client_error(exc, f"registering a schema under subject {target!r}") from None
        except Exception as exc:  # httpx transport errors: the registry is unreachable
            raise RegistryClientError(f"the Schema Registry is unreachable ({type(exc).__name__})") from None
        with self._lock:
            self._registered[(target, text)] = schema_id
            self._by_id.setdefault(schema_id, json.loads(canonical_json(schema)))
        _log.info("registry.registered", subject=target, schema_id=schema_id)
        return schema_id

    def get(self, schema_id: int) -> dict[str, Any]:
        """The writer schema of ``schema_id`` (fetched once, then cached); :class:`UnknownSchemaIdError` if absent."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            fetched = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise UnknownSchemaIdError(schema_id) from None
            raise _client_error(exc, f"fetching schema id {schema_id}") from None
        except Exception as exc:
            raise RegistryClientError(f"the Schema Registry is unreachable ({type(exc).__name__})") from None
        if (fetched.schema_type or "AVRO") != "AVRO":
            raise UnknownSchemaIdError(schema_id)
        try:
            parsed = json.loads(fetched.schema_str)
        except (TypeError, ValueError):
            raise SchemaError(f"schema id {schema_id} from the registry is not JSON") from None
        schema = from_registry(parsed) if isinstance(parsed, dict) else parsed
        with self._lock:
            self._by_id[schema_id] = schema
        _log.info("registry.schema_fetched", schema_id=schema_id)
        return schema

    def ids(self) -> list[int]:
        """Nothing to republish on the schemas topic: the registry holds every schema (always empty)."""
        return []

    def close(self) -> None:
        """Close the client's HTTP connections (the store cannot be used afterwards)."""
        close = getattr(self.client, "close", None)
        if close is not None:
            close()

    def known_ids(self) -> list[int]:
        """Ids this process has registered or fetched, ascending."""
        with self._lock:
            return sorted(self._by_id)


def _client_error(exc: Any, doing: str) -> RegistryClientError:
    status = getattr(exc, "http_status_code", None)
    code = getattr(exc, "error_code", None)
    message = getattr(exc, "error_message", None) or str(exc)
    return RegistryClientError(
        f"Schema Registry refused {doing}: {code} {message}", http_status=status, error_code=code
    )


def event_subject_aliases(topics_by_model: Mapping[str, str]) -> dict[str, str]:
    """Map each event model's default subject (``namespace.Name-value``) to ``<its topic>-value``.

    ``topics_by_model``: event model class name -> topic (e.g. ``{"DeadLetterEvent": "synthstream.deadletter"}``).
    """
    from synthstream.schemas import events

    out: dict[str, str] = {}
    for model_name, topic in topics_by_model.items():
        model = getattr(events, model_name)
        avro = events.avro_schema_for(model)
        out[f"{avro['namespace']}.{avro['name']}-value"] = f"{topic}-value"
    return out


def schema_store_for(config: Any, registry: SchemaRegistryConfig | None = None) -> Any:
    """The schema store a pipeline's configuration asks for: the registry when one is configured.

    ``config`` is a :class:`~synthstream.config.PipelineConfig`; ``registry`` defaults to its
    ``schema_registry`` section. Without a registry URL the in-process store (content-derived
    ids, published on ``topics.schemas``) is returned.
    """
    from synthstream.schemas.serde import InMemorySchemaStore

    if registry is None:
        registry = getattr(config, "schema_registry", None)
    if registry is None or not registry.enabled:
        return InMemorySchemaStore()
    topics = config.topics
    aliases = event_subject_aliases(
        {
            "DeadLetterEvent": topics.deadletter,
            "ModelLifecycleEvent": topics.models,
            "DriftEvent": topics.drift,
            "PrivacyAuditEvent": topics.privacy_audit,
            "PiiFindingsEvent": topics.pii_findings,
            "BudgetEvent": topics.budget,
            "StatsEvent": config.stats_topic,
        }
    )
    return RegistrySchemaStore.from_config(registry, subject_aliases=aliases)
