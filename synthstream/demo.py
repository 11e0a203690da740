"""``synthstream demo``: the whole spine on an embedded broker, registry and the bundled Adult sample.

Starts a broker (unless servers are given) and a Confluent-compatible Schema Registry beside it
(unless a registry URL is given), replays the sample as Confluent-framed Avro registered under
``<source topic>-value`` plus three deliberately bad records (to show the dead-letter path),
runs the pipeline with ``schema_registry.url`` pointing at the registry until it has published
the target number of synthetic records, reads the synthetic topic back as an outside client
would (confluent-kafka's consumer, ``AvroDeserializer`` and ``SchemaRegistryClient``, nothing of
ours), and prints a summary with the registry's subjects and ids and a fidelity figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from synthstream.config import PipelineConfig, parse_pipeline_config
from synthstream.connectors.broker import EmbeddedBroker
from synthstream.connectors.files import read_table
from synthstream.connectors.kafka import OutMessage, Producer, ensure_topics
from synthstream.connectors.registry import schema_store_for
from synthstream.connectors.registry_server import DEFAULT_TOPIC, EmbeddedRegistry
from synthstream.connectors.replay import replay_file
from synthstream.evaluation.fidelity import fidelity_report
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import RecordSchema
from synthstream.schemas.serde import AvroRecordSerde, SchemaStore, avro_schema, frame, original_names
from synthstream.settings import KafkaSettings
from synthstream.streams.pipeline import Pipeline, PipelineSummary

#: Bad records injected by the demo: each must end in the dead-letter topic.
BAD_RECORDS: tuple[bytes, ...] = (
    b'{"age": 39, "workclass": "State-gov"',  # malformed JSON
    b'{"age": "thirty-nine"}',  # wrong type and missing fields
    frame(999_999, b"\x02\x04"),  # Avro with an unknown schema id
)


def sample_path() -> Path:
    """The Adult sample shipped inside the package (5,000 rows, CC BY 4.0, see data/README.md)."""
    return Path(str(resources.files("synthstream") / "data" / "adult_sample.csv"))


@dataclass(frozen=True)
class SubjectInfo:
    """One subject of the registry as Confluent tooling sees it: its versions and the latest id."""

    subject: str
    versions: list[int]
    latest_id: int


@dataclass
class ReadBack:
    """What an outside Confluent consumer found on the synthetic topic."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    undecodable: int = 0
    ids_seen: dict[int, int] = field(default_factory=dict)  # schema id in the frame -> records
    keys: int = 0
    distinct_keys: int = 0
    sample_key: str | None = None


@dataclass
class DemoResult:
    """The demo's outcome; ``ok`` is False with ``problems`` when a check failed."""

    summary: PipelineSummary
    synthetic_read_back: int
    fidelity: dict[str, float]
    registry_url: str = ""
    subjects: list[SubjectInfo] = field(default_factory=list)
    ids_seen: dict[int, int] = field(default_factory=dict)
    sample_key: str | None = None
    redaction: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    audits: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems


@contextlib.contextmanager
def _broker(bootstrap_servers: str | None) -> Iterator[KafkaSettings]:
    if bootstrap_servers:
        yield KafkaSettings(bootstrap_servers=bootstrap_servers)
        return
    with EmbeddedBroker() as broker:
        yield KafkaSettings.for_embedded(broker.bootstrap_servers)


@contextlib.contextmanager
def _registry(settings: KafkaSettings, url: str | None, *, own_broker: bool) -> Iterator[str]:
    """The registry URL to use: ``url`` as given, else an embedded registry stored on the broker.

    On a broker the demo did not start, the embedded registry keeps its log on a topic of its own
    (``_schemas-demo-...``), so it never becomes a second writer of another registry's ``_schemas``.
    """
    if url:
        yield url
        return
    topic = DEFAULT_TOPIC if own_broker else f"{DEFAULT_TOPIC}-demo-{uuid.uuid4().hex[:6]}"
    with EmbeddedRegistry(settings, topic=topic) as registry:
        yield registry.url


