"""The publisher and `meter publish|tail|topup` against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer

from groundwork.settings import Settings
from schemas.codec import decode_event
from schemas.events import TokensEvent
from schemas.publisher import Publisher, PublishError
from schemas.validation import InvalidEvent

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]


def read_all(settings: Settings, base: str, expect: int) -> list[tuple[int, bytes | None, bytes]]:
    """(partition, key, value) of the first `expect` records of a topic."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"test-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([settings.topic(base)])
    found: list[tuple[int, bytes | None, bytes]] = []
    try:
        for _ in range(120):
            if len(found) >= expect:
                break
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                partition, value = msg.partition(), msg.value()
                assert partition is not None and value is not None
                found.append((partition, msg.key(), value))
    finally:
        consumer.close()
    return found


def test_published_events_arrive_validated_keyed_by_workspace_with_generated_ids(
    meter_settings: Settings,
) -> None:
    with Publisher(meter_settings) as pub:
        sent = [pub.tokens(f"ws{i}", member_id="alice", provider="openai", model="gpt-4o",
                           input_tokens=i, output_tokens=1, surface="chat") for i in range(20)]
        pub.command("ws3", member_id="alice", machine_id="m1", command="ls",
                    event_id="c1", occurred_at="2025-05-05T05:05:05Z")
        with pytest.raises(InvalidEvent):
            pub.tokens("ws1", member_id="alice", provider="openai", model="gpt-4o",
                       input_tokens=-1, output_tokens=1, surface="chat")
    assert all(isinstance(e, TokensEvent) and len(e.event_id) == 36 for e in sent)
    assert len({e.event_id for e in sent}) == 20
    records = read_all(meter_settings, "usage.tokens", 20)
    assert sorted(decode_event(value) for _, _, value in records) == sorted(sent)
    partition_of = {key: partition for partition, key, _ in records}
    assert all(key == decode_event(value).workspace_id.encode() for _, key, value in records)
    # co-partitioning: the same workspace lands on the same partition number in every topic
    (command,) = read_all(meter_settings, "usage.commands", 1)
    assert command[0] == partition_of[b"ws3"]


def test_delivery_failures_surface_at_flush(meter_settings: Settings) -> None:
    missing = meter_settings.model_copy(update={"topic_prefix": f"absent{uuid.uuid4().hex}."})
    pub = Publisher(missing, config={"message.timeout.ms": 1500})
    pub.api("ws1", protocol="rest")
    with pytest.raises(PublishError) as info:
        pub.close(timeout_s=20)
    assert info.value.errors and "absent" in info.value.errors[0][0]


def meter(settings: Settings, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "METER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "METER_TOPIC_PREFIX": settings.topic_prefix}
    return subprocess.run([str(Path(sys.executable).with_name("meter")), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_meter_publish_rejects_bad_lines_with_numbers_and_tail_shows_the_rest(
    meter_settings: Settings, acceptance_dir: Path, tmp_path: Path
) -> None:
    case = acceptance_dir / "invalid_events"
    result = meter(meter_settings, "publish", str(case / "events.jsonl"), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    rejects = [json.loads(line) for line in
               (tmp_path / "events.jsonl.rejects.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in
                (case / "expected_deadletter.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (e["line"], e["reason"]) for e in expected]
    assert all(r["detail"] and r["raw"] for r in rejects)

    tail = meter(meter_settings, "tail", "usage.commands", "--from-beginning", "--max", "1",
                 cwd=tmp_path)
    assert tail.returncode == 0, tail.stderr
    assert orjson.loads(tail.stdout.splitlines()[0])["event_id"] == "e1"


def test_operator_commands_validate_and_redact(meter_settings: Settings, tmp_path: Path) -> None:
    bad = meter(meter_settings, "topup", "ws1", "api_requests_per_minute", "10", cwd=tmp_path)
    assert bad.returncode == 2 and "api_requests_per_minute" in bad.stderr
    ok = meter(meter_settings, "settings", "ws1", "--email", "--webhook-url",
               "https://hooks.example/x?token=abc", "--generate-secret", "--mute", "ai_tokens:80",
               "--forecast", "ai_tokens", "--forecast", "schedule_runs:5", "--mute-forecast",
               "schedule_runs", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    shown, secret = ok.stdout.splitlines()
    assert secret.startswith("whsec_") and secret not in shown
    tail = meter(meter_settings, "tail", "alerting.settings", "--from-beginning", "--max", "1",
                 cwd=tmp_path)
    record = orjson.loads(tail.stdout)
    assert record["webhook_secret"] == "<redacted>"
    assert record["webhook_url"] == "https://hooks.example/x"
    assert secret not in tail.stdout
    assert record["forecasts"] == [{"quota": "ai_tokens", "lead_days": None},
                                   {"quota": "schedule_runs", "lead_days": 5}]
    assert record["muted_forecasts"] == ["schedule_runs"]
    wrong = meter(meter_settings, "settings", "ws1", "--forecast", "storage_bytes",
                  cwd=tmp_path)
    assert wrong.returncode != 0 and "storage_bytes" in wrong.stderr
