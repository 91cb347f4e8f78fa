"""Crossing probes and live load shared by the benchmarks: events built to cross a
threshold, a thread that notes when each crossing arrives on quota.thresholds, and a
paced producer of live-looking traffic with probes in it.

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
from confluent_kafka import Consumer, KafkaError, Message, Producer

from groundwork.settings import Settings
from meter.workload import Workload, generate_events
from schemas.codec import decode_record, encode_event, topic_of
from schemas.events import Event
from schemas.jsonl import parse_line

Record = tuple[str, bytes, bytes]  # (real topic, key, value)


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
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             # the worker writes in transactions: committed crossings only
                             "isolation.level": "read_committed"})
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


def plan_records(settings: Settings, rate: float, duration: float, workspaces: int,
                 probes: int, seed: int = 11) -> tuple[list[Record], list[Record]]:
    """(control records to produce first, usage records to pace), timed so the usage
    events' occurred_at runs from now to now + duration, like live traffic. The control
    records include the plans of probe workspaces ``lat0`` .. ``lat{probes - 1}``."""
    now = int(time.time() * 1000)
    wl = Workload(seed=seed, events=int(rate * duration), workspaces=workspaces,
                  duplicate_rate=0.0, invalid_rate=0.0, now_ms=now + int(duration * 1000),
                  span_days=duration / 86_400)
    control: list[Record] = []
    usage: list[Record] = []
    topics: dict[str, str] = {}  # one string per topic: millions of records share them
    for event in generate_events(wl):
        base = topic_of(event)
        topic = topics.get(base) or topics.setdefault(base, settings.topic(base))
        record = (topic, event.workspace_id.encode(), encode_event(event))
        (usage if event.occurred_at >= wl.start_ms else control).append(record)
    for i in range(probes):
        plan = probe_plan(i, now - 1000)
        control.append((settings.topic("quota.plans"), plan.workspace_id.encode(),
                        encode_event(plan)))
    return control, usage


class Delivery:
    """Delivery reports of a producer: how many landed, how many failed."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.first_error: str | None = None

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or str(err)


def produce_all(producer: Producer, records: list[Record], on_delivery: Delivery) -> None:
    """Produce ``records`` as fast as the producer takes them, and flush."""
    for topic, key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the records were not all delivered")


def paced(producer: Producer, usage: list[Record], rate: float, probes: int,
          probe_topic: str, sent: dict[str, float], produced: list[int],
          on_delivery: Delivery) -> float:
    """Produce ``usage`` at ``rate`` events/s, a probe (to ``probe_topic``) every
    len(usage)/probes events, noting its wall time (time.time()) in ``sent``; return the
    seconds it took. ``produced[0]`` counts every record produced."""
    probe_every = max(1, len(usage) // probes) if probes else 0
    started = time.perf_counter()
    n = probe = 0
    while n < len(usage):
        due = min(len(usage), int((time.perf_counter() - started) * rate) + 1)
        while n < due:
            topic, key, value = usage[n]
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.05)
                continue
            if probe_every and n % probe_every == 0 and probe < probes:
                event = probe_tokens(probe)
                sent[event.event_id] = time.time()
                producer.produce(probe_topic, key=event.workspace_id.encode(),
                                 value=encode_event(event), on_delivery=on_delivery)
                probe += 1
                produced[0] += 1
            n += 1
            produced[0] += 1
        producer.poll(0)
        time.sleep(max(0.0, started + (n + 1) / rate - time.perf_counter()))
    return time.perf_counter() - started
