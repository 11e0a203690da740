"""The retrain scheduler: every N records, T seconds or on request, fit a new version off the event loop.

Triggers are checked after each ingested batch and by a timer; :meth:`RetrainScheduler.request`
lets another stage (a drift policy) ask for a retrain. At most one fit runs at a time, in a
worker process, so ingest keeps flowing while a model trains. Each retrain:

1. resolves the generator (``training.generator``, ``auto`` by data shape and privacy requirement,
   :mod:`synthstream.models.choice`) and reserves the version number;
2. fits in the executor: DP generators record their spend in the privacy ledger under a stable
   key (``<generator>:seed<s>:seen<n>``: a retried fit is not charged twice) and are refused when
   the stream's model budget is spent (the scheduler then stops retraining them); the neural
   generator warm-starts from the promoted neural version; ``aim_stream`` is given no records;
3. while it runs, the generator's progress (a JSON file next to the registry, also read by
   ``synthstream models``) is announced as ``training_progress`` lifecycle events;
4. registers the model with its lineage (records range, DP windows, config, seed, guarantee),
   announces ``trained`` (or ``training_failed``); then every :class:`VersionHook` runs (e.g.
   storing a training profile), and the :class:`PromotionGate`, when one is configured,
   decides: ``promoted``, or ``rejected`` with its reasons while the previous version keeps
   publishing. Without a gate a version is promoted straight away.

When the first fit comes (``training.started`` says which rule fired, and how the records
seen split into training records and the audit's control set):

* never before ``min_records`` records were *seen* (control share included);
* ``caught_up``: the consumer has read everything the topic holds (a poll came back empty
  with no assigned partition lagging): a backlog there at start is trained on whole, not on
  its first micro-batch; a live stream is caught up at its first pause;
* ``first_fit_records``: that many records were seen (a stream that never pauses);
* ``max_wait``: ``first_fit_max_wait_s`` passed since the first record.

Later fits follow ``every_records`` / ``every_seconds``. After a rejection the scheduler
retries (a ``training.retry`` log line and a ``retry`` lifecycle event say which and why):
with ``generator: auto``, first at once on the same data with the automatic choice's
runner-up (:data:`RUNNER_UP`), then with more data (``retry_records``, default half of
``every_records``). A stream whose last ``stalled_after_fits`` fits published nothing, or
whose first unpublished fit is ``stalled_after_s`` old, is *stalled*: a
``training.stream_stalled`` warning, a ``stalled`` lifecycle event, the status line and
``/health`` say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from synthstream.config import ModelPrivacyConfig, StatsConfig, TrainingConfig
from synthstream.connectors.kafka import BatchSender, OutMessage
from synthstream.errors import SynthstreamError
from synthstream.log import configure_logging, get_logger, logging_settings
from synthstream.models.base import Generator
from synthstream.models.choice import GeneratorChoice, choose_generator, generator_options
from synthstream.models.guards import silent_text_fields
from synthstream.models.registry import Lineage, ModelRegistry, ModelVersion
from synthstream.models.selection import Candidate, fit_and_select
from synthstream.models.training import ProgressFile, fit_generator, read_progress, warm_up
from synthstream.privacy.ledger import BudgetExceeded, PrivacyLedger
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent, PrivacyGuarantee, stable_event_id
from synthstream.schemas.record import FieldRole, RecordSchema

Record = dict[str, Any]

#: Control records needed to choose between candidate generators by validation (fewer: the row rule).
VALIDATION_MIN_CONTROL = 100

#: The automatic choice's runner-up per generator, for a retry after a rejection: (dp, name) -> name.
#: DP fits only ever fall back to DP generators (each fit spends model budget from the ledger).
RUNNER_UP: dict[tuple[bool, str], str] = {
    (False, "neural"): "gaussian_copula",
    (False, "gaussian_copula"): "neural",
    (True, "aim"): "mst",
    (True, "mst"): "aim",
}

#: Fewest passes over the data a smoother neural refit (after a privacy rejection) goes down to.
SMOOTHER_MIN_EPOCHS = 10

#: Why a fit starts now, in words (``training.started``'s ``why_now``).
TRIGGERS: dict[str, str] = {
    "min_records": "min_records records were seen",
    "caught_up": "the consumer caught up with the topic: the backlog there at start is read",
    "first_fit_records": "training.first_fit_records records were seen before the consumer caught up",
    "max_wait": "training.first_fit_max_wait_s passed before the consumer caught up",
    "every_records": "training.every_records new records since the last fit",
    "every_seconds": "training.every_seconds passed since the last fit (with new records)",
    "requested": "a retrain was requested",
    "retry_runner_up": "retry after a rejection with the runner-up generator on the same data",
    "retry_more_data": "retry after a rejection with more data",
    "direct": "called directly",
}


@dataclass(frozen=True)
class RetryPlan:
    """What comes after a rejected version: the runner-up at once (``generator``), or ``records`` more records.

    ``primary`` is the automatic choice (the generator a retry with more data fits, and the
    one a runner-up stands in for).
    """

    rejected: int
    primary: str
    generator: str | None
    records: int
    reason: str
    #: A smoother refit: the neural model with at most this many passes over the data (see
    #: :meth:`RetrainScheduler._smoother_plan`); None for a runner-up or a retry with more data.
    max_epochs: int | None = None


@dataclass(frozen=True)
class FittedRunnerUp:
    """The validation's runner-up of a version: published by a runner-up retry without fitting it again."""

    version: int
    name: str
    model: Generator
    fit_seconds: float
    records: list[dict[str, Any]]
    seen: int
    seed: int


