"""Event-time alignment across the input topics of each owned partition (S1).

Within one partition number, the worker holds a queue per input topic (records in
offset order, decoded). A batch takes, partition by partition, the queued record with
the smallest event time across the topics, so a backlog published at once is applied
in time order and S4 closes no cycle that another topic still feeds.

A topic whose queue is empty may still hold an earlier record: unless the consumer
reported the end of that partition (librdkafka's partition EOF, raised at the last
stable offset under read_committed) after its last record, the partition waits, as
Kafka Streams does with ``max.task.idle.ms``: up to ``lag_wait_s`` when the broker is
known to hold more records (a fetch is on its way), else up to ``idle_wait_s``. Past
the bound its records go on out of order until that topic gets a record or its end
(beyond the bound S1 promises no order across topics).

Pure: no Kafka here. The worker feeds it records and end-of-partition events, asks
``take`` for a batch, and pauses a topic partition whose queue is over ``max_queued``
(``over_limit``) until it drains (``drained``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from streams.processor import Incoming

Lagging = Callable[[str, int], bool]  # (topic, partition) -> the broker holds more records


@dataclass(slots=True)
class _Partition:
    queues: dict[str, deque[Incoming]]
    at_end: dict[str, bool]  # end of partition seen after the topic's last record
    # topic -> when its queue was first found empty while not at its end; the partition
    # waits for it until its bound has passed, then goes on until it gets news
    waiting_since: dict[str, float] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)  # waits already counted as timed out


@dataclass(slots=True)
class EventTimeAligner:
    topics: Sequence[str]  # base names; on equal times, earlier topics go first
    idle_wait_s: float = 0.1
    lag_wait_s: float = 10.0
    max_queued: int = 5_000
    timeouts: int = 0  # times a partition went on out of order after waiting its bound
    _parts: dict[int, _Partition] = field(default_factory=dict)
    _rank: dict[str, int] = field(default_factory=dict)
    _turn: int = 0

    def __post_init__(self) -> None:
        self._rank = {t: i for i, t in enumerate(self.topics)}

    # -- ownership ---------------------------------------------------------------------

    def assign(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._parts[p] = _Partition({t: deque() for t in self.topics},
                                        dict.fromkeys(self.topics, False))

    def revoke(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._parts.pop(p, None)

    def clear(self) -> None:
        """Forget every queued record (the partitions are sought back and read again)."""
        self.assign(list(self._parts))

    # -- intake ------------------------------------------------------------------------

    def add(self, record: Incoming) -> bool:
        """Queue a record; False if its partition is not owned (then it is dropped)."""
        part = self._parts.get(record.partition)
        if part is None:
            return False
        topic = record.topic
        part.queues[topic].append(record)
        part.at_end[topic] = False
        part.waiting_since.pop(topic, None)
        part.expired.discard(topic)
        return True

    def mark_end(self, topic: str, partition: int) -> None:
        """The consumer reached the end of (topic, partition) after what it delivered."""
        part = self._parts.get(partition)
        if part is not None and topic in part.at_end:
            part.at_end[topic] = True
            part.waiting_since.pop(topic, None)
            part.expired.discard(topic)

    def queued(self, topic: str, partition: int) -> int:
        part = self._parts.get(partition)
        return 0 if part is None else len(part.queues[topic])

    def total_queued(self) -> int:
        return sum(len(q) for part in self._parts.values() for q in part.queues.values())

    def over_limit(self, topic: str, partition: int) -> bool:
        return self.queued(topic, partition) >= self.max_queued

    def drained(self, topic: str, partition: int) -> bool:
        """Below half the limit again: a paused topic partition may resume."""
        return self.queued(topic, partition) < self.max_queued // 2

    # -- batches -----------------------------------------------------------------------

    def take(self, limit: int, now: float, lagging: Lagging) -> list[Incoming]:
        """Up to ``limit`` records in event-time order per partition (see the module
        docstring); partitions take turns at being first."""
        out: list[Incoming] = []
        order = sorted(self._parts)
        if order:
            self._turn = (self._turn + 1) % len(order)
            order = order[self._turn:] + order[:self._turn]
        for p in order:
            if len(out) >= limit:
                break
            self._take_partition(p, self._parts[p], limit - len(out), now, lagging, out)
        return out

    def _take_partition(self, p: int, part: _Partition, limit: int, now: float,
                        lagging: Lagging, out: list[Incoming]) -> None:
        queues, at_end, rank = part.queues, part.at_end, self._rank
        heads = [(q[0].time, rank[t], t) for t, q in queues.items() if q]
        if not heads:
            return
        heapq.heapify(heads)
        waiting = [t for t, q in queues.items() if not q and not at_end[t]]
        taken = 0
        while heads and taken < limit:
            if waiting and not self._may_go_on(p, part, waiting, now, lagging):
                return
            _, r, t = heads[0]
            q = queues[t]
            out.append(q.popleft())
            taken += 1
            if q:
                heapq.heapreplace(heads, (q[0].time, r, t))
            else:
                heapq.heappop(heads)
                if not at_end[t]:
                    waiting.append(t)

    def _may_go_on(self, p: int, part: _Partition, waiting: list[str], now: float,
                   lagging: Lagging) -> bool:
        """Whether every empty, unfinished topic of the partition has waited its bound."""
        since = part.waiting_since
        for t in waiting:
            started = since.setdefault(t, now)
            bound = self.lag_wait_s if lagging(t, p) else self.idle_wait_s
            if now - started < bound:
                return False
        for t in waiting:
            if t not in part.expired:
                part.expired.add(t)
                self.timeouts += 1
        return True

    def waiting(self) -> bool:
        """True when some partition waits for a topic (the caller polls, briefly)."""
        return any(len(part.waiting_since) > len(part.expired)
                   for part in self._parts.values())
