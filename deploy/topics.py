"""The topic definitions of ``deploy/topics.toml`` and their idempotent creation."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from groundwork.errors import UserError
from groundwork.kafka import admin_config, existing_topics
from groundwork.settings import Settings

TOPICS_FILE = Path(__file__).resolve().parent / "topics.toml"


@dataclass(frozen=True)
class TopicSpec:
    name: str  # the DESIGN.md name, without the settings' topic_prefix
    partitions: int
    replication: int
    cleanup_policy: str
    retention_ms: int

    @property
    def config(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


def topic_specs(settings: Settings, path: Path = TOPICS_FILE) -> list[TopicSpec]:
    """Every topic, with the co-partitioned count and replication taken from settings."""
    data = tomllib.loads(path.read_text())
    specs = []
    for name, spec in data["topics"].items():
        partitions = spec["partitions"]
        specs.append(TopicSpec(
            name=name,
            partitions=settings.kafka_partitions if partitions == "workspace" else int(partitions),
            replication=settings.kafka_replication,
            cleanup_policy=spec["cleanup_policy"],
            retention_ms=int(spec["retention_ms"]),
        ))
    return specs


def create_topics(
    settings: Settings, progress: Callable[[str], None] = lambda _: None, timeout_s: float = 30.0
) -> list[str]:
    """Create every missing topic (under ``topic_prefix``); return the names it created.

    Existing topics are left alone, but one whose partition count differs from the
    definition is an error: co-partitioning (and so per-workspace order) depends on it.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    existing = existing_topics(settings, timeout_s)
    admin = AdminClient(admin_config(settings.kafka_bootstrap))
    specs = topic_specs(settings)
    for spec in specs:
        real = settings.topic(spec.name)
        if real in existing and len(existing[real].partitions) != spec.partitions:
            raise UserError(
                f"topic {real} has {len(existing[real].partitions)} partitions, the definition "
                f"says {spec.partitions}; co-partitioned topics must agree. Recreate it or set "
                "METER_KAFKA_PARTITIONS to match."
            )
    missing = [
        NewTopic(settings.topic(s.name), num_partitions=s.partitions,
                 replication_factor=s.replication, config=s.config)
        for s in specs if settings.topic(s.name) not in existing
    ]
    if not missing:
        progress("every topic exists")
        return []
    created = []
    for topic, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent creator won
                raise UserError(f"could not create topic {topic}: {exc.args[0].str()}") from None
        else:
            created.append(topic)
            progress(f"created {topic}")
    _wait_for_leaders(settings, created, timeout_s)
    return created


def _wait_for_leaders(settings: Settings, topics: list[str], timeout_s: float) -> None:
    """A created topic is usable once every partition has a leader (right after the
    admin call, describe and produce calls can still answer "unknown partition")."""
    import time

    deadline = time.monotonic() + timeout_s
    while topics and time.monotonic() < deadline:
        existing = existing_topics(settings, timeout_s)
        if all(t in existing and existing[t].partitions
               and all(p.leader >= 0 for p in existing[t].partitions.values())
               for t in topics):
            return
        time.sleep(0.1)


def delete_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Delete every topic under ``settings.topic_prefix`` (which must not be empty: the
    shared names are never deleted this way); return the names deleted.

    For throwaway prefixes (the tests make one per test): a long-lived broker otherwise
    gathers their partitions until it runs out of file descriptors."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    if not settings.topic_prefix:
        raise UserError("delete_topics deletes a topic prefix's topics; this prefix is empty")
    names = [t for t in existing_topics(settings, timeout_s) if t.startswith(settings.topic_prefix)]
    if not names:
        return []
    admin = AdminClient(admin_config(settings.kafka_bootstrap))
    deleted = []
    for topic, future in admin.delete_topics(names, operation_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":  # deleted meanwhile
                raise UserError(f"could not delete topic {topic}: {exc.args[0].str()}") from None
        else:
            deleted.append(topic)
    return deleted
