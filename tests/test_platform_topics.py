"""Topic layout: outputs follow the source's partition count, configs apply, mismatches are reported once."""

from __future__ import annotations

from structlog.testing import capture_logs

from synthstream.connectors.topics import (
    TopicSpec,
    describe_topics,
    ensure_pipeline_topics,
    ensure_topic_layout,
    pipeline_topic_specs,
)
from synthstream.demo import sample_path
from tests.helpers import pipeline_config


def test_specs_compact_the_schemas_topic_and_apply_overrides():
    specs = {
        s.name: s
        for s in pipeline_topic_specs(
            ["a.synthetic", "a.schemas"],
            partitions=4,
            replication_factor=3,
            retention_ms=86_400_000,
            compacted=["a.schemas"],
            overrides={"a.synthetic": {"max.message.bytes": "2097152"}},
            single_partition=["a.schemas"],
        )
    }
    assert specs["a.schemas"] == TopicSpec("a.schemas", 1, 3, {"cleanup.policy": "compact"})
    assert specs["a.synthetic"].partitions == 4
    assert specs["a.synthetic"].configs == {"retention.ms": "86400000", "max.message.bytes": "2097152"}


async def test_outputs_follow_the_source_and_existing_topics_are_kept(kafka, names, tmp_path):
    config = pipeline_config(names.prefix, tmp_path, sample_path(), topic_layout={"retention_ms": 3_600_000})
    await ensure_topic_layout(kafka, [TopicSpec(config.source.topic, partitions=4)])
    # An operator made the dead-letter topic already, with 2 partitions: it is used as it is.
    await ensure_topic_layout(kafka, [TopicSpec(config.topics.deadletter, partitions=2)])
    wanted = [config.synthetic_topic, config.topics.schemas, config.topics.deadletter]
    with capture_logs() as logs:
        await ensure_pipeline_topics(kafka, config, wanted)
        await ensure_pipeline_topics(kafka, config, wanted)  # a second check (e.g. after an outage)
    layout = await describe_topics(kafka, wanted)
    assert layout[config.synthetic_topic].partitions == 4
    assert layout[config.topics.schemas].partitions == 1
    assert layout[config.topics.deadletter].partitions == 2
    warnings = [e for e in logs if e["event"] == "topic.layout_mismatch"]
    assert [w["topic"] for w in warnings] == [config.topics.deadletter]  # once, not twice
    assert "partitions 2 (asked 4)" in warnings[0]["differences"]
