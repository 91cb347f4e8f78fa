"""Read a whole topic, from the beginning to the end it has now, decoded; where a topic
ends and where a consumer group stands on it; and how a reader knows it reached the end.

For summaries and tests that need "everything on this topic": the demo's summary,
integration tests. Not a consumer for services (they commit and follow); those use
``reader_config`` and ``ReadProgress`` to tell when they have caught up.

The worker writes its outputs in Kafka transactions. A transactional partition holds
commit and abort markers at offsets no consumer is ever given, typically its last
offset, so "last offset read + 1 == high watermark" may never become true; and while
a transaction is open, a read_committed reader cannot read past its first record (the
last stable offset). librdkafka knows where that end is and says so with a
``_PARTITION_EOF`` event carrying the offset it reached: ``ReadProgress`` goes by it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from groundwork.settings import Settings
from schemas.codec import decode_record

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

TopicPart = tuple[str, int]  # (real topic, partition)
RawRecord = tuple[int, int, bytes | None, bytes | None]  # partition, offset, key, value


def reader_config(settings: Settings, group_id: str, **extra: Any) -> dict[str, Any]:
    """A consumer of worker outputs that never commits and can tell where partitions end."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Never see a record of an aborted transaction (librdkafka's default, said here).
        "isolation.level": "read_committed",
        # The only reliable "read to the end" signal on transactional partitions.
        "enable.partition.eof": True,
        **extra,
    }


class ReadProgress:
    """How far a consumer built with ``reader_config`` has read each partition.

    ``reached`` is the offset up to which everything readable has been delivered: the
    last record's offset + 1, or the offset of a ``_PARTITION_EOF`` event, which lies
    past any markers and aborted records (the last stable offset under read_committed).
    ``at_end`` holds the partitions that raised the event at least once.
    """

    def __init__(self) -> None:
        self.reached: dict[TopicPart, int] = {}
        self.at_end: set[TopicPart] = set()

    def observe(self, msg: Message) -> bool:
        """Note one consumed message; True when it is a record for the caller to handle."""
        from confluent_kafka import KafkaError

        tp = (str(msg.topic()), int(msg.partition() or 0))
        offset = int(msg.offset() or 0)
        error = msg.error()
        if error is None:
            self.reached[tp] = max(self.reached.get(tp, 0), offset + 1)
            return True
        if error.code() == KafkaError._PARTITION_EOF:
            self.reached[tp] = max(self.reached.get(tp, 0), offset)
            self.at_end.add(tp)
        return False  # other errors are transient (librdkafka retries) or surface elsewhere

    def all_at_end(self, parts: Iterable[TopicPart]) -> bool:
        return all(tp in self.at_end for tp in parts)


def partitions(consumer: Consumer, topic: str, timeout_s: float = 10.0) -> list[TopicPart]:
    """The partitions of a topic; raises ``KafkaException`` if the topic does not exist."""
    from confluent_kafka import KafkaException

    meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
    if meta.error is not None:
        raise KafkaException(meta.error)
    return [(topic, p) for p in sorted(meta.partitions)]


def end_offsets(settings: Settings, bases: list[str] | tuple[str, ...]
                ) -> dict[tuple[str, int], int]:
    """(real topic, partition) -> high watermark, for each base topic name."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": "meter-end-offsets"})
    try:
        ends = {}
        for base in bases:
            topic = settings.topic(base)
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                ends[(topic, p)] = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=10)[1]
        return ends
    finally:
        consumer.close()


def committed_offsets(settings: Settings, group: str, tps: Iterable[tuple[str, int]]
                      ) -> dict[tuple[str, int], int | None]:
    """(real topic, partition) -> the group's committed offset, None where it has none.

    Asked by a plain consumer that never joins the group. Raises ``KafkaException`` when
    the broker cannot say (down, or its group coordinator still loading after a start).
    Offsets committed in a transaction count once it commits; a pending one is not
    waited for (read_committed would wait, up to the transaction timeout of a worker
    killed mid-transaction).
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False,
                         # no require_stable: an observer, not the group's next owner
                         "isolation.level": "read_uncommitted"})
    try:
        found = consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}


def _consume_until(consumer: Consumer, progress: ReadProgress, done: Callable[[], bool],
                   on_record: Callable[[Message], None], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {what} within {timeout_s:.0f} s")
        for msg in consumer.consume(1000, 0.5):
            if progress.observe(msg):
                on_record(msg)


def read_raw(settings: Settings, base: str, timeout_s: float = 30.0) -> list[RawRecord]:
    """Every committed record of a topic up to its current end, undecoded, with where it
    lies: [(partition, offset, key, value)] (tombstones have value None).

    The end is where each partition raises ``_PARTITION_EOF``: past any trailing
    transaction marker, and at the last stable offset while a transaction is open.
    Raises ``TimeoutError`` if the end is not reached in time.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = settings.topic(base)
    consumer = Consumer(reader_config(settings, f"meter-reader-{uuid.uuid4()}"))
    out: list[RawRecord] = []

    def keep(msg: Message) -> None:
        out.append((int(msg.partition() or 0), int(msg.offset() or 0), msg.key(), msg.value()))

    try:
        parts = partitions(consumer, topic)
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])
        progress = ReadProgress()
        _consume_until(consumer, progress, lambda: progress.all_at_end(parts), keep,
                       timeout_s, f"{topic} to its end")
    finally:
        consumer.close()
    return out


def read_all(settings: Settings, base: str, timeout_s: float = 30.0
             ) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every committed record of a topic up to its current end, decoded: [(key, record)].

    Tombstones are skipped (see ``read_raw``).
    """
    return [(key, decode_record(value)[1])
            for _, _, key, value in read_raw(settings, base, timeout_s) if value is not None]


def unread_partitions(settings: Settings, starts: dict[TopicPart, int],
                      timeout_s: float = 30.0) -> set[TopicPart]:
    """The partitions holding a committed record at or after the offset given for each.

    For "has this group processed everything": a group's committed offset may stay
    below the end for good when only markers or aborted records follow it.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(reader_config(settings, f"meter-reader-{uuid.uuid4()}"))
    found: set[TopicPart] = set()

    def note(msg: Message) -> None:
        tp = (str(msg.topic()), int(msg.partition() or 0))
        if tp not in found:  # one record decides; stop fetching that partition
            found.add(tp)
            consumer.pause([TopicPartition(*tp)])

    try:
        consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in starts.items()])
        progress = ReadProgress()
        _consume_until(consumer, progress, lambda: all(
            tp in found or tp in progress.at_end for tp in starts), note, timeout_s,
            f"{len(starts)} partition(s) from the offsets given")
    finally:
        consumer.close()
    return found


def group_lag(settings: Settings, group: str, bases: tuple[str, ...]) -> int:
    """About how many records ``group`` has still to process on the topics ``bases``.

    On the worker's transactional outputs a committed offset may stay below the end for
    good: a trailing commit marker is never delivered, so never committed past. A
    partition counts only if a committed record lies at or after the group's offset.
    """
    ends = end_offsets(settings, bases)
    done = committed_offsets(settings, group, ends)
    starts = {tp: done[tp] or 0 for tp, end in ends.items() if end > (done[tp] or 0)}
    unread = unread_partitions(settings, starts) if starts else set()
    return sum(ends[tp] - starts[tp] for tp in unread)  # markers count: an estimate
