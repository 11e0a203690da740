"""Prometheus metrics and a health endpoint for one pipeline process.

``GET /metrics`` serves the Prometheus text format from a per-pipeline
``CollectorRegistry`` (never the global one, so two pipelines in one process do not mix).
Its :class:`PipelineCollector` reads the pipeline's own objects at scrape time —
:meth:`Pipeline.summary() <synthstream.streams.pipeline.Pipeline.summary>` and its
:class:`~synthstream.streams.ingest.IngestCounters`, the registry, the drift stage — so a
scrape shows exactly the counts the pipeline reports, with nothing counted twice.
Values the pipeline does not own (privacy budget, window lag of other stages) are set
through :class:`PipelineMetrics`' setters.

``GET /health`` answers JSON: whether the broker answers (a round trip within the last few
seconds, from the pipeline's :class:`~synthstream.connectors.kafka.BrokerMonitor`), whether the
input consumer has partitions, the age of the last ingested batch, the promoted version and
what the run is doing (``activity``: e.g. waiting after a rejected version) and, where it
trains, whether the stream is stalled (``training_stalled``, ``stalled_reason``,
``unpublished_fits``: no version published for several fits); HTTP 200 when healthy, 503
(``degraded``) otherwise (a stalled stream stays 200: restarting the process would not help).

:class:`MetricsServer` is a batch observer: it starts its HTTP server (on the event loop,
``asyncio.start_server``; port 0 picks a free one) on the pipeline's first tick, notes
the time of every batch, samples the publish rate, and stops at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from synthstream.log import get_logger
from synthstream.privacy.ledger import LedgerError
from synthstream.streams.drift import DriftStage

if TYPE_CHECKING:
    from synthstream.config import MetricsConfig
    from synthstream.connectors.kafka import BatchSender
    from synthstream.streams.ingest import SourceRecord
    from synthstream.streams.pipeline import Pipeline

__all__ = ["FindingsTally", "MetricsServer", "PipelineCollector", "PipelineMetrics"]

Record = dict[str, Any]
_READ_TIMEOUT_S = 5.0
#: How often the privacy-budget gauges are re-read from the ledger (seconds).
_BUDGET_REFRESH_S = 5.0


class FindingsTally:
    """Cumulative redaction counts: what the findings reporter drained plus what is pending.

    The redactor keeps counts per findings window and the findings reporter drains them;
    this wrapper sits between the two (it is handed to the reporter as its redactor) and
    adds up every drain, so the metric is a true running total.
    """

    def __init__(self, redactor: object) -> None:
        self.redactor = redactor
        self.drained: Counter[tuple[str, str, str]] = Counter()

    def __repr__(self) -> str:
        return f"FindingsTally(redactor={self.redactor!r})"

    def drain_findings(self) -> list[tuple[str, str, str, int]]:
        """Drain the redactor's window counts (for the reporter) and add them to the total."""
        drain = getattr(self.redactor, "drain_findings", None)
        drained: list[tuple[str, str, str, int]] = drain() if drain is not None else []
        for field, entity, operator, n in drained:
            self.drained[(field, entity, operator)] += n
        return drained

    def totals(self) -> Counter[tuple[str, str, str]]:
        """Findings so far per (field, entity type, operator)."""
        pending: Counter[tuple[str, str, str]] = Counter(getattr(self.redactor, "findings", {}))
        return self.drained + pending


