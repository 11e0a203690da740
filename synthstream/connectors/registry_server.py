"""An embedded, Confluent-compatible Schema Registry: the REST subset Kafka clients use.

Like the embedded broker, it exists so that dev, the tests and the demo run the registry path
end to end where no Schema Registry server can be installed. Production points
``schema_registry.url`` at Confluent Schema Registry, Karapace or Apicurio's compatible API.

What it serves (Confluent's paths, bodies and error codes):

- ``POST /subjects/{subject}/versions`` register (``{"id": n}``; the same schema gets the same id),
  checked against the subject's compatibility level (``BACKWARD`` by default);
- ``POST /subjects/{subject}`` look a schema up under a subject;
- ``GET /schemas/ids/{id}``, ``/schemas/ids/{id}/versions``, ``/schemas/ids/{id}/subjects``, ``/schemas/types``;
- ``GET /subjects``, ``/subjects/{subject}/versions``, ``/subjects/{subject}/versions/{version|latest}``
  (and ``.../schema``);
- ``GET|PUT|DELETE /config`` and ``/config/{subject}``;
- ``POST /compatibility/subjects/{subject}/versions/{version|latest}`` (and ``.../versions``);
- ``DELETE /subjects/{subject}`` and ``/subjects/{subject}/versions/{version}`` (soft, or ``?permanent=true``).

Errors are ``{"error_code": ..., "message": ...}``: 40401 subject not found, 40402 version not
found, 40403 schema not found, 409 incompatible, 42201 invalid schema, 42202 invalid version,
42203 invalid compatibility level.

Storage: every change is a record on a compacted Kafka topic (``_schemas`` by default, as
Confluent's), keyed like Confluent's (``{"keytype": "SCHEMA", "subject", "version", "magic": 1}``),
written and acknowledged before the change is applied and answered. A registry that starts
reads the topic from the beginning, so ids, versions and configs survive a restart. Ids are
sequential integers, as Confluent's. One writer at a time is assumed (Confluent elects a
leader; the embedded registry is a single process); each write first catches up with the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import fastavro
from aiohttp import web

from synthstream.connectors.broker import check_port_free, free_port
from synthstream.errors import SynthstreamError
from synthstream.log import get_logger
from synthstream.schemas.compatibility import COMPATIBILITY_LEVELS, check_compatibility
from synthstream.settings import KafkaSettings

_log = get_logger("registry_server")

#: Content type of Schema Registry responses.
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: Default compatibility level, as Confluent's.
DEFAULT_COMPATIBILITY = "BACKWARD"
#: Default storage topic, as Confluent's.
DEFAULT_TOPIC = "_schemas"
SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")


class RegistryError(SynthstreamError):
    """A request the registry refuses: HTTP ``status`` and Confluent ``error_code``."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        self.status = status
        self.error_code = error_code
        self.message = message
        super().__init__(f"{error_code}: {message}")


def _subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def _version_not_found(subject: str, version: object) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found for subject '{subject}'.")


def _schema_not_found() -> RegistryError:
    return RegistryError(404, 40403, "Schema not found")


# ---------------------------------------------------------------------------------------------
# State: pure, rebuilt by applying the log
# ---------------------------------------------------------------------------------------------


@dataclass
class SchemaVersion:
    """One version of a subject."""

    subject: str
    version: int
    schema_id: int
    schema: str
    schema_type: str = "AVRO"
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        """The body Confluent answers for a subject version."""
        out: dict[str, Any] = {"subject": self.subject, "version": self.version, "id": self.schema_id}
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        out["schema"] = self.schema
        return out


LogRecord = tuple[dict[str, Any], dict[str, Any] | None]


