"""The embedded Schema Registry: Confluent's REST contract, compatibility rules, restart survival.

The client is confluent-kafka's ``SchemaRegistryClient`` (not ours); raw bodies are read with httpx.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from synthstream.connectors.registry_server import EmbeddedRegistry, RegistryState, normalise_schema
from synthstream.connectors.topics import describe_topics
from synthstream.schemas.compatibility import check_compatibility, reader_problems
from tests.registry_fixture import registry  # noqa: F401 - a fixture

V1 = {"type": "record", "name": "Payment", "namespace": "t", "fields": [{"name": "amount", "type": "double"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "currency", "type": "string", "default": "EUR"}]}
NO_DEFAULT = {**V1, "fields": [*V1["fields"], {"name": "merchant", "type": "string"}]}


def _avro(schema: dict) -> Schema:
    return Schema(json.dumps(schema), "AVRO")


@pytest.fixture
def client(registry: EmbeddedRegistry) -> Iterator[SchemaRegistryClient]:  # noqa: F811 - the imported fixture
    with SchemaRegistryClient({"url": registry.url}) as running:
        yield running


def test_register_lookup_and_read_back(client, names):
    subject = f"{names.prefix}-value"
    first = client.register_schema(subject, _avro(V1))
    # Same schema (other whitespace and key order) -> same id, no new version.
    assert client.register_schema(subject, Schema(json.dumps(V1, indent=2, sort_keys=True), "AVRO")) == first
    second = client.register_schema(subject, _avro(V2))
    assert second > first
    assert client.get_versions(subject) == [1, 2]
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, second)
    assert json.loads(client.get_version(subject, 1).schema.schema_str) == V1
    # A fresh client (no cache) reads the schema by id.
    with SchemaRegistryClient({"url": client._rest_client.base_urls[0]}) as fresh:
        _read_back(fresh, client, subject, names.prefix, first, second)


def _read_back(fresh, client, subject, prefix, first, second):
    assert json.loads(fresh.get_schema(second).schema_str) == V2
    assert subject in fresh.get_subjects()
    assert fresh.lookup_schema(subject, _avro(V1)).version == 1
    # The same schema under another subject keeps its id (ids are per schema, as Confluent's).
    assert client.register_schema(f"{prefix}-other-value", _avro(V1)) == first
    assert {v.subject for v in fresh.get_schema_versions(first)} == {subject, f"{prefix}-other-value"}


def test_backward_is_the_default_and_levels_are_per_subject(client, names):
    subject = f"{names.prefix}-value"
    client.register_schema(subject, _avro(V1))
    assert client.get_compatibility() in ("BACKWARD", "BACKWARD_TRANSITIVE", "NONE", "FULL", "FORWARD")
    assert client.test_compatibility(subject, _avro(V2)) is True
    assert client.test_compatibility(subject, _avro(NO_DEFAULT)) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, _avro(NO_DEFAULT))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    # FORWARD on this subject only: a field without a default may be added (old readers ignore it).
    assert client.set_compatibility(subject_name=subject, level="FORWARD") == {"compatibility": "FORWARD"}
    assert client.get_compatibility(subject) == "FORWARD"
    assert client.register_schema(subject, _avro(NO_DEFAULT)) > 0
    # NONE accepts anything, e.g. a type change.
    other = f"{names.prefix}-none-value"
    client.register_schema(other, _avro(V1))
    client.set_compatibility(subject_name=other, level="NONE")
    changed = {**V1, "fields": [{"name": "amount", "type": "string"}]}
    assert client.register_schema(other, _avro(changed)) > 0


def test_errors_have_confluent_codes_and_bodies(registry, names):  # noqa: F811 - the imported fixture
    base = registry.url
    subject = f"{names.prefix}-value"
    with httpx.Client(base_url=base) as http:
        missing = http.get(f"/subjects/{subject}/versions")
        assert missing.status_code == 404
        assert missing.json()["error_code"] == 40401
        assert "message" in missing.json()
        assert http.get("/schemas/ids/987654").json()["error_code"] == 40403
        invalid = http.post(f"/subjects/{subject}/versions", json={"schema": '{"type": "recordd"}'})
        assert (invalid.status_code, invalid.json()["error_code"]) == (422, 42201)
        assert http.post(f"/subjects/{subject}/versions", json={"schema": "not json"}).json()["error_code"] == 42201
        created = http.post(f"/subjects/{subject}/versions", json={"schema": json.dumps(V1)})
        assert created.status_code == 200
        assert set(created.json()) == {"id"}
        assert created.headers["content-type"].startswith("application/vnd.schemaregistry.v1+json")
        assert http.get(f"/subjects/{subject}/versions/7").json()["error_code"] == 40402
        assert http.get(f"/subjects/{subject}/versions/zero").json()["error_code"] == 42202
        assert http.post(f"/subjects/{subject}", json={"schema": json.dumps(V2)}).json()["error_code"] == 40403
        assert http.put(f"/config/{subject}", json={"compatibility": "SIDEWAYS"}).json()["error_code"] == 42203
        assert http.get(f"/config/{subject}").json()["error_code"] == 40408
        assert http.get(f"/config/{subject}", params={"defaultToGlobal": "true"}).json()["compatibilityLevel"]
        assert http.get(f"/schemas/ids/{created.json()['id']}").json() == {"schema": normalise_schema(json.dumps(V1))}
        verbose = http.post(
            f"/compatibility/subjects/{subject}/versions/latest",
            params={"verbose": "true"},
            json={"schema": json.dumps(NO_DEFAULT)},
        ).json()
        assert verbose["is_compatible"] is False
        assert any("merchant" in m for m in verbose["messages"])


def test_soft_and_permanent_delete(client, names):
    subject = f"{names.prefix}-value"
    schema_id = client.register_schema(subject, _avro(V1))
    assert client.delete_subject(subject) == [1]
    assert subject not in client.get_subjects()
    with pytest.raises(SchemaRegistryError) as gone:
        client.get_versions(subject)
    assert gone.value.error_code == 40401
    # The id stays readable (records written with it must still decode).
    with SchemaRegistryClient({"url": client._rest_client.base_urls[0]}) as fresh:
        assert json.loads(fresh.get_schema(schema_id).schema_str) == V1
    assert client.delete_subject(subject, permanent=True) == [1]
    # Registering again starts a new version history but keeps the schema's id.
    assert client.register_schema(subject, _avro(V1)) == schema_id


async def test_state_survives_a_restart_on_its_compacted_topic(kafka, names):
    topic = f"{names.prefix}._schemas"
    subject = f"{names.prefix}-value"
    with EmbeddedRegistry(kafka, topic=topic) as first, SchemaRegistryClient({"url": first.url}) as before:
        id1 = before.register_schema(subject, _avro(V1))
        id2 = before.register_schema(subject, _avro(V2))
        before.set_compatibility(subject_name=subject, level="FULL")
    layout = (await describe_topics(kafka, [topic]))[topic]
    assert layout.partitions == 1
    with EmbeddedRegistry(kafka, topic=topic) as second, SchemaRegistryClient({"url": second.url}) as after:
        _after_restart(after, subject, names.prefix, id1, id2)


def _after_restart(after, subject, prefix, id1, id2):
    assert (id1, id2) == (1, 2)  # a fresh registry numbers from 1, as Confluent's
    assert json.loads(after.get_schema(id2).schema_str) == V2
    assert after.get_versions(subject) == [1, 2]
    assert after.get_compatibility(subject) == "FULL"
    # Ids continue after the restart instead of starting over.
    third = {**V2, "fields": [*V2["fields"], {"name": "note", "type": ["null", "string"], "default": None}]}
    assert after.register_schema(subject, _avro(third)) == 3
    assert after.register_schema(f"{prefix}-again-value", _avro(V1)) == id1


def test_state_is_rebuilt_from_its_log_alone():
    state = RegistryState()
    text = normalise_schema(json.dumps(V1))
    schema_id, record = state.plan_register("s-value", text, "AVRO")
    assert record is not None
    state.apply(*record)
    replayed = RegistryState()
    replayed.apply(*record)
    assert replayed == state
    assert state.plan_register("s-value", text, "AVRO") == (schema_id, None)


# -- the compatibility rules (Avro schema resolution) --------------------------------------------------


def _record(*fields: dict, name: str = "R") -> dict:
    return {"type": "record", "name": name, "fields": list(fields)}


@pytest.mark.parametrize(
    ("reader", "writer", "ok"),
    [
        ("long", "int", True),  # promotion
        ("int", "long", False),
        ("double", "float", True),
        ("string", "bytes", True),
        (["null", "string"], "string", True),  # a union reads one of its branches
        ("string", ["null", "string"], False),  # every writer branch must be readable
        ({"type": "array", "items": "long"}, {"type": "array", "items": "int"}, True),
        ({"type": "map", "values": "int"}, {"type": "map", "values": "string"}, False),
        ({"type": "enum", "name": "E", "symbols": ["A", "B"]}, {"type": "enum", "name": "E", "symbols": ["A"]}, True),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, {"type": "enum", "name": "E", "symbols": ["A", "B"]}, False),
        (
            {"type": "enum", "name": "E", "symbols": ["A"], "default": "A"},
            {"type": "enum", "name": "E", "symbols": ["A", "B"]},
            True,
        ),
        (_record({"name": "a", "type": "long"}), _record({"name": "a", "type": "long"}, name="Other"), False),
        ({"type": "long", "logicalType": "timestamp-micros"}, "long", True),
        ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 8}, False),
    ],
)
def test_reader_rules(reader, writer, ok):
    assert (reader_problems(reader, writer) == []) is ok


def test_levels_and_transitivity():
    v1 = _record({"name": "a", "type": "long"})
    v2 = _record({"name": "a", "type": "long"}, {"name": "b", "type": "string", "default": ""})
    v3 = _record({"name": "b", "type": "string", "default": ""})  # drops a (no default in v1)
    assert check_compatibility(v3, [v1, v2], "BACKWARD") == []  # reads v2's data: a is ignored
    assert check_compatibility(v3, [v1, v2], "BACKWARD_TRANSITIVE") == []  # b has a default for v1's data
    assert check_compatibility(v3, [v1, v2], "FORWARD") != []  # v2 cannot read v3's data: a missing, no default
    assert check_compatibility(v3, [v1, v2], "FULL") != []
    assert check_compatibility(v3, [v1, v2], "NONE") == []
    # A renamed field is readable through an alias.
    renamed = _record({"name": "amount", "type": "long", "aliases": ["a"]})
    assert check_compatibility(renamed, [v1], "BACKWARD") == []
    with pytest.raises(ValueError, match="unknown compatibility level"):
        check_compatibility(v1, [v1], "SIDEWAYS")


def test_named_type_references_resolve():
    inner = {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]}
    writer = _record({"name": "i", "type": inner}, {"name": "j", "type": "Inner"})
    reader_inner = {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "long"}]}
    reader = _record({"name": "i", "type": reader_inner}, {"name": "j", "type": "Inner"})
    assert reader_problems(reader, writer) == []
    assert reader_problems(writer, reader) != []  # int cannot read long
