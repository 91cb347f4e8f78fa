"""Running real workers and reading real topics, for the streams integration tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from groundwork.kafka import committed_offsets, end_offsets
from groundwork.ports import free_port
from groundwork.settings import Settings
from schemas.aggregates import values_of
from schemas.codec import encode_event, topic_of
from schemas.jsonl import parse_line
from schemas.reading import read_all
from schemas.validation import InvalidEvent
from streams.worker import INPUT_TOPICS
from tests.waiting import wait_until


def worker_env(settings: Settings, web_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "METER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "METER_TOPIC_PREFIX": settings.topic_prefix,
        "METER_KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "METER_DATA_DIR": str(settings.data_dir),
        "METER_WORKER_WEB_PORT": str(web_port),
        "METER_WORKER_BATCH_MAX": str(settings.worker_batch_max),
    })
    return env


@contextlib.contextmanager
def running_worker(settings: Settings, log: Path, data_dir: Path | None = None,
                   web_port: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A `meter worker` subprocess; stopped with SIGTERM (or already killed) on exit."""
    env = worker_env(settings, web_port or free_port())
    if data_dir is not None:
        env["METER_DATA_DIR"] = str(data_dir)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "meter.cli_entry", "worker"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def publish_lines(settings: Settings, lines: Iterable[bytes]) -> int:
    """Publish the valid lines as Avro on their topics; raw garbage goes where asked.

    Returns how many records were produced.
    """
    # lz4 like the platform publisher (schemas.publisher): the worker must read it.
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random", "enable.idempotence": True,
                         "linger.ms": 5, "compression.type": "lz4"})
    n = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            event = parse_line(line, now_ms=None)
        except InvalidEvent:
            continue
        producer.produce(settings.topic(topic_of(event)), key=event.workspace_id.encode(),
                         value=encode_event(event))
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return n


def produce_raw(settings: Settings, base_topic: str, key: bytes, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                         "partitioner": "murmur2_random"})
    producer.produce(settings.topic(base_topic), key=key, value=value)
    assert producer.flush(10) == 0


def committed(settings: Settings, group: str, keys: Iterable[tuple[str, int]]
              ) -> dict[tuple[str, int], int]:
    """The group's committed offsets, -1 where it has none."""
    found = committed_offsets(settings, group, keys)
    return {k: -1 if offset is None else offset for k, offset in found.items()}


