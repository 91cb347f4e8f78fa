"""Kafka I/O in one place: client configs, the compacted-topic reader and its one
"caught up" rule, and offset helpers.

Client configs. Every client starts from a builder here and adds its own settings as
overrides: ``producer_config`` (Java's murmur2 partitioner, so that every producer
places a workspace on the same partition; lz4; idempotence with acks=all),
``consumer_config`` (read_committed, no auto commit, from the earliest offset),
``reader_config`` (a consumer that also raises end-of-partition events), ``admin_config``.

Caught up. The worker writes its outputs in Kafka transactions. A transactional partition
holds commit and abort markers at offsets no consumer is ever given, typically its last
offset, so "last offset read + 1 == high watermark" may never become true; and while a
transaction is open, a read_committed reader cannot read past its first record (the last
stable offset). Compaction leaves gaps too. So a reader's position is not the last
offset it was given: ``ReadProgress.reached`` also takes the offset of each
``_PARTITION_EOF`` event, where librdkafka says it reached the end it could read. The one
rule: a reader has caught up with a set of end offsets (``stable_ends``: what a
read_committed consumer can read, i.e. the last stable offset) once its position in
every partition is at or past them. ``TopicReader`` reads whole topics that way; the
check API's state view, the alerting service's topic tails, the demo's summaries and
the tests all use it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from groundwork.errors import UserError
from groundwork.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

TopicPart = tuple[str, int]  # (real topic, partition)
RawRecord = tuple[int, int, bytes | None, bytes | None]  # partition, offset, key, value
KAFKA_TIMEOUT_S = 10.0


# -- client configs ---------------------------------------------------------------------


def _client(bootstrap: str, client_id: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": client_logger()}
    if client_id is not None:
        config["client.id"] = client_id
    return config


def producer_config(settings: Settings, client_id: str | None = None, /,
                    **overrides: Any) -> dict[str, Any]:
    """A producer every consumer of its topics can rely on; ``overrides`` (librdkafka
    property names, so mostly passed as ``**{"linger.ms": 5}``) win."""
    return {
        **_client(settings.kafka_bootstrap, client_id),
        # every producer hashes keys alike (Java's murmur2, as the Java clients and
        # groundwork.partitioning): co-partitioned topics keep a workspace on one partition
        "partitioner": "murmur2_random",
        "enable.idempotence": True,  # no duplicates or reordering from retries
        "acks": "all",
        "compression.type": "lz4",
        **overrides,
    }


def consumer_config(settings: Settings, group_id: str, client_id: str | None = None, /,
                    **overrides: Any) -> dict[str, Any]:
    """A consumer that commits only what it says (no auto commit) and never sees a record
    of an aborted transaction; ``overrides`` win."""
    return {
        **_client(settings.kafka_bootstrap, client_id),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # The worker writes its outputs in transactions (librdkafka's default, said here).
        "isolation.level": "read_committed",
        **overrides,
    }


def reader_config(settings: Settings, group_id: str, client_id: str | None = None, /,
                  **overrides: Any) -> dict[str, Any]:
    """A ``consumer_config`` that also tells where partitions end (for ``ReadProgress``)."""
    # The only reliable "read to the end" signal on transactional partitions.
    return consumer_config(settings, group_id, client_id,
                           **{"enable.partition.eof": True, **overrides})


def admin_config(bootstrap: str, /, **overrides: Any) -> dict[str, Any]:
    """An admin client of the broker at ``bootstrap`` (a broker may be checked before
    there are settings for it), its connection noise kept out of the CLI."""
    return {**_client(bootstrap, None), "logger": quiet_logger(), **overrides}


def existing_topics(settings: Settings, timeout_s: float = 10.0) -> dict[str, Any]:
    """Real topic name -> its metadata; a ``UserError`` saying what to do when Kafka is down."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(admin_config(settings.kafka_bootstrap))
    try:
        topics: dict[str, Any] = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise UserError(
            f"Kafka at {settings.kafka_bootstrap} does not answer ({exc.args[0].str()}): "
            "start it with `meter kafka start` or set METER_KAFKA_BOOTSTRAP."
        ) from None
    return topics


class RepeatsHeldBack(logging.Filter):
    """Lets the first record of each kind through, then one per ``every_s`` saying how
    many like it were held back. A kind is the message with its numbers taken out.

    While a broker is away, librdkafka reports every failed reconnect (about 20 lines a
    second, "Connect to ipv4#127.0.0.1:19092 failed: Connection refused"); a service's
    log would otherwise be that and nothing else."""

    _DIGITS: Final = re.compile(r"\d+")
    _MAX_KINDS: Final = 1_000  # librdkafka has few kinds; a bound all the same

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__()
        self.every_s = every_s
        self._clock = clock
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (last let through, held)
        self._lock = threading.Lock()  # librdkafka may log from a client's own thread

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        kind = self._DIGITS.sub("#", message)
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.every_s:
                self._kinds[kind] = (seen[0], seen[1] + 1)
                return False
            if len(self._kinds) >= self._MAX_KINDS:
                self._kinds.clear()
            self._kinds[kind] = (now, 0)
        if seen is not None and seen[1]:
            record.msg = f"{message} ({seen[1]:,} more like it held back)"
            record.args = ()
        return True


