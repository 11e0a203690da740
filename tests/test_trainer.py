"""The retrain scheduler: count and time triggers, fits off the event loop, lifecycle events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import psutil
import pytest

from synthstream.config import TrainingConfig
from synthstream.connectors.files import read_table, records_from_frame
from synthstream.connectors.kafka import Producer, ensure_topics
from synthstream.demo import sample_path
from synthstream.models.registry import ModelRegistry
from synthstream.processors.buffer import TrainingBuffer
from synthstream.schemas.events import EventSerde, ModelLifecycleEvent
from synthstream.schemas.inference import infer_schema
from synthstream.schemas.record import FieldRole
from synthstream.schemas.serde import InMemorySchemaStore
from synthstream.streams.trainer import RetrainScheduler, training_executor, trigger_fired
from tests.helpers import read_topic


def _records():
    frame = read_table(sample_path(), nrows=2_000)
    schema = infer_schema(frame, name="Adult")
    return schema, records_from_frame(frame, schema)


async def _until(predicate: Callable[[], bool], limit_s: float) -> bool:
    """Wait until ``predicate()`` holds, checking every 50 ms, for at most ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def test_the_trigger_rule() -> None:
    """The rule itself, with clock readings an hour apart: no dependence on the machine's speed."""
    now = time.monotonic()
    assert not trigger_fired(0, 0, now, 500, 60)  # nothing new
    assert trigger_fired(1, 0, now, 500, 60)  # the first fit needs only new data
    assert not trigger_fired(499, 1, now, 500, 60)
    assert trigger_fired(500, 1, now, 500, 60)  # count
    assert trigger_fired(1, 1, now - 3_600, 500, 60)  # time
    assert not trigger_fired(1, 1, now - 3_600, 500, None) and not trigger_fired(499, 1, now, None, 60)


async def test_count_and_time_triggers(kafka, names, tmp_path):
    schema, records = _records()
    topic = names.topic("models")
    await ensure_topics(kafka, [topic])
    store = InMemorySchemaStore()
    buffer = TrainingBuffer(5_000)
    registry = ModelRegistry(tmp_path, "s")
    # An hour between time triggers: no check below can be decided by how slow the machine is.
    config = TrainingConfig(every_records=500, every_seconds=3_600, min_records=200, seed=7)
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = RetrainScheduler(
                config=config,
                buffer=buffer,
                registry=registry,
                schema=schema,
                executor=executor,
                producer=producer,
                models_topic=topic,
                lifecycle_serde=EventSerde(ModelLifecycleEvent, store),
                stream="s",
            )
            assert not scheduler.due()  # empty buffer
            buffer.extend(records[:100])
            assert not scheduler.due()  # below min_records
            buffer.extend(records[100:300])
            assert scheduler.due()  # first version as soon as there is enough data
            v1 = await scheduler.retrain()
            assert v1 is not None and v1.version == 1 and v1.lineage.rows == 300 and v1.lineage.seed == 8
            buffer.extend(records[300:400])
            assert not scheduler.due()  # 100 new records, 500 needed, time not up
            buffer.extend(records[400:800])
            assert scheduler.due()  # count trigger
            await scheduler.retrain()
            buffer.extend(records[800:810])
            assert not scheduler.due()  # 10 new records, and the hour is not up
            # The time trigger on a scheduler whose interval is short: wait for it (a deadline, not a sleep).
            scheduler.config = TrainingConfig(every_records=500, every_seconds=0.2, min_records=200, seed=7)
            assert await _until(scheduler.due, 30.0)  # time trigger with new records
            assert scheduler.maybe_start()
            assert not scheduler.maybe_start()  # one fit at a time
            await scheduler.wait_idle()
    assert [v.version for v in registry.versions()] == [1, 2, 3]
    assert registry.current().version == 3
    events = [EventSerde(ModelLifecycleEvent, store).decode(r.value) for r in await read_topic(kafka, topic)]
    assert [(e.model_version, e.action) for e in events] == [
        (1, "trained"),
        (1, "promoted"),
        (2, "trained"),
        (2, "promoted"),
        (3, "trained"),
        (3, "promoted"),
    ]