def demo_config(
    stream: str, sample: Path, state_dir: Path, synthetic: int, registry_url: str | None = None
) -> PipelineConfig:
    """The demo's pipeline: retrain every 1,500 records, publish as fast as possible, schemas in the registry."""
    return parse_pipeline_config(
        {
            "stream": stream,
            # Every Avro schema goes to the Schema Registry (subjects <topic>-value); None: in-process store.
            "schema_registry": {"url": registry_url},
            "source": {"topic": stream, "sample_file": str(sample)},
            "training": {"every_records": 1_500, "every_seconds": 30, "min_records": 500, "seed": 0},
            "publisher": {"rate": 0, "batch_size": 1_000, "format": "avro", "max_records": synthetic},
            # DP statistics per 1-second window (event time = Kafka timestamp), w-event privacy over 10 windows.
            # Sex, race and income have public domains; workclass and education domains are learned with DP.
            "stats": {
                "enabled": True,
                "window_s": 1.0,
                "grace_s": 0.5,
                "epsilon_w": 1.0,
                "w": 10,
                "numeric": {
                    "age": {"bounds": [17, 90], "bins": 8, "sum": True},
                    "hours-per-week": {"bounds": [1, 99], "bins": 10},
                },
                "categorical": {
                    "sex": {"values": ["Female", "Male"]},
                    "race": {"values": ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"]},
                    "income": {"values": ["<=50K", ">50K"]},
                    "workclass": {},
                    "education": {},
                },
                "pairs": [["sex", "income"], ["age", "income"]],
            },
            # Every version is audited before it may publish; a lighter audit than the default keeps the
            # demo short (2,000 synthetic rows and 300 attempts per attack instead of 10,000 and 1,000).
            "audit": {"synthetic_rows": 2_000, "max_attack_rows": 2_000, "n_attacks": 300, "target_field": "income"},
            "state_dir": str(state_dir),
        },
        source="demo config",
    )


def run_demo(
    *,
    records: int,
    synthetic: int,
    bootstrap_servers: str | None,
    state_dir: Path,
    console: Console,
    schema_registry_url: str | None = None,
) -> DemoResult:
    """Run the demo end to end and print its summary.

    ``schema_registry_url``: a Confluent-compatible registry to use; None starts the embedded one.
    """
    if not 1 <= records <= 5_000:
        raise ValueError("records must be between 1 and 5,000 (the bundled sample's size)")
    if synthetic < 1:
        raise ValueError("synthetic must be at least 1")
    sample = sample_path()
    frame_ = read_table(sample, nrows=records)
    stream = f"adult-demo-{uuid.uuid4().hex[:6]}"
    schema = infer_schema(frame_, name="Adult")
    with (
        _broker(bootstrap_servers) as settings,
        _registry(settings, schema_registry_url, own_broker=not bootstrap_servers) as registry_url,
    ):
        config = demo_config(stream, sample, state_dir, synthetic, registry_url)
        console.print(
            f"[bold]synthstream demo[/] on {settings.bootstrap_servers}, schema registry {registry_url}: "
            f"stream {stream!r}"
        )
        result = asyncio.run(_run(config, settings, schema, frame_, records, synthetic, console))
    _print_summary(console, result, config)
    return result


async def _run(
    config: PipelineConfig,
    settings: KafkaSettings,
    schema: RecordSchema,
    real: pd.DataFrame,
    records: int,
    synthetic: int,
    console: Console,
) -> DemoResult:
    store = schema_store_for(config)  # the Schema Registry: config.schema_registry.url
    # The source's schema is registered under <source topic>-value; records carry the registry's id.
    serde = AvroRecordSerde(schema, store, subject=f"{config.source.topic}-value")
    await ensure_topics(settings, [config.source.topic])
    pipeline = Pipeline(config, settings, schema, store=store)
    expected_in = records + len(BAD_RECORDS)

    def finished(p: Pipeline) -> bool:
        summary = p.summary()
        return summary.counters.records_in >= expected_in and summary.synthetic_published >= synthetic

    started = time.monotonic()
    run_task = asyncio.create_task(pipeline.run(until=finished))
    async with Producer(settings) as producer:
        await replay_file(
            producer, config.source.topic, sample_path(), schema, serde.encode, limit=records, total=records
        )
        await producer.send_batch(config.source.topic, [OutMessage(value=v) for v in BAD_RECORDS])
    summary = await asyncio.wait_for(run_task, timeout=600)
    console.print(
        f"pipeline finished in {time.monotonic() - started:.1f}s; "
        "reading the synthetic topic back with confluent-kafka's AvroDeserializer"
    )
    registry_url = str(config.schema_registry.url)
    back = await asyncio.get_running_loop().run_in_executor(
        None, read_back_with_confluent, settings.bootstrap_servers, registry_url, config.synthetic_topic, synthetic
    )
    # The outside client sees Avro field names; the fidelity report compares under the sample's own keys.
    renames = original_names(avro_schema(pipeline.output_schema))
    synth = pd.DataFrame([{renames.get(k, k): v for k, v in row.items()} for row in back.rows[: len(real)]])
    fidelity = fidelity_report(real, synth, schema) if not synth.empty else {}
    problems = _checks(summary, len(back.rows), back.undecodable, expected_in, synthetic)
    subjects = await asyncio.get_running_loop().run_in_executor(
        None, registry_subjects, registry_url, _demo_topics(config)
    )
    problems += _registry_checks(config, subjects, back, serde.schema_id)
    plan = getattr(pipeline.redactor, "plan", None)
    redaction = dict(Counter(f.operator for f in plan.fields)) if plan is not None else {}
    stats = await _stats_summary(pipeline, settings, store, records)
    audits = _audit_summary(pipeline)
    if pipeline.gate is not None and not audits:
        problems.append("no model version was audited")
    if pipeline.stats is not None and not stats.get("windows"):
        problems.append("no DP statistics window was released")
    close = getattr(store, "close", None)
    if close is not None:
        close()
    return DemoResult(
        summary=summary,
        synthetic_read_back=len(back.rows),
        fidelity=fidelity,
        registry_url=registry_url,
        subjects=subjects,
        ids_seen=back.ids_seen,
        sample_key=back.sample_key,
        redaction=redaction,
        stats=stats,
        audits=audits,
        problems=problems,
    )


def _audit_summary(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Per model version: its status, the audit's verdict, the main measured risks (from audit.json)."""
    from synthstream.processors.auditor import AuditRecord

    out = []
    for version in pipeline.registry.versions():
        raw = pipeline.registry.load_extra(version.version, "audit.json")
        if raw is None:
            continue
        report = AuditRecord.model_validate_json(raw).report
        out.append(
            {
                "version": version.version,
                "status": version.status,
                "verdict": report.verdict,
                "risks": dict(report.risks),
                "reasons": list(report.reasons),
            }
        )
    return out


async def _stats_summary(
    pipeline: Pipeline, settings: KafkaSettings, store: SchemaStore, records: int
) -> dict[str, Any]:
    """What the stats topic carries: windows, the noisy total against the truth, the guarantee."""
    if pipeline.stats is None:
        return {}
    from synthstream.connectors.kafka import read_to_end
    from synthstream.schemas.events import EventSerde, StatsEvent

    serde = EventSerde(StatsEvent, store)
    events = [serde.decode(rec.value) async for batch in read_to_end(settings, pipeline.config.stats_topic)
              for rec in batch]  # fmt: skip
    if not events:
        return {"windows": 0}
    noisy_total = sum(q.values[0] for e in events for q in e.queries if q.kind == "count")
    spent, remaining = pipeline.stats.budget_status()
    learned = {
        name: len(d["labels"] or d["edges"] or ())
        for name, d in pipeline.ledger.domains(pipeline.config.stream).items()
        if d["source"] != "declared"
    }
    first = events[0]
    return {
        "windows": len(events),
        "noisy_total": noisy_total,
        "true_total": records,
        "epsilon_per_window": first.epsilon,
        "guarantee": f"({first.guarantee_epsilon:g}, {first.guarantee_delta:.1g})-DP per {first.unit} "
        f"over any {first.w} windows",
        "learned_domains": learned,
        "rho_spent_recent": spent.rho,
        "rho_remaining": remaining.rho,
    }


def read_back_with_confluent(
    bootstrap_servers: str, registry_url: str, topic: str, expected: int, timeout_s: float = 120.0
) -> ReadBack:
    """Read ``topic`` from the beginning as an outside client: confluent-kafka only, nothing of ours.

    Partitions are assigned (no consumer group to join); stops at ``expected`` records or after
    ``timeout_s``. Each value goes through ``AvroDeserializer``, which finds the writer schema in
    the registry by the id in the Confluent frame; the ids seen and the record keys are counted.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    out = ReadBack()
    keys: set[bytes] = set()
    ctx = SerializationContext(topic, MessageField.VALUE)
    group = f"demo-reader-{uuid.uuid4().hex[:6]}"  # never joined: partitions are assigned
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    with SchemaRegistryClient({"url": registry_url}) as client:
        deserialize = AvroDeserializer(client)
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            deadline = time.monotonic() + timeout_s
            while len(out.rows) + out.undecodable < expected and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=1_000, timeout=0.5):
                    if msg.error() is not None:
                        continue
                    value = msg.value() or b""
                    try:
                        out.rows.append(deserialize(value, ctx))
                    except Exception:  # a SerializationError or a registry error: counted, not shown
                        out.undecodable += 1
                        continue
                    schema_id = struct.unpack(">I", value[1:5])[0]
                    out.ids_seen[schema_id] = out.ids_seen.get(schema_id, 0) + 1
                    key = msg.key()
                    if key is not None:
                        out.keys += 1
                        keys.add(key)
                        if out.sample_key is None:
                            out.sample_key = key.decode("utf-8", "replace")
        finally:
            consumer.close()
    out.distinct_keys = len(keys)
    return out


def _demo_topics(config: PipelineConfig) -> list[str]:
    """The topics of the demo whose value schemas live in the registry."""
    t = config.topics
    return [
        config.source.topic,
        config.redacted_topic,
        config.synthetic_topic,
        config.stats_topic,
        t.deadletter,
        t.models,
        t.privacy_audit,
        t.pii_findings,
        t.budget,
        t.drift,
    ]


def registry_subjects(registry_url: str, topics: list[str]) -> list[SubjectInfo]:
    """The ``<topic>-value`` subjects of ``topics`` that the registry holds, as SchemaRegistryClient sees them."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    wanted = {f"{topic}-value" for topic in topics}
    out = []
    with SchemaRegistryClient({"url": registry_url}) as client:
        for subject in sorted(set(client.get_subjects()) & wanted):
            latest = client.get_latest_version(subject)
            out.append(SubjectInfo(subject, list(client.get_versions(subject)), int(latest.schema_id)))
    return out


def _registry_checks(config: PipelineConfig, subjects: list[SubjectInfo], back: ReadBack, source_id: int) -> list[str]:
    """The registry path held: subjects where Confluent tooling looks, the frames carry their ids, keys unique."""
    problems = []
    by_subject = {s.subject: s for s in subjects}
    for topic in (config.source.topic, config.synthetic_topic):
        if f"{topic}-value" not in by_subject:
            problems.append(f"subject {topic}-value is not in the schema registry")
    source = by_subject.get(f"{config.source.topic}-value")
    if source is not None and source.latest_id != source_id:
        problems.append(f"the source was framed with id {source_id}, its subject holds {source.latest_id}")
    synthetic = by_subject.get(f"{config.synthetic_topic}-value")
    if synthetic is not None and back.ids_seen and set(back.ids_seen) != {synthetic.latest_id}:
        problems.append(f"synthetic records carry ids {sorted(back.ids_seen)}, its subject holds {synthetic.latest_id}")
    if back.keys and back.distinct_keys != back.keys:
        problems.append(f"{back.keys - back.distinct_keys} duplicate synthetic record keys")
    return problems


def _checks(summary: PipelineSummary, read_back: int, undecodable: int, expected_in: int, synthetic: int) -> list[str]:
    c = summary.counters
    problems = []
    if c.records_in != expected_in:
        problems.append(f"{c.records_in} records ingested, expected {expected_in}")
    if not c.conserved:
        problems.append(f"counts not conserved: {c.records_in} in != {c.processed} + {c.dead_letters}")
    if c.dead_letters != len(BAD_RECORDS):
        problems.append(f"{c.dead_letters} dead letters, expected {len(BAD_RECORDS)}")
    if read_back < synthetic or undecodable:
        problems.append(f"read back {read_back} synthetic records ({undecodable} undecodable), expected {synthetic}")
    return problems


def _print_summary(console: Console, result: DemoResult, config: PipelineConfig) -> None:
    s = result.summary
    c = s.counters
    grid = Table(title="synthstream demo summary", show_header=False)
    grid.add_column("what")
    grid.add_column("value", justify="right")
    grid.add_row("records in (source topic)", f"{c.records_in:,}")
    grid.add_row("processed (validated -> buffer)", f"{c.processed:,}")
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(c.by_reason.items())) or "none"
    grid.add_row("dead letters", f"{c.dead_letters:,} ({reasons})")
    plan = ", ".join(f"{n} {op}" for op, n in sorted(result.redaction.items())) or "disabled"
    grid.add_row("redaction plan (fields per operator)", plan)
    if result.stats:
        st = result.stats
        grid.add_row(
            f"DP statistics windows ({config.stats_topic})",
            f"{st['windows']} windows, ε={st.get('epsilon_per_window', 0):.3g} each",
        )
        if st.get("windows"):
            grid.add_row("  noisy total count vs true", f"{st['noisy_total']:,.0f} vs {st['true_total']:,}")
            grid.add_row("  guarantee", st["guarantee"])
            learned = ", ".join(f"{k} ({v} values)" for k, v in sorted(st["learned_domains"].items())) or "none"
            grid.add_row("  domains learned with DP", learned)
            spent, total = st["rho_spent_recent"], st["rho_spent_recent"] + st["rho_remaining"]
            grid.add_row("  zCDP ρ spent by the newest w windows", f"{spent:.4g} of {total:.4g}")
    for audit in result.audits:
        risks = audit["risks"]
        shown = ", ".join(
            f"{name}={risks[name]:.3f}"
            for name in ("singling_out_univariate", "linkability", "dcr_share")
            if name in risks
        )
        grid.add_row(f"audit of v{audit['version']} ({audit['status']})", f"{audit['verdict']}: {shown}")
    grid.add_row("model versions trained", ", ".join(f"v{v}" for v in s.model_versions) or "none")
    grid.add_row(f"synthetic records out ({config.synthetic_topic})", f"{s.synthetic_published:,}")
    grid.add_row("synthetic records read back + decoded", f"{result.synthetic_read_back:,}")
    grid.add_row("  by confluent-kafka AvroDeserializer", "schema ids " + _ids(result.ids_seen))
    if result.sample_key is not None:
        grid.add_row("  record key (first)", result.sample_key)
    if result.fidelity:
        grid.add_row("fidelity: column shapes", f"{result.fidelity['column_shapes']:.3f}")
        grid.add_row("fidelity: pair trends", f"{result.fidelity['pair_trends']:.3f}")
    if s.first_synthetic_after_s is not None:
        grid.add_row("first synthetic record after", f"{s.first_synthetic_after_s:.1f} s")
    grid.add_row("status", "[green]ok[/]" if result.ok else "[red]" + "; ".join(result.problems) + "[/]")
    console.print(grid)
    if result.subjects:
        subjects = Table(title=f"schema registry {result.registry_url}: subjects of this stream")
        subjects.add_column("subject")
        subjects.add_column("versions", justify="right")
        subjects.add_column("latest id", justify="right")
        for info in result.subjects:
            subjects.add_row(info.subject, ",".join(map(str, info.versions)), str(info.latest_id))
        console.print(subjects)


def _ids(ids_seen: dict[int, int]) -> str:
    return ", ".join(f"{schema_id} ({n:,} records)" for schema_id, n in sorted(ids_seen.items())) or "none"