@dataclass(frozen=True)
class GateDecision:
    """A promotion gate's verdict on one version: promote or not, and why."""

    promote: bool
    reasons: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)


class PromotionGate(Protocol):
    """Decides whether a freshly trained version may publish (e.g. the privacy/quality audit)."""

    async def evaluate(self, version: ModelVersion, model: Generator, training: Sequence[Record]) -> GateDecision:
        """Judge ``version`` (fitted as ``model`` on ``training``) without blocking the event loop."""
        ...


class VersionHook(Protocol):
    """Runs after a version is registered and before it is judged (e.g. stores its training profile)."""

    async def __call__(self, version: ModelVersion, model: Generator, training: Sequence[Record]) -> None:
        """Do the hook's work for ``version``; exceptions are logged and do not stop promotion."""
        ...


def training_executor() -> ProcessPoolExecutor:
    """Start a one-worker process pool (spawn: safe next to asyncio and threads), warming it up.

    Spawning and importing numpy/pandas takes ~1-2 s; the warm-up runs while the pipeline
    connects to Kafka, so the first fit does not wait for it.
    """
    executor = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_pool_worker,
        initargs=(os.getpid(), logging_settings()),
    )
    executor.submit(warm_up)
    return executor


def init_pool_worker(parent_pid: int, log_settings: dict[str, Any] | None) -> None:
    """In a pool worker: log as the parent does (JSON lines stay JSON), and exit with the parent."""
    if log_settings is not None:
        configure_logging(**log_settings)
    exit_with_parent(parent_pid)


