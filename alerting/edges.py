"""What ``AlertService`` talks to, as interfaces: where crossings come from, where delivery
records go, the compacted topics it follows, and the clock.

The Kafka implementations are in ``alerting.kafka_io`` (``AlertService.from_config``
builds them); the HTTP and SMTP senders are ``alerting.http_client.HttpSender`` and
``alerting.smtp_client.SmtpConfig``. Keeping the edges behind these lets the delivery
decisions run without a broker (tests/alerting/test_service_decisions.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol


class Consumed(NamedTuple):
    """One record of ``quota.thresholds`` as consumed: where it was, and its bytes."""

    partition: int
    offset: int
    value: bytes | None


class FollowedRecord(NamedTuple):
    """One record of a followed compacted topic (``value`` None: a tombstone)."""

    topic: str
    key: bytes | None
    value: bytes | None


Partitions = Callable[[list[int]], None]
FollowedHandler = Callable[[Sequence[FollowedRecord]], None]


class CrossingSource(Protocol):
    """``quota.thresholds`` as a consumer group member sees it.

    Every method but ``subscribe`` blocks and is called in a worker thread; the
    rebalance callbacks are called from inside ``consume`` (in that thread).
    """

    def subscribe(self, on_assign: Partitions, on_revoke: Partitions,
                  on_lost: Partitions) -> None: ...

    def consume(self, max_records: int, timeout_s: float) -> list[Consumed]: ...

    def commit(self, positions: dict[int, int]) -> bool:
        """Commit the next offset to read per partition; False if it could not be."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


class DeliveryWriter(Protocol):
    """Where delivery records go: ``send`` returns once the record is durable (acked)."""

    async def send(self, topic: str, key: bytes, value: bytes) -> None: ...

    def close(self, timeout_s: float) -> None: ...


class FollowedTopics(Protocol):
    """Topics read from the beginning and followed while the service runs."""

    def start(self, handler: FollowedHandler, loop: asyncio.AbstractEventLoop) -> None:
        """Begin reading; ``handler`` runs on ``loop`` with each batch."""
        ...

    async def caught_up(self) -> None:
        """Wait until every record that existed when called has been handled."""
        ...

    def close(self) -> None: ...


class Clock(Protocol):
    """Time as the service sees it: record times, the collapse wait, retry backoff."""

    def now_ms(self) -> int:
        """Wall time, Unix milliseconds (records' ``recorded_at``, the collapse planner)."""
        ...

    def monotonic(self) -> float:
        """Seconds for intervals (backoff deadlines, latency, the commit cadence)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, timeout_s: float) -> None:
        """Return when ``event`` is set or ``timeout_s`` has passed, whichever is first."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
