"""The DP statistics stage: redacted micro-batches -> event-time windows -> DP releases on ``<stream>.stats``.

Wiring only; the logic lives in :mod:`synthstream.processors.windows` (exact window
aggregates, late records, contribution bounding), :mod:`synthstream.processors.dp_release`
(noise per query) and :mod:`synthstream.privacy` (mechanisms, w-event allocation, ledger).

Per closed window: the allocation decides the window's budget from what the other windows of
every run of w windows containing it spent (read from the ledger), the window's queries are
noised, and the release is committed to the ledger *before* it is published. A release that
would exceed the budget is refused and a :class:`~synthstream.schemas.events.BudgetEvent` is
published instead. A window whose release is already in the ledger (a restart re-reading
uncommitted offsets) is re-published from the ledger, never noised twice.

Window completeness (every event-time window from the first to the last is released once, with
its full count, across SIGTERM, SIGKILL, crashes and restarts):

- offsets of records counted in a window that is not released yet are never committed
  (:meth:`StatsStage.commit_floors`, honoured by every commit of the ingest loop), so after any
  stop the window's records are read again;
- shutdown releases nothing that is still open (a partial count); only windows the watermark
  closed are released, in order, and each is published only after its ledger commit;
- the last window of a finite stream is released on processing time: with the Kafka timestamp
  once the source has been caught up for ``grace_s``, with a ``time_field`` after ``idle_flush_s``;
- on start, re-read records of released (or refused) windows are dropped as redelivered; a
  window below the newest released one that never was released is reopened, not skipped;
  stored releases never acknowledged by the broker are published again (same event id, same
  noisy values);
- a ledger that cannot be read or written refuses the release (BudgetEvent, error line): the
  window waits, uncommitted, and is retried; nothing is ever published un-ledgered.

Domains: declared numeric bins and categorical values are used as given. Bins from DP
quantiles and categorical domains learned with a DP threshold are computed once, on the
first window's records (the bootstrap), charged to that window's budget and stored in the
ledger, so a restart reuses them and never pays for them again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from synthstream.config import StatsConfig
from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.errors import ConfigError
from synthstream.log import get_logger
from synthstream.privacy.accounting import Spend, epsilon_to_rho, rho_to_epsilon
from synthstream.privacy.allocation import BudgetAllocation, make_allocation
from synthstream.privacy.ledger import (
    BudgetExceeded,
    DomainRow,
    LedgerError,
    NoisyMarginalRow,
    PrivacyLedger,
    Release,
    WindowAlreadyReleasedError,
)
from synthstream.privacy.mechanisms import private_quantiles, threshold_histogram
from synthstream.processors.dp_release import WindowRelease, release_window
from synthstream.processors.windows import Attribute, ClosedWindow, Discretizer, WindowAggregator
from synthstream.schemas.events import (
    BudgetEvent,
    DeadLetterEvent,
    EventSerde,
    StatsEvent,
    StatsQuery,
    stable_event_id,
)
from synthstream.schemas.record import FieldRole, FieldType, RecordSchema
from synthstream.streams.ingest import DeadLetterSink, Rejection, SourceRecord

__all__ = ["SCOPE", "StatsStage", "stats_budget", "stats_unit"]

Record = dict[str, Any]
SCOPE = "stats"
#: Seconds between attempts to release a window while the ledger cannot be read or written.
_LEDGER_RETRY_S = 5.0


def stats_unit(config: StatsConfig) -> str:
    """The privacy unit's name in events and the ledger: ``record`` or ``entity:<field>``."""
    return "record" if config.entity_field is None else f"entity:{config.entity_field}"


def stats_budget(config: StatsConfig) -> Spend:
    """The budget any w consecutive windows share (ρ from ε_w at δ for gaussian; ε_w for laplace)."""
    if config.mechanism == "gaussian":
        return Spend(rho=epsilon_to_rho(config.epsilon_w, config.delta), delta=config.threshold_delta)
    return Spend(epsilon=config.epsilon_w, delta=config.threshold_delta)


def _part(spend: Spend, mechanism: str) -> float:
    return spend.rho if mechanism == "gaussian" else spend.epsilon