def client_logger() -> logging.Logger:
    """The logger of every Kafka client built here: librdkafka's own lines (a broker
    away, a coordinator moving) go through the service's logging, repeats held back."""
    logger = logging.getLogger("meter.kafka.client")
    if not any(isinstance(f, RepeatsHeldBack) for f in logger.filters):
        logger.addFilter(RepeatsHeldBack())
    return logger


def quiet_logger() -> logging.Logger:
    """A logger for admin clients: librdkafka's connection noise stays out of the CLI."""
    logger = logging.getLogger("meter.kafka.admin")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


# -- where partitions end, and where a reader stands --------------------------------------


def partitions(consumer: Consumer, topic: str,
               timeout_s: float = KAFKA_TIMEOUT_S) -> list[TopicPart]:
    """The partitions of a topic; raises ``KafkaException`` if the topic does not exist."""
    from confluent_kafka import KafkaException

    meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
    if meta.error is not None:
        raise KafkaException(meta.error)
    return [(topic, p) for p in sorted(meta.partitions)]


def stable_ends(consumer: Consumer, parts: Iterable[TopicPart],
                timeout_s: float = KAFKA_TIMEOUT_S) -> dict[TopicPart, int]:
    """Where a reader of each partition ends now, as ``consumer`` sees it: for a
    read_committed consumer (every one built here) the last stable offset, not the high
    watermark (a ListOffsets request under read_committed answers it: records of a
    transaction still open are not readable yet)."""
    deadline = time.monotonic() + timeout_s
    return {(t, p): _stable_end(consumer, t, p, deadline) for t, p in parts}


def _not_leader_yet() -> frozenset[int]:
    from confluent_kafka import KafkaError

    return frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                      KafkaError.UNKNOWN_TOPIC_OR_PART})


def _stable_end(consumer: Consumer, topic: str, partition: int, deadline: float) -> int:
    """One partition's end. The broker answers ``NOT_LEADER_FOR_PARTITION`` for a new
    topic until it has created the partition's log, a moment after the controller's
    metadata names it leader (seen on a busy broker right after ``create_topics``), and
    librdkafka does not retry this call: it is asked again until ``deadline``."""
    from confluent_kafka import KafkaException, TopicPartition

    while True:
        try:
            return int(consumer.get_watermark_offsets(
                TopicPartition(topic, partition),
                timeout=max(deadline - time.monotonic(), 0.1))[1])
        except KafkaException as exc:
            if exc.args[0].code() not in _not_leader_yet() or time.monotonic() >= deadline:
                raise
        time.sleep(0.1)


class ReadProgress:
    """How far a consumer built with ``reader_config`` has read each partition.

    ``reached`` is the reader's position: everything readable before it has been
    delivered. It is the last record's offset + 1, or the offset of a ``_PARTITION_EOF``
    event, which lies past any markers, aborted records and compaction gaps (the last
    stable offset under read_committed); before either, the offset the reader started at.
    """

    def __init__(self, starts: Mapping[TopicPart, int] | None = None) -> None:
        self.reached: dict[TopicPart, int] = dict(starts or {})

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
        return False  # other errors are transient (librdkafka retries) or surface elsewhere

    def caught_up(self, ends: Mapping[TopicPart, int]) -> bool:
        """The one rule: the position in every partition is at or past its end offset."""
        return all(self.reached.get(tp, 0) >= end for tp, end in ends.items())


