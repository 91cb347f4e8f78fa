"""The local broker of deploy/: it starts, answers, holds every topic, and fails clearly."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

# confluent_kafka.admin imports ConfigResource from its _config module without re-exporting
# it (no __all__, no `as`), so strict mypy sees no public name; it is the documented import.
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from deploy import kafka_local
from deploy.topics import create_topics, topic_specs
from groundwork.partitioning import partition_for
from groundwork.settings import Settings, load_settings

pytestmark = pytest.mark.kafka


def test_broker_answers_metadata_requests(kafka_bootstrap: str) -> None:
    assert kafka_local.metadata_ok(kafka_bootstrap, timeout_s=10)


def test_every_topic_exists_with_its_partitions_and_cleanup_policy(
    meter_settings: Settings,
) -> None:
    admin = AdminClient({"bootstrap.servers": meter_settings.kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    specs = topic_specs(meter_settings)
    # 16 of DESIGN.md, the worker's two changelogs, the dead-letter replay log
    assert len(specs) == 19
    resources = [ConfigResource("topic", meter_settings.topic(s.name)) for s in specs]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    for spec in specs:
        name = meter_settings.topic(spec.name)
        assert len(topics[name].partitions) == spec.partitions, name
        assert configs[name]["cleanup.policy"].value == spec.cleanup_policy, name
    compacted = {s.name for s in specs if s.cleanup_policy == "compact"}
    assert compacted == {"quota.plans", "alerting.settings", "quota.state",
                         "worker.workspaces.changelog", "worker.ids.changelog"}


def test_topic_creation_is_idempotent(meter_settings: Settings) -> None:
    assert create_topics(meter_settings) == []


def test_co_partitioned_topics_share_one_partition_count(meter_settings: Settings) -> None:
    keyed = [s for s in topic_specs(meter_settings)
             if s.name.startswith(("usage.", "quota."))]
    assert {s.partitions for s in keyed} == {meter_settings.kafka_partitions}


def test_produce_consume_round_trip_keeps_key_and_partition(meter_settings: Settings) -> None:
    topic = meter_settings.topic("usage.commands")
    producer = Producer({"bootstrap.servers": meter_settings.kafka_bootstrap,
                         "partitioner": "murmur2_random", "enable.idempotence": True})
    sent = {f"ws-{i}".encode(): f"value-{i}".encode() for i in range(20)}
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": meter_settings.kafka_bootstrap,
                         "group.id": f"rt-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: dict[bytes, tuple[bytes, int]] = {}
    for _ in range(200):
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            # every record sent above has a key and a value; a consumed record has a partition
            got_key, got_value, got_partition = msg.key(), msg.value(), msg.partition()
            assert got_key is not None and got_value is not None and got_partition is not None
            got[got_key] = (got_value, got_partition)
        if len(got) == len(sent):
            break
    consumer.close()
    assert {k: v for k, (v, _) in got.items()} == sent
    # The same key always lands on the same partition (murmur2, like Java).
    for key, (_, partition) in got.items():
        assert partition == partition_for(key, meter_settings.kafka_partitions)


def _busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_start_fails_clearly_when_the_port_is_taken(tmp_path: Path) -> None:
    with _busy_port() as sock:
        port = sock.getsockname()[1]
        settings = load_settings(data_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{port}")
        with pytest.raises(kafka_local.KafkaStartError, match=f"port {port}.*already in use"):
            kafka_local.start(settings)
    assert kafka_local.read_pid(kafka_local.kafka_paths(settings)) is None


def test_start_fails_clearly_without_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no java (nor anything else) on PATH
    settings = load_settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(kafka_local.KafkaStartError, match="Java is not installed"):
        kafka_local.start(settings)


def test_start_fails_clearly_when_jars_cannot_be_resolved(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, cache_dir=tmp_path / "cache",
                             kafka_version="0.0.0-does-not-exist",
                             kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(kafka_local.KafkaStartError, match="could not resolve Kafka"):
        kafka_local.ensure_jars(settings)
    assert not (tmp_path / "cache" / "kafka" / "0.0.0-does-not-exist" / "libs").exists()


def test_a_broker_that_exits_during_start_up_names_the_cause_and_its_log(
        tmp_path: Path) -> None:
    from groundwork.ports import free_port_pair

    # A heap no machine here can reserve: the JVM exits at once, after the storage format.
    settings = load_settings(data_dir=tmp_path, kafka_heap="100000g",
                             kafka_bootstrap=f"127.0.0.1:{free_port_pair()}")
    with pytest.raises(kafka_local.KafkaStartError) as caught:
        kafka_local.start(settings, timeout_s=60)
    message = str(caught.value)
    assert "the broker exited during start-up" in message
    assert str(kafka_local.kafka_paths(settings).console_log) in message  # which log
    assert "heap" in message.lower()  # the cause, from the log's tail
    assert kafka_local.read_pid(kafka_local.kafka_paths(settings)) is None