class StatsStage:
    """A :class:`~synthstream.streams.ingest.BatchObserver` publishing windowed DP statistics."""

    def __init__(
        self,
        *,
        config: StatsConfig,
        stream: str,
        schema: RecordSchema,
        ledger: PrivacyLedger,
        producer: BatchSender,
        stats_topic: str,
        budget_topic: str,
        deadletter_topic: str,
        stats_serde: EventSerde[StatsEvent],
        budget_serde: EventSerde[BudgetEvent],
        deadletter_serde: EventSerde[DeadLetterEvent],
        allocation: BudgetAllocation | None = None,
        idle_seconds: Callable[[], float] | None = None,
        min_label_count: int = 5,
        lagging_partitions: Callable[[], set[tuple[str, int]]] | None = None,
    ) -> None:
        self.config = config
        self.stream = stream
        self.schema = schema
        self.ledger = ledger
        self.producer = producer
        self.stats_topic = stats_topic
        self.budget_topic = budget_topic
        self.deadletter_topic = deadletter_topic
        self.stats_serde = stats_serde
        self.budget_serde = budget_serde
        self.deadletter_serde = deadletter_serde
        self.allocation = allocation or make_allocation(config.allocation)
        self.idle_seconds = idle_seconds
        #: Learned labels whose noisy count is below this are dropped (post-processing, no budget): a value
        #: held by a handful of records never enters a released domain, the generators' or the stats'.
        self.min_label_count = min_label_count
        #: Source partitions that still hold unread records: they hold the watermark back.
        self.lagging_partitions = lagging_partitions
        self._report: DeadLetterSink | None = None
        self.unit = stats_unit(config)
        self.budget = stats_budget(config)
        self.mechanism = config.mechanism
        self._log = get_logger("stats", stream=stream, topic=stats_topic)
        self._numeric_sums = {n: f.bounds for n, f in config.numeric.items() if f.sum}
        self.fields = self._check_fields()
        self._pending: list[str] = []
        attributes = self._resolve_domains()
        self.counters: Counter[str] = Counter()
        self._held: dict[int, list[tuple[Record, SourceRecord, int]]] = {}
        #: Per open window, the lowest source offset per (topic, partition) it counted (re-read after a crash).
        self._floors: dict[int, dict[tuple[str, int], int]] = {}
        self._held_count = 0
        self._bootstrapped: list[str] = []
        self._late_since_release = 0
        self._redelivered_since_release = 0
        self.aggregator: WindowAggregator | None = None
        # Windows already released or refused (a restart): their re-read records are redelivered, not late.
        # Windows between them that never were (a gap) are reopened, never skipped.
        done = ledger.released_windows(stream, SCOPE, self.unit) | ledger.refused_windows(stream, SCOPE, self.unit)
        self._resumed_through = max(done) if done else None
        self._missing = sorted(set(range(min(done), max(done))) - done) if done else []
        #: Windows closed by the aggregator, waiting (in order) for the ledger; their offsets stay uncommitted.
        self._unreleased: list[ClosedWindow] = []
        self._ledger_retry_at = 0.0
        self._ledger_refused: set[int] = set()
        if not self._pending:
            self.aggregator = self._make_aggregator(attributes)
        self._attributes = attributes
        self._started = False
        # Bootstrap and releases await the ledger in threads; one at a time keeps windows in order.
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"StatsStage(stream={self.stream!r}, window_s={self.config.window_s}, mechanism={self.mechanism!r}, "
            f"epsilon_w={self.config.epsilon_w}, w={self.config.w}, unit={self.unit!r})"
        )

    # -- set-up -----------------------------------------------------------------------------

    def _check_fields(self) -> list[str]:
        """The released fields, checked against the schema; every problem is reported at once."""
        cfg = self.config
        names = set(self.schema.field_names)
        problems: list[str] = []
        released = list(cfg.numeric) + list(cfg.categorical)
        if not released:
            released = [
                f.name for f in self.schema.fields if f.role == FieldRole.CATEGORICAL and f.name != cfg.entity_field
            ]
            if not released:
                problems.append("no categorical field to release: list fields under stats.numeric/categorical")
        for name in released:
            if name not in names:
                problems.append(f"stats: field {name!r} is not in the (redacted) schema; fields are {sorted(names)}")
        for name in cfg.numeric:
            if name in names and self.schema.field(name).type not in (FieldType.LONG, FieldType.DOUBLE):
                problems.append(f"stats.numeric.{name}: the field is {self.schema.field(name).type}, not numeric")
        for pair in cfg.pairs:
            problems += [f"stats.pairs: field {p!r} is not released" for p in pair if p not in released]
        if cfg.entity_field is not None and cfg.entity_field not in names:
            problems.append(f"stats.entity_field {cfg.entity_field!r} is not in the schema")
        if cfg.time_field is not None:
            if cfg.time_field not in names:
                problems.append(f"stats.time_field {cfg.time_field!r} is not in the schema")
            elif self.schema.field(cfg.time_field).type != FieldType.TIMESTAMP:
                problems.append(f"stats.time_field {cfg.time_field!r} is not a timestamp field")
        if problems:
            raise ConfigError(problems, "stats configuration")
        return released

    def _resolve_domains(self) -> list[Attribute]:
        """Attributes from the ledger (earlier runs), from the configuration, or pending a DP bootstrap."""
        recorded = self.ledger.domains(self.stream)
        self._domain_sources: dict[str, str] = {name: row["source"] for name, row in recorded.items()}
        attributes: list[Attribute] = []
        declared: list[DomainRow] = []
        for name in self.fields:
            nullable = self.schema.field(name).nullable
            if name in recorded:
                row = recorded[name]
                attributes.append(
                    Attribute(name, row["kind"], tuple(row["labels"] or ()), tuple(row["edges"] or ()), nullable)
                )
                continue
            numeric = self.config.numeric.get(name)
            categorical = self.config.categorical.get(name)
            if numeric is not None and numeric.edges == "uniform":
                edges = tuple(float(e) for e in np.linspace(numeric.bounds[0], numeric.bounds[1], numeric.bins + 1))
                attributes.append(Attribute(name, "numeric", edges=edges, nullable=nullable))
                declared.append(DomainRow(name, "numeric", None, edges, "declared"))
                self._domain_sources[name] = "declared"
            elif categorical is not None and categorical.values is not None:
                labels = tuple(dict.fromkeys(categorical.values))
                attributes.append(Attribute(name, "categorical", labels=labels, nullable=nullable))
                declared.append(DomainRow(name, "categorical", labels, None, "declared"))
                self._domain_sources[name] = "declared"
            else:
                self._pending.append(name)
        if declared:
            self.ledger.save_domains(self.stream, declared)
        return attributes

    def _make_aggregator(self, attributes: Sequence[Attribute]) -> WindowAggregator:
        by_name = {a.name: a for a in attributes}
        ordered = [by_name[n] for n in self.fields]
        queries: list[tuple[str, ...]] = [(n,) for n in self.fields] + [tuple(p) for p in self.config.pairs]
        self.discretizer = Discretizer(ordered)
        aggregator = WindowAggregator(
            self.discretizer,
            queries,
            sums=self._numeric_sums,
            window_ms=int(self.config.window_s * 1000),
            grace_ms=int(self.config.grace_s * 1000),
            entity_field=self.config.entity_field,
            max_per_entity=self.config.max_records_per_entity,
        )
        if self._resumed_through is not None:
            aggregator.resume_after(self._resumed_through, reopen=self._missing)
        return aggregator

    # -- BatchObserver ----------------------------------------------------------------------

    async def observe(self, records: Sequence[Record], sources: Sequence[SourceRecord]) -> None:
        """Count one redacted micro-batch into its windows; release the windows it closes."""
        if not self._started:
            await self._start()
        if not records:
            return
        times, bad = self._event_times(records, sources)
        dead = [
            self._dead_letter(sources[i], "event_time_in_future", "event time beyond stats.max_event_skew_s")
            for i in bad
        ]
        rejected = set(bad)
        keep = [i for i in range(len(records)) if i not in rejected]
        if self.aggregator is None:
            for i in keep:
                window = times[i] // int(self.config.window_s * 1000)
                self._held.setdefault(window, []).append((records[i], sources[i], times[i]))
                self._held_count += 1
            if self._bootstrap_due():
                await self._bootstrap()
        else:
            dead += await self._add([records[i] for i in keep], [sources[i] for i in keep], [times[i] for i in keep])
        if dead:
            await self._send_dead(dead)
        await self._close_due(now_ms=None)

    async def tick(self) -> None:
        """Close windows on processing time once the source is caught up; retry releases the ledger refused.

        With the Kafka timestamp as event time: windows whose end has passed in processing time
        close once the source consumer has been caught up (every poll empty) for the grace period
        (while a backlog is read the wall clock is far ahead of the records' timestamps and must
        not close their windows early). With a ``time_field``: every open window is released once
        the source has been caught up for ``idle_flush_s`` (the last window of a finite stream or
        a replay). Without an ``idle_seconds`` probe (the faust engine) windows close on event
        time only.
        """
        if not self._started:
            await self._start()
        idle = self.idle_seconds() if self.idle_seconds is not None else 0.0
        caught_up = self.idle_seconds is not None and idle >= self.config.grace_s
        flush_after = self.config.idle_flush_s
        flush = (
            self.config.time_field is not None
            and self.idle_seconds is not None
            and flush_after is not None
            and idle >= flush_after
        )
        now_ms = self._now_ms() if self.config.time_field is None and caught_up else None
        if self.aggregator is None:
            if self._held and (flush or self._bootstrap_due(now_ms=now_ms)):
                await self._bootstrap()
            return
        if now_ms is not None or flush or self._unreleased:
            await self._close_due(now_ms=now_ms, flush=flush)

    async def close(self) -> None:
        """Shutdown (SIGTERM, end of run): release only windows that are complete, never an open one.

        An open window's records are not committed (see :meth:`commit_floors`), so the next start
        re-reads them and releases the window whole; releasing it now would publish a partial
        count and make its remaining records look redelivered. Windows the watermark already
        closed are complete: a last attempt is made to release those the ledger held back.
        """
        async with self._lock:
            if self._unreleased:
                self._ledger_retry_at = 0.0
                await self._drain()
        open_windows = self.aggregator.open_windows if self.aggregator is not None else sorted(self._held)
        self._log.info(
            "stats.stopped",
            open_windows=len(open_windows),
            unreleased=len(self._unreleased),
            released=self.counters["windows_released"],
        )

    # -- internals --------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    def _event_times(self, records: Sequence[Record], sources: Sequence[SourceRecord]) -> tuple[list[int], list[int]]:
        field = self.config.time_field
        limit = self._now_ms() + int(self.config.max_event_skew_s * 1000)
        times: list[int] = []
        for rec, src in zip(records, sources, strict=True):
            value = rec.get(field) if field is not None else None
            times.append(int(value.timestamp() * 1000) if isinstance(value, datetime) else int(src.timestamp))
        bad = [i for i, t in enumerate(times) if t > limit]
        self.counters["future"] += len(bad)
        return times, bad

    async def _add(
        self, records: Sequence[Record], sources: Sequence[SourceRecord], times: Sequence[int]
    ) -> list[Rejection]:
        assert self.aggregator is not None
        result = self.aggregator.add(records, times, [(src.topic, src.partition) for src in sources])
        for window, positions in result.windows.items():
            floor = self._floors.setdefault(window, {})
            for pos in positions:
                src = sources[pos]
                key = (src.topic, src.partition)
                if src.offset < floor.get(key, src.offset + 1):
                    floor[key] = src.offset
        self.counters["counted"] += result.counted
        self.counters["dropped_by_bounding"] += result.dropped
        dead: list[Rejection] = []
        for pos in result.late:
            window = self.aggregator.window_of(times[pos])
            if self._resumed_through is not None and window <= self._resumed_through:
                self._redelivered_since_release += 1
                self.counters["redelivered"] += 1
                continue
            self._late_since_release += 1
            self.counters["late"] += 1
            if self.config.late == "deadletter":
                dead.append(
                    self._dead_letter(sources[pos], "late_record", f"window {window} was already closed and released")
                )
        return dead

    def bind_dead_letters(self, sink: DeadLetterSink) -> None:
        """Report dead letters to ``sink`` (the ingest stage, which counts them) instead of producing them."""
        self._report = sink

    def _dead_letter(self, src: SourceRecord, reason: str, detail: str) -> Rejection:
        return Rejection(src, reason, detail, "stats")

    async def _send_dead(self, dead: list[Rejection]) -> None:
        if self._report is not None:
            await self._report(dead)
        elif dead:  # standalone (no ingest stage bound): produce them here
            await self.producer.send_batch(self.deadletter_topic, [self._dead_letter_message(r) for r in dead])

    def _dead_letter_message(self, rejection: Rejection) -> OutMessage:
        src, reason, detail = rejection.source, rejection.reason, rejection.detail
        event = DeadLetterEvent(
            event_id=stable_event_id(src.topic, src.partition, src.offset, "stats"),
            occurred_at=datetime.now(UTC),
            source_topic=src.topic,
            partition=src.partition,
            offset=src.offset,
            reason=reason,
            detail=detail,
            payload_bytes=len(src.value) if src.value is not None else 0,
            stage="stats",
        )
        return OutMessage(value=self.deadletter_serde.encode(event), key=event.event_id.encode())

    async def _start(self) -> None:
        """Re-publish every stored release never acknowledged (a crash between commit and publish).

        Stable event ids (stream, scope, unit, window) let consumers drop a second copy; the copy
        carries the stored noisy values, never fresh noise.
        """
        self._started = True
        if self._resumed_through is None:
            return
        try:
            stored = await asyncio.to_thread(self.ledger.unpublished_windows, self.stream, SCOPE, self.unit)
        except LedgerError as exc:
            self._log.error("stats.ledger_unavailable", action="republish", error=str(exc))
            return
        for payload in stored:
            await self._publish_payload(payload)
            await self._mark_published(int(payload["window_index"]))
        self._log.info(
            "stats.resumed",
            last_released_window=self._resumed_through,
            republished=len(stored),
            reopened=self._missing,
        )

    async def _close_due(self, now_ms: int | None, *, flush: bool = False) -> None:
        async with self._lock:
            if self.aggregator is None:
                return
            if self.lagging_partitions is not None:
                self.aggregator.hold(self.lagging_partitions())
            self._unreleased.extend(self.aggregator.close_due(now_ms, flush=flush))
            await self._drain()

    async def _drain(self) -> None:
        """Release the closed windows in order; a ledger failure refuses the release and keeps the window for later.

        Fail closed: a window is published only after its release is committed to the ledger. While
        the ledger cannot be read or written the window (and every window after it) waits, its
        records stay uncommitted, a BudgetEvent and an error line say why, and the release is
        retried every few seconds (and re-read after a restart).
        """
        while self._unreleased:
            if time.monotonic() < self._ledger_retry_at:
                return
            window = self._unreleased[0]
            try:
                await self._release_window(window)
            except LedgerError as exc:
                self._ledger_retry_at = time.monotonic() + _LEDGER_RETRY_S
                await self._ledger_unavailable(window.index, exc)
                return
            self._unreleased.pop(0)
            self._floors.pop(window.index, None)
            self._ledger_retry_at = 0.0

    async def _ledger_unavailable(self, window_index: int, exc: LedgerError) -> None:
        """Refuse a release because the ledger failed: one error line per attempt, one BudgetEvent per window."""
        self.counters["ledger_errors"] += 1
        self._log.error("stats.ledger_unavailable", window=window_index, error=str(exc), retry_in_s=_LEDGER_RETRY_S)
        if window_index in self._ledger_refused:
            return
        self._ledger_refused.add(window_index)
        refusal = BudgetExceeded(self.stream, SCOPE, self.unit, window_index, f"ledger unavailable: {exc}")
        await self._publish_refusal(refusal, Spend(), tag="ledger_unavailable")

    # -- bootstrap --------------------------------------------------------------------------

    def _bootstrap_due(self, now_ms: int | None = None) -> bool:
        if not self._held:
            return False
        first = min(self._held)
        if len(self._held[first]) >= self.config.bootstrap_max_records:
            return True
        newest = max(rows[-1][2] for rows in self._held.values())
        mark = max(newest, now_ms or 0) - int(self.config.grace_s * 1000)
        return mark >= (first + 1) * int(self.config.window_s * 1000)

    async def _bootstrap(self) -> None:
        """Learn the pending bins/domains on the first window's records, with DP, charged to that window.

        A ledger failure refuses the bootstrap (nothing learned is used unrecorded): the records
        stay held (and uncommitted) and it is retried a few seconds later.
        """
        async with self._lock:
            if self.aggregator is None and self._held and time.monotonic() >= self._ledger_retry_at:
                try:
                    await self._bootstrap_locked()
                except LedgerError as exc:
                    self._ledger_retry_at = time.monotonic() + _LEDGER_RETRY_S
                    await self._ledger_unavailable(min(self._held), exc)

    async def _bootstrap_locked(self) -> None:
        first = min(self._held)
        rows = [rec for rec, _, _ in self._held[first]]
        rows = _bounded(rows, self.config.entity_field, self.config.max_records_per_entity)
        previous = await asyncio.to_thread(self.ledger.other_spend, self.stream, SCOPE, self.unit, first, self.config.w)
        allowance = self.allocation.allocate(self.budget, self.config.w, previous)
        share = _part(allowance, self.mechanism) * self.config.bootstrap_share / len(self._pending)
        per_attr = Spend(rho=share) if self.mechanism == "gaussian" else Spend(epsilon=share)
        releases, domains = await asyncio.to_thread(self._learn_domains, rows, per_attr)
        try:
            await asyncio.to_thread(
                self.ledger.commit_window,
                stream=self.stream,
                scope=SCOPE,
                unit=self.unit,
                window_index=first,
                window_start=_utc(first * int(self.config.window_s * 1000)),
                window_end=_utc((first + 1) * int(self.config.window_s * 1000)),
                releases=releases,
                budget=self.budget,
                w=self.config.w,
                payload=None,
                domains=domains,
            )
        except BudgetExceeded as exc:
            await self._publish_refusal(exc, Spend())
            raise ConfigError([f"the DP bootstrap of {self._pending} was refused: {exc.detail}"], "stats") from None
        learned = {d.attribute: d for d in domains}
        self._domain_sources.update({d.attribute: d.source for d in domains})
        attributes = list(self._attributes)
        for name in self._pending:
            d = learned[name]
            nullable = self.schema.field(name).nullable
            attributes.append(Attribute(name, d.kind, d.labels or (), d.edges or (), nullable))
        self._bootstrapped = [r.query for r in releases]
        self._log.info("stats.bootstrapped", window=first, learned=self._pending)
        self._pending = []
        self._attributes = attributes
        self.aggregator = self._make_aggregator(attributes)
        held, self._held, self._held_count = self._held, {}, 0
        dead: list[Rejection] = []
        for window in sorted(held):
            items = held[window]
            dead += await self._add([r for r, _, _ in items], [s for _, s, _ in items], [t for _, _, t in items])
        if dead:
            await self._send_dead(dead)

    def _learn_domains(self, rows: Sequence[Record], per_attr: Spend) -> tuple[list[Release], list[DomainRow]]:
        releases: list[Release] = []
        domains: list[DomainRow] = []
        k = self.config.max_records_per_entity
        learned_categorical = [n for n in self._pending if n not in self.config.numeric]
        threshold_delta = self.config.threshold_delta / max(1, len(learned_categorical))
        for name in self._pending:
            values = [r.get(name) for r in rows]
            numeric = self.config.numeric.get(name)
            if numeric is not None:
                lo, hi = numeric.bounds
                alphas = [i / numeric.bins for i in range(1, numeric.bins)]
                quantiles, spent = (
                    private_quantiles(
                        [v for v in values if v is not None],
                        np.linspace(lo, hi, numeric.candidates).tolist(),
                        alphas,
                        per_attr,
                        mechanism=self.mechanism,
                        contributions=k,
                    )
                    if alphas
                    else ([], Spend())
                )
                edges = tuple(sorted({float(lo), float(hi), *(q for q in quantiles if lo < q < hi)}))
                domains.append(DomainRow(name, "numeric", None, edges, "dp_quantiles"))
                releases.append(Release(f"bootstrap:quantiles:{name}", self.mechanism, spent, float(k)))
            else:
                categorical = self.config.categorical.get(name)
                max_values = categorical.max_values if categorical is not None else 100
                counts = Counter(str(v) for v in values if v is not None)
                released, spent = threshold_histogram(
                    counts, per_attr, threshold_delta, mechanism=self.mechanism, contributions=k
                )
                kept = [key for key in released if released[key] >= self.min_label_count]
                labels = tuple(sorted(kept, key=lambda key: (-released[key], key))[:max_values])
                domains.append(DomainRow(name, "categorical", labels, None, "dp_threshold"))
                releases.append(Release(f"bootstrap:domain:{name}", self.mechanism, spent, float(k)))
        return releases, domains

    # -- releases ---------------------------------------------------------------------------

    async def _release_window(self, window: ClosedWindow) -> None:
        """Release one closed window (or re-publish its stored release, or refuse it for budget).

        Raises :class:`LedgerError` when the ledger cannot be read or written: nothing was
        published then (the caller refuses and retries).
        """
        w = self.config.w
        stored, previous, own = await asyncio.to_thread(
            self.ledger.window_state, self.stream, SCOPE, self.unit, window.index, w
        )
        if stored is not None:
            await self._publish_payload(stored)
            await self._mark_published(window.index)
            return
        allowance = self.allocation.allocate(self.budget, w, previous)
        left = _part(allowance, self.mechanism) - _part(own, self.mechanism)
        share = Spend(rho=left) if self.mechanism == "gaussian" else Spend(epsilon=left)
        if left <= 0:
            await self._refuse_window(window, share, "no budget left for this window in the sliding w-window")
            return
        release = await asyncio.to_thread(
            release_window,
            window,
            self.discretizer,
            budget=share,
            mechanism=self.mechanism,
            max_per_entity=self.config.max_records_per_entity,
            sum_bounds=self._numeric_sums,
            weights=self.config.weights,
        )
        event = self._event(window, release)
        payload = event.model_dump(mode="json")
        try:
            await asyncio.to_thread(
                self.ledger.commit_window,
                stream=self.stream,
                scope=SCOPE,
                unit=self.unit,
                window_index=window.index,
                window_start=event.window_start,
                window_end=event.window_end,
                releases=[a.release for a in release.answers],
                budget=self.budget,
                w=w,
                payload=payload,
                marginals=[NoisyMarginalRow(a.query, a.kind, a.values, a.noise_std) for a in release.answers],
            )
        except BudgetExceeded as exc:
            self.counters["refused"] += 1
            await self._publish_refusal(exc, release.spend)
            return
        except WindowAlreadyReleasedError:
            # Another worker of this stream released the window first (statistics need one ingest worker
            # per stream to see every partition): keep the one release, re-publish it, drop our counts.
            self.counters["released_elsewhere"] += 1
            self._log.warning("stats.window_released_elsewhere", window=window.index)
            stored = await asyncio.to_thread(self.ledger.stored_window, self.stream, SCOPE, self.unit, window.index)
            if stored is not None:
                await self._publish_payload(stored)
                await self._mark_published(window.index)
            return
        self._late_since_release = 0
        self._redelivered_since_release = 0
        self._bootstrapped = []
        self.counters["windows_released"] += 1
        await self._publish_payload(payload)
        await self._mark_published(window.index)

    async def _mark_published(self, window_index: int) -> None:
        """Note the acknowledged publish in the ledger; if that fails, a restart only publishes the window again."""
        try:
            await asyncio.to_thread(self.ledger.mark_published, self.stream, SCOPE, self.unit, window_index)
        except LedgerError as exc:
            self._log.warning("stats.publish_not_recorded", window=window_index, error=str(exc))

    def _event(self, window: ClosedWindow, release: WindowRelease) -> StatsEvent:
        cfg = self.config
        queries = [
            StatsQuery(
                query=list(a.query),
                kind=a.kind,  # type: ignore[arg-type]  # the release only makes count/marginal/sum
                cells=self._cells(a.query, a.kind),
                values=list(a.values),
                noise_scale=a.noise_std,
                consistent=list(a.consistent) if a.consistent is not None else None,
            )
            for a in release.answers
        ]
        if self.mechanism == "gaussian":
            rho: float | None = release.spend.rho
            epsilon, delta = rho_to_epsilon(release.spend.rho, cfg.delta), cfg.delta
            g_eps, g_delta = cfg.epsilon_w, cfg.delta + cfg.threshold_delta
        else:
            rho, epsilon, delta = None, release.spend.epsilon, 0.0
            g_eps, g_delta = cfg.epsilon_w, cfg.threshold_delta
        return StatsEvent(
            event_id=stable_event_id(self.stream, SCOPE, self.unit, window.index),
            occurred_at=datetime.now(UTC),
            stream=self.stream,
            window_index=window.index,
            window_start=_utc(window.start_ms),
            window_end=_utc(window.end_ms),
            queries=queries,
            means=dict(release.means),
            mechanism=self.mechanism,
            rho=rho,
            epsilon=epsilon,
            delta=delta,
            unit=self.unit,
            max_records_per_entity=cfg.max_records_per_entity,
            w=cfg.w,
            guarantee_epsilon=g_eps,
            guarantee_delta=g_delta,
            records_late=self._late_since_release,
            records_dropped_by_bounding=window.dropped_by_bounding,
            records_redelivered=self._redelivered_since_release,
            bootstrap=list(self._bootstrapped),
            domains=dict(self._domain_sources),
        )

    def _cells(self, query: tuple[str, ...], kind: str) -> list[str]:
        if kind == "count":
            return ["total"]
        if kind == "sum":
            return [f"sum({query[0]})"]
        grids = [self.discretizer.attributes[a].cells for a in query]
        if len(grids) == 1:
            return list(grids[0])
        return [f"{a}|{b}" for a in grids[0] for b in grids[1]]

    async def _publish_payload(self, payload: dict[str, Any]) -> None:
        event = StatsEvent.model_validate(payload)
        await self.producer.send(
            self.stats_topic, OutMessage(value=self.stats_serde.encode(event), key=self.stream.encode())
        )

    async def _refuse_window(self, window: ClosedWindow, requested: Spend, reason: str) -> None:
        self.counters["refused"] += 1
        await asyncio.to_thread(
            self.ledger.record_refusal, self.stream, SCOPE, self.unit, window.index, requested, reason
        )
        exc = BudgetExceeded(self.stream, SCOPE, self.unit, window.index, reason)
        await self._publish_refusal(exc, requested)

    async def _publish_refusal(self, exc: BudgetExceeded, requested: Spend, *, tag: str = "refused") -> None:
        self._log.warning("stats.refused", window=exc.window_index, reason=exc.detail)
        event = BudgetEvent(
            event_id=stable_event_id(self.stream, SCOPE, self.unit, exc.window_index, tag),
            occurred_at=datetime.now(UTC),
            stream=self.stream,
            scope=exc.scope,
            unit=exc.unit,
            window_index=exc.window_index,
            requested_rho=requested.rho,
            requested_epsilon=requested.epsilon,
            reason=exc.detail,
        )
        await self.producer.send(
            self.budget_topic, OutMessage(value=self.budget_serde.encode(event), key=self.stream.encode())
        )

    def commit_floors(self) -> dict[tuple[str, int], int]:
        """Lowest offsets counted in windows not yet released (and held for the bootstrap): re-read after a crash."""
        floors: dict[tuple[str, int], int] = {}
        for per_window in self._floors.values():
            for key, offset in per_window.items():
                floors[key] = min(floors.get(key, offset), offset)
        for rows in self._held.values():
            for _, src, _ in rows:
                key = (src.topic, src.partition)
                floors[key] = min(floors.get(key, src.offset), src.offset)
        return floors

    def last_window_end_ms(self) -> int | None:
        """End (epoch ms) of the newest released window, for the window-lag gauge."""
        last = self.ledger.last_released_window(self.stream, SCOPE, self.unit)
        return None if last is None else (last + 1) * int(self.config.window_s * 1000)

    def budget_status(self) -> tuple[Spend, Spend]:
        """(spent, remaining) of the newest sliding window of w windows, from the ledger."""
        last = self.ledger.last_released_window(self.stream, SCOPE, self.unit)
        if last is None:
            return Spend(), self.budget
        spent = self.ledger.window_spend(self.stream, SCOPE, self.unit, last - self.config.w + 1, last)
        remaining = Spend(
            max(0.0, self.budget.rho - spent.rho),
            max(0.0, self.budget.epsilon - spent.epsilon),
            max(0.0, self.budget.delta - spent.delta),
        )
        return spent, remaining


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _bounded(rows: Sequence[Record], entity_field: str | None, k: int) -> list[Record]:
    """Keep at most ``k`` rows per entity (all rows when the unit is the record)."""
    if entity_field is None:
        return list(rows)
    seen: Counter[Any] = Counter()
    out = []
    for row in rows:
        key = row.get(entity_field)
        if seen[key] < k:
            seen[key] += 1
            out.append(row)
    return out
