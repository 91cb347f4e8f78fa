"""In-memory stand-ins for the Kafka edge of ``AlertService`` and a clock the test moves.

Only the decision tests (``test_service_decisions.py``) use these: they replace the
broker, nothing else (the HTTP and SMTP receivers stay real). The broker tests
(``test_consumer.py``) keep covering the Kafka edge itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from alerting.config import AlertingConfig
from alerting.edges import Consumed, FollowedHandler, FollowedRecord, Partitions
from alerting.http_client import HttpSender
from alerting.service import (
    DELIVERIES_TOPIC,
    PLANS_TOPIC,
    SETTINGS_TOPIC,
    THRESHOLDS_TOPIC,
    AlertService,
)
from alerting.smtp_client import SmtpConfig
from groundwork.settings import Settings
from schemas.codec import decode_record, encode_record
from streams.core.quotas import ThresholdCrossing as Crossing


class MemoryTopics:
    """Topics as lists of records; appends may come from any thread."""

    def __init__(self) -> None:
        self._records: defaultdict[str, list[FollowedRecord]] = defaultdict(list)
        self._lock = threading.Lock()
        self._followers: list[MemoryFollower] = []

    def append(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        with self._lock:
            self._records[topic].append(FollowedRecord(topic, key, value))
            followers = list(self._followers)
        for follower in followers:
            follower.notify()

    def read(self, topic: str, start: int = 0) -> list[FollowedRecord]:
        with self._lock:
            return self._records[topic][start:]

    def follow(self, follower: MemoryFollower) -> None:
        with self._lock:
            self._followers.append(follower)

    def unfollow(self, follower: MemoryFollower) -> None:
        with self._lock:
            if follower in self._followers:
                self._followers.remove(follower)


class MemoryWriter:
    """Appends delivery records to ``topics``; durable at once."""

    def __init__(self, topics: MemoryTopics) -> None:
        self._topics = topics

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self._topics.append(topic, key, value)

    def close(self, timeout_s: float) -> None:
        return None


class MemoryFollower:
    """Follows some of ``topics`` from the beginning; batches run on the service's loop."""

    def __init__(self, topics: MemoryTopics, names: Sequence[str]) -> None:
        self._topics = topics
        self._names = list(names)
        self._handled = dict.fromkeys(self._names, 0)
        self._handler: FollowedHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, handler: FollowedHandler, loop: asyncio.AbstractEventLoop) -> None:
        self._handler, self._loop = handler, loop
        self._topics.follow(self)
        self._pump()

    def notify(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._pump)

    def _pump(self) -> None:
        assert self._handler is not None
        for name in self._names:
            batch = self._topics.read(name, self._handled[name])
            if batch:
                self._handled[name] += len(batch)
                self._handler(batch)

    async def caught_up(self) -> None:
        self._pump()

    def close(self) -> None:
        self._topics.unfollow(self)


class MemoryCrossings:
    """``quota.thresholds`` with one group member: it is assigned every partition (from the
    committed offsets) on its first ``consume`` and revoked them on ``close``."""

    def __init__(self, partitions: int = 1) -> None:
        self._logs: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        self.committed: dict[int, int] = {}
        self._positions: dict[int, int] = {}
        self._assigned: list[int] = []
        self._callbacks: tuple[Partitions, Partitions, Partitions] | None = None
        self._paused = False
        self._changed = threading.Condition()

    def publish(self, crossings: Sequence[Crossing], partition: int = 0) -> None:
        with self._changed:
            self._logs[partition].extend(encode_record(THRESHOLDS_TOPIC, c._asdict())
                                         for c in crossings)
            self._changed.notify_all()

    def subscribe(self, on_assign: Partitions, on_revoke: Partitions,
                  on_lost: Partitions) -> None:
        self._callbacks = (on_assign, on_revoke, on_lost)

    def _available(self) -> bool:
        return not self._paused and any(self._positions[p] < len(self._logs[p])
                                        for p in self._assigned)

    def consume(self, max_records: int, timeout_s: float) -> list[Consumed]:
        assert self._callbacks is not None
        if not self._assigned:
            with self._changed:
                self._assigned = list(self._logs)
                self._positions = {p: self.committed.get(p, 0) for p in self._assigned}
            self._callbacks[0](list(self._assigned))
        consumed: list[Consumed] = []
        with self._changed:
            if not self._available():
                self._changed.wait(timeout_s)
            if self._paused:
                return consumed
            for p in self._assigned:
                log = self._logs[p]
                while self._positions[p] < len(log) and len(consumed) < max_records:
                    offset = self._positions[p]
                    consumed.append(Consumed(p, offset, log[offset]))
                    self._positions[p] = offset + 1
        return consumed

    def commit(self, positions: dict[int, int]) -> bool:
        with self._changed:
            self.committed.update(positions)
        return True

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        with self._changed:
            self._paused = False
            self._changed.notify_all()

    def close(self) -> None:
        if self._assigned and self._callbacks is not None:
            self._callbacks[1](list(self._assigned))
        self._assigned = []


class ManualClock:
    """Time moves only when the test calls ``advance``; sleepers wake when it passes their
    deadline. Use values exact in binary (0.75, 1.5, 3.5) so deadlines are met exactly."""

    def __init__(self, wall_ms: int = 1_764_892_800_000) -> None:  # 2025-12-05T00:00:00Z
        self._start = 1000.0
        self._now = self._start
        self._wall_ms = wall_ms
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now_ms(self) -> int:
        return self._wall_ms + round((self._now - self._start) * 1000)

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        entry = (self._now + seconds, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    async def wait(self, event: asyncio.Event, timeout_s: float) -> None:
        sleeper = asyncio.ensure_future(self.sleep(timeout_s))
        setter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait([sleeper, setter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            setter.cancel()

    def waiting(self) -> list[float]:
        """How long each sleeper has left to sleep, soonest first."""
        return sorted(deadline - self._now for deadline, _ in self._sleepers)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        for deadline, future in list(self._sleepers):
            if deadline <= self._now and not future.done():
                future.set_result(None)


class MemoryEdges:
    """One test's broker in memory: topics, the crossings' source and a manual clock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = MemoryTopics()
        self.crossings = MemoryCrossings()
        self.clock = ManualClock()

    def publish(self, base_topic: str, key: str, value: bytes) -> None:
        self.topics.append(self.settings.topic(base_topic), key.encode(), value)

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery record written, in order."""
        return [decode_record(r.value)[1]
                for r in self.topics.read(self.settings.topic(DELIVERIES_TOPIC))
                if r.value is not None]

    def service(self, config: AlertingConfig, *, jitter: float = 0.5) -> AlertService:
        """An ``AlertService`` on these edges, real HTTP and SMTP senders, and backoff
        jitter fixed at ``jitter``."""
        s = config.settings
        return AlertService(
            config, crossings=self.crossings, deliveries=MemoryWriter(self.topics),
            settings_topics=MemoryFollower(self.topics, [s.topic(SETTINGS_TOPIC),
                                                         s.topic(PLANS_TOPIC)]),
            deliveries_topic=MemoryFollower(self.topics, [s.topic(DELIVERIES_TOPIC)]),
            http=HttpSender(config.allow_hosts, s.delivery_timeout_s),
            smtp=SmtpConfig.from_settings(s), clock=self.clock, jitter=lambda: jitter,
            drain_s=5.0)
