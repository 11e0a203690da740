"""``synthstream demo``: the whole spine on an embedded broker and the bundled Adult sample.

Starts a broker (unless servers are given), replays the sample as Confluent Avro plus three
deliberately bad records (to show the dead-letter path), runs the pipeline until it has
published the target number of synthetic records, reads the synthetic topic back with the
published schema, and prints a summary with a fidelity figure.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from synthstream.connectors.replay import replay_file
from synthstream.connectors.schema_topic import publish_schema
from synthstream.connectors.sinks import AutoDecoder, TopicDrain
from synthstream.evaluation.fidelity import fidelity_report
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import RecordSchema
from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore, frame
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


@dataclass
class DemoResult:
    """The demo's outcome; ``ok`` is False with ``problems`` when a check failed."""

    summary: PipelineSummary
    synthetic_read_back: int
    fidelity: dict[str, float]
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


def demo_config(stream: str, sample: Path, state_dir: Path, synthetic: int) -> PipelineConfig:
    """The demo's pipeline: retrain every 1,500 records, publish as fast as possible."""
    return parse_pipeline_config(
        {
            "stream": stream,
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
    *, records: int, synthetic: int, bootstrap_servers: str | None, state_dir: Path, console: Console
) -> DemoResult:
    """Run the demo end to end and print its summary."""
    if not 1 <= records <= 5_000:
        raise ValueError("records must be between 1 and 5,000 (the bundled sample's size)")
    if synthetic < 1:
        raise ValueError("synthetic must be at least 1")
    sample = sample_path()
    frame_ = read_table(sample, nrows=records)
    stream = f"adult-demo-{uuid.uuid4().hex[:6]}"
    schema = infer_schema(frame_, name="Adult")
    config = demo_config(stream, sample, state_dir, synthetic)
    with _broker(bootstrap_servers) as settings:
        console.print(f"[bold]synthstream demo[/] on {settings.bootstrap_servers}: stream {stream!r}")
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
    store = InMemorySchemaStore()
    serde = AvroRecordSerde(schema, store, subject=f"{config.source.topic}-value")
    await ensure_topics(settings, [config.source.topic, config.topics.schemas])
    pipeline = Pipeline(config, settings, schema, store=store)
    expected_in = records + len(BAD_RECORDS)

    def finished(p: Pipeline) -> bool:
        summary = p.summary()
        return summary.counters.records_in >= expected_in and summary.synthetic_published >= synthetic

    started = time.monotonic()
    run_task = asyncio.create_task(pipeline.run(until=finished))
    async with Producer(settings) as producer:
        await publish_schema(
            producer, config.topics.schemas, serde.subject, serde.schema_id, store.get(serde.schema_id)
        )
        await replay_file(
            producer, config.source.topic, sample_path(), schema, serde.encode, limit=records, total=records
        )
        await producer.send_batch(config.source.topic, [OutMessage(value=v) for v in BAD_RECORDS])
    summary = await asyncio.wait_for(run_task, timeout=600)
    console.print(f"pipeline finished in {time.monotonic() - started:.1f}s; reading the synthetic topic back")
    drained: list[dict[str, Any]] = []
    report = await TopicDrain(settings, config.synthetic_topic, AutoDecoder(store)).into(_ListSink(drained))
    synth = pd.DataFrame([{k: v for k, v in row.items() if not k.startswith("_")} for row in drained[: len(real)]])
    fidelity = fidelity_report(real, synth, schema) if not synth.empty else {}
    problems = _checks(summary, report.written, report.undecodable, expected_in, synthetic)
    plan = getattr(pipeline.redactor, "plan", None)
    redaction = dict(Counter(f.operator for f in plan.fields)) if plan is not None else {}
    stats = await _stats_summary(pipeline, settings, store, records)
    audits = _audit_summary(pipeline)
    if pipeline.gate is not None and not audits:
        problems.append("no model version was audited")
    if pipeline.stats is not None and not stats.get("windows"):
        problems.append("no DP statistics window was released")
    return DemoResult(
        summary=summary,
        synthetic_read_back=report.written,
        fidelity=fidelity,
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
    pipeline: Pipeline, settings: KafkaSettings, store: InMemorySchemaStore, records: int
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


class _ListSink:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)

    def close(self) -> None:
        return None


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
    if result.fidelity:
        grid.add_row("fidelity: column shapes", f"{result.fidelity['column_shapes']:.3f}")
        grid.add_row("fidelity: pair trends", f"{result.fidelity['pair_trends']:.3f}")
    if s.first_synthetic_after_s is not None:
        grid.add_row("first synthetic record after", f"{s.first_synthetic_after_s:.1f} s")
    grid.add_row("status", "[green]ok[/]" if result.ok else "[red]" + "; ".join(result.problems) + "[/]")
    console.print(grid)