async def test_fit_runs_in_a_worker_process_while_the_loop_keeps_running(kafka, names, tmp_path):
    schema, records = _records()
    topic = names.topic("models")
    await ensure_topics(kafka, [topic])
    buffer = TrainingBuffer(5_000)
    buffer.extend(records)
    executor = training_executor()
    try:
        async with Producer(kafka) as producer:
            scheduler = RetrainScheduler(
                config=TrainingConfig(min_records=100),
                buffer=buffer,
                registry=ModelRegistry(tmp_path, "p"),
                schema=schema,
                executor=executor,
                producer=producer,
                models_topic=topic,
                lifecycle_serde=EventSerde(ModelLifecycleEvent, InMemorySchemaStore()),
                stream="p",
            )
            ticks = 0
            workers: set[int] = set()
            assert scheduler.maybe_start()
            while scheduler.busy:  # pure yields, no timer: counts loop turns, not time
                workers |= {p.pid for p in psutil.Process().children()}
                await asyncio.sleep(0)
                ticks += 1
            await scheduler.wait_idle()
    finally:
        executor.shutdown()
    # A fit on the loop's thread would allow no turn at all while it ran; in the worker it allows thousands.
    assert ticks > 100, "the event loop was blocked while the model trained"
    assert workers, "the fit did not run in a worker process"
    assert ModelRegistry(tmp_path, "p").current().lineage.rows == 2_000


# -- issue 5: generators, progress, DP budgets, warm start, from-the-stream, hot swap ---------------


def _scheduler(config, buffer, registry, schema, executor, producer, topic, store, **extra):
    return RetrainScheduler(
        config=config,
        buffer=buffer,
        registry=registry,
        schema=schema,
        executor=executor,
        producer=producer,
        models_topic=topic,
        lifecycle_serde=EventSerde(ModelLifecycleEvent, store),
        stream="s",
        **extra,
    )


async def test_neural_fits_report_progress_on_the_models_topic_and_warm_start(kafka, names, tmp_path):
    schema, records = _records()
    topic = names.topic("models")
    await ensure_topics(kafka, [topic])
    store = InMemorySchemaStore()
    buffer = TrainingBuffer(5_000)
    buffer.extend(records[:1_500])
    registry = ModelRegistry(tmp_path, "s")
    config = TrainingConfig(
        generator="neural",
        min_records=100,
        neural={"epochs": 6, "min_steps": 0, "warm_start_epochs": 2, "batch_size": 128, "device": "cpu"},
        seed=3,
    )
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = _scheduler(
                config, buffer, registry, schema, executor, producer, topic, store, progress_interval_s=0.2
            )
            v1 = await scheduler.retrain()
            buffer.extend(records[1_500:2_000])
            v2 = await scheduler.retrain()
    assert v1 is not None and v2 is not None and (v1.version, v2.version) == (1, 2)
    assert v1.generator == v2.generator == "neural"
    assert v1.lineage.records_range == (0, 1_500) and v2.lineage.records_range == (0, 2_000)
    assert v1.lineage.warm_start_from is None and v2.lineage.warm_start_from == 1
    assert v1.lineage.config["resolved_generator"] == "neural" and v1.lineage.guarantee is None
    assert "final_loss" in v1.lineage.metrics
    events = [EventSerde(ModelLifecycleEvent, store).decode(r.value) for r in await read_topic(kafka, topic)]
    progress = [e for e in events if e.action == "training_progress" and e.model_version == 1]
    assert progress, [e.action for e in events]
    fractions = [e.progress for e in progress]
    assert all(f is not None and 0 <= f <= 1 for f in fractions) and fractions == sorted(fractions)
    assert all(e.reason and e.reason.startswith(("epoch", "encoded")) for e in progress)
    actions = [(e.model_version, e.action) for e in events if e.action != "training_progress"]
    assert actions == [(1, "trained"), (1, "promoted"), (2, "trained"), (2, "promoted")]
    # The CLI reads the same progress file: the last fit ended trained.
    from synthstream.models.training import read_progress

    last = read_progress(registry.progress_path)
    assert last is not None and last["version"] == 2 and last["status"] == "trained" and last["fraction"] == 1.0


