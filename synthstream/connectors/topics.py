"""Topic layout: partitions, replication and configs of the topics synthstream writes.

Missing topics are created with their :class:`TopicSpec`; existing topics are used as they
are (synthstream never alters a topic an operator made) and a mismatch between what exists
and what was asked for is reported once per process and topic, as a warning.

Defaults (see :func:`pipeline_topic_specs`): output topics get the source topic's partition
count, so per-partition order and parallelism carry over; the schemas topic is compacted
(its key is the schema id, so compaction keeps exactly one copy per schema).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from synthstream.connectors.kafka import connect
from synthstream.log import get_logger
from synthstream.settings import KafkaSettings

_log = get_logger("topics")

# Per-process memory of the mismatches already reported, so a worker that re-checks its
# topics (after a broker outage) does not repeat the warning. Guarded: workers run threads.
_reported: set[tuple[str, str]] = set()
_reported_lock = threading.Lock()


@dataclass(frozen=True)
class TopicSpec:
    """How a topic should look when synthstream creates it."""

    name: str
    partitions: int = 1
    replication_factor: int = 1
    configs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a topic needs a non-empty name")
        if self.partitions < 1:
            raise ValueError(f"topic {self.name}: partitions must be >= 1, not {self.partitions}")
        if self.replication_factor < 1:
            raise ValueError(f"topic {self.name}: replication_factor must be >= 1, not {self.replication_factor}")


@dataclass(frozen=True)
class TopicState:
    """What a topic looks like on the cluster."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


def layout_mismatches(spec: TopicSpec, state: TopicState) -> list[str]:
    """How an existing topic differs from ``spec`` (configs only where the cluster reported them)."""
    out: list[str] = []
    if state.partitions != spec.partitions:
        out.append(f"partitions {state.partitions} (asked {spec.partitions})")
    if state.replication_factor != spec.replication_factor:
        out.append(f"replication factor {state.replication_factor} (asked {spec.replication_factor})")
    for key, wanted in sorted(spec.configs.items()):
        have = state.configs.get(key)
        if have is not None and have != wanted:
            out.append(f"{key}={have} (asked {wanted})")
    return out


def _report_once(name: str, problems: Sequence[str]) -> bool:
    text = "; ".join(problems)
    with _reported_lock:
        if (name, text) in _reported:
            return False
        _reported.add((name, text))
    _log.warning("topic.layout_mismatch", topic=name, differences=text, action="using the topic as it is")
    return True


async def describe_topics(settings: KafkaSettings, names: Iterable[str]) -> dict[str, TopicState]:
    """The layout of each named topic that exists (configs where the broker answers DescribeConfigs)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    admin = AIOKafkaAdminClient(**settings.admin_kwargs())
    await connect(settings, admin.start)
    try:
        return await _describe(admin, wanted)
    finally:
        await admin.close()


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, TopicState]:
    existing = set(await admin.list_topics())
    present = [n for n in names if n in existing]
    if not present:
        return {}
    out: dict[str, TopicState] = {}
    for desc in await admin.describe_topics(present):
        if desc.get("error_code", 0) != 0:
            continue
        parts = desc.get("partitions") or []
        replicas = max((len(p.get("replicas") or []) for p in parts), default=1)
        out[desc["topic"]] = TopicState(desc["topic"], len(parts), max(replicas, 1))
    configs = await _configs(admin, list(out))
    return {n: TopicState(s.name, s.partitions, s.replication_factor, configs.get(n, {})) for n, s in out.items()}


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    out: dict[str, dict[str, str]] = {}
    # Some brokers (the embedded one) do not answer DescribeConfigs: configs are then not compared.
    with contextlib.suppress(Exception):
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        for response in await admin.describe_configs(resources):
            for _code, _msg, _type, name, entries in response.resources:
                out[name] = {e[0]: e[1] for e in entries if e[1] is not None}
    return out


async def ensure_topic_layout(settings: KafkaSettings, specs: Iterable[TopicSpec]) -> dict[str, TopicState]:
    """Create missing topics as specified; report (once) existing ones that differ; their layouts.

    Creating is idempotent across workers (another worker creating a topic first is fine).
    """
    by_name = {s.name: s for s in specs}
    if not by_name:
        return {}
    admin = AIOKafkaAdminClient(**settings.admin_kwargs())
    await connect(settings, admin.start)
    try:
        existing = set(await admin.list_topics())
        missing = [s for n, s in sorted(by_name.items()) if n not in existing]
        if missing:
            new = [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    topic_configs=dict(s.configs),
                )
                for s in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
        present = [n for n in sorted(by_name) if n in existing]
        states = await _describe(admin, present) if present else {}
    finally:
        await admin.close()
    for name, state in states.items():
        problems = layout_mismatches(by_name[name], state)
        if problems:
            _report_once(name, problems)
    return states


async def partition_count(settings: KafkaSettings, topic: str) -> int | None:
    """How many partitions ``topic`` has (None when it does not exist)."""
    states = await describe_topics(settings, [topic])
    state = states.get(topic)
    return None if state is None else state.partitions


def pipeline_topic_specs(
    topics: Iterable[str],
    *,
    partitions: int,
    replication_factor: int = 1,
    retention_ms: int | None = None,
    compacted: Iterable[str] = (),
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    single_partition: Iterable[str] = (),
) -> list[TopicSpec]:
    """Specs for a pipeline's topics: shared defaults, compaction where asked, per-topic overrides.

    ``compacted`` topics get ``cleanup.policy=compact`` (and no retention); ``single_partition``
    ones keep one partition whatever the default (a log whose order is global, e.g. schemas).
    """
    compact = set(compacted)
    single = set(single_partition)
    out: list[TopicSpec] = []
    for name in sorted(set(topics)):
        configs: dict[str, Any] = {}
        if name in compact:
            configs["cleanup.policy"] = "compact"
        elif retention_ms is not None:
            configs["retention.ms"] = str(retention_ms)
        configs.update((overrides or {}).get(name, {}))
        out.append(
            TopicSpec(
                name,
                partitions=1 if name in single else partitions,
                replication_factor=replication_factor,
                configs={k: str(v) for k, v in configs.items()},
            )
        )
    return out


async def ensure_pipeline_topics(settings: KafkaSettings, config: Any, topics: Iterable[str]) -> dict[str, TopicState]:
    """Create a pipeline's topics per its ``topic_layout`` (partitions default to the source's).

    ``config`` is a :class:`~synthstream.config.PipelineConfig`. ``topic_layout.compacted`` and
    ``topic_layout.configs`` name topics by their key in ``topics`` (``schemas``, ``models``, ...)
    or by topic name. The schemas topic keeps one partition (its order is its meaning).
    """
    layout = getattr(config, "topic_layout", None)
    partitions = getattr(layout, "partitions", None)
    if partitions is None:
        partitions = await partition_count(settings, config.source.topic) or 1

    def name_of(ref: str) -> str:
        value = getattr(config.topics, ref, None) if ref.isidentifier() else None
        return value if isinstance(value, str) and value else ref

    compacted = [name_of(r) for r in getattr(layout, "compacted", ["schemas"])]
    overrides = {name_of(r): dict(c) for r, c in (getattr(layout, "configs", None) or {}).items()}
    specs = pipeline_topic_specs(
        topics,
        partitions=partitions,
        replication_factor=getattr(layout, "replication_factor", 1),
        retention_ms=getattr(layout, "retention_ms", None),
        compacted=compacted,
        overrides=overrides,
        single_partition=[config.topics.schemas],
    )
    return await ensure_topic_layout(settings, specs)
