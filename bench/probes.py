"""Crossing probes shared by the benchmarks: events built to cross a threshold, and a
thread that notes when each crossing arrives on quota.thresholds.

A probe workspace ``lat{i}`` gets a plan with an ai_tokens limit of 1000 (produce it
before the timed part); its one tokens event ``t{i}`` of 1000 tokens crosses 80, 95 and
100 % at once. Latency = the 100 % crossing's arrival minus the tokens event's produce time.
"""

from __future__ import annotations

import math
import threading
import time
import uuid

import orjson
from confluent_kafka import Consumer

from meter.settings import Settings
from schemas.codec import decode_record
from schemas.events import Event
from schemas.jsonl import parse_line


def probe_plan(i: int, at_ms: int) -> Event:
    """The plan of probe workspace ``lat{i}``: a cycle from ``at_ms``, 1000 ai_tokens."""
    return parse_line(orjson.dumps({
        "type": "plan", "event_id": f"p{i}", "workspace_id": f"lat{i}",
        "occurred_at": at_ms, "plan": "probe", "cycle_anchor": at_ms,
        "limits": {"ai_tokens": 1000}, "owners": ["ops@example.com"]}), now_ms=None)


def probe_tokens(i: int) -> Event:
    """Probe ``t{i}``: 1000 tokens now in workspace ``lat{i}`` (crosses 80, 95 and 100 %)."""
    return parse_line(orjson.dumps({
        "type": "tokens", "event_id": f"t{i}", "workspace_id": f"lat{i}",
        "occurred_at": int(time.time() * 1000), "member_id": "kim",
        "machine_id": None, "skill": None, "provider": "openai", "model": "gpt-4o",
        "input_tokens": 1000, "output_tokens": 0, "surface": "chat"}), now_ms=None)


def percentile(ordered: list[float], q: float) -> float:
    """The q-quantile (0..1) of an ascending list, nearest rank; 0.0 when empty."""
    if not ordered:
        return 0.0
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


class CrossingCollector(threading.Thread):
    """Reads quota.thresholds from the start; ``received[event_id]`` = wall time (time.time())
    the 100 % crossing of probe ``event_id`` arrived. ``stop()`` ends it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="crossing-collector")
        self.settings = settings
        self.received: dict[str, float] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap,
                             "group.id": f"lat-{uuid.uuid4()}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([self.settings.topic("quota.thresholds")])
        try:
            while not self._stop_event.is_set():
                msg = consumer.poll(0.1)  # one at a time: the arrival time is the poll's
                value = None if msg is None or msg.error() is not None else msg.value()
                if not value:
                    continue
                arrived = time.time()
                record = decode_record(value)[1]
                if record["threshold"] == 100 and record["event_id"].startswith("t"):
                    self.received.setdefault(record["event_id"], arrived)
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
