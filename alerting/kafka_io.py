"""confluent-kafka plumbing for the alerting consumer: an awaitable producer and topic tails.

Every producer: ``acks=all``, ``enable.idempotence``, ``partitioner=murmur2_random``.
librdkafka calls block, so they run in threads; results come back to the event
loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from groundwork.settings import Settings
from groundwork.topic_reader import ReadProgress, TopicPart, reader_config


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "partitioner": "murmur2_random",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        **extra,
    }


def consumer_config(settings: Settings, group_id: str, **extra: Any) -> dict[str, Any]:
    """A read_committed consumer (the worker writes quota.thresholds in transactions: an
    aborted crossing is never seen) that follows its topics without end-of-partition
    events."""
    return reader_config(settings, group_id, **{"enable.partition.eof": False, **extra})


class AckedProducer:
    """``await send(...)`` returns once the broker acknowledged the record."""

    def __init__(self, settings: Settings) -> None:
        self._producer = Producer(producer_config(settings))
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


def partitions_of(settings: Settings, topics: Sequence[str]) -> list[TopicPartition]:
    probe = Consumer(consumer_config(settings, f"meter-alerts-probe-{uuid.uuid4().hex}"))
    try:
        meta = probe.list_topics(timeout=10)
        found = []
        for topic in topics:
            info = meta.topics.get(topic)
            if info is None or info.error is not None:
                raise KafkaException(f"topic {topic} does not exist (run `meter topics create`)")
            found += [TopicPartition(topic, p) for p in sorted(info.partitions)]
        return found
    finally:
        probe.close()


def stable_ends(settings: Settings, parts: Sequence[TopicPartition]) -> dict[TopicPart, int]:
    """Where a read_committed reader of each partition ends now: its last stable offset.

    (A ListOffsets request under read_committed answers the last stable offset, not the
    high watermark: records of a transaction still open are not readable yet.)
    """
    probe = Consumer(consumer_config(settings, f"meter-alerts-probe-{uuid.uuid4().hex}"))
    try:
        return {(tp.topic, tp.partition): probe.get_watermark_offsets(tp, timeout=10)[1]
                for tp in parts}
    finally:
        probe.close()


Handler = Callable[[Sequence[Message]], None]


class TopicTail:
    """Reads whole topics from the beginning and keeps following them (no consumer group).

    ``handler`` runs on the event loop with each batch; ``caught_up`` waits until
    every record that existed when it was called has been handled.
    """

    def __init__(self, settings: Settings, topics: Sequence[str], handler: Handler,
                 loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._handler = handler
        self._loop = loop
        self._reached: dict[TopicPart, int] = {}
        self._progress = asyncio.Event()
        self._stop = threading.Event()
        self._parts = partitions_of(settings, self._topics)
        # read_committed and partition EOF events: ``ReadProgress`` needs them to see the
        # end of a partition that ends with a transaction marker or is empty.
        self._consumer = Consumer(reader_config(settings, f"meter-alerts-tail-{uuid.uuid4().hex}"))
        self._consumer.assign([TopicPartition(tp.topic, tp.partition, 0) for tp in self._parts])
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        progress = ReadProgress()
        try:
            while not self._stop.is_set():
                batch = [m for m in self._consumer.consume(500, 0.1) if progress.observe(m)]
                # Offsets reached, not last offsets read: the end events take them past
                # compaction gaps and transaction markers, which are never delivered.
                self._loop.call_soon_threadsafe(self._apply, batch, dict(progress.reached))
        finally:
            self._consumer.close()

    def _apply(self, batch: Sequence[Message], reached: dict[TopicPart, int]) -> None:
        if batch:
            self._handler(batch)
        self._reached.update(reached)
        self._progress.set()

    async def caught_up(self) -> None:
        targets = await asyncio.to_thread(stable_ends, self._settings, self._parts)
        while any(self._reached.get(tp, 0) < end for tp, end in targets.items()):
            self._progress.clear()
            await self._progress.wait()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
