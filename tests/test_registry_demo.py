"""The demo's registry path and the example's registry section, checked with real clients.

- ``read_back_with_confluent`` (the demo's outside reader: confluent-kafka only) against the
  session broker and embedded registry: it decodes our Confluent-framed records, counts the ids
  in the frames and the keys, and counts what it cannot decode instead of hiding it;
- the demo's registry checks fail on the faults they name (missing subject, a frame id that is not
  the subject's, duplicate keys);
- the embedded registry counts the requests it serves (what the benchmark's "requests per 1,000
  records" rests on), and a cached store makes no request per record;
- the commented ``schema_registry`` / ``topic_layout`` sections of ``examples/pipeline.yaml`` are
  valid configuration once uncommented.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka.schema_registry import SchemaRegistryClient

from synthstream.config import parse_pipeline_config
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.connectors.registry import RegistrySchemaStore
from synthstream.demo import ReadBack, SubjectInfo, _registry_checks, demo_config, read_back_with_confluent
from synthstream.schemas.record import RecordSchema
from synthstream.schemas.serde import AvroRecordSerde, frame
from tests.registry_fixture import registry  # noqa: F401 - a fixture

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipeline.yaml"

SCHEMA = RecordSchema.model_validate(
    {
        "name": "Tx",
        "fields": [
            {"name": "amount-eur", "type": "double", "role": "numeric"},
            {"name": "city", "type": "string", "role": "categorical"},
        ],
    }
)


async def test_the_outside_reader_decodes_counts_ids_and_keys_and_reports_undecodable(
    kafka,
    registry,  # noqa: F811 - the imported fixture
    names,
):
    topic = names.topic("synthetic")
    with SchemaRegistryClient({"url": registry.url}) as client:
        serde = AvroRecordSerde(SCHEMA, RegistrySchemaStore(client), subject=f"{topic}-value")
    await ensure_topics(kafka, [topic])
    records = [{"amount-eur": float(i), "city": f"c{i % 3}"} for i in range(20)]
    messages = [OutMessage(value=serde.encode(r), key=f"k:{i}".encode()) for i, r in enumerate(records)]
    messages.append(OutMessage(value=frame(987_654, b"\x02"), key=b"k:bad"))  # an id no registry holds
    async with Producer(kafka) as producer:
        await producer.send_batch(topic, messages)

    back = await asyncio.get_running_loop().run_in_executor(
        None, read_back_with_confluent, kafka.bootstrap_servers, registry.url, topic, len(messages), 60.0
    )
    assert len(back.rows) == 20
    assert back.undecodable == 1
    assert back.ids_seen == {serde.schema_id: 20}
    # Confluent's deserializer knows only the registry's schema: Avro field names, values intact.
    assert back.rows[3] == {"amount_eur": 3.0, "city": "c0"}
    assert back.keys == back.distinct_keys == 20
    assert back.sample_key == "k:0"


def _config(tmp_path: Path) -> Any:
    return demo_config("s", tmp_path / "sample.csv", tmp_path, 10, "http://127.0.0.1:1")


def test_registry_checks_name_each_fault(tmp_path: Path):
    config = _config(tmp_path)
    source, synthetic = f"{config.source.topic}-value", f"{config.synthetic_topic}-value"
    good = [SubjectInfo(source, [1], 1), SubjectInfo(synthetic, [1], 2)]
    fine = ReadBack(ids_seen={2: 10}, keys=10, distinct_keys=10)
    assert _registry_checks(config, good, fine, source_id=1) == []

    missing = _registry_checks(config, good[:1], fine, source_id=1)
    assert missing == [f"subject {synthetic} is not in the schema registry"]
    assert "framed with id 7" in _registry_checks(config, good, fine, source_id=7)[0]
    wrong_id = ReadBack(ids_seen={2: 5, 9: 5}, keys=10, distinct_keys=10)
    assert "carry ids [2, 9]" in _registry_checks(config, good, wrong_id, source_id=1)[0]
    duplicates = ReadBack(ids_seen={2: 10}, keys=10, distinct_keys=8)
    assert _registry_checks(config, good, duplicates, source_id=1) == ["2 duplicate synthetic record keys"]


def test_demo_config_points_every_schema_at_the_registry(tmp_path: Path):
    assert _config(tmp_path).schema_registry.url == "http://127.0.0.1:1"
    assert not demo_config("s", tmp_path / "sample.csv", tmp_path, 10).schema_registry.enabled


def test_the_registry_counts_requests_and_a_cached_store_makes_none_per_record(
    registry,  # noqa: F811 - the imported fixture
    names,
):
    subject = f"{names.topic('counted')}-value"
    with SchemaRegistryClient({"url": registry.url}) as client:
        serde = AvroRecordSerde(SCHEMA, RegistrySchemaStore(client), subject=subject)
        before = registry.request_counts()
        with SchemaRegistryClient({"url": registry.url}) as reader_client:
            reader = RegistrySchemaStore(reader_client)
            decoder = AvroRecordSerde(SCHEMA, reader, subject=subject)  # registering an existing schema: 1 call
            for i in range(200):
                assert decoder.decode(serde.encode({"amount-eur": float(i), "city": "x"}))["amount-eur"] == i
        after = registry.request_counts()
    spent = {route: n - before.get(route, 0) for route, n in after.items() if n != before.get(route, 0)}
    assert spent == {"POST /subjects/{subject}/versions": 1}  # 200 records decoded, no lookup by id


def _uncommented(text: str, sections: tuple[str, ...]) -> str:
    """``text`` with the commented-out ``sections`` turned on (their comment-only lines dropped)."""
    out, inside = [], False
    for line in text.splitlines():
        if any(line.startswith(f"# {name}:") for name in sections):
            inside = True
        if inside and line.startswith("#"):
            body = line[2:]
            if not body.lstrip().startswith("#"):
                out.append(body)
            continue
        inside = False
        out.append(line)
    return "\n".join(out)


def test_example_registry_and_layout_sections_are_valid_once_uncommented():
    text = EXAMPLE.read_text()
    assert "schemas on topics.schemas)" not in text  # the old comment said Avro schemas live there only
    raw = yaml.safe_load(_uncommented(text, ("schema_registry", "topic_layout")))
    assert set(raw["schema_registry"]) >= {"url", "basic_auth_user_info_env", "subject_name_strategy"}
    config = parse_pipeline_config(raw, source=str(EXAMPLE))
    assert config.schema_registry.enabled
    assert config.schema_registry.subject_name_strategy == raw["schema_registry"]["subject_name_strategy"]
    assert config.topic_layout.partitions == raw["topic_layout"]["partitions"]
    # Secrets are named by environment variable, never written in the file.
    assert not any("password" in str(v).lower() for v in raw["schema_registry"].values())