class PipelineMetrics:
    """The per-pipeline registry and the gauges other stages set (privacy budget, window lag)."""

    def __init__(self, pipeline: Pipeline, *, producer: BatchSender | None = None) -> None:
        self.pipeline = pipeline
        self.producer = producer
        self.registry = CollectorRegistry(auto_describe=False)
        self.budget: dict[tuple[str, str], tuple[float, float]] = {}
        self.window_lag: dict[str, float] = {}
        self.tally: FindingsTally | None = None
        self.publish_samples: deque[tuple[float, int]] = deque(maxlen=11)
        self.last_batch_at: float | None = None
        self.collector = PipelineCollector(self)
        self.registry.register(self.collector)

    def __repr__(self) -> str:
        return f"PipelineMetrics(pipeline={self.pipeline!r})"

    def set_privacy_budget(
        self, *, spent: float, remaining: float, scope: str = "stats", unit: str = "epsilon"
    ) -> None:
        """Set the privacy budget gauges of ``scope`` (e.g. ε spent and left in the current w windows)."""
        if spent < 0 or remaining < 0:
            raise ValueError("privacy budget spent and remaining must be >= 0")
        self.budget[(scope, unit)] = (float(spent), float(remaining))

    def set_window_lag(self, stage: str, seconds: float) -> None:
        """Set how far (seconds) ``stage``'s last closed window ends behind the wall clock."""
        self.window_lag[stage] = max(0.0, float(seconds))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def publish_rate(self) -> float:
        """Synthetic records per second over the last ~10 s of samples (0 without two samples)."""
        if len(self.publish_samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.publish_samples[0], self.publish_samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def sample_publisher(self, now: float) -> None:
        """Note the publisher's count (called about once a second)."""
        publisher = self.pipeline.publisher
        if publisher is not None:
            self.publish_samples.append((now, publisher.published))

    def attach_findings(self) -> None:
        """Put a :class:`FindingsTally` between the redactor and the findings reporter (once)."""
        reporter = self.pipeline.findings
        if self.tally is None and reporter is not None:
            tally = (
                reporter.redactor if isinstance(reporter.redactor, FindingsTally) else FindingsTally(reporter.redactor)
            )
            reporter.redactor = tally
            self.tally = tally

    def drift_stages(self) -> list[DriftStage]:
        """The pipeline's drift stages (zero or one)."""
        return [o for o in self.pipeline.observers if isinstance(o, DriftStage)]

    def promoted_version(self) -> int | None:
        """The promoted version of the pipeline's registry, if any."""
        current = self.pipeline.registry.current()
        return current.version if current is not None else None

    def health(self) -> dict[str, Any]:
        """The /health document."""
        p = self.pipeline
        # The producer must be up, and the broker must have answered a round trip (metadata probe,
        # acknowledged produce or commit) within the last few seconds: aiokafka's own flags stay
        # "connected" for tens of seconds after a broker is gone. Another sender (faust's) is taken as up.
        started = bool(getattr(self.producer, "started", self.producer is not None))
        monitor = getattr(p, "monitor", None)
        answering = monitor.connected if monitor is not None else True
        connected = started and answering
        consuming = p.consuming.is_set()
        age = None if self.last_batch_at is None else time.monotonic() - self.last_batch_at
        ok = connected and (consuming or not getattr(p, "consumes", p.ingests))
        doc: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "stream": p.config.stream,
            "role": p.role,
            "broker_connected": connected,
            "broker_unavailable_s": round(monitor.unavailable_for(), 1) if monitor is not None else 0.0,
            "consuming": consuming,
            "last_batch_age_s": None if age is None else round(age, 3),
            "promoted_version": self.promoted_version(),
            "checked_at": datetime.now(UTC).isoformat(),
        }
        status = getattr(p, "status", None)
        if status is not None:
            doc["activity"] = status().activity
        scheduler = getattr(p, "scheduler", None)
        if scheduler is not None:  # a stalled stream (no version published for several fits) shows here too
            doc["training_stalled"] = getattr(scheduler, "stream_stalled", None) is not None
            doc["stalled_reason"] = getattr(scheduler, "stream_stalled", None)
            doc["unpublished_fits"] = getattr(scheduler, "unpublished_fits", 0)
        return doc