async def test_auto_fits_both_candidates_and_keeps_the_one_that_scores_best_on_the_control_set(kafka, names, tmp_path):
    schema, records = _records()
    topic = names.topic("models")
    await ensure_topics(kafka, [topic])
    store = InMemorySchemaStore()
    buffer = TrainingBuffer(5_000, holdout_share=0.2, seed=1)
    buffer.extend(records[:1_500])
    assert buffer.holdout_size >= 100
    config = TrainingConfig(
        generator="auto", min_records=100, neural={"epochs": 3, "min_steps": 0, "device": "cpu"}, seed=3
    )
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = _scheduler(
                config, buffer, ModelRegistry(tmp_path, "s"), schema, executor, producer, topic, store
            )
            v1 = await scheduler.retrain()
    assert v1 is not None
    scores = v1.lineage.config["validation"]
    assert set(scores) == {"gaussian_copula", "neural"} and all(0.5 < v <= 1.0 for v in scores.values())
    best = max(scores, key=lambda k: scores[k])
    assert v1.generator == v1.lineage.config["resolved_generator"] == best
    assert "control records" in v1.lineage.config["choice_reason"]
    # Scored on the control set, so the score is that of the registered model on records it never saw.
    from synthstream.evaluation.accuracy import accuracy_report
    from synthstream.models.selection import VALIDATION_MAX_PAIRS, VALIDATION_ROWS

    model = ModelRegistry(tmp_path, "s").load(v1.version)
    control = buffer.holdout()
    sample = pd.DataFrame.from_records(model.sample(max(VALIDATION_ROWS, len(control)), seed=config.seed + 2))
    again = accuracy_report(
        pd.DataFrame.from_records(control), sample, schema, max_pairs=VALIDATION_MAX_PAIRS, seed=config.seed + 1
    )
    assert again.overall == pytest.approx(scores[best], abs=0.02)


async def test_a_spent_dp_budget_stops_retraining_with_a_failed_event(kafka, names, tmp_path):
    from synthstream.privacy.ledger import PrivacyLedger

    schema, records = _records()
    categorical = [f for f in schema.fields if f.role is FieldRole.CATEGORICAL]
    topic = names.topic("models")
    await ensure_topics(kafka, [topic])
    store = InMemorySchemaStore()
    buffer = TrainingBuffer(5_000)
    buffer.extend(records[:1_200])
    registry = ModelRegistry(tmp_path / "models", "s")
    ledger = PrivacyLedger(tmp_path / "privacy.duckdb")
    config = TrainingConfig(
        generator="neural",
        min_records=100,
        every_records=100,
        privacy={"required": True, "epsilon": 1.0, "delta": 1e-6},
        neural={"epochs": 1, "dp_batch_size": 400, "device": "cpu", "secure_noise": False},
        # Declared domains (free): 1,200 rows are too few for a DP threshold at 0.1 ε to keep any label.
        marginal={"labels": {f.name: sorted({str(r[f.name]) for r in records}) for f in categorical}},
    )
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = _scheduler(config, buffer, registry, schema, executor, producer, topic, store, ledger=ledger)
            v1 = await scheduler.retrain()
            assert v1 is not None and v1.lineage.guarantee is not None
            assert v1.lineage.guarantee["mechanism"] == "dpsgd"
            assert v1.lineage.guarantee["epsilon"] == pytest.approx(1.0, rel=0.02)
            buffer.extend(records[1_200:1_500])
            assert scheduler.due()
            assert await scheduler.retrain() is None  # the lifetime budget (ε = 1) was spent by v1
            assert scheduler.exhausted is not None and not scheduler.due()
            buffer.extend(records[1_500:2_000])
            assert not scheduler.maybe_start()  # no further attempts until the budget changes
    events = [EventSerde(ModelLifecycleEvent, store).decode(r.value) for r in await read_topic(kafka, topic)]
    failed = [e for e in events if e.action == "training_failed"]
    assert len(failed) == 1 and failed[0].model_version == 2 and "budget" in (failed[0].reason or "")
    assert [v.version for v in registry.versions()] == [1] and registry.current().version == 1
    assert ledger.refusal_count("s", "model") == 1


