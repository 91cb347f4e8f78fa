"""The sink's Kafka side: consume its topics with confluent-kafka into the batching writer,
commit offsets only after the batch is in the store.

Records are decoded as written (``schemas.codec.decode_written``: the writer's schema
version, not resolved to the current one, see ``sinks.rows``); the schema says which
table a record belongs to. A record that does not decode is counted
(``meter_sink_undecodable_total``), logged with its coordinates and passed (the
dead-letter topic is for events; the producer of a sink topic is our own code).
On a rebalance the pending batch is discarded: nothing of it was committed, so
the partitions' next owner re-reads it, and writing rows twice is harmless.

The stream worker writes its outputs in Kafka transactions: the sink reads committed
records only, and the offsets of transaction markers (and of aborted records) are
never delivered. So at the end of a partition (partition EOF, which librdkafka raises
at the last stable offset, past the markers) the sink commits that end: a caught-up
sink's committed offsets equal the partitions' ends, never one marker short.

A batch may take long to write: the writer retries while the store is unavailable, and
the consumer does not poll meanwhile. After ``max_poll_interval_ms`` (librdkafka's
``max.poll.interval.ms``, 5 minutes by default) the consumer leaves its group, so the
commit of a batch written after a longer outage is refused (``UNKNOWN_MEMBER_ID``).
A refused commit is logged and skipped, never fatal to the sink: the batch's rows are
in the store, the next poll rejoins the group, and the partitions are re-read from
their last commit and written again, which is harmless.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from groundwork import kafka
from groundwork.settings import Settings
from schemas.codec import decode_written
from schemas.validation import InvalidEvent
from sinks.metrics import SinkMetrics
from sinks.rows import SINK_TOPICS, TABLE_OF_TOPIC
from sinks.writer import BatchWriter, Position, SinkStopped

log = logging.getLogger(__name__)

DEFAULT_GROUP: Final = "meter-sink"
SESSION_TIMEOUT_MS: Final = 10_000
# librdkafka's default; it must be at least the session timeout.
DEFAULT_MAX_POLL_INTERVAL_MS: Final = 300_000


def consumer_config(settings: Settings, group_id: str, stats: SinkMetrics,
                    max_poll_interval_ms: int = DEFAULT_MAX_POLL_INTERVAL_MS) -> dict[str, Any]:
    def on_stats(payload: str) -> None:
        record_lag(stats, payload)

    # read_committed: the worker writes our topics in transactions
    return kafka.consumer_config(settings, group_id, **{
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,  # commit up to the end, past transaction markers
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "max.poll.interval.ms": max_poll_interval_ms,
        "statistics.interval.ms": 5_000,
        "stats_cb": on_stats,
    })


def record_lag(metrics: SinkMetrics, payload: str) -> None:
    """Per-partition consumer lag from librdkafka's statistics JSON."""
    stats = json.loads(payload)
    for topic, entry in stats.get("topics", {}).items():
        for partition, values in entry.get("partitions", {}).items():
            lag = values.get("consumer_lag", -1)
            if int(partition) >= 0 and lag >= 0:
                metrics.set_lag(topic, int(partition), int(lag))


class SinkConsumer:
    """One consumer in the sink's group, feeding ``writer``.

    ``max_poll_interval_ms``: how long writing one batch (store retries included) may
    take before the consumer leaves its group (see the module docstring).
    """

    def __init__(self, settings: Settings, writer: BatchWriter, *,
                 group_id: str = DEFAULT_GROUP, topics: Iterable[str] = SINK_TOPICS,
                 stop: threading.Event | None = None,
                 max_poll_interval_ms: int = DEFAULT_MAX_POLL_INTERVAL_MS) -> None:
        self.settings = settings
        self.writer = writer
        self.metrics = writer.metrics
        self.stop = stop or writer.stop
        self.consumer = Consumer(consumer_config(settings, group_id, self.metrics,
                                                 max_poll_interval_ms))
        self.consumer.subscribe([settings.topic(t) for t in topics], on_revoke=self._on_revoke)

    def poll(self, timeout_s: float = 0.2, max_records: int = 5_000) -> int:
        """Read up to ``max_records`` into the writer; returns how many records were read
        (events such as a partition's end not counted)."""
        messages = self.consumer.consume(num_messages=max_records, timeout=timeout_s)
        return sum(self._take(message) for message in messages)

    def write(self) -> list[Position]:
        """Write the pending batch (retrying while the store is down); offsets to commit."""
        return self.writer.flush()

    def commit(self, positions: list[Position]) -> bool:
        """Commit the offsets of a written batch; False if the group refused them.

        A refused commit (the consumer left the group while the batch waited for the
        store, or the group rebalanced) leaves the last commit in place: the batch is
        re-read and written again, which is harmless. Fatal errors still raise.
        """
        if not positions:
            return True
        try:
            self.consumer.commit(
                offsets=[TopicPartition(p.topic, p.partition, p.offset) for p in positions],
                asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not isinstance(error, KafkaError) or error.fatal():
                raise
            self.metrics.commit_refused()
            log.warning("committing %d partitions failed (%s): their rows are written; they "
                        "will be re-read from the last commit and written again",
                        len(positions), error.str())
            return False
        return True

    def step(self) -> None:
        """Poll once; when the batch is full or old enough, write it and commit."""
        self.poll()
        if self.writer.due():
            self.commit(self.write())

    def run(self) -> None:
        """Until ``stop``: poll, write, commit. On stop, write what is pending once more."""
        try:
            while not self.stop.is_set():
                self.step()
            if self.writer.pending:
                self.commit(self.write())
        except SinkStopped:
            log.info("stopped with an unwritten batch; it will be re-read from the last commit")
        finally:
            self.close()

    def close(self) -> None:
        self.consumer.close()

    def _take(self, message: Message) -> bool:
        """Hand one message to the writer; True if it was a record (not an event)."""
        error = message.error()
        if error is not None:
            self._on_event(message, error)
            return False
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        position = Position(topic, partition, offset)
        value = message.value()
        if value is None:  # a tombstone on a compacted topic: nothing to store
            self.writer.track(position)
            return True
        try:
            base_topic, _version, record = decode_written(value)
            if base_topic not in TABLE_OF_TOPIC:
                raise InvalidEvent("unknown_type", f"a {base_topic} record on {topic}")
            self.writer.add(base_topic, record, position)
        except (InvalidEvent, KeyError, TypeError, ValueError) as exc:
            self.metrics.skipped_undecodable()
            log.error("skipping %s[%d]@%d: %s", topic, partition, offset, exc)
            self.writer.track(position)
        return True

    def _on_event(self, message: Message, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            topic, partition, end = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and end is not None
            # Commit the end as if the offset before it was read: past transaction markers.
            self.writer.track(Position(topic, partition, end - 1))
        elif error.fatal():
            raise KafkaException(error)
        else:
            log.warning("consumer error: %s", error)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.writer.pending:
            log.info("partitions revoked: %d pending rows will be re-read by their next owner",
                     self.writer.pending)
        self.writer.discard()
