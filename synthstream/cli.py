"""The ``synthstream`` command: demo, broker, init, run, replay, drain, infer-schema, models, budget, report.

Every command that talks to Kafka takes ``--bootstrap-servers`` and the TLS/SASL options
(or ``SYNTHSTREAM_KAFKA_*`` environment variables); ``demo`` and ``broker`` start the
embedded broker when no servers are given.

Errors an operator can fix end the command with one line on stderr and no traceback:
configuration and usage problems exit 2; a broker that cannot be reached (naming the
bootstrap servers), an unusable state directory (read-only, full, no permission), a taken
broker port and any other runtime failure exit 1. ``synthstream run`` shows a live status
line (records in, dead letters, versions, published, what it is doing) when stderr is a
terminal and logs are not JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from synthstream.config import PipelineConfig, load_pipeline_config
from synthstream.errors import BrokerError, ConfigError, StateDirError, SynthstreamError
from synthstream.log import configure_logging, get_logger
from synthstream.schemas.record import RecordSchema
from synthstream.settings import KafkaSettings

app = typer.Typer(help="Streaming synthetic data for Kafka.", no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)

BootstrapOpt = Annotated[
    str | None, typer.Option("--bootstrap-servers", "-b", help="Kafka host:port list (default: env or embedded).")
]
ProtocolOpt = Annotated[str | None, typer.Option(help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")]
MechanismOpt = Annotated[str | None, typer.Option(help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")]
UserOpt = Annotated[str | None, typer.Option(help="SASL user name.")]
PasswordOpt = Annotated[
    str | None, typer.Option(envvar="SYNTHSTREAM_KAFKA_SASL_PASSWORD", help="SASL password (prefer the env var).")
]
CaOpt = Annotated[Path | None, typer.Option(help="CA bundle for TLS.")]
CertOpt = Annotated[Path | None, typer.Option(help="Client certificate for mutual TLS.")]
KeyOpt = Annotated[Path | None, typer.Option(help="Client key for mutual TLS.")]
JsonLogsOpt = Annotated[bool, typer.Option("--json-logs", help="Log JSON lines instead of console text.")]
LogLevelOpt = Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")]


def kafka_settings(
    bootstrap_servers: str | None,
    security_protocol: str | None = None,
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    sasl_password: str | None = None,
    ssl_cafile: Path | None = None,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
) -> KafkaSettings:
    """Build the process's Kafka settings: flags override ``SYNTHSTREAM_KAFKA_*`` env vars."""
    given: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "security_protocol": security_protocol,
        "sasl_mechanism": sasl_mechanism,
        "sasl_username": sasl_username,
        "sasl_password": sasl_password,
        "ssl_cafile": ssl_cafile,
        "ssl_certfile": ssl_certfile,
        "ssl_keyfile": ssl_keyfile,
    }
    return KafkaSettings(**{k: v for k, v in given.items() if v is not None})


if TYPE_CHECKING:
    from synthstream.streams.pipeline import Pipeline

_log = get_logger("cli")
#: Set by commands run with --json-logs: their final error is a JSON log line too (event ``cli.failed``).
_json_errors = False


def _deployment_overrides(config: PipelineConfig, state_dir: Path | None, metrics_port: int | None) -> PipelineConfig:
    """Apply ``--state-dir``/``--metrics-port``: one pipeline file serves a laptop and a container."""
    update: dict[str, Any] = {}
    if state_dir is not None:
        update["state_dir"] = state_dir
    if metrics_port is not None:
        if not 0 <= metrics_port <= 65_535:
            raise ConfigError(f"--metrics-port must be 0-65535, got {metrics_port}")
        update["metrics"] = config.metrics.model_copy(update={"port": metrics_port})
    return config.model_copy(update=update) if update else config


def _use_json_errors(enabled: bool) -> None:
    global _json_errors
    _json_errors = enabled


def _fail(exc: Exception | str, code: int = 2) -> typer.Exit:
    if _json_errors:
        _log.error("cli.failed", error=str(exc), exit_code=code)
        return typer.Exit(code=code)
    # One line whatever the terminal width (soft_wrap); the message is text, not rich markup.
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=code)