def wait_caught_up(settings: Settings, timeout_s: float = 180.0,
                   proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until the worker group's committed offsets reach the end of every input topic."""
    group = settings.topic_prefix + settings.worker_id
    ends = end_offsets(settings, INPUT_TOPICS)
    deadline = time.monotonic() + timeout_s
    done: dict[tuple[str, int], int] = {}

    def caught_up() -> bool:
        nonlocal done
        done = committed(settings, group, ends)
        return all(done.get(k, -1) >= end for k, end in ends.items() if end > 0)

    wait_until(caught_up, lambda: f"the worker to catch up: {done} vs {ends}", timeout_s,
               proc=proc, poll_s=0.5)
    wait_snapshots_settled(settings, deadline)


def wait_snapshots_settled(settings: Settings, deadline: float, quiet_s: float = 3.0) -> None:
    """Aggregates and quota state go out on a 1 s timer: wait until they stop growing."""
    outputs = ("usage.aggregates", "quota.state")
    last = end_offsets(settings, outputs)
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = end_offsets(settings, outputs)
        # Heartbeats (quota.state, every 5 s) never stop: count aggregates only.
        if {k: v for k, v in now.items() if "aggregates" in k[0]} != {
                k: v for k, v in last.items() if "aggregates" in k[0]}:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet_s:
            return
    raise AssertionError("the worker's snapshots did not settle")


def read_topic(settings: Settings, base_topic: str, timeout_s: float = 10.0
               ) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every record of a topic from the beginning, decoded: [(key, record)]."""
    return read_all(settings, base_topic, timeout_s)


def latest_aggregates(records: Iterable[dict[str, Any]]) -> dict[tuple[Any, ...], int | None]:
    """(workspace, cycle_start, dimension, key, metric) -> value of the highest version,
    over ``usage.aggregates`` records (each a cycle's changed values)."""
    best: dict[tuple[Any, ...], tuple[int, int | None]] = {}
    for r in records:
        for dimension, key, metric, value in values_of(r):
            k = (r["workspace_id"], r["cycle_start"], dimension, key, metric)
            if k not in best or best[k][0] <= r["version"]:
                best[k] = (r["version"], value)
    return {k: v for k, (_, v) in best.items()}


def parse_utc(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def satisfied_thresholds(usage: dict[str, Any]) -> list[tuple[str, int, str, int, str]]:
    """(workspace, cycle start, quota, threshold, the start as usage.json writes it) of every
    threshold a cycle's final usage and final limit satisfy: S1 says each fired in it."""
    out: list[tuple[str, int, str, int, str]] = []
    for ws, body in usage["workspaces"].items():
        for start_text, cycle in body["cycles"].items():
            start = parse_utc(start_text)
            for quota, limit in cycle["limits"].items():
                if limit is None or quota == "api_requests_per_minute":
                    continue
                used = cycle["totals"][quota]
                out += [(ws, start, quota, t, start_text) for t in (80, 95, 100)
                        if used * 100 >= t * limit]
    return out


def flatten_usage(usage: dict[str, Any]) -> dict[tuple[Any, ...], int | None]:
    """usage.json -> the same keys as ``latest_aggregates`` (zero-only entries kept)."""
    flat: dict[tuple[Any, ...], int | None] = {}
    sections = (("machines", "machine"), ("members", "member"), ("skills", "skill"))
    for ws, body in usage["workspaces"].items():
        for start_text, cycle in body["cycles"].items():
            start = parse_utc(start_text)
            for metric, value in cycle["totals"].items():
                flat[(ws, start, "totals", "", metric)] = value
            for quota, limit in cycle["limits"].items():
                flat[(ws, start, "limits", "", quota)] = limit
            for section, dim in sections:
                for key, metrics in cycle[section].items():
                    for metric, value in metrics.items():
                        flat[(ws, start, dim, key, metric)] = value
            for provider, p in cycle["providers"].items():
                for metric in ("input_tokens", "output_tokens"):
                    flat[(ws, start, "provider", provider, metric)] = p[metric]
                for model, m in p["models"].items():
                    for metric in ("input_tokens", "output_tokens"):
                        flat[(ws, start, "model", f"{provider}/{model}", metric)] = m[metric]
            _flatten_cost(flat, ws, start, cycle["cost"])
    return flat


def _flatten_cost(flat: dict[tuple[Any, ...], int | None], ws: str, start: int,
                  cost: dict[str, Any]) -> None:
    """usage.json's ``cost`` object -> the cost metrics of ``usage.aggregates``."""
    flat[(ws, start, "totals", "", "cost_micros")] = cost["total"]
    flat[(ws, start, "totals", "", "unpriced_tokens")] = cost["unpriced_tokens"]
    for section, dim in (("members", "member"), ("machines", "machine"), ("skills", "skill")):
        for key, micros in cost[section].items():
            flat[(ws, start, dim, key, "cost_micros")] = micros
    providers: dict[tuple[Any, ...], int] = {}
    for key, m in cost["models"].items():
        provider = key.partition("/")[0]
        for metric, field in (("cache_read_tokens", "cache_read_tokens"),
                              ("cache_write_tokens", "cache_write_tokens"),
                              ("cost_micros", "cost"), ("unpriced_tokens", "unpriced_tokens")):
            flat[(ws, start, "model", key, metric)] = m[field]
            at = (ws, start, "provider", provider, metric)
            providers[at] = providers.get(at, 0) + m[field]
    flat.update(providers)


def differences(stream: dict[tuple[Any, ...], int | None],
                replay: dict[tuple[Any, ...], int | None]) -> list[str]:
    """Every key whose value differs; a missing number counts as 0, a missing limit as null."""
    out = []
    for key in sorted(set(stream) | set(replay), key=repr):
        default = None if key[2] == "limits" else 0
        a, b = stream.get(key, default), replay.get(key, default)
        if a != b:
            out.append(f"{key}: stream {a} != replay {b}")
    return out


def replay_lines(lines: list[bytes]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``meter replay``'s own code path over the lines: (usage.json object, crossings)."""
    from streams.core.replay import Replay

    crossings: list[dict[str, Any]] = []
    replay = Replay(now_ms=None, on_crossing=lambda c: crossings.append(c.to_record()),
                    on_deadletter=lambda _: None)
    replay.feed(lines)
    return replay.finish(), crossings


def event_line(**fields: Any) -> bytes:
    """One JSON line of an event (``meter publish`` format)."""
    return orjson.dumps(fields)


def usage_lines(workspace: str, quota: str, used: int, occurred_at: str) -> list[bytes]:
    """Events that bring one quota of ``workspace`` to ``used`` at ``occurred_at``."""
    common = {"workspace_id": workspace, "occurred_at": occurred_at}
    if quota == "machines":
        return [event_line(type="machine", event_id=f"m{i}", machine_id=f"box{i}",
                           action="registered", **common) for i in range(used)]
    if quota == "ai_tokens":
        return [event_line(type="tokens", event_id="t", member_id="kim", machine_id=None,
                           skill=None, provider="openai", model="gpt-4o", input_tokens=used,
                           output_tokens=0, surface="chat", **common)]
    if quota == "storage_bytes":
        return [event_line(type="storage", event_id="s", category="transcripts",
                           total_bytes=used, **common)]
    if quota == "schedule_runs":
        return [event_line(type="schedule_run", event_id=f"r{i}", member_id="kim",
                           schedule_id="nightly", machine_id=None, **common)
                for i in range(used)]
    return [event_line(type="api", event_id="a", member_id=None, protocol="rest",
                       requests=used, **common)]
