"""Pieces the worker fault tests share beyond ``tests/faults/support.py``: producing records
while recording where each one landed, a dedicated broker, a paced producer on the
platform's own publisher (``schemas.publisher``), and the worker's health and log."""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import KafkaError, KafkaException, Producer

from groundwork.kafka import end_offsets
from groundwork.ports import free_port_pair
from groundwork.settings import Settings, load_settings
from tests.streams.harness import committed
from tests.waiting import wait_until

# (base topic, key, value); key None is a record without a key
RawRecord = tuple[str, bytes | None, bytes]


@dataclass(frozen=True, slots=True)
class Landed:
    """Where a produced record was written, or why the broker refused it."""

    partition: int = -1
    offset: int = -1
    error: str | None = None


def produce_tracked(settings: Settings, records: Sequence[RawRecord],
                    idempotent: bool = True, timeout_s: float = 60.0) -> list[Landed]:
    """Produce ``records`` in order on one producer; where each landed (same order).

    With ``idempotent`` the producer is configured like the platform's (acks=all,
    idempotent, lz4). The broker refuses a bad record with its whole batch, so records
    expected to be refused go through ``idempotent=False``: one by one, no retries.
    """
    conf: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap,
                            "partitioner": "murmur2_random", "linger.ms": 5,
                            "compression.type": "lz4", "acks": "all",
                            "enable.idempotence": idempotent}
    if not idempotent:
        conf.update({"retries": 0, "max.in.flight.requests.per.connection": 1})
    producer = Producer(conf)
    landed: list[Landed | None] = [None] * len(records)

    def report(i: int) -> Any:
        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            landed[i] = (Landed(msg.partition(), msg.offset()) if err is None
                         else Landed(error=str(err)))
        return on_delivery

    for i, (topic, key, value) in enumerate(records):
        while True:
            try:
                producer.produce(settings.topic(topic), key=key, value=value,
                                 on_delivery=report(i))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if not idempotent:
            producer.flush(timeout_s)
    left = producer.flush(timeout_s)
    assert left == 0, f"{left} records were never acknowledged"
    assert all(x is not None for x in landed)
    return [x for x in landed if x is not None]


def worker_health(port: int) -> tuple[int, Any]:
    """(status code, JSON body) of the worker's /healthz; (0, error) when it does not answer."""
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    except httpx.HTTPError as exc:
        return 0, str(exc)
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, resp.text


# A traceback in a worker log is a crash even when the process lives on (/healthz answers).
CRASH_MARKS = re.compile(rb"Traceback|crash|CRITICAL", re.IGNORECASE)


def log_crashes(log: Path) -> list[str]:
    """Lines of a worker log that show a crash or a traceback."""
    return [line.decode(errors="replace")[:300] for line in log.read_bytes().splitlines()
            if CRASH_MARKS.search(line)]


# --- committed offsets, tolerant of a broker that is (re)starting ------------------------------


def committed_now(settings: Settings, group: str, keys: Iterable[tuple[str, int]]
                  ) -> dict[tuple[str, int], int] | None:
    """The group's committed offsets (-1 where none), or None while the broker cannot
    say (down, group coordinator still loading after a start)."""
    try:
        return committed(settings, group, keys)
    except KafkaException:
        return None


def log_tail(log: Path, lines: int = 25) -> str:
    """The last ``lines`` of a worker log, without librdkafka's connection-refused noise
    (a broker away is retried and logged every few ms)."""
    kept = [line.decode(errors="replace")[:300] for line in log.read_bytes().splitlines()
            if b"Connection refused" not in line]
    return "\n".join(kept[-lines:])


def wait_committed(settings: Settings, topics: list[str] | tuple[str, ...],
                   proc: subprocess.Popen[bytes], what: str, timeout_s: float = 240.0,
                   log: Path | None = None) -> None:
    """Until the worker group's committed offsets reach the end of ``topics`` (like
    ``tests.streams.harness.wait_caught_up``, which gives up on the first broker error).
    Giving up shows the tail of the worker's ``log``: where it was stuck."""
    group = settings.topic_prefix + settings.worker_id
    ends = end_offsets(settings, topics)
    last: dict[tuple[str, int], int] | None = None

    def reached() -> bool:
        nonlocal last
        last = committed_now(settings, group, ends)
        return last is not None and all(last.get(k, -1) >= v for k, v in ends.items() if v > 0)

    def said() -> str:
        tail = f"\nthe worker's log ends:\n{log_tail(log)}" if log is not None else ""
        return f"{what}: committed {last}, ends {ends}{tail}"

    wait_until(reached, said, timeout_s, proc=proc, poll_s=0.5)


# --- a dedicated broker ---------------------------------------------------------------------


@contextlib.contextmanager
def dedicated_broker(home: Path, partitions: int = 2) -> Iterator[Settings]:
    """A broker of its own (``deploy.kafka_local`` on a free port pair, its files under
    ``home/kafka``, the cached jars), stopped on exit; never the session's broker.
    Restart it with ``kafka_local.stop(settings)`` and ``kafka_local.start(settings)``:
    same port, same data dir."""
    from deploy import kafka_local

    broker = load_settings(data_dir=home, kafka_bootstrap=f"127.0.0.1:{free_port_pair()}",
                           kafka_partitions=partitions)
    kafka_local.start(broker)
    try:
        yield broker
    finally:
        kafka_local.stop(broker, grace_s=20)


# --- a paced producer on schemas.publisher ----------------------------------------------------


class PacedPublisher(threading.Thread):
    """Sends (topic, key, value) at a fixed rate through ``schemas.publisher.Publisher``
    (the platform's client: idempotent, acks=all) on a background thread.

    A delivery the client reports failed is sent again once the flush is over, as a real
    client does after a ``PublishError`` (same bytes, same event id: S6 drops a copy that
    did land); ``resent`` counts them and ``errors`` keeps the failure messages."""

    def __init__(self, settings: Settings, records: Sequence[tuple[str, bytes, bytes]],
                 rate_per_s: float, config: dict[str, Any] | None = None) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.records = records
        self.rate = rate_per_s
        self.config = config or {}
        self.sent = 0
        self.resent = 0
        self.errors: list[str] = []
        self.flushed = False

    def run(self) -> None:
        from schemas.publisher import Publisher, PublishError

        failed: list[tuple[str, bytes | None, bytes]] = []
        lock = threading.Lock()

        class Retrying(Publisher):
            # the platform publisher reports (topic, key, text); the message it is given
            # has the value too, which a resend needs
            def _delivered(self, err: Any, msg: Any) -> None:
                super()._delivered(err, msg)
                if err is not None:
                    with lock:
                        failed.append((msg.topic(), msg.key(), msg.value()))

        pub = Retrying(self.settings, config=self.config, client_id="paced-publisher")
        prefix = len(self.settings.topic_prefix)
        start = time.monotonic()
        try:
            for i, (topic, key, value) in enumerate(self.records):
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pub.produce(topic, key, value)
                self.sent += 1
            for _ in range(10):
                try:
                    pub.flush(300)
                    self.flushed = True
                    return
                except PublishError as exc:
                    self.errors.append(str(exc))
                with lock:
                    again, failed[:] = list(failed), []
                for real_topic, failed_key, failed_value in again:
                    pub.produce(real_topic[prefix:], failed_key, failed_value)
                    self.resent += 1
        finally:
            with contextlib.suppress(PublishError):
                pub.close(1)