def exit_with_parent(parent_pid: int, interval_s: float = 1.0) -> None:
    """In a pool worker: exit when the process that started it is gone.

    A worker SIGKILLed (or OOM-killed) by its supervisor cannot shut its pool down, and the
    pool's processes would otherwise outlive it, holding memory and, mid-fit, the GPU.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def trigger_fired(
    new: int, fits_done: int, last_fit_at: float, every_records: int | None, every_seconds: float | None
) -> bool:
    """The retrain trigger both schedulers use.

    The first fit comes as soon as there is new data, later ones after ``every_records`` new
    records or ``every_seconds`` since the last fit (``time.monotonic``).
    """
    if new <= 0:
        return False
    if fits_done == 0:
        return True
    by_count = every_records is not None and new >= every_records
    by_time = every_seconds is not None and time.monotonic() - last_fit_at >= every_seconds
    return by_count or by_time


class BackgroundFits:
    """At most one fit at a time as a background task: ``busy``, ``maybe_start``, ``wait_idle``.

    Subclasses say when a fit is ``due`` and how to ``retrain``.
    """

    stream: str
    _task: asyncio.Task[ModelVersion | None] | None = None
    _task_name: str = "retrain"

    def due(self) -> bool:
        """Whether a fit should start now."""
        raise NotImplementedError

    async def retrain(self) -> ModelVersion | None:
        """Run one fit; the new version, or None when nothing was trained."""
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        """Whether a fit is running."""
        return self._task is not None and not self._task.done()

    def maybe_start(self) -> bool:
        """Start a fit in the background if one is due; return whether it started."""
        if not self.due():
            return False
        self._task = asyncio.create_task(self.retrain(), name=f"{self._task_name}-{self.stream}")
        return True

    async def wait_idle(self) -> None:
        """Wait for a running fit to finish (its errors are logged, not raised)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class RetrainScheduler(BackgroundFits):
    """Decides when to retrain, runs the fit in ``executor``, registers and promotes.

    ``ledger`` (the pipeline's privacy ledger) is needed by DP generators and ``aim_stream``;
    ``stats`` (the pipeline's statistics section) lets ``auto`` pick the from-the-stream model.
    ``progress_interval_s`` bounds how often ``training_progress`` events are published.
    """

    def __init__(
        self,
        *,
        config: TrainingConfig,
        buffer: TrainingBuffer,
        registry: ModelRegistry,
        schema: RecordSchema,
        executor: Executor,
        producer: BatchSender,
        models_topic: str,
        lifecycle_serde: EventSerde[ModelLifecycleEvent],
        stream: str,
        hooks: Sequence[VersionHook] = (),
        gate: PromotionGate | None = None,
        ledger: PrivacyLedger | None = None,
        stats: StatsConfig | None = None,
        progress_interval_s: float = 1.0,
        stall_after_s: float = 300.0,
        caught_up: Callable[[], bool | None] | None = None,
        target_field: str | None = None,
    ) -> None:
        if progress_interval_s <= 0:
            raise ValueError("progress_interval_s must be positive")
        if stall_after_s <= 0:
            raise ValueError("stall_after_s must be positive")
        self.config = config
        #: The label users train on (``audit.target_field``): the validation adds TSTR on it.
        self.target_field = target_field
        self.buffer = buffer
        self.registry = registry
        self.schema = schema
        self.executor = executor
        self.producer = producer
        self.models_topic = models_topic
        self.lifecycle_serde = lifecycle_serde
        self.stream = stream
        self.hooks: list[VersionHook] = list(hooks)
        self.gate = gate
        self.ledger = ledger
        self.stats = stats
        self.progress_interval_s = progress_interval_s
        #: A running fit that reports no progress for this long is announced as stalled (log + event).
        self.stall_after_s = stall_after_s
        self.versions_trained = 0
        self.versions_rejected = 0
        self.fits_failed = 0
        #: Why DP training stopped for good (the model budget is spent), or None.
        self.exhausted: str | None = None
        #: The running fit's progress: (reserved version, fraction, detail), or None when idle.
        self.progress: tuple[int, float, str] | None = None
        #: The newest rejected version and why, until a later version is promoted (for the status line).
        self.last_rejected: tuple[int, str] | None = None
        #: Seconds the running fit has reported no progress, once past ``stall_after_s`` (else 0).
        self.stalled_s = 0.0
        #: Whether the input consumer has read all the topic held at its last fetch. None, or a call
        #: answering None (unknown, e.g. another engine's consumer): the first fit comes at min_records.
        self.caught_up = caught_up
        #: The retry planned after the last rejection, or None.
        self.retry: RetryPlan | None = None
        #: Passes over the data of the last neural version rejected for a privacy risk on the current
        #: records (the start of a smoother refit), or None.
        self._smoother_from: int | None = None
        #: The last validated fit's runner-up, kept until the next fit (a runner-up retry publishes it).
        self._runner_up: FittedRunnerUp | None = None
        #: Fits in a row that published nothing (rejected or failed), since the last promotion.
        self.unpublished_fits = 0
        #: Why the stream is stalled (nothing published for stalled_after_fits fits / stalled_after_s), or None.
        self.stream_stalled: str | None = None
        self._unpublished_since: float | None = None
        self._last_unpublished: tuple[int, str, str] | None = None
        self._stall_task: asyncio.Task[None] | None = None
        self._fits_started = 0
        self._first_record_at: float | None = None
        self._trigger: str | None = None
        self._requested: str | None = None
        self._seen_at_last_fit = 0
        self._last_fit_at = time.monotonic()
        self._task = None
        self._log = get_logger("trainer", stream=stream)

    def __repr__(self) -> str:
        return f"RetrainScheduler(stream={self.stream!r}, generator={self.config.generator!r})"

    def due(self) -> bool:
        """Whether a trigger fired and there is enough data to train (the trigger is kept for the log)."""
        if self.busy or self.exhausted is not None:
            return False
        seen = self.buffer.total_seen
        if seen > 0 and self._first_record_at is None:
            self._first_record_at = time.monotonic()
        if seen < self.config.min_records or len(self.buffer) == 0:
            return False
        if self.gate is not None and not getattr(self.gate, "ready", True):
            return False  # the gate cannot judge a version yet (e.g. the audit's control set is too small)
        self._trigger = self._why_now(seen)
        return self._trigger is not None

    def _why_now(self, seen: int) -> str | None:
        """The trigger that fires now (a key of :data:`TRIGGERS`), or None."""
        cfg = self.config
        now = time.monotonic()
        if self._requested is not None:
            return "requested"
        new = seen - self._seen_at_last_fit
        if self.retry is not None:
            if self.retry.generator is not None:
                return "retry_runner_up"
            if new >= self.retry.records:
                return "retry_more_data"
        if self._fits_started == 0:
            caught_up = self.caught_up() if self.caught_up is not None else None
            if caught_up is None:
                return "min_records"
            if caught_up:
                return "caught_up"
            if cfg.first_fit_records is not None and seen >= cfg.first_fit_records:
                return "first_fit_records"
            waited = now - (self._first_record_at or now)
            if cfg.first_fit_max_wait_s is not None and waited >= cfg.first_fit_max_wait_s:
                return "max_wait"
            return None
        if new <= 0:
            return None
        if self.retry is None and cfg.every_records is not None and new >= cfg.every_records:
            return "every_records"
        if cfg.every_seconds is not None and now - self._last_fit_at >= cfg.every_seconds:
            return "every_seconds"
        return None

    def maybe_start(self) -> bool:
        """Check for a stalled stream, then start a fit in the background if one is due."""
        self._check_stall()
        return super().maybe_start()

    def next_retry(self) -> tuple[int | None, float | None]:
        """What the next fit waits for: (records still needed, seconds still to wait); None = trigger off."""
        new = self.buffer.total_seen - self._seen_at_last_fit
        every = self.retry.records if self.retry is not None else self.config.every_records
        records = None if every is None else max(0, every - new)
        seconds = (
            None
            if self.config.every_seconds is None
            else max(0.0, self.config.every_seconds - (time.monotonic() - self._last_fit_at))
        )
        return records, seconds

    def retry_hint(self) -> str:
        """Plain words for when the next fit comes, e.g. ``after 1200 more records or in 45 s``."""
        if self.retry is not None and self.retry.max_epochs is not None:
            return f"now with {self.retry.generator} at most {self.retry.max_epochs} passes over the data"
        if self.retry is not None and self.retry.generator is not None:
            return f"now with the runner-up generator {self.retry.generator}"
        records, seconds = self.next_retry()
        parts = []
        if records is not None:
            parts.append(f"after {records} more records")
        if seconds is not None:
            parts.append(f"in {seconds:.0f} s (with new records)")
        return " or ".join(parts) or "on request"

    def first_fit_hint(self) -> str:
        """Plain words for what the first fit waits for (the status line before any version)."""
        cfg = self.config
        seen = self.buffer.total_seen
        if seen < cfg.min_records:
            return f"waiting for data: {cfg.min_records - seen} more records before the first fit"
        if self.gate is not None and not getattr(self.gate, "ready", True):
            held, needed = self.buffer.holdout_size, getattr(getattr(self.gate, "config", None), "min_holdout", None)
            return (
                f"waiting for the audit's control set: {held} of {needed} records held out "
                "(lower audit.min_holdout or raise audit.holdout_share for a small table)"
            )
        parts = ["when the consumer has caught up"]
        if cfg.first_fit_records is not None:
            parts.append(f"at {cfg.first_fit_records} records seen")
        if cfg.first_fit_max_wait_s is not None and self._first_record_at is not None:
            left = cfg.first_fit_max_wait_s - (time.monotonic() - self._first_record_at)
            parts.append(f"in {max(0.0, left):.0f} s")
        return f"reading the backlog ({seen} records seen): first fit " + " or ".join(parts)

    # -- retries and stalls ------------------------------------------------------------------------

    def _plan_retry(
        self, version: int, generator: str, runner_up_allowed: bool, dp: bool, primary: str | None = None
    ) -> RetryPlan:
        """The retry after ``version`` (fitted by ``generator``) was rejected: the runner-up, or more data.

        ``primary``: the generator a retry with more data uses (the automatic choice, when
        ``generator`` was its runner-up); default ``generator``.
        """
        cfg = self.config
        primary = primary or generator
        runner = RUNNER_UP.get((dp, generator)) if runner_up_allowed else None
        if runner is not None:
            return RetryPlan(
                version,
                generator,
                runner,
                0,
                f"v{version} ({generator}) was rejected: retrying at once on the same data with the automatic "
                f"choice's runner-up {runner}",
            )
        if cfg.retry_records is not None:
            records = cfg.retry_records
        elif cfg.every_records is not None:
            records = max(cfg.min_records, cfg.every_records // 2)
        else:
            records = cfg.min_records
        when = f"after {records} more records"
        if cfg.every_seconds is not None:
            when += f" or in {cfg.every_seconds:g} s with new records"
        return RetryPlan(
            version,
            primary,
            None,
            records,
            f"v{version} ({generator}) was rejected: retrying with more data and {primary} {when}",
        )

    def _smoother_plan(self, version: int, primary: str) -> RetryPlan | None:
        """A refit of the neural model with a third of the passes, after it was rejected for a privacy risk.

        On a small table the neural model's passes over the data decide how close it sits to its
        training rows: palmerpenguins (240 rows) failed linkability (0.325 > 0.10) at 100 passes
        and passed at 30; carData Salaries (397 rows) failed at 100 (0.136) and was published at 33.
        So when a neural version was rejected only for risks over their ceilings (no quality floor
        missed: fewer passes would miss it further) and no runner-up is left, the same records are
        refitted at once with at most a third of the passes (at least :data:`SMOOTHER_MIN_EPOCHS`),
        and again after that, while the passes still drop.
        """
        passes, self._smoother_from = self._smoother_from, None
        if passes is None:
            return None
        smoother = max(SMOOTHER_MIN_EPOCHS, passes // 3)
        if smoother >= passes:
            return None
        return RetryPlan(
            version,
            primary,
            "neural",
            0,
            f"v{version} was rejected for a privacy risk after a neural fit of {passes} passes over the data: "
            f"retrying at once on the same data with neural at most {smoother} passes",
            max_epochs=smoother,
        )

    def _unpublished(self, version: int, generator: str, reason: str) -> None:
        """Count a fit that published nothing (for the stalled-stream check)."""
        self.unpublished_fits += 1
        if self._unpublished_since is None:
            self._unpublished_since = time.monotonic()
        self._last_unpublished = (version, generator, reason)

    def _published(self) -> None:
        if self.stream_stalled is not None:
            self._log.info("training.stream_resumed", message="a version was promoted: the stream is no longer stalled")
        self.unpublished_fits = 0
        self._unpublished_since = None
        self._last_unpublished = None
        self.stream_stalled = None
        self.retry = None
        self._smoother_from = None

    def stall_reason(self) -> str | None:
        """Why the stream counts as stalled now (see the module docstring), or None."""
        if self.unpublished_fits == 0 or self._last_unpublished is None or self._unpublished_since is None:
            return None
        cfg = self.config
        age = time.monotonic() - self._unpublished_since
        if self.unpublished_fits < cfg.stalled_after_fits and age < cfg.stalled_after_s:
            return None
        version, _, reason = self._last_unpublished
        short = reason if len(reason) <= 120 else reason[:117] + "..."
        return (
            f"no version published for {self.unpublished_fits} fit(s) in a row over {age:.0f} s "
            f"(last: v{version}: {short})"
        )

    def _check_stall(self) -> None:
        """Announce a newly stalled stream once: a warning and a ``stalled`` lifecycle event."""
        if self.stream_stalled is not None:
            return
        reason = self.stall_reason()
        if reason is None or self._last_unpublished is None:
            return
        self.stream_stalled = reason
        version, generator, _ = self._last_unpublished
        current = self.registry.current()
        publishing = f"v{current.version} keeps publishing" if current is not None else "nothing is published"
        self._log.warning(
            "training.stream_stalled",
            fits=self.unpublished_fits,
            last_version=version,
            publishing=publishing,
            retry=self.retry_hint(),
            message=f"stream stalled: {reason}; {publishing}; the next fit comes {self.retry_hint()}",
        )
        with contextlib.suppress(RuntimeError):  # no running loop (a synchronous caller): the log line says it
            self._stall_task = asyncio.get_running_loop().create_task(
                self._send(version, generator, "stalled", rows=0, seed=0, seconds=0.0, reason=reason, tag="stalled")
            )

    async def wait_idle(self) -> None:
        """Wait for a running fit (and a pending stall event) to finish; errors are logged, not raised."""
        await super().wait_idle()
        if self._stall_task is not None:
            await asyncio.gather(self._stall_task, return_exceptions=True)

    def request(self, reason: str) -> None:
        """Ask for a retrain as soon as enough data is buffered (e.g. after a drift event)."""
        self._requested = reason
        self._log.info("training.requested", reason=reason)

    # -- one retrain -----------------------------------------------------------------------------

    def _choose(self, rows: int, retry: RetryPlan | None = None) -> tuple[GeneratorChoice, TrainingConfig | None]:
        """The generator for this fit; a name the configuration schema does not know is used as is.

        A ``retry`` with a runner-up replaces the automatic choice with it (same DP setting).
        """
        name = str(self.config.generator)
        known = {"auto", "gaussian_copula", "neural", "aim", "mst", "aim_stream"}
        if name not in known:
            return GeneratorChoice(name, False, "configured"), None
        config = self.config
        if not isinstance(config.privacy, ModelPrivacyConfig):  # built with model_construct: validate it
            config = TrainingConfig.model_validate(config.model_dump())
        choice = choose_generator(config, self.schema, rows=rows, stats=self.stats)
        if retry is not None and retry.generator is not None:
            reason = f"runner-up of {retry.primary} after v{retry.rejected} was rejected"
            if retry.max_epochs is not None:
                reason = f"smoother refit (at most {retry.max_epochs} passes) after v{retry.rejected} was rejected"
            return GeneratorChoice(retry.generator, choice.dp, reason), config
        return choice, config

    def _options(self, choice: GeneratorChoice, config: TrainingConfig, seed: int, seen: int) -> dict[str, Any]:
        """Constructor options of ``choice`` for this fit (DP context keyed by generator, seed and records seen)."""
        return generator_options(
            choice,
            config,
            ledger_path=self.ledger.path if self.ledger is not None else None,
            stream=self.stream,
            key=f"{choice.name}:seed{seed}:seen{seen}",
        )

    async def _warm_start(
        self, choice: GeneratorChoice, config: TrainingConfig | None
    ) -> tuple[Generator | None, int | None]:
        """The promoted version to continue from (neural, same DP setting and schema), if any."""
        if config is None or choice.name != "neural" or not config.neural.warm_start:
            return None, None
        current = await asyncio.to_thread(self.registry.current)
        if current is None or current.generator != "neural":
            return None, None
        if current.lineage.schema_fingerprint != self.schema.fingerprint():
            return None, None
        if bool(current.lineage.guarantee) != choice.dp:
            return None, None
        try:
            model = await asyncio.to_thread(self.registry.load, current.version)
        except SynthstreamError:
            return None, None
        return model, current.version

    async def retrain(self) -> ModelVersion | None:
        """Fit, register, announce and promote one new version from the buffer's snapshot."""
        records = self.buffer.snapshot()
        seen = self.buffer.total_seen
        requested, self._requested = self._requested, None
        trigger, self._trigger = self._trigger or ("requested" if requested else "direct"), None
        retry, self.retry = self.retry, None
        if trigger == "retry_more_data" and retry is not None:
            retry = dataclasses.replace(retry, generator=None)
        elif trigger != "retry_runner_up":
            retry = None
        self._fits_started += 1
        self._seen_at_last_fit = seen
        self._last_fit_at = time.monotonic()
        seed = self.config.seed + self.versions_trained + 1
        kept, self._runner_up = self._runner_up, None
        reused: FittedRunnerUp | None = None
        if (
            retry is not None
            and kept is not None
            and retry.max_epochs is None  # a smoother refit is a new fit, not the validation's runner-up
            and (kept.version, kept.name) == (retry.rejected, retry.generator)
        ):
            reused = kept  # fitted in the rejected version's validation: its records, seen count and seed
            records, seen, seed = kept.records, kept.seen, kept.seed
        if retry is None or retry.generator is None:
            self._smoother_from = None  # new records: a smoother refit starts from a fresh rejection
        try:
            choice, config = self._choose(len(records), retry)
            options = self._options(choice, config, seed, seen) if config is not None else {}
            if retry is not None and retry.max_epochs is not None:
                epochs = min(int(options.get("epochs", retry.max_epochs)), retry.max_epochs)
                options = {**options, "max_epochs": retry.max_epochs, "epochs": epochs}
        except SynthstreamError as exc:
            self._log.error("training.misconfigured", error=type(exc).__name__, message=str(exc))
            self.fits_failed += 1
            return None
        # A runner-up retry fits the named runner-up; every other automatic fit (a retry with more data
        # included) validates its candidates again.
        runner_up = retry is not None and retry.generator is not None
        control_records = self.buffer.holdout() if choice.candidates and not runner_up else []
        validate = config is not None and len(control_records) >= VALIDATION_MIN_CONTROL
        warm, warm_from = (None, None) if validate or reused else await self._warm_start(choice, config)
        number = await asyncio.to_thread(self.registry.reserve)
        training = [] if choice.name == "aim_stream" else records  # the from-the-stream model never sees a record
        control = self.buffer.holdout_size
        why_now = retry.reason if retry is not None else TRIGGERS.get(trigger, trigger)
        self._log.info(
            "training.started",
            rows=len(training),
            records_seen=seen,
            control_rows=control,
            holdout_share=self.buffer.holdout_share,
            trigger=trigger,
            why_now=why_now,
            generator=choice.name,
            candidates=list(choice.candidates) if validate else None,
            dp=choice.dp,
            why=choice.reason,
            seed=seed,
            version=number,
            warm_start_from=warm_from,
            requested=requested,
            message=(
                f"fit v{number} ({' vs '.join(choice.candidates) if validate else choice.name}) "
                f"on {len(records)} training records of {seen} seen "
                f"({control} held out as the audit's control set, holdout_share {self.buffer.holdout_share:g}): "
                f"{why_now}"
            ),
        )
        progress_path = self.registry.progress_path
        meta = {"stream": self.stream, "version": number, "generator": choice.name, "rows": len(training)}
        ProgressFile(progress_path, meta=meta)(0.0, "starting", status="training")
        self.progress = (number, 0.0, "starting")
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        watcher = asyncio.create_task(self._watch_progress(number, choice.name, len(training), seed, started))
        validation: dict[str, float] | None = None
        try:
            if reused is not None:
                model, fit_seconds = reused.model, reused.fit_seconds
                self._log.info(
                    "training.runner_up_reused",
                    version=number,
                    generator=reused.name,
                    fitted_for=reused.version,
                    message=f"v{number}: {reused.name} was fitted in v{reused.version}'s validation on the same "
                    "records; published without a second fit",
                )
            elif validate:
                assert config is not None
                candidates = [
                    Candidate(name, self._options(GeneratorChoice(name, False, choice.reason), config, seed, seen))
                    for name in choice.candidates
                ]
                selection = await loop.run_in_executor(
                    self.executor,
                    fit_and_select,
                    candidates,
                    training,
                    control_records,
                    self.schema,
                    seed,
                    progress_path,
                    meta,
                    self.target_field,
                )
                model, fit_seconds, validation = selection.model, selection.fit_seconds, selection.scores
                if selection.runner_up is not None:
                    other, other_model = selection.runner_up
                    self._runner_up = FittedRunnerUp(
                        number, other, other_model, selection.seconds.get(other, 0.0), training, seen, seed
                    )
                scored = ", ".join(f"{k} {v:.4f}" for k, v in validation.items())
                measure = "accuracy" if not selection.utility else f"accuracy + TSTR on {self.target_field}"
                choice = GeneratorChoice(
                    selection.name,
                    False,
                    f"{choice.reason}: {measure} on {len(control_records)} control records {scored}",
                )
                self._log.info(
                    "training.validated",
                    version=number,
                    chosen=selection.name,
                    scores={k: round(v, 4) for k, v in validation.items()},
                    accuracy={k: round(v, 4) for k, v in selection.accuracy.items()},
                    tstr={k: round(v, 4) for k, v in selection.utility.items()} or None,
                    target_field=self.target_field,
                    fit_seconds={k: round(v, 2) for k, v in selection.seconds.items()},
                    control_rows=len(control_records),
                    message=f"v{number}: {selection.name} chosen by {measure} on the control set ({scored})",
                )
            else:
                model, fit_seconds = await loop.run_in_executor(
                    self.executor,
                    fit_generator,
                    choice.name,
                    training,
                    self.schema,
                    seed,
                    options,
                    warm,
                    progress_path,
                    meta,
                )
        except Exception as exc:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self._failed(number, choice.name, len(training), seed, started, exc)
            return None
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        ProgressFile(progress_path, meta=meta)(1.0, "trained", status="trained")
        self.progress = None
        lineage = Lineage(
            rows=len(training),
            schema_fingerprint=self.schema.fingerprint(),
            seed=seed,
            config={
                **self.config.model_dump(mode="json"),
                "resolved_generator": choice.name,
                "choice_reason": choice.reason,
                "validation": validation,
                # A runner-up retry's model comes from that version's validation (no second fit).
                "fitted_in_validation_of": reused.version if reused is not None else None,
                "dp": choice.dp,
            },
            source_offsets={"records_seen": seen},
            fit_seconds=fit_seconds,
            metrics=_model_metrics(model),
            records_range=None if choice.name == "aim_stream" else (seen - len(records), seen),
            windows=getattr(model, "windows_", None),
            guarantee=_model_guarantee(model, choice),
            warm_start_from=warm_from,
        )
        version = await asyncio.to_thread(self.registry.register, model, lineage=lineage, version=number)
        silent = await asyncio.to_thread(self._silent_text, model, records)
        await self._announce(version, "trained", reason=silent)
        self.versions_trained += 1
        for hook in self.hooks:
            try:
                await hook(version, model, records)
            except Exception as exc:
                self._log.error("training.hook_failed", hook=repr(hook), error=type(exc).__name__)
        if self.gate is not None:
            decision = await self.gate.evaluate(version, model, records)
            if not decision.promote:
                reason = "; ".join(decision.reasons) or "rejected by the promotion gate"
                version = await asyncio.to_thread(self.registry.reject, version.version, reason)
                self.versions_rejected += 1
                self.last_rejected = (version.version, reason)
                await self._announce(version, "rejected", reason=reason, metrics=decision.metrics)
                self._unpublished(version.version, choice.name, reason)
                runner_up_allowed = (
                    config is not None
                    and config.generator == "auto"
                    and config.retry_runner_up
                    and (retry is None or retry.generator is None)  # a runner-up's rejection: more data next
                )
                primary = retry.primary if retry is not None and retry.generator is not None else None
                self.retry = self._plan_retry(version.version, choice.name, runner_up_allowed, choice.dp, primary)
                risks = [r for r in decision.reasons if "> ceiling" in r]
                if choice.name == "neural" and not choice.dp and risks and len(risks) == len(decision.reasons):
                    # only risks: fewer passes lower them; a quality floor missed too would only be missed more
                    self._smoother_from = len(getattr(model, "history_", [])) or None
                if self.retry.generator is None:
                    self.retry = self._smoother_plan(version.version, self.retry.primary) or self.retry
                current = await asyncio.to_thread(self.registry.current)
                still = f"v{current.version} keeps publishing" if current is not None else "nothing is published yet"
                self._log.warning(
                    "training.rejected",
                    version=version.version,
                    reasons=list(decision.reasons),
                    publishing=f"v{current.version}" if current is not None else "nothing yet",
                    retry=self.retry_hint(),
                    message=(
                        f"version {version.version} rejected by the promotion gate; {still}; "
                        f"the next fit comes {self.retry_hint()}"
                    ),
                )
                plan = self.retry
                self._log.info(
                    "training.retry",
                    rejected=version.version,
                    generator=plan.generator or plan.primary,
                    runner_up=plan.generator is not None,
                    after_records=plan.records,
                    message=plan.reason,
                )
                await self._send(
                    version.version,
                    plan.generator or plan.primary,
                    "retry",
                    rows=len(training),
                    seed=seed,
                    seconds=0.0,
                    reason=plan.reason,
                )
                self._check_stall()
                return version
        self.last_rejected = None
        self._published()
        version = await asyncio.to_thread(self.registry.promote, version.version)
        await self._announce(version, "promoted")
        self._log.info(
            "training.finished", version=version.version, rows=len(records), fit_seconds=round(fit_seconds, 3)
        )
        return version

    async def _failed(
        self, number: int, generator: str, rows: int, seed: int, started: float, exc: BaseException
    ) -> None:
        self.fits_failed += 1
        self.progress = None
        self._unpublished(number, generator, f"the fit failed ({type(exc).__name__})")
        if isinstance(exc, BudgetExceeded):
            self.exhausted = exc.detail
            reason = f"privacy budget exhausted: {exc.detail}"
            self._log.warning(
                "training.budget_exhausted",
                generator=generator,
                detail=exc.detail,
                message="the model privacy budget is spent: DP retraining stops; the promoted version keeps publishing",
            )
        else:
            reason = f"{type(exc).__name__}: {exc}"
            self._log.error("training.failed", error=type(exc).__name__, message=str(exc))
        ProgressFile(self.registry.progress_path, meta={"stream": self.stream, "version": number})(
            1.0, reason, status="failed", generator=generator
        )
        await self._send(
            number,
            generator,
            "training_failed",
            rows=rows,
            seed=seed,
            seconds=time.monotonic() - started,
            reason=reason,
        )

    async def _watch_progress(self, number: int, generator: str, rows: int, seed: int, started: float) -> None:
        """Publish the fit's progress reports as ``training_progress`` events (at most one per interval).

        A fit that reports nothing new for ``stall_after_s`` is announced once as stalled: a
        ``training.stalled`` warning and a ``training_progress`` event whose reason says so.
        """
        last: tuple[float, str] | None = None
        changed_at = time.monotonic()
        stall_announced = False
        self.stalled_s = 0.0
        while True:
            await asyncio.sleep(min(0.25, self.progress_interval_s))
            quiet = time.monotonic() - changed_at
            if quiet >= self.stall_after_s:
                self.stalled_s = quiet
                if not stall_announced:
                    stall_announced = True
                    fraction_now = self.progress[1] if self.progress is not None else 0.0
                    self._log.warning(
                        "training.stalled",
                        version=number,
                        generator=generator,
                        quiet_s=round(quiet, 1),
                        message=f"the fit of v{number} reported no progress for {quiet:.0f} s",
                    )
                    await self._send(
                        number,
                        generator,
                        "training_progress",
                        rows=rows,
                        seed=seed,
                        seconds=time.monotonic() - started,
                        reason=f"stalled: no progress report for {quiet:.0f} s",
                        progress=fraction_now,
                        tag="stalled",
                    )
            report = await asyncio.to_thread(read_progress, self.registry.progress_path)
            if report is None or report.get("version") != number or report.get("status") is not None:
                continue  # the scheduler's own start/end marks are not the generator's reports
            fraction, detail = float(report.get("fraction", 0.0)), str(report.get("detail", ""))
            self.progress = (number, fraction, detail)
            if last is not None and (fraction, detail) == last:
                continue
            last = (fraction, detail)
            changed_at = time.monotonic()
            stall_announced = False
            self.stalled_s = 0.0
            await self._send(
                number,
                generator,
                "training_progress",
                rows=rows,
                seed=seed,
                seconds=time.monotonic() - started,
                reason=detail,
                progress=fraction,
                tag=f"{fraction:.4f}:{detail}",
            )
            await asyncio.sleep(max(0.0, self.progress_interval_s - 0.25))

    async def _send(
        self,
        number: int,
        generator: str,
        action: str,
        *,
        rows: int,
        seed: int,
        seconds: float,
        reason: str | None = None,
        progress: float | None = None,
        tag: str = "",
    ) -> None:
        event = ModelLifecycleEvent(
            event_id=stable_event_id(self.stream, number, action, tag),
            stream=self.stream,
            model_version=number,
            generator=generator,
            action=action,  # type: ignore[arg-type]  # Literal checked by pydantic at run time
            rows=rows,
            seed=seed,
            fit_seconds=max(0.0, seconds),
            reason=reason,
            progress=progress,
            occurred_at=datetime.now(UTC),
        )
        await self.producer.send(
            self.models_topic, OutMessage(value=self.lifecycle_serde.encode(event), key=self.stream.encode())
        )

    def _silent_text(self, model: Generator, training: Sequence[Record]) -> str | None:
        """Free-text fields the new version generates empty (logged and said on its ``trained`` event)."""
        fields = _text_fields(self.schema)
        if not fields:
            return None
        silent = silent_text_fields(model.sample_columns(256, seed=0), fields, training)
        if not silent:
            return None
        self._log.warning(
            "training.free_text_dropped",
            fields=silent,
            detail="generated empty: no token is used by enough records, or the generator learns no text (DP)",
        )
        return f"free text generated empty: {', '.join(silent)}"

    async def _announce(
        self,
        version: ModelVersion,
        action: str,
        *,
        reason: str | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        lineage = version.lineage
        event = ModelLifecycleEvent(
            event_id=stable_event_id(self.stream, version.version, action),
            stream=self.stream,
            model_version=version.version,
            generator=version.generator,
            action=action,  # type: ignore[arg-type]  # Literal checked by pydantic at run time
            rows=lineage.rows,
            seed=lineage.seed,
            fit_seconds=lineage.fit_seconds,
            metrics={**lineage.metrics, **(metrics or {})},
            reason=reason,
            occurred_at=datetime.now(UTC),
        )
        await self.producer.send(
            self.models_topic, OutMessage(value=self.lifecycle_serde.encode(event), key=self.stream.encode())
        )


def _text_fields(schema: RecordSchema) -> list[str]:
    return [f.name for f in schema.fields if f.role is FieldRole.FREE_TEXT]


def _model_metrics(model: Generator) -> dict[str, float]:
    """Numbers a fitted model reports about itself (DP spend, final loss)."""
    out: dict[str, float] = {}
    guarantee = getattr(model, "guarantee_", None) or {}
    spend = getattr(model, "dp_spend_", None) or {}
    if "epsilon" in guarantee:
        out["dp_epsilon"] = float(guarantee["epsilon"])
    if "epsilon_total" in spend:
        out["dp_epsilon"] = float(spend["epsilon_total"])
        out["dp_noise_multiplier"] = float(spend["noise_multiplier"])
    history = getattr(model, "history_", None) or []
    if history:
        out["final_loss"] = float(history[-1]["loss"])
    return out


def _model_guarantee(model: Generator, choice: GeneratorChoice) -> dict[str, Any] | None:
    """The formal guarantee a DP model carries (for the lineage and the audit), or None."""
    if not choice.dp:
        return None
    guarantee = getattr(model, "guarantee_", None)
    if guarantee:
        return dict(guarantee)
    spend = getattr(model, "dp_spend_", None)
    if spend:
        return {
            "kind": "formal",
            "mechanism": "dpsgd",
            "epsilon": float(spend["epsilon_total"]),
            "delta": float(spend["delta"]),
            "unit": str(spend["unit"]),
            "noise_multiplier": float(spend["noise_multiplier"]),
        }
    return None


def lineage_guarantee(version: ModelVersion) -> PrivacyGuarantee:
    """The guarantee a version's lineage states, as the audit event carries it (a ``GuaranteeSource``).

    Models without one (the copula, the non-DP neural model) get ``empirical_only``.
    """
    g = version.lineage.guarantee
    if not g:
        return PrivacyGuarantee(kind="empirical_only")
    mechanisms = {
        "aim": ["gaussian marginals (zCDP)", "noisy max selection", "aim (post-processing)"],
        "mst": ["gaussian marginals (zCDP)", "noisy max selection", "mst (post-processing)"],
        "dpsgd": ["dp quantiles / threshold domains", "dp-sgd (opacus, RDP accountant)"],
    }.get(str(g.get("mechanism")), ["gaussian window marginals (zCDP)", "private-pgm (post-processing)"])
    # From the stream there is no model ε of its own: the statistics' guarantee applies (stats events).
    epsilon = g.get("epsilon")
    return PrivacyGuarantee(
        kind="formal",
        epsilon=float(epsilon) if epsilon is not None else None,
        delta=float(g["delta"]) if g.get("delta") is not None else None,
        unit=str(g.get("unit", "record")),
        mechanism=str(g.get("mechanism")),
        mechanisms=mechanisms,
        source=f"lineage of v{version.version} (privacy ledger, scope model)",
    )