class TopicReader:
    """Reads partitions from the offsets given (by default the beginning) and keeps
    following them; never joins its group, never commits: every reader reads everything.

    ``poll`` returns records only; ``caught_up(ends)`` says whether everything up to
    ``ends`` (from ``ends()``, taken when the caller needs it) has been returned.
    """

    def __init__(self, settings: Settings, group_id: str | None = None,
                 client_id: str | None = None) -> None:
        from confluent_kafka import Consumer

        self._settings = settings
        self._group_id = group_id or f"meter-reader-{uuid.uuid4()}"
        self.consumer = Consumer(reader_config(settings, self._group_id, client_id))
        self.parts: list[TopicPart] = []
        self.progress = ReadProgress()
        self._probe: Consumer | None = None
        self._probe_lock = threading.Lock()

    def partitions(self, topics: Iterable[str],
                   timeout_s: float = KAFKA_TIMEOUT_S) -> list[TopicPart]:
        """The partitions of ``topics`` (real names); ``KafkaException`` if one is missing."""
        return [tp for topic in topics for tp in partitions(self.consumer, topic, timeout_s)]

    def assign(self, starts: Mapping[TopicPart, int] | Iterable[TopicPart]) -> None:
        """Read these partitions, from the offsets mapped to them or from the beginning."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        if isinstance(starts, Mapping):
            offsets = dict(starts)
            self.progress = ReadProgress(offsets)
        else:
            offsets = dict.fromkeys(starts, OFFSET_BEGINNING)
            self.progress = ReadProgress()
        self.parts = list(offsets)
        self.consumer.assign([TopicPartition(t, p, o) for (t, p), o in offsets.items()])

    def poll(self, max_records: int = 1000, timeout_s: float = 0.5) -> list[Message]:
        """The next records (end-of-partition events only move the position)."""
        return [msg for msg in self.consumer.consume(max_records, timeout_s)
                if self.progress.observe(msg)]

    def ends(self) -> dict[TopicPart, int]:
        """Where the assigned partitions end now (``stable_ends``); any thread may ask.

        Asked by a second consumer that never fetches: on the reader's own connections
        each request would queue behind a fetch the broker holds for up to
        ``fetch.wait.max.ms``, half a second per partition.
        """
        from confluent_kafka import Consumer

        with self._probe_lock:
            if self._probe is None:
                self._probe = Consumer(consumer_config(self._settings, self._group_id))
            return stable_ends(self._probe, self.parts)

    def caught_up(self, ends: Mapping[TopicPart, int]) -> bool:
        return self.progress.caught_up(ends)

    def read_to(self, ends: Mapping[TopicPart, int], on_record: Callable[[Message], None],
                timeout_s: float, what: str,
                done: Callable[[], bool] = lambda: False) -> None:
        """Hand every record to ``on_record`` until caught up with ``ends`` (or ``done``);
        ``TimeoutError`` if that takes longer than ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not (done() or self.caught_up(ends)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {what} within {timeout_s:.0f} s")
            for msg in self.poll():
                on_record(msg)

    def close(self) -> None:
        self.consumer.close()
        with self._probe_lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None


# -- whole topics and consumer groups -------------------------------------------------------


def read_raw(settings: Settings, base: str, timeout_s: float = 30.0) -> list[RawRecord]:
    """Every committed record of a topic up to its current end, undecoded, with where it
    lies: [(partition, offset, key, value)] (tombstones have value None).

    The end is each partition's last stable offset when the read starts: past any
    trailing transaction marker, and before a transaction still open.
    Raises ``TimeoutError`` if the end is not reached in time.
    """
    topic = settings.topic(base)
    reader = TopicReader(settings)
    out: list[RawRecord] = []

    def keep(msg: Message) -> None:
        out.append((int(msg.partition() or 0), int(msg.offset() or 0), msg.key(), msg.value()))

    try:
        reader.assign(reader.partitions([topic]))
        reader.read_to(reader.ends(), keep, timeout_s, f"{topic} to its end")
    finally:
        reader.close()
    return out


def unread_partitions(settings: Settings, starts: dict[TopicPart, int],
                      timeout_s: float = 30.0) -> set[TopicPart]:
    """The partitions holding a committed record at or after the offset given for each.

    For "has this group processed everything": a group's committed offset may stay
    below the end for good when only markers or aborted records follow it.
    """
    from confluent_kafka import TopicPartition

    reader = TopicReader(settings)
    found: set[TopicPart] = set()

    def note(msg: Message) -> None:
        tp = (str(msg.topic()), int(msg.partition() or 0))
        if tp not in found:  # one record decides; stop fetching that partition
            found.add(tp)
            reader.consumer.pause([TopicPartition(*tp)])

    try:
        reader.assign(starts)
        ends = reader.ends()
        # a partition is decided by a record found, or else once read to its end
        reader.read_to(ends, note, timeout_s, f"{len(starts)} partition(s) from the offsets given",
                       done=lambda: all(tp in found or reader.caught_up({tp: ends[tp]})
                                        for tp in starts))
    finally:
        reader.close()
    return found


def end_offsets(settings: Settings, bases: Sequence[str]) -> dict[TopicPart, int]:
    """(real topic, partition) -> where it ends now (``stable_ends``), for each base topic."""
    from confluent_kafka import Consumer

    consumer = Consumer(consumer_config(settings, "meter-end-offsets"))
    try:
        parts: list[TopicPart] = []
        for base in bases:  # a topic that does not exist has no partitions, no error
            topic = settings.topic(base)
            meta = consumer.list_topics(topic, timeout=KAFKA_TIMEOUT_S).topics[topic]
            parts += [(topic, p) for p in sorted(meta.partitions)]
        return stable_ends(consumer, parts)
    finally:
        consumer.close()


def committed_offsets(settings: Settings, group: str, tps: Iterable[TopicPart]
                      ) -> dict[TopicPart, int | None]:
    """(real topic, partition) -> the group's committed offset, None where it has none.

    Asked by a plain consumer that never joins the group. Raises ``KafkaException`` when
    the broker cannot say (down, or its group coordinator still loading after a start).
    Offsets committed in a transaction count once it commits; a pending one is not
    waited for (read_committed would wait, up to the transaction timeout of a worker
    killed mid-transaction).
    """
    from confluent_kafka import Consumer, TopicPartition

    # no require_stable: an observer, not the group's next owner
    consumer = Consumer(consumer_config(settings, group,
                                        **{"isolation.level": "read_uncommitted"}))
    try:
        found = consumer.committed([TopicPartition(t, p) for t, p in tps],
                                   timeout=KAFKA_TIMEOUT_S)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}


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