def _innermost_place(exc: BaseException) -> str:
    """``module:line`` of the innermost synthstream frame (else the innermost frame) of ``exc``."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "synthstream" in f.filename] or frames
    if not ours:
        return "unknown place"
    frame = ours[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def _unwrap(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (task groups wrap the error that ended a run)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        ours = exc.subgroup(lambda e: isinstance(e, SynthstreamError))
        exc = (ours or exc).exceptions[0]
    return exc


@contextlib.contextmanager
def operator_errors(where: Path | list[Path] | None = None) -> Iterator[None]:
    """Turn any failure into one line on stderr and an exit code: 2 for configuration, 1 for runtime.

    ``where`` (e.g. the state directory; a list whose last item is used, for a path known only
    later) is named when an OS-level cause (no space, read-only, permission denied) is found
    anywhere in the exception's chain. Messages of unknown
    exceptions are not printed (they could carry a record value): the type and the place are,
    and the traceback is logged at DEBUG.
    """
    from aiokafka.errors import KafkaError

    from synthstream.connectors.statedir import explain_os_error

    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except BaseException as caught:
        if isinstance(where, list):
            where = where[-1] if where else None
        exc = _unwrap(caught)
        if isinstance(exc, (BrokerError, StateDirError)):
            raise _fail(exc, code=1) from None
        if isinstance(exc, SynthstreamError):
            explained = explain_os_error(exc, where)
            raise _fail(explained or exc, code=1 if explained else 2) from None
        explained = explain_os_error(exc, where)
        if explained is not None:
            raise _fail(explained, code=1) from None
        if isinstance(exc, KafkaError):
            raise _fail(f"Kafka error {type(exc).__name__}: {exc}", code=1) from None
        if not isinstance(exc, Exception):
            raise
        _log.debug("cli.unexpected_error", exc_info=exc)
        raise _fail(
            f"unexpected {type(exc).__name__} at {_innermost_place(exc)}; "
            "run with --log-level DEBUG to log the traceback",
            code=1,
        ) from None


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="Port to listen on (0 = a free one).")] = 9092,
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    registry_port: Annotated[
        int, typer.Option(help="Port of the embedded Schema Registry (0 = a free one, -1 = none).")
    ] = 8081,
) -> None:
    """Run the embedded broker (and a Confluent-compatible Schema Registry) in the foreground until Ctrl-C."""
    from synthstream.connectors.broker import EmbeddedBroker
    from synthstream.connectors.registry_server import start_beside_broker

    configure_logging()
    stop = threading.Event()
    # Handlers go in before the broker starts, so an early Ctrl-C still stops it cleanly.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with operator_errors(), EmbeddedBroker(host=host, port=port) as running:
        out.print(f"embedded broker listening on [bold]{running.bootstrap_servers}[/] (memory only); Ctrl-C stops it")
        registry = start_beside_broker(running.bootstrap_servers, host, registry_port)
        if registry is not None:
            out.print(f"embedded schema registry at [bold]{registry.url}[/] (schema_registry.url)")
        try:
            while not stop.wait(0.5):
                if not running.running:
                    raise BrokerError(running.exit_reason())
        finally:
            if registry is not None:
                registry.stop()


@app.command()
def demo(
    records: Annotated[int, typer.Option(help="Sample rows to replay (max 5,000 from the bundled sample).")] = 5_000,
    synthetic: Annotated[int, typer.Option(help="Synthetic records to publish before stopping.")] = 10_000,
    bootstrap_servers: BootstrapOpt = None,
    state_dir: Annotated[Path | None, typer.Option(help="Where the model registry goes (default: a temp dir).")] = None,
    schema_registry_url: Annotated[
        str | None,
        typer.Option(
            envvar="SYNTHSTREAM_SCHEMA_REGISTRY_URL",
            help="Confluent-compatible Schema Registry to use (default: an embedded one beside the broker).",
        ),
    ] = None,
    json_logs: JsonLogsOpt = False,
    log_level: LogLevelOpt = "WARNING",
) -> None:
    """Replay the bundled Adult sample through the pipeline, broker and schema registry embedded; print a summary."""
    from synthstream.demo import run_demo

    configure_logging(json=json_logs, level=log_level)
    _use_json_errors(json_logs)
    with operator_errors(state_dir), tempfile.TemporaryDirectory(prefix="synthstream-demo-") as tmp:
        result = run_demo(
            records=records,
            synthetic=synthetic,
            bootstrap_servers=bootstrap_servers,
            state_dir=state_dir or Path(tmp),
            console=out,
            schema_registry_url=schema_registry_url,
        )
    if not result.ok:
        err.print("[bold red]demo failed:[/] " + "; ".join(result.problems))
        raise typer.Exit(code=1)


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML file.")],
    role: Annotated[str, typer.Option(help="all, ingest, trainer or publisher.")] = "all",
    engine: Annotated[str, typer.Option(help="aiokafka (default, fastest) or faust (role all only).")] = "aiokafka",
    bootstrap_servers: BootstrapOpt = None,
    security_protocol: ProtocolOpt = None,
    sasl_mechanism: MechanismOpt = None,
    sasl_username: UserOpt = None,
    sasl_password: PasswordOpt = None,
    ssl_cafile: CaOpt = None,
    ssl_certfile: CertOpt = None,
    ssl_keyfile: KeyOpt = None,
    json_logs: JsonLogsOpt = False,
    log_level: LogLevelOpt = "INFO",
    state_dir: Annotated[
        Path | None, typer.Option(help="Overrides the file's state_dir (containers mount a volume here).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Overrides metrics.port (0 = a free port, logged as metrics.listening).")
    ] = None,
) -> None:
    """Run a configured pipeline against any Kafka until Ctrl-C (or the publisher's record limit)."""
    configure_logging(json=json_logs, level=log_level)
    _use_json_errors(json_logs)
    where: list[Path] = []
    with operator_errors(where):
        roles = ("all", "ingest", "trainer", "publisher")  # streams.pipeline.ROLES, imported below (slow)
        if role not in roles:
            raise SynthstreamError(f"unknown role {role!r}; choose one of {list(roles)}")
        if engine not in ("aiokafka", "faust"):
            raise SynthstreamError(f"unknown engine {engine!r}; choose aiokafka or faust")
        if engine == "faust" and role != "all":
            raise SynthstreamError("the faust engine runs role 'all' only")
        pipeline_config = _deployment_overrides(load_pipeline_config(config), state_dir, metrics_port)
        if engine == "faust" and not pipeline_config.tabular_enabled:
            raise SynthstreamError(
                "the faust engine runs the tabular feed only and this config asks for sequences only: "
                "use the aiokafka engine (or set training.tabular: true)"
            )
        # Every problem of every section against the data, in one error, before anything starts.
        from synthstream.config_check import check_config

        source_schema = load_source_schema(
            pipeline_config.source.schema_file, pipeline_config.source.sample_file, {}, pipeline_config.stream
        )
        check_config(pipeline_config, source_schema, str(config))
        settings = kafka_settings(
            bootstrap_servers,
            security_protocol,
            sasl_mechanism,
            sasl_username,
            sasl_password,
            ssl_cafile,
            ssl_certfile,
            ssl_keyfile,
        )
        from synthstream.connectors.statedir import check_state_dir

        where.append(pipeline_config.state_dir)
        # Before the slow parts (plan detection, NER): a read-only dir or no broker fails in a second.
        check_state_dir(pipeline_config.state_dir)
        from synthstream.connectors.kafka import ensure_reachable

        asyncio.run(ensure_reachable(settings))
        from synthstream.streams.pipeline import Pipeline, Role

        overrides = pipeline_config.role_overrides()
        schema = source_schema.with_roles(overrides) if overrides else source_schema
        if engine == "faust":
            from synthstream.streams.faust_app import FaustPipeline

            FaustPipeline(pipeline_config, settings, schema).run()
            return
        pipeline = Pipeline(pipeline_config, settings, schema, role=cast("Role", role))  # checked against roles above
        live = err.is_terminal and not json_logs

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            async with _status_line(pipeline, enabled=live):
                summary = await pipeline.run(stop=stop)
            out.print_json(json.dumps(_summary_dict(summary)))

        asyncio.run(main())


@contextlib.asynccontextmanager
async def _status_line(pipeline: Pipeline, *, enabled: bool, interval_s: float = 0.5) -> Any:
    """A live status line on the terminal (rich), refreshed every ``interval_s``, while the run lasts.

    Log lines print above it (the display redirects stderr); off when stderr is not a terminal
    or logs are JSON, so files and log collectors get plain lines only.
    """
    if not enabled:
        task = asyncio.create_task(_status_log(pipeline), name="status-log")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return
    from rich.live import Live
    from rich.text import Text

    def render() -> Text:
        try:
            return Text(pipeline.status().line(), no_wrap=True, overflow="ellipsis")
        except Exception as exc:  # a status read must never end the run
            return Text(f"status unavailable ({type(exc).__name__})")

    async def refresh(live: Live) -> None:
        while True:
            live.update(render(), refresh=True)
            await asyncio.sleep(interval_s)

    import sys

    from synthstream.log import set_log_stream

    with Live(render(), console=err, auto_refresh=False, transient=True, redirect_stderr=True) as live:
        previous = set_log_stream(sys.stderr)  # the display's proxy: log lines print above the status line
        task = asyncio.create_task(refresh(live), name="status-line")
        try:
            yield
        finally:
            set_log_stream(previous)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _status_log(
    pipeline: Pipeline, *, check_s: float = 5.0, quiet_s: float = 30.0, heartbeat_s: float = 300.0
) -> None:
    """Without a terminal status line, the status as ``pipeline.status`` log lines.

    A line when the activity changes (numbers aside, at most every ``quiet_s``) and at least every
    ``heartbeat_s``: a run in a container or under a log collector once waited minutes for a control
    set it could not reach with no line said.
    """
    log = get_logger("pipeline", stream=pipeline.config.stream, role=pipeline.role)
    last_kind, last_at = None, 0.0
    while True:
        await asyncio.sleep(check_s)
        try:
            status = pipeline.status()
        except Exception as exc:  # a status read must never end the run
            log.debug("pipeline.status_unavailable", error=type(exc).__name__)
            continue
        kind = re.sub(r"\d[\d,.]*", "#", status.activity)
        now = time.monotonic()
        if (kind != last_kind and now - last_at >= quiet_s) or now - last_at >= heartbeat_s:
            last_kind, last_at = kind, now
            log.info(
                "pipeline.status",
                records_in=status.records_in,
                dead_letters=status.dead_letters,
                versions=status.versions,
                promoted=status.promoted,
                published=status.published,
                activity=status.activity,
            )


def load_source_schema(
    schema_file: Path | None, sample_file: Path | None, roles: dict[str, Any], stream: str
) -> RecordSchema:
    """The source schema: the given .avsc, else inferred from the sample file."""
    from synthstream.schemas.inference import infer_schema_from_file

    if schema_file is not None:
        try:
            avro = json.loads(schema_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SynthstreamError(f"cannot read schema file {schema_file}: {exc}") from None
        schema = RecordSchema.from_avro(avro)
        return schema.with_roles(roles) if roles else schema
    assert sample_file is not None
    return infer_schema_from_file(sample_file, name=_avro_name(stream), roles=roles or None)


def _avro_name(stream: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in stream)
    return cleaned if cleaned[:1].isalpha() else f"R_{cleaned}"


def _summary_dict(summary: Any) -> dict[str, Any]:
    counters = summary.counters
    return {
        "stream": summary.stream,
        "role": summary.role,
        "records_in": counters.records_in,
        "processed": counters.processed,
        "dead_letters": counters.dead_letters,
        "dead_letters_by_reason": dict(counters.by_reason),
        "model_versions": summary.model_versions,
        "synthetic_published": summary.synthetic_published,
        "sequence_versions": summary.sequence_versions,
        "sequence_records_published": summary.sequences_published,
        "latency": summary.latency,
        "seconds": round(summary.seconds, 3),
    }


@app.command()
def replay(
    path: Annotated[Path, typer.Argument(help="CSV, Parquet or JSONL file.")],
    topic: Annotated[str, typer.Option(help="Topic to produce to.")],
    rate: Annotated[float | None, typer.Option(help="Records per second (default: as fast as possible).")] = None,
    wire_format: Annotated[str, typer.Option("--format", help="json or avro (Confluent framing).")] = "json",
    limit: Annotated[int | None, typer.Option(help="Stop after this many records.")] = None,
    repeat: Annotated[int, typer.Option(help="Replay the file this many times.")] = 1,
    schema_file: Annotated[Path | None, typer.Option(help="Avro schema (.avsc); default: inferred.")] = None,
    schemas_topic: Annotated[str, typer.Option(help="Where the Avro schema is published.")] = "synthstream.schemas",
    bootstrap_servers: BootstrapOpt = None,
    security_protocol: ProtocolOpt = None,
    sasl_mechanism: MechanismOpt = None,
    sasl_username: UserOpt = None,
    sasl_password: PasswordOpt = None,
    ssl_cafile: CaOpt = None,
    ssl_certfile: CertOpt = None,
    ssl_keyfile: KeyOpt = None,
) -> None:
    """Replay a file into a topic at a target rate or as fast as possible, with a progress bar."""
    from synthstream.connectors.files import read_table
    from synthstream.connectors.kafka import Producer, ensure_topics
    from synthstream.connectors.replay import replay_file
    from synthstream.connectors.schema_topic import publish_schema
    from synthstream.schemas.serde import AvroRecordSerde, InMemorySchemaStore, JsonRecordSerde

    configure_logging(level="WARNING")
    if wire_format not in ("json", "avro"):
        raise _fail(ValueError(f"--format must be json or avro, not {wire_format!r}"))
    with operator_errors():
        settings = kafka_settings(
            bootstrap_servers,
            security_protocol,
            sasl_mechanism,
            sasl_username,
            sasl_password,
            ssl_cafile,
            ssl_certfile,
            ssl_keyfile,
        )
        schema = load_source_schema(schema_file, path, {}, topic)
        total = len(read_table(path)) * repeat
        total = min(total, limit) if limit is not None else total

        async def main() -> None:
            await ensure_topics(settings, [topic, schemas_topic])
            async with Producer(settings) as producer:
                if wire_format == "avro":
                    store = InMemorySchemaStore()
                    serde: Any = AvroRecordSerde(schema, store, subject=f"{topic}-value")
                    await publish_schema(
                        producer, schemas_topic, f"{topic}-value", serde.schema_id, store.get(serde.schema_id)
                    )
                else:
                    serde = JsonRecordSerde(schema)
                report = await replay_file(
                    producer, topic, path, schema, serde.encode, rate=rate, limit=limit, repeat=repeat, total=total
                )
            out.print(
                f"replayed {report.records} records ({report.bytes} bytes) in {report.seconds:.2f}s "
                f"= {report.rate:,.0f} records/s"
            )

        asyncio.run(main())


@app.command()
def drain(
    topic: Annotated[str, typer.Argument(help="Topic to read from the beginning to its current end.")],
    parquet: Annotated[Path | None, typer.Option(help="Write a Parquet file here.")] = None,
    duckdb_path: Annotated[Path | None, typer.Option("--duckdb", help="Write into this DuckDB database.")] = None,
    table: Annotated[str | None, typer.Option(help="DuckDB table name (default: the topic, sanitised).")] = None,
    schemas_topic: Annotated[str, typer.Option(help="Where Avro schemas are published.")] = "synthstream.schemas",
    bootstrap_servers: BootstrapOpt = None,
    security_protocol: ProtocolOpt = None,
    sasl_mechanism: MechanismOpt = None,
    sasl_username: UserOpt = None,
    sasl_password: PasswordOpt = None,
    ssl_cafile: CaOpt = None,
    ssl_certfile: CertOpt = None,
    ssl_keyfile: KeyOpt = None,
) -> None:
    """Drain a topic into Parquet or DuckDB (Avro decoded via the schemas topic, else JSON)."""
    from synthstream.connectors.schema_topic import SchemaTopicReader
    from synthstream.connectors.sinks import AutoDecoder, DuckDBSink, ParquetSink, Sink, TopicDrain
    from synthstream.schemas.serde import InMemorySchemaStore

    configure_logging(level="WARNING")
    if (parquet is None) == (duckdb_path is None):
        raise _fail(ValueError("give exactly one of --parquet or --duckdb"))
    with operator_errors(parquet or duckdb_path):
        settings = kafka_settings(
            bootstrap_servers,
            security_protocol,
            sasl_mechanism,
            sasl_username,
            sasl_password,
            ssl_cafile,
            ssl_certfile,
            ssl_keyfile,
        )
        sink: Sink
        if parquet is not None:
            sink = ParquetSink(parquet)
        else:
            assert duckdb_path is not None
            sink = DuckDBSink(duckdb_path, table or "".join(c if c.isalnum() else "_" for c in topic))

        async def main() -> None:
            store = InMemorySchemaStore()
            await SchemaTopicReader(settings, schemas_topic, store).refresh()
            with contextlib.closing(sink):
                report = await TopicDrain(settings, topic, AutoDecoder(store)).into(sink)
            out.print(f"drained {report.written} records from {topic}; {report.undecodable} undecodable")

        asyncio.run(main())


@app.command("infer-schema")
def infer_schema_cmd(
    path: Annotated[Path, typer.Argument(help="CSV, Parquet or JSONL sample.")],
    name: Annotated[str, typer.Option(help="Avro record name.")] = "Record",
    output: Annotated[Literal["table", "avro"], typer.Option(help="table or avro.")] = "table",
    pii: Annotated[
        bool, typer.Option(help="Also show the PII each field holds, the redaction operator and why.")
    ] = True,
    sample: Annotated[int, typer.Option(min=10, help="Rows sampled for PII detection.")] = 1_000,
) -> None:
    """Infer a record schema (types, nullability, roles) and its PII redaction plan from a sample file."""
    from synthstream.connectors.files import read_table, records_from_frame
    from synthstream.processors.pii.redactor import build_plan
    from synthstream.schemas.inference import infer_schema_from_file

    try:
        schema = infer_schema_from_file(path, name=name)
        plans = {}
        if pii and output == "table":
            records = records_from_frame(read_table(path, nrows=sample), schema)
            plans = {f.field: f for f in build_plan(schema, records).fields}
    except SynthstreamError as exc:
        raise _fail(exc) from None
    if output == "avro":
        out.print_json(json.dumps(schema.to_avro()))
        return
    grid = Table(title=f"schema inferred from {path.name}")
    columns = ["field", "type", "nullable", "role"] + (["pii", "operator", "why"] if plans else [])
    for column in columns:
        grid.add_column(column, overflow="fold")
    for f in schema.fields:
        row = [f.name, f.type.value, "yes" if f.nullable else "no", f.role.value]
        if plans:
            plan = plans[f.name]
            row += [plan.entity or "-", plan.operator, plan.reason]
        grid.add_row(*row)
    out.print(grid)


@app.command()
def init(
    sample: Annotated[Path, typer.Argument(help="CSV, Parquet or JSONL sample of the source topic's records.")],
    topic: Annotated[str, typer.Option(help="Source topic the pipeline reads.")],
    stream: Annotated[str | None, typer.Option(help="Stream name (default: the topic).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Pipeline file to write.")] = Path("pipeline.yaml"),
    deadletter_topic: Annotated[str, typer.Option(help="Dead-letter topic.")] = "synthstream.deadletter",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    target: Annotated[
        str | None,
        typer.Option(
            help="The label your users train on (audit.target_field): the audit measures TSTR on it and "
            "the automatic model choice favours the model that predicts it best."
        ),
    ] = None,
) -> None:
    """Write a working, commented pipeline file for a sample: fields, roles, redaction plan and why, drift."""
    from synthstream.config_init import FEW_ROWS, small_holdout_share, write_pipeline

    configure_logging(level="WARNING")
    with operator_errors(output):
        result = write_pipeline(
            sample,
            topic=topic,
            stream=stream,
            output=output,
            deadletter_topic=deadletter_topic,
            overwrite=force,
            target=target,
        )
    out.print(
        f"wrote {result.path}: stream {result.stream}, {result.fields} fields ({result.redacted} redacted), "
        f"drift on {result.drift_fields}; run it with: synthstream run --config {result.path}",
        soft_wrap=True,
        highlight=False,
    )
    if result.rows < FEW_ROWS:
        share = small_holdout_share(result.rows)
        err.print(
            f"note: the sample has {result.rows} rows: {round(100 * share)}% are held out for the audit, so the "
            f"model learns from about {round(result.rows * (1 - share))}; a value fewer than 5 records hold is "
            "never generated and the audit's risk intervals are wide. More rows give a better model.",
            soft_wrap=True,
            highlight=False,
        )


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A table on stdout: rich on a terminal; plain aligned text (nothing truncated) in a pipe or file."""
    if out.is_terminal:
        grid = Table(title=title)
        for column in columns:
            grid.add_column(column, overflow="fold")
        for row in rows:
            grid.add_row(*row)
        out.print(grid)
        return
    import sys

    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    sys.stdout.write("\n".join(lines) + "\n")


def _version_rows(registry: Any) -> list[list[str]]:
    rows = []
    for v in registry.versions():
        lineage = v.lineage
        g = lineage.guarantee
        if not g:
            guarantee = "empirical only"
        elif g.get("epsilon") is not None:
            guarantee = f"({float(g['epsilon']):.3g}, {float(g.get('delta') or 0):.1g})-DP {g.get('mechanism', '')}"
        else:
            guarantee = f"DP by post-processing: {g.get('mechanism', '')} windows {g.get('windows', '?')}"
        metrics = ", ".join(f"{k}={val:.3g}" for k, val in sorted(lineage.metrics.items()))
        rows.append(
            [
                str(v.version),
                v.status,
                v.generator,
                str(lineage.rows),
                str(lineage.seed),
                f"{lineage.fit_seconds:.2f}",
                guarantee,
                metrics or "-",
                v.created_at.isoformat(timespec="seconds"),
            ]
        )
    return rows


@app.command()
def models(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML file.")],
    rollback: Annotated[bool, typer.Option(help="Re-promote the previously promoted version.")] = False,
) -> None:
    """List model versions (tabular and sequence) with their guarantee and metrics, show training progress, roll back.

    On a terminal the tables are drawn with rich; piped or redirected, they are plain aligned
    text with every cell in full (no ``gaussi…``).
    """
    from synthstream.models.registry import ModelRegistry
    from synthstream.models.training import read_progress

    try:
        pipeline_config = load_pipeline_config(config)
        root = pipeline_config.state_dir / "models"
        registry = ModelRegistry(root, pipeline_config.stream)
        sequence_name = f"{pipeline_config.stream}.sequences"
        # Not created when absent: listing must not make a sequence registry appear.
        sequences = ModelRegistry(root, sequence_name) if (root / sequence_name).is_dir() else None
        if rollback:
            version = registry.rollback()
            out.print(f"rolled back: version {version.version} is promoted")
    except SynthstreamError as exc:
        raise _fail(exc) from None
    columns = ["version", "status", "generator", "rows", "seed", "fit s", "guarantee", "metrics", "created"]
    for reg, kind, label in ((registry, "models", "last fit"), (sequences, "sequence models", "last sequence fit")):
        if reg is None:
            continue
        progress = read_progress(reg.progress_path)
        if progress is not None:
            status = progress.get("status") or "training"
            out.print(
                f"{label}: v{progress.get('version', '?')} {progress.get('generator', '')} {status} "
                f"{100 * float(progress.get('fraction', 0.0)):.0f}% ({progress.get('detail', '')})",
                soft_wrap=True,
                highlight=False,
            )
        _print_table(f"{kind} of {pipeline_config.stream}", columns, _version_rows(reg))


@app.command()
def budget(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML file.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show DP budget spent and remaining per stream, scope and privacy unit (from the ledger)."""
    from synthstream.privacy.accounting import rho_to_epsilon
    from synthstream.privacy.ledger import PrivacyLedger
    from synthstream.streams.stats import SCOPE, stats_budget, stats_unit

    try:
        pipeline_config = load_pipeline_config(config)
        path = pipeline_config.state_dir / "privacy.duckdb"
        if not path.is_file():
            raise ConfigError([f"no privacy ledger at {path}: nothing has been released yet"], str(config))
        stats = pipeline_config.stats
        summaries = PrivacyLedger(path, read_only=True).summaries({SCOPE: stats.w})
    except SynthstreamError as exc:
        raise _fail(exc) from None
    rows = []
    for s in summaries:
        row: dict[str, Any] = {
            "stream": s.stream,
            "scope": s.scope,
            "unit": s.unit,
            "releases": s.releases,
            "refusals": s.refusals,
            "windows": s.windows,
            "spent_rho": s.recent.rho,
            "spent_epsilon": s.recent.epsilon,
            "spent_delta": s.recent.delta,
        }
        if s.scope == SCOPE and s.stream == pipeline_config.stream and s.unit == stats_unit(stats):
            limit = stats_budget(stats)
            if stats.mechanism == "gaussian":
                row["spent_epsilon"] = rho_to_epsilon(s.recent.rho, stats.delta) if s.recent.rho > 0 else 0.0
                row["remaining_rho"] = max(0.0, limit.rho - s.recent.rho)
                left = row["remaining_rho"]
                row["remaining_epsilon"] = rho_to_epsilon(left, stats.delta) if left > 0 else 0.0
            else:
                row["remaining_epsilon"] = max(0.0, limit.epsilon - s.recent.epsilon)
            row["budget"] = f"ε={stats.epsilon_w:g} over any {stats.w} windows"
        rows.append(row)
    if json_output:
        out.print_json(data=rows)
        return
    grid = Table(title=f"privacy budget ({path})")
    for column in ("stream", "scope", "unit", "releases", "refused", "windows", "spent ε (ρ)", "remaining ε", "budget"):
        grid.add_column(column)
    for row in rows:
        spent = f"{row['spent_epsilon']:.4g}" + (f" ({row['spent_rho']:.3g})" if row["spent_rho"] else "")
        remaining = row.get("remaining_epsilon")
        grid.add_row(
            row["stream"],
            row["scope"],
            row["unit"],
            str(row["releases"]),
            str(row["refusals"]),
            str(row["windows"]),
            spent,
            "-" if remaining is None else f"{remaining:.4g}",
            row.get("budget", "-"),
        )
    out.print(grid)


@app.command()
def report(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML file.")],
    version: Annotated[int | None, typer.Option(help="Model version (default: the latest audited one).")] = None,
    output: Annotated[Path | None, typer.Option(help="Folder for the files (default: <state_dir>/reports).")] = None,
) -> None:
    """Render a model version's privacy and quality audit as self-contained HTML plus JSON."""
    from synthstream.evaluation.report import render_report, report_json
    from synthstream.models.registry import ModelRegistry
    from synthstream.processors.auditor import AuditRecord
    from synthstream.streams.audit import AUDIT_ARTIFACT

    try:
        pipeline_config = load_pipeline_config(config)
        registry = ModelRegistry(pipeline_config.state_dir / "models", pipeline_config.stream)
        versions = registry.versions()
        audits = {}
        for v in versions:
            payload = registry.load_extra(v.version, AUDIT_ARTIFACT)
            if payload is not None:
                audits[v.version] = AuditRecord.model_validate_json(payload)
        if not audits:
            raise SynthstreamError(f"no audited version of {pipeline_config.stream!r} in {registry.path}")
        chosen = max(audits) if version is None else version
        if chosen not in audits:
            raise SynthstreamError(f"version {chosen} has no audit; audited versions: {sorted(audits)}")
        record = audits[chosen]
        history = [a for n, a in sorted(audits.items()) if n != chosen]
        folder = output if output is not None else pipeline_config.state_dir / "reports"
        folder.mkdir(parents=True, exist_ok=True)
        html_path = folder / f"{pipeline_config.stream}-v{chosen}.html"
        json_path = folder / f"{pipeline_config.stream}-v{chosen}.json"
        html_path.write_text(render_report(record, history=history, versions=versions), encoding="utf-8")
        data = report_json(record, history=history, versions=versions)
        json_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    except (SynthstreamError, OSError) as exc:
        raise _fail(exc) from None
    out.print(f"audit of v{chosen}: [bold]{record.report.verdict}[/]")
    out.print(f"report: {html_path}")
    out.print(f"json:   {json_path}")


def main() -> None:
    """Console-script entry point."""
    app()