def _counter(name: str, doc: str, labels: Sequence[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=["stream", *labels])


def _gauge(name: str, doc: str, labels: Sequence[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["stream", *labels])


class PipelineCollector(Collector):
    """Reads the pipeline's counters at scrape time and exposes them as Prometheus metrics."""

    def __init__(self, metrics: PipelineMetrics) -> None:
        self.metrics = metrics

    def __repr__(self) -> str:
        return f"PipelineCollector(pipeline={self.metrics.pipeline!r})"

    def collect(self) -> Iterator[Metric]:
        """One consistent read of the pipeline (the scrape runs on the event loop)."""
        m = self.metrics
        p = m.pipeline
        stream = p.config.stream
        summary = p.summary()
        c = summary.counters

        records_in = _counter("synthstream_records_in", "Source records consumed.", [])
        records_in.add_metric([stream], c.records_in)
        yield records_in
        records_out = _counter(
            "synthstream_records_out",
            "Records out by output: processed (validated, redacted, buffered), dead_letter, synthetic.",
            ["output"],
        )
        records_out.add_metric([stream, "processed"], c.processed)
        records_out.add_metric([stream, "dead_letter"], c.dead_letters)
        records_out.add_metric([stream, "synthetic"], summary.synthetic_published)
        yield records_out
        dead = _counter("synthstream_dead_letters", "Dead-lettered source records by reason.", ["reason"])
        for reason, n in sorted(c.by_reason.items()):
            dead.add_metric([stream, reason], n)
        yield dead

        redactions = _counter(
            "synthstream_redactions", "PII findings redacted, by field, entity type and operator.",
            ["field", "entity_type", "operator"],
        )  # fmt: skip
        totals = m.tally.totals() if m.tally is not None else Counter(getattr(p.redactor, "findings", {}))
        for (field, entity, operator), n in sorted(totals.items()):
            redactions.add_metric([stream, field, entity, operator], n)
        yield redactions

        latency = _gauge("synthstream_ingest_latency_seconds", "Source-to-buffer latency quantiles.", ["quantile"])
        for key, q in (("p50_ms", "0.5"), ("p99_ms", "0.99")):
            if key in summary.latency:
                latency.add_metric([stream, q], summary.latency[key] / 1000.0)
        yield latency
        age = _gauge("synthstream_last_batch_age_seconds", "Seconds since the last ingested micro-batch.", [])
        if m.last_batch_at is not None:
            age.add_metric([stream], time.monotonic() - m.last_batch_at)
        yield age
        consuming = _gauge("synthstream_consuming", "1 when the source consumer has partitions assigned.", [])
        consuming.add_metric([stream], 1.0 if p.consuming.is_set() else 0.0)
        yield consuming

        lag = _gauge(
            "synthstream_window_lag_seconds", "Wall clock minus the end of the stage's last closed window.", ["stage"]
        )
        lags = dict(m.window_lag)
        for drift in m.drift_stages():
            if drift.last_window_end is not None:
                lags["drift"] = max(0.0, (datetime.now(UTC) - drift.last_window_end).total_seconds())
        for stage, seconds in sorted(lags.items()):
            lag.add_metric([stream, stage], seconds)
        yield lag

        spent = _gauge("synthstream_privacy_budget_spent", "Privacy budget spent.", ["scope", "unit"])
        left = _gauge("synthstream_privacy_budget_remaining", "Privacy budget remaining.", ["scope", "unit"])
        for (scope, unit), (s, r) in sorted(m.budget.items()):
            spent.add_metric([stream, scope, unit], s)
            left.add_metric([stream, scope, unit], r)
        yield spent
        yield left

        promoted = _gauge("synthstream_model_promoted_version", "Promoted model version (0 = none yet).", [])
        promoted.add_metric([stream], float(m.promoted_version() or 0))
        yield promoted
        versions = _counter("synthstream_model_versions", "Model versions registered.", [])
        versions.add_metric([stream], len(summary.model_versions))
        yield versions

        published = _counter("synthstream_synthetic_records_published", "Synthetic records published.", [])
        published.add_metric([stream], summary.synthetic_published)
        yield published
        rate = _gauge("synthstream_publish_rate", "Synthetic records per second, measured over ~10 s.", [])
        rate.add_metric([stream], m.publish_rate())
        yield rate
        target = _gauge("synthstream_publish_rate_target", "Configured synthetic records per second (0 = max).", [])
        target.add_metric([stream], p.config.publisher.rate)
        yield target

        yield from self._drift(stream)

    def _drift(self, stream: str) -> Iterator[Metric]:
        events = _counter(
            "synthstream_drift_events", "Drift events by monitor, field and severity.", ["monitor", "field", "severity"]
        )
        statistic = _gauge(
            "synthstream_drift_statistic",
            "Latest drift statistic per monitor, field and statistic.",
            ["monitor", "field", "statistic"],
        )
        retrains = _counter("synthstream_drift_retrains_requested", "Retrains requested by the drift policy.", [])
        windows = _counter("synthstream_drift_windows", "Windows evaluated by the drift monitors.", ["side"])
        cost = _counter("synthstream_drift_observe_seconds", "Time the drift monitors spent on redacted batches.", [])
        for drift in self.metrics.drift_stages():
            for (monitor, field, severity), n in sorted(drift.events_by.items()):
                events.add_metric([stream, monitor, field, severity], n)
            for (monitor, field, name), value in sorted(drift.latest.items()):
                statistic.add_metric([stream, monitor, field, name], value)
            retrains.add_metric([stream], drift.retrains_requested)
            windows.add_metric([stream, "real"], drift.windows_evaluated)
            windows.add_metric([stream, "synthetic"], drift.synthetic_windows_evaluated)
            cost.add_metric([stream], drift.seconds_observing)
        yield events
        yield cost
        yield statistic
        yield retrains
        yield windows


class MetricsServer:
    """Batch observer serving /metrics and /health for one pipeline on the event loop."""

    def __init__(self, config: MetricsConfig, pipeline: Pipeline, *, producer: BatchSender | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.metrics = PipelineMetrics(pipeline, producer=producer)
        self.scrapes = 0
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._next_sample = 0.0
        self._next_budget = 0.0
        self.started = asyncio.Event()
        self._log = get_logger("metrics", stream=pipeline.config.stream)

    def __repr__(self) -> str:
        return (
            f"MetricsServer(host={self.config.host!r}, port={self.config.port}, stream={self.pipeline.config.stream!r})"
        )

    @property
    def port(self) -> int | None:
        """The bound port once started (the picked one when configured with 0)."""
        return self._port

    async def observe(self, records: Sequence[Record], sources: Sequence[SourceRecord]) -> None:
        """Note that a batch arrived (for /health and the last-batch-age gauge)."""
        self.metrics.last_batch_at = time.monotonic()

    async def tick(self) -> None:
        """Start serving on the first call; sample the publish rate about once a second."""
        if self._server is None:
            await self.start()
        now = time.monotonic()
        if now >= self._next_sample:
            self._next_sample = now + 1.0
            self.metrics.sample_publisher(now)
            self.metrics.attach_findings()
        if self.pipeline.stats is not None and now >= self._next_budget:
            self._next_budget = now + _BUDGET_REFRESH_S
            await asyncio.to_thread(self._refresh_stats_gauges)

    def _refresh_stats_gauges(self) -> None:
        """Privacy budget of the newest w windows and the windows' lag, read from the ledger."""
        stats = self.pipeline.stats
        if stats is None:
            return
        try:
            spent, remaining = stats.budget_status()
            end_ms = stats.last_window_end_ms()
        except LedgerError as exc:
            # The gauges keep their last values; the stats stage refuses releases while the ledger fails.
            self._log.warning("metrics.ledger_unreadable", error=str(exc))
            return
        if stats.mechanism == "gaussian":
            self.metrics.set_privacy_budget(spent=spent.rho, remaining=remaining.rho, scope="stats", unit="rho")
        else:
            self.metrics.set_privacy_budget(
                spent=spent.epsilon, remaining=remaining.epsilon, scope="stats", unit="epsilon"
            )
        if end_ms is not None:
            self.metrics.set_window_lag("stats", time.time() - end_ms / 1000)

    async def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            self._log.info("metrics.stopped")

    async def start(self) -> None:
        """Bind and serve (idempotent)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle, self.config.host, self.config.port)
        sockets = self._server.sockets
        self._port = int(sockets[0].getsockname()[1]) if sockets else None
        self.started.set()
        self._log.info("metrics.listening", host=self.config.host, port=self._port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT_S)
            while True:  # skip the headers
                line = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT_S)
                if line in (b"\r\n", b"\n", b""):
                    break
            parts = request.decode("latin-1").split()
            method = parts[0] if parts else ""
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
            status, ctype, body = self._route(method, path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(head if method == "HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET or HEAD only\n"
        if path == "/metrics":
            self.scrapes += 1
            return "200 OK", CONTENT_TYPE_LATEST, self.metrics.render()
        if path == "/health":
            doc = self.metrics.health()
            status = "200 OK" if doc["status"] == "ok" else "503 Service Unavailable"
            return status, "application/json", orjson.dumps(doc)
        return "404 Not Found", "text/plain", b"try /metrics or /health\n"
