"""confluent-kafka plumbing for the alerting consumer: the crossings' consumer group
member, an awaitable producer and topic tails (the Kafka side of ``alerting.edges``).

Client configs come from ``groundwork.kafka`` (every producer: ``acks=all``,
``enable.idempotence``, ``partitioner=murmur2_random``). librdkafka calls block, so they
run in threads; results come back to the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from alerting.edges import Consumed, FollowedHandler, FollowedRecord, Partitions
from groundwork.kafka import (
    ReadProgress,
    TopicPart,
    TopicReader,
    consumer_config,
    producer_config,
)
from groundwork.settings import Settings

log = logging.getLogger("meter.alerts")


class KafkaCrossings:
    """A member of the alerting group on ``topic`` (``quota.thresholds``): cooperative-sticky,
    committed offsets only, read_committed. The consumer is made on ``subscribe``."""

    def __init__(self, settings: Settings, group_id: str, topic: str) -> None:
        self._settings = settings
        self._group_id = group_id
        self._topic = topic
        self._consumer: Consumer | None = None

    def _member(self) -> Consumer:
        assert self._consumer is not None, "subscribe first"
        return self._consumer

    def subscribe(self, on_assign: Partitions, on_revoke: Partitions,
                  on_lost: Partitions) -> None:
        def numbers(partitions: list[TopicPartition]) -> list[int]:
            return [p.partition for p in partitions]

        consumer = Consumer(consumer_config(
            self._settings, self._group_id,
            **{"partition.assignment.strategy": "cooperative-sticky",
               "session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000}))
        self._consumer = consumer
        consumer.subscribe([self._topic],
                           on_assign=lambda _c, ps: on_assign(numbers(ps)),
                           on_revoke=lambda _c, ps: on_revoke(numbers(ps)),
                           on_lost=lambda _c, ps: on_lost(numbers(ps)))

    def consume(self, max_records: int, timeout_s: float) -> list[Consumed]:
        consumed = []
        for message in self._member().consume(max_records, timeout_s):
            if message.error() is not None:
                log.warning("consumer error: %s", message.error())
                continue
            consumed.append(Consumed(message.partition() or 0, message.offset() or 0,
                                     message.value()))
        return consumed

    def commit(self, positions: dict[int, int]) -> bool:
        try:
            self._member().commit(
                offsets=[TopicPartition(self._topic, p, o) for p, o in positions.items()],
                asynchronous=False)
            return True
        except KafkaException as exc:
            # e.g. a rebalance moved on meanwhile: the next owner re-reads these crossings
            # and the ledger keeps it from sending any of them twice
            log.warning("commit of %s failed: %s", positions, exc)
            return False

    def pause(self) -> None:
        consumer = self._member()
        consumer.pause(consumer.assignment())

    def resume(self) -> None:
        consumer = self._member()
        consumer.resume(consumer.assignment())

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


class AckedProducer:
    """``await send(...)`` returns once the broker acknowledged the record."""

    def __init__(self, settings: Settings) -> None:
        self._producer = Producer(producer_config(settings, **{"linger.ms": 2}))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="alerts-producer", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def done(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, future, err)

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=done)
                break
            except BufferError:
                await asyncio.sleep(0.05)
        await future

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
        self._stop.set()
        self._thread.join()


def _settle(future: asyncio.Future[None], err: KafkaError | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaException(err))


class TopicTail:
    """Reads whole topics from the beginning and keeps following them (no consumer group).

    From ``start`` on, ``handler`` runs on the event loop with each batch; ``caught_up``
    waits until every record that existed when it was called has been handled
    (``TopicReader``'s rule).
    """

    def __init__(self, settings: Settings, topics: Sequence[str], name: str) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._name = name
        self._handled = ReadProgress()  # the reader's position, as far as handled here
        self._progress = asyncio.Event()
        self._stop = threading.Event()
        self._reader: TopicReader | None = None
        self._thread: threading.Thread | None = None

    def start(self, handler: FollowedHandler, loop: asyncio.AbstractEventLoop) -> None:
        reader = TopicReader(self._settings, f"meter-alerts-tail-{uuid.uuid4().hex}")
        try:
            parts = reader.partitions(self._topics)
        except KafkaException as exc:
            reader.close()
            raise KafkaException(f"a topic of {', '.join(self._topics)} does not exist "
                                 f"(run `meter topics create`): {exc}") from None
        reader.assign({tp: 0 for tp in parts})
        self._reader = reader
        self._thread = threading.Thread(target=self._run, args=(reader, handler, loop),
                                        name=self._name, daemon=True)
        self._thread.start()

    def _run(self, reader: TopicReader, handler: FollowedHandler,
             loop: asyncio.AbstractEventLoop) -> None:
        try:
            while not self._stop.is_set():
                batch = [FollowedRecord(m.topic() or "", m.key(), m.value())
                         for m in reader.poll(500, 0.1)]
                loop.call_soon_threadsafe(self._apply, handler, batch,
                                          dict(reader.progress.reached))
        finally:
            reader.close()

    def _apply(self, handler: FollowedHandler, batch: Sequence[FollowedRecord],
               reached: dict[TopicPart, int]) -> None:
        if batch:
            handler(batch)
        self._handled.reached.update(reached)
        self._progress.set()

    async def caught_up(self) -> None:
        assert self._reader is not None, "start first"
        ends = await asyncio.to_thread(self._reader.ends)  # where the topics end now
        while not self._handled.caught_up(ends):
            self._progress.clear()
            await self._progress.wait()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