def normalise_schema(text: Any, schema_type: str = "AVRO") -> str:
    """The stored form of a schema string: compact JSON with sorted keys (42201 when it is not valid).

    Two registrations that differ only in whitespace or key order are the same schema (same id).
    """
    if schema_type not in SCHEMA_TYPES:
        raise RegistryError(422, 42201, f"Invalid schema type {schema_type!r}; choose one of {list(SCHEMA_TYPES)}")
    if not isinstance(text, str):
        raise RegistryError(422, 42201, "Invalid schema: 'schema' must be a string")
    if schema_type == "PROTOBUF":
        return text
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(422, 42201, f"Invalid schema: not JSON ({exc.msg} at {exc.pos})") from None
    if schema_type == "AVRO":
        try:
            fastavro.parse_schema(copy.deepcopy(parsed))
        except Exception as exc:  # fastavro raises several types for bad schemas
            raise RegistryError(422, 42201, f"Invalid schema: {exc}") from None
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class RegistryState:
    """Subjects, versions, schemas by id and compatibility configs, as the log says.

    Changes are planned (:meth:`plan_register`, ...) into log records, which :meth:`apply`
    turns into state: so a restart that replays the log rebuilds exactly the same registry.
    """

    schemas: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (text, type)
    ids: dict[tuple[str, str], int] = field(default_factory=dict)  # (text, type) -> id
    subjects: dict[str, dict[int, SchemaVersion]] = field(default_factory=dict)
    configs: dict[str | None, str] = field(default_factory=dict)

    # -- applying the log ------------------------------------------------------------------------

    def apply(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        """Apply one log record (a tombstone ``value=None`` removes what the key names)."""
        keytype = key.get("keytype")
        if keytype == "SCHEMA":
            subject, version = str(key["subject"]), int(key["version"])
            versions = self.subjects.setdefault(subject, {})
            if value is None:
                versions.pop(version, None)
                if not versions:
                    self.subjects.pop(subject, None)
                return
            schema_type = str(value.get("schemaType", "AVRO"))
            entry = SchemaVersion(
                subject, version, int(value["id"]), str(value["schema"]), schema_type, bool(value.get("deleted"))
            )
            versions[version] = entry
            self.schemas[entry.schema_id] = (entry.schema, schema_type)
            self.ids.setdefault((entry.schema, schema_type), entry.schema_id)
        elif keytype == "CONFIG":
            scope: str | None = key.get("subject")
            if value is None:
                self.configs.pop(scope, None)
            else:
                self.configs[scope] = str(value["compatibilityLevel"])
        # Other key types (NOOP, MODE, DELETE_SUBJECT of other registries) carry nothing we need.

    # -- reading ---------------------------------------------------------------------------------

    def compatibility(self, subject: str | None) -> str:
        """The level that applies to ``subject``: its own, else the global one, else BACKWARD."""
        if subject is not None and subject in self.configs:
            return self.configs[subject]
        return self.configs.get(None, DEFAULT_COMPATIBILITY)

    def live_versions(self, subject: str, *, deleted: bool = False) -> list[SchemaVersion]:
        """The versions of ``subject`` in order (soft-deleted ones only when ``deleted``); 40401 if none."""
        versions = [v for _, v in sorted(self.subjects.get(subject, {}).items()) if deleted or not v.deleted]
        if not versions:
            raise _subject_not_found(subject)
        return versions

    def version(self, subject: str, version: str | int, *, deleted: bool = False) -> SchemaVersion:
        """One version of ``subject``: a number, ``latest`` or ``-1``; 40401/40402/42202 otherwise."""
        versions = self.live_versions(subject, deleted=deleted)
        if version in ("latest", "-1", -1):
            return versions[-1]
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise RegistryError(
                422,
                42202,
                f"The specified version '{version}' is not a valid version id. "
                'Allowed values are between [1, 2^31-1] and the string "latest"',
            ) from None
        if number < 1:
            raise RegistryError(422, 42202, f"The specified version '{version}' is not a valid version id.")
        for entry in versions:
            if entry.version == number:
                return entry
        raise _version_not_found(subject, number)

    def lookup(self, subject: str, text: str, schema_type: str) -> SchemaVersion | None:
        """The live version of ``subject`` holding exactly this (normalised) schema, if any."""
        for entry in self.subjects.get(subject, {}).values():
            if not entry.deleted and entry.schema == text and entry.schema_type == schema_type:
                return entry
        return None

    # -- planning changes --------------------------------------------------------------------------

    def incompatibilities(self, subject: str, text: str, schema_type: str, against: list[SchemaVersion]) -> list[str]:
        """Why ``text`` may not follow ``against`` under the subject's level (empty: it may)."""
        level = self.compatibility(subject)
        previous = [json.loads(v.schema) for v in against if v.schema_type == schema_type == "AVRO"]
        if schema_type != "AVRO" or not previous:
            return []
        return check_compatibility(json.loads(text), previous, level)

    def plan_register(self, subject: str, text: str, schema_type: str) -> tuple[int, LogRecord | None]:
        """The id ``text`` gets under ``subject`` and the log record that registers it (None: already there)."""
        existing = self.lookup(subject, text, schema_type)
        if existing is not None:
            return existing.schema_id, None
        live = [v for _, v in sorted(self.subjects.get(subject, {}).items()) if not v.deleted]
        problems = self.incompatibilities(subject, text, schema_type, live)
        if problems:
            raise RegistryError(
                409,
                409,
                f'Schema being registered is incompatible with an earlier schema for subject "{subject}", '
                f"details: {problems}",
            )
        schema_id = self.ids.get((text, schema_type))
        if schema_id is None:
            schema_id = max(self.schemas, default=0) + 1
        version = max(self.subjects.get(subject, {}), default=0) + 1
        key = {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}
        value: dict[str, Any] = {
            "subject": subject,
            "version": version,
            "id": schema_id,
            "schema": text,
            "deleted": False,
        }
        if schema_type != "AVRO":
            value["schemaType"] = schema_type
        return schema_id, (key, value)


def config_record(subject: str | None, level: str | None) -> LogRecord:
    """The log record setting (or, with ``level=None``, removing) a compatibility level."""
    key = {"keytype": "CONFIG", "subject": subject, "magic": 0}
    return key, (None if level is None else {"compatibilityLevel": level})


def schema_key(entry: SchemaVersion) -> dict[str, Any]:
    """The log key of a subject version."""
    return {"keytype": "SCHEMA", "subject": entry.subject, "version": entry.version, "magic": 1}


# ---------------------------------------------------------------------------------------------
# The log: a compacted Kafka topic (or memory, for pure tests)
# ---------------------------------------------------------------------------------------------


class RegistryLog(Protocol):
    """Where the registry's changes are kept, in order."""

    async def start(self) -> None:
        """Connect (and create the storage when missing)."""
        ...

    async def read_new(self) -> list[LogRecord]:
        """Records appended since the last read (all of them on the first call)."""
        ...

    async def append(self, record: LogRecord) -> None:
        """Append one record and return once it is durable."""
        ...

    async def stop(self) -> None:
        """Disconnect."""
        ...


class MemoryLog:
    """A log in process memory: a registry that forgets everything when it stops (pure tests)."""

    def __init__(self) -> None:
        self.records: list[LogRecord] = []
        self._read = 0

    def __repr__(self) -> str:
        return f"MemoryLog(records={len(self.records)})"

    async def start(self) -> None:
        """Nothing to connect."""

    async def read_new(self) -> list[LogRecord]:
        """Records appended since the last read."""
        new, self._read = self.records[self._read :], len(self.records)
        return new

    async def append(self, record: LogRecord) -> None:
        """Keep the record."""
        self.records.append(record)

    async def stop(self) -> None:
        """Nothing to disconnect."""


def _encode_key(key: dict[str, Any]) -> bytes:
    return json.dumps(key, sort_keys=True, separators=(",", ":")).encode()


class TopicLog:
    """The registry's log on a compacted Kafka topic with one partition (its order is the registry's)."""

    def __init__(self, settings: KafkaSettings, topic: str = DEFAULT_TOPIC, *, replication_factor: int = 1) -> None:
        if not topic:
            raise ValueError("topic must be a non-empty name")
        self.settings = settings
        self.topic = topic
        self.replication_factor = replication_factor
        self._positions: dict[int, int] = {}
        self._producer: Any = None

    def __repr__(self) -> str:
        return f"TopicLog(topic={self.topic!r})"

    async def start(self) -> None:
        """Create the compacted topic when missing and connect the producer."""
        from synthstream.connectors.kafka import Producer
        from synthstream.connectors.topics import TopicSpec, ensure_topic_layout

        await ensure_topic_layout(
            self.settings,
            [
                TopicSpec(
                    self.topic,
                    partitions=1,
                    replication_factor=self.replication_factor,
                    configs={"cleanup.policy": "compact"},
                )
            ],
        )
        self._producer = await Producer(self.settings).start()

    async def read_new(self) -> list[LogRecord]:
        """Records appended since the last read, by anyone (the later record of a key wins when applied)."""
        from synthstream.connectors.kafka import read_to_end

        out: list[LogRecord] = []
        async for batch in read_to_end(self.settings, self.topic, start=self._positions, ends_out=self._positions):
            for rec in batch:
                try:
                    key = json.loads(rec.key or b"")
                    value = None if rec.value is None else json.loads(rec.value)
                except (ValueError, TypeError):
                    _log.warning("registry.unreadable_record", topic=self.topic, offset=rec.offset)
                    continue
                if isinstance(key, dict) and (value is None or isinstance(value, dict)):
                    out.append((key, value))
        return out

    async def append(self, record: LogRecord) -> None:
        """Produce the record and wait for the broker's acknowledgement."""
        from synthstream.connectors.kafka import OutMessage

        key, value = record
        payload = None if value is None else json.dumps(value, sort_keys=True).encode()
        await self._producer.send(self.topic, OutMessage(value=payload, key=_encode_key(key)))  # type: ignore[arg-type]  # a tombstone has no value

    async def stop(self) -> None:
        """Flush and disconnect the producer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


# ---------------------------------------------------------------------------------------------
# The service: state + log, one writer at a time
# ---------------------------------------------------------------------------------------------


class SchemaRegistryService:
    """The registry's operations over a :class:`RegistryLog` (transport free: the REST layer calls it)."""

    def __init__(self, log: RegistryLog) -> None:
        self.log = log
        self.state = RegistryState()
        self._lock = asyncio.Lock()
        self._requests: Counter[str] = Counter()
        self._requests_lock = threading.Lock()  # the REST thread counts, any thread reads

    def __repr__(self) -> str:
        return f"SchemaRegistryService(log={self.log!r}, schemas={len(self.state.schemas)})"

    async def start(self) -> None:
        """Connect the log and rebuild the state from it."""
        await self.log.start()
        await self._catch_up()
        _log.info("registry.loaded", schemas=len(self.state.schemas), subjects=len(self.state.subjects))

    async def stop(self) -> None:
        """Disconnect the log."""
        await self.log.stop()

    def count_request(self, route: str) -> None:
        """Count one HTTP request on ``route`` (``"GET /schemas/ids/{id}"``): proves clients cache."""
        with self._requests_lock:
            self._requests[route] += 1

    def request_counts(self) -> dict[str, int]:
        """HTTP requests served so far, per method and route pattern (a copy)."""
        with self._requests_lock:
            return dict(self._requests)

    async def _catch_up(self) -> None:
        for key, value in await self.log.read_new():
            self.state.apply(key, value)

    async def _write(self, plan: Callable[[], tuple[Any, list[LogRecord]]]) -> Any:
        """Catch up, plan the change on the fresh state, append its records, apply them; one at a time."""
        async with self._lock:
            await self._catch_up()
            result, records = plan()
            for record in records:
                await self.log.append(record)
            await self._catch_up()  # applies what was just appended (and anything another writer added)
            return result

    async def register(self, subject: str, schema: Any, schema_type: str = "AVRO") -> int:
        """Register ``schema`` under ``subject``; its id (the same schema keeps its id)."""
        text = normalise_schema(schema, schema_type)

        def plan() -> tuple[int, list[LogRecord]]:
            schema_id, record = self.state.plan_register(subject, text, schema_type)
            return schema_id, [] if record is None else [record]

        schema_id: int = await self._write(plan)
        return schema_id

    def lookup(self, subject: str, schema: Any, schema_type: str = "AVRO") -> SchemaVersion:
        """The version of ``subject`` holding ``schema``; 40401 no such subject, 40403 not under it."""
        text = normalise_schema(schema, schema_type)
        self.state.live_versions(subject)
        found = self.state.lookup(subject, text, schema_type)
        if found is None:
            raise _schema_not_found()
        return found

    def schema_by_id(self, schema_id: int) -> tuple[str, str]:
        """``(schema, type)`` of an id; 40403 when unknown."""
        try:
            return self.state.schemas[schema_id]
        except KeyError:
            raise _schema_not_found() from None

    def versions_of_id(self, schema_id: int) -> list[dict[str, Any]]:
        """Every live ``{"subject", "version"}`` that holds the id; 40403 when unknown."""
        self.schema_by_id(schema_id)
        return [
            {"subject": v.subject, "version": v.version}
            for _, versions in sorted(self.state.subjects.items())
            for v in versions.values()
            if v.schema_id == schema_id and not v.deleted
        ]

    def compatible(self, subject: str, schema: Any, schema_type: str, version: str | None) -> list[str]:
        """Problems of ``schema`` against one version (or, with ``None``, the versions its level names)."""
        text = normalise_schema(schema, schema_type)
        if subject not in self.state.subjects:
            if version is None:
                return []
            raise _subject_not_found(subject)
        against = self.state.live_versions(subject) if version is None else [self.state.version(subject, version)]
        level = self.state.compatibility(subject)
        if version is not None:
            level = level.replace("_TRANSITIVE", "")
        previous = [json.loads(v.schema) for v in against if v.schema_type == schema_type == "AVRO"]
        if schema_type != "AVRO" or not previous:
            return []
        return check_compatibility(json.loads(text), previous, level)

    async def set_config(self, subject: str | None, level: Any) -> str:
        """Set the compatibility level of ``subject`` (None: the global one); 42203 for an unknown level."""
        if not isinstance(level, str) or level.upper() not in COMPATIBILITY_LEVELS:
            raise RegistryError(
                422, 42203, f"Invalid compatibility level. Valid values are {list(COMPATIBILITY_LEVELS)}"
            )
        upper: str = level.upper()
        await self._write(lambda: (None, [config_record(subject, upper)]))
        return upper

    async def delete_config(self, subject: str | None) -> str:
        """Remove ``subject``'s level (None: reset the global one to the default); the level it had."""
        previous = self.state.compatibility(subject)
        if subject is not None and subject not in self.state.configs:
            raise _subject_not_found(subject)
        await self._write(lambda: (None, [config_record(subject, None)]))
        return previous

    async def delete_subject(self, subject: str, *, permanent: bool) -> list[int]:
        """Soft-delete every version of ``subject`` (or, ``permanent``, remove the soft-deleted ones)."""

        def plan() -> tuple[list[int], list[LogRecord]]:
            everything = self.state.live_versions(subject, deleted=True)
            if permanent:
                if any(not v.deleted for v in everything):
                    raise RegistryError(
                        404, 40405, f"Subject '{subject}' was not deleted first before being permanently deleted"
                    )
                return [v.version for v in everything], [(schema_key(v), None) for v in everything]
            live = self.state.live_versions(subject)
            return [v.version for v in live], [(schema_key(v), _deleted(v)) for v in live]

        versions: list[int] = await self._write(plan)
        return versions

    async def delete_version(self, subject: str, version: str, *, permanent: bool) -> int:
        """Soft-delete one version (or, ``permanent``, remove a soft-deleted one); its number."""

        def plan() -> tuple[int, list[LogRecord]]:
            entry = self.state.version(subject, version, deleted=permanent)
            if permanent:
                if not entry.deleted:
                    raise RegistryError(
                        404, 40407, f"Subject '{subject}' Version {entry.version} was not deleted first"
                    )
                return entry.version, [(schema_key(entry), None)]
            return entry.version, [(schema_key(entry), _deleted(entry))]

        number: int = await self._write(plan)
        return number


def _deleted(entry: SchemaVersion) -> dict[str, Any]:
    value: dict[str, Any] = {
        "subject": entry.subject,
        "version": entry.version,
        "id": entry.schema_id,
        "schema": entry.schema,
        "deleted": True,
    }
    if entry.schema_type != "AVRO":
        value["schemaType"] = entry.schema_type
    return value


# ---------------------------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type=CONTENT_TYPE.split(";")[0])


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise RegistryError(400, 400, "Unrecognized request body: not JSON") from None
    if not isinstance(body, dict):
        raise RegistryError(422, 42201, "Invalid schema: the request body must be a JSON object")
    return body


def _schema_of(body: dict[str, Any]) -> tuple[Any, str]:
    if body.get("references"):
        raise RegistryError(422, 42201, "Invalid schema: schema references are not supported by this registry")
    return body.get("schema"), str(body.get("schemaType") or "AVRO").upper()


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RegistryError(404, 40403 if what == "id" else 40402, f"{what} {text!r} not found") from None


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def build_app(service: SchemaRegistryService) -> web.Application:
    """The aiohttp application serving ``service`` under Confluent's REST paths."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        service.count_request(f"{request.method} {resource.canonical if resource is not None else '(unrouted)'}")
        try:
            return await handler(request)
        except RegistryError as exc:
            return _reply({"error_code": exc.error_code, "message": exc.message}, exc.status)
        except web.HTTPNotFound:
            return _reply({"error_code": 404, "message": "HTTP 404 Not Found"}, 404)
        except web.HTTPMethodNotAllowed:
            return _reply({"error_code": 405, "message": "HTTP 405 Method Not Allowed"}, 405)
        except Exception as exc:  # a store failure: a 500 with Confluent's code, logged without bodies
            _log.error("registry.request_failed", path=request.path, error=type(exc).__name__)
            return _reply({"error_code": 50001, "message": "Error in the backend data store"}, 500)

    async def root(_: web.Request) -> web.Response:
        return _reply({})

    async def register(request: web.Request) -> web.Response:
        schema, schema_type = _schema_of(await _body(request))
        return _reply({"id": await service.register(request.match_info["subject"], schema, schema_type)})

    async def lookup(request: web.Request) -> web.Response:
        schema, schema_type = _schema_of(await _body(request))
        return _reply(service.lookup(request.match_info["subject"], schema, schema_type).to_json())

    async def schema_by_id(request: web.Request) -> web.Response:
        text, schema_type = service.schema_by_id(_int(request.match_info["id"], "id"))
        return _reply({"schema": text} if schema_type == "AVRO" else {"schemaType": schema_type, "schema": text})

    async def schema_text_by_id(request: web.Request) -> web.Response:
        text, _ = service.schema_by_id(_int(request.match_info["id"], "id"))
        return web.Response(text=text, content_type="application/json")

    async def versions_of_id(request: web.Request) -> web.Response:
        return _reply(service.versions_of_id(_int(request.match_info["id"], "id")))

    async def subjects_of_id(request: web.Request) -> web.Response:
        found = service.versions_of_id(_int(request.match_info["id"], "id"))
        return _reply(sorted({v["subject"] for v in found}))

    async def schema_types(_: web.Request) -> web.Response:
        return _reply(list(SCHEMA_TYPES))

    async def subjects(request: web.Request) -> web.Response:
        deleted = _flag(request, "deleted")
        names = [s for s, vs in service.state.subjects.items() if any(deleted or not v.deleted for v in vs.values())]
        prefix = request.query.get("subjectPrefix", "")
        return _reply(sorted(n for n in names if n.startswith(prefix)))

    async def versions(request: web.Request) -> web.Response:
        found = service.state.live_versions(request.match_info["subject"], deleted=_flag(request, "deleted"))
        return _reply([v.version for v in found])

    async def version(request: web.Request) -> web.Response:
        entry = service.state.version(
            request.match_info["subject"], request.match_info["version"], deleted=_flag(request, "deleted")
        )
        return _reply(entry.to_json())

    async def version_schema(request: web.Request) -> web.Response:
        entry = service.state.version(request.match_info["subject"], request.match_info["version"])
        return web.Response(text=entry.schema, content_type="application/json")

    async def get_config(request: web.Request) -> web.Response:
        subject = request.match_info.get("subject")
        if subject is not None and subject not in service.state.configs and not _flag(request, "defaultToGlobal"):
            raise RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")
        return _reply({"compatibilityLevel": service.state.compatibility(subject)})

    async def put_config(request: web.Request) -> web.Response:
        body = await _body(request)
        level = await service.set_config(request.match_info.get("subject"), body.get("compatibility"))
        return _reply({"compatibility": level})

    async def delete_config(request: web.Request) -> web.Response:
        level = await service.delete_config(request.match_info.get("subject"))
        return _reply({"compatibilityLevel": level})

    async def compatibility(request: web.Request) -> web.Response:
        schema, schema_type = _schema_of(await _body(request))
        problems = service.compatible(
            request.match_info["subject"], schema, schema_type, request.match_info.get("version")
        )
        body: dict[str, Any] = {"is_compatible": not problems}
        if _flag(request, "verbose"):
            body["messages"] = problems
        return _reply(body)

    async def delete_subject(request: web.Request) -> web.Response:
        return _reply(
            await service.delete_subject(request.match_info["subject"], permanent=_flag(request, "permanent"))
        )

    async def delete_version(request: web.Request) -> web.Response:
        number = await service.delete_version(
            request.match_info["subject"], request.match_info["version"], permanent=_flag(request, "permanent")
        )
        return _reply(number)

    app = web.Application(middlewares=[errors])
    app.router.add_get("/", root)
    app.router.add_get("/schemas/types", schema_types)
    app.router.add_get("/schemas/ids/{id}", schema_by_id)
    app.router.add_get("/schemas/ids/{id}/schema", schema_text_by_id)
    app.router.add_get("/schemas/ids/{id}/versions", versions_of_id)
    app.router.add_get("/schemas/ids/{id}/subjects", subjects_of_id)
    app.router.add_get("/subjects", subjects)
    app.router.add_post("/subjects/{subject}", lookup)
    app.router.add_delete("/subjects/{subject}", delete_subject)
    app.router.add_get("/subjects/{subject}/versions", versions)
    app.router.add_post("/subjects/{subject}/versions", register)
    app.router.add_get("/subjects/{subject}/versions/{version}", version)
    app.router.add_delete("/subjects/{subject}/versions/{version}", delete_version)
    app.router.add_get("/subjects/{subject}/versions/{version}/schema", version_schema)
    app.router.add_get("/config", get_config)
    app.router.add_put("/config", put_config)
    app.router.add_delete("/config", delete_config)
    app.router.add_get("/config/{subject}", get_config)
    app.router.add_put("/config/{subject}", put_config)
    app.router.add_delete("/config/{subject}", delete_config)
    app.router.add_post("/compatibility/subjects/{subject}/versions", compatibility)
    app.router.add_post("/compatibility/subjects/{subject}/versions/{version}", compatibility)
    return app


async def serve(service: SchemaRegistryService, host: str, port: int) -> web.AppRunner:
    """Start ``service`` and its REST server on ``host:port``; stop it with ``await runner.cleanup()``."""
    await service.start()
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    _log.info("registry.serving", url=f"http://{host}:{port}")
    return runner


class EmbeddedRegistry:
    """The registry on a loopback port, in a background thread with its own event loop.

    Use as a (sync) context manager, or :meth:`start` / :meth:`stop`; ``port=0`` picks a free
    port. State lives on ``topic`` of the broker in ``settings`` (or in memory with ``settings=None``).
    """

    def __init__(
        self,
        settings: KafkaSettings | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        topic: str = DEFAULT_TOPIC,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port or free_port(host)
        self.topic = topic
        self.startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._serving: SchemaRegistryService | None = None

    def __repr__(self) -> str:
        return f"EmbeddedRegistry(url={self.url!r}, topic={self.topic!r})"

    @property
    def url(self) -> str:
        """The base URL for Schema Registry clients."""
        return f"http://{self.host}:{self.port}"

    def _service(self) -> SchemaRegistryService:
        log: RegistryLog = MemoryLog() if self.settings is None else TopicLog(self.settings, self.topic)
        return SchemaRegistryService(log)

    def start(self) -> EmbeddedRegistry:
        """Start serving and block until requests are answered (:class:`RegistryError` when it cannot)."""
        if self._thread is not None:
            return self
        check_port_free(self.host, self.port)
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="synthstream-registry", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.startup_timeout_s):
            raise RegistryError(500, 50001, f"the embedded registry did not start within {self.startup_timeout_s}s")
        if self._error is not None:
            self._thread.join(timeout=5)
            self._thread = None
            raise RegistryError(500, 50001, f"the embedded registry could not start: {self._error}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    def request_counts(self) -> dict[str, int]:
        """HTTP requests served since start, per method and route pattern (empty before start)."""
        return {} if self._serving is None else self._serving.request_counts()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        service = self._serving = self._service()
        try:
            runner = await serve(service, self.host, self.port)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            with contextlib.suppress(Exception):
                await service.stop()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await service.stop()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving and wait for the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(timeout_s)

    def __enter__(self) -> EmbeddedRegistry:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_beside_broker(bootstrap_servers: str, host: str, port: int) -> EmbeddedRegistry | None:
    """Start the embedded registry next to an embedded broker (``synthstream broker``); None when ``port < 0``."""
    if port < 0:
        return None
    return EmbeddedRegistry(KafkaSettings.for_embedded(bootstrap_servers), host=host, port=port).start()