async def test_the_stream_model_trains_from_the_ledger_with_no_records(kafka, names, tmp_path):
    import pandas as pd

    from synthstream.config import StatsConfig
    from synthstream.schemas.record import FieldRole, FieldSpec, FieldType, RecordSchema
    from tests.helpers import REPO
    from tests.test_marginal_stream import released

    frame = pd.read_csv(REPO / "synthstream" / "data" / "adult_sample.csv").head(2_000)
    ledger = released(frame, tmp_path / "privacy.duckdb", windows=2)
    before = [(s.scope, s.releases, s.total) for s in ledger.summaries()]
    schema = RecordSchema(
        fields=(
            FieldSpec(name="age", type=FieldType.LONG, role=FieldRole.NUMERIC),
            FieldSpec(name="sex", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
            FieldSpec(name="income", type=FieldType.STRING, role=FieldRole.CATEGORICAL),
        )
    )
    stats = StatsConfig.model_validate(
        {"enabled": True, "numeric": {"age": {"bounds": (17, 90)}}, "categorical": {"sex": {}, "income": {}}}
    )
    topic = names.topic("models")
    await ensure_topics(kafka, [topic])
    buffer = TrainingBuffer(1_000)
    buffer.extend(frame[["age", "sex", "income"]].to_dict("records")[:300])
    config = TrainingConfig(generator="auto", min_records=100, privacy={"required": True}, marginal={"iters": 200})
    async with Producer(kafka) as producer:
        with ThreadPoolExecutor(1) as executor:
            scheduler = _scheduler(
                config,
                buffer,
                ModelRegistry(tmp_path / "models", "adult"),
                schema,
                executor,
                producer,
                topic,
                InMemorySchemaStore(),
                ledger=ledger,
                stats=stats,
            )
            scheduler.stream = "adult"
            version = await scheduler.retrain()
    assert version is not None and version.generator == "aim_stream"
    assert version.lineage.rows == 0 and version.lineage.records_range is None  # it never saw a record
    assert version.lineage.windows == (0, 1)
    assert version.lineage.guarantee is not None and version.lineage.guarantee["extra_cost"] == 0.0
    assert [(s.scope, s.releases, s.total) for s in ledger.summaries()] == before


async def test_hot_swap_under_load_loses_no_records(kafka, names, tmp_path):
    from synthstream.config import PublisherConfig
    from synthstream.models.copula import GaussianCopulaGenerator
    from synthstream.models.registry import Lineage
    from synthstream.schemas.serde import JsonRecordSerde
    from synthstream.streams.publisher import HEADER_MODEL_VERSION, SyntheticPublisher

    schema, records = _records()
    registry = ModelRegistry(tmp_path, "s")

    def register(seed: int) -> int:
        model = GaussianCopulaGenerator(seed=seed).fit(records[:1_000], schema)
        lineage = Lineage(rows=1_000, schema_fingerprint=schema.fingerprint(), seed=seed, fit_seconds=0.0)
        return registry.register(model, lineage=lineage).version

    registry.promote(register(1))
    topic = names.topic("synthetic")
    await ensure_topics(kafka, [topic])
    serde = JsonRecordSerde(schema)
    total = 12_000
    async with Producer(kafka) as producer:
        publisher = SyntheticPublisher(
            registry=registry,
            producer=producer,
            topic=topic,
            encode_many=lambda rows: [serde.encode(r) for r in rows],
            config=PublisherConfig(rate=0, batch_size=500, format="json", max_records=total),
            stream="s",
        )
        task = asyncio.create_task(publisher.run(asyncio.Event()))
        while publisher.published < 3_000:  # noqa: ASYNC110 - the publisher has no event for its count
            await asyncio.sleep(0.005)
        registry.promote(register(2))  # promoted while the feed runs flat out
        await task
    assert publisher.versions_used == [1, 2]
    published = await read_topic(kafka, topic)
    assert len(published) == total
    keys = [r.key.decode() for r in published]
    assert len(set(keys)) == total
    by_version: dict[bytes, list[int]] = {}
    for r in published:
        by_version.setdefault(dict(r.headers)[HEADER_MODEL_VERSION], []).append(int(r.key.decode().rsplit(":", 1)[1]))
    assert set(by_version) == {b"1", b"2"}
    for seqs in by_version.values():
        assert sorted(seqs) == list(range(len(seqs)))  # every sequence number of each version, no gap
