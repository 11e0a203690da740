"""Issue 17 item 3: after a rejection the scheduler retries, and a stream that publishes nothing says so.

Every version is rejected here (quality floors no model reaches): v1 (the automatic choice)
is retried at once with the runner-up generator on the same data, then with more data; after
``stalled_after_fits`` unpublished fits the stream is reported stalled in a ``stalled``
lifecycle event, the status line and ``/health``, and the run's last log line says that
nothing was published and why.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import structlog

from synthstream.schemas.events import EventSerde, ModelLifecycleEvent
from synthstream.settings import KafkaSettings
from synthstream.streams.metrics import MetricsServer
from synthstream.streams.pipeline import Pipeline
from synthstream.streams.status import closing_words
from tests.helpers import http_get, pipeline_config, read_topic
from tests.test_audit_small_table import SMALL_TABLE_AUDIT, _replay, _schema, _table, _wait_for


async def _stalled_then_stop(pipeline: Pipeline, run: asyncio.Task, stop: asyncio.Event) -> None:
    """Wait until the stream is reported stalled, check the status line and /health, then stop the run."""
    try:
        await _wait_for(
            lambda: pipeline.scheduler is not None and pipeline.scheduler.stream_stalled is not None,
            180,
            "the stream to be reported stalled",
        )
        assert pipeline.status().activity.startswith("stalled: no version published for 2 fit(s)")
        [server] = [o for o in pipeline.observers if isinstance(o, MetricsServer)]
        _, body = await http_get(server.port, "/health")
        health = orjson.loads(body)
        assert health["training_stalled"] is True and health["unpublished_fits"] == 2
        assert "no version published" in health["stalled_reason"]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.shield(run), timeout=120)


async def test_a_rejection_is_retried_and_a_stalled_stream_says_so(kafka: KafkaSettings, names, tmp_path: Path) -> None:
    sample, frame = _table(tmp_path, rows=1_500)
    config = pipeline_config(
        names.prefix,
        tmp_path,
        sample,
        # No model can reach these floors: every version is rejected.
        audit={
            **SMALL_TABLE_AUDIT,
            "synthetic_rows": 500,
            "n_attacks": 100,
            "min_column_shapes": 0.999,
            "min_pair_trends": 0.999,
        },
        training={
            "generator": "auto",
            "every_records": 100_000,
            "every_seconds": None,
            "stalled_after_fits": 2,
            "neural": {"epochs": 2, "min_steps": 0, "device": "cpu"},
        },
        publisher={"max_records": 500},
        metrics={"enabled": True, "port": 0},
    )
    store = await _replay(kafka, config, sample, frame)
    pipeline = Pipeline(config, kafka, _schema(sample), store=store)
    stop = asyncio.Event()  # what SIGTERM sets in `synthstream run`
    with structlog.testing.capture_logs() as logs:
        run = asyncio.create_task(pipeline.run(stop=stop))
        await _stalled_then_stop(pipeline, run, stop)
    summary = run.result()
    assert summary.synthetic_published == 0
    # The run's last log line says nothing was published, and why.
    assert logs[-1]["event"] == "pipeline.stopped" and logs[-1]["log_level"] == "warning"
    assert logs[-1]["message"].startswith("stopped: nothing was published: 2 version(s) trained and all rejected")
    # Each rejection's warning says what comes next (the info-level training.retry lines carry the same).
    rejections = [entry["retry"] for entry in logs if entry["event"] == "training.rejected"]
    events = [
        EventSerde(ModelLifecycleEvent, store).decode(r.value) for r in await read_topic(kafka, config.topics.models)
    ]
    story = [(e.model_version, e.action, e.generator) for e in events if e.action != "training_progress"]
    # v1 is what the validation chose (copula or neural, by accuracy on the control set); it is rejected
    # and retried at once with the other one, the runner-up, on the same data.
    [first] = [g for v, action, g in story if (v, action) == (1, "rejected")]
    runner_up = {"gaussian_copula": "neural", "neural": "gaussian_copula"}[first]
    assert rejections[0] == f"now with the runner-up generator {runner_up}" and rejections[1].startswith("after ")
    assert (1, "retry", runner_up) in story and (2, "rejected", runner_up) in story
    # v2 is the model v1's validation already fitted on the same records: published as is, not fitted again.
    v1, v2 = (v.lineage for v in pipeline.registry.versions()[:2])
    assert set(v1.config["validation"]) == {"gaussian_copula", "neural"}
    assert v2.config["fitted_in_validation_of"] == 1 and v1.config["fitted_in_validation_of"] is None
    assert v2.records_range == v1.records_range and v2.rows == v1.rows and v2.seed == v1.seed
    # The runner-up was rejected too: the next retry waits for more data, with the primary choice.
    [second_retry] = [e for e in events if e.action == "retry" and e.model_version == 2]
    assert second_retry.generator == first and "more data" in (second_retry.reason or "")
    [stalled] = [e for e in events if e.action == "stalled"]
    assert "no version published for 2 fit(s)" in (stalled.reason or "")
    level, message = closing_words(pipeline)
    assert level == "warning" and message.startswith("stopped: nothing was published: 2 version(s) trained")
