"""confluent-kafka plumbing for the alerting consumer: an awaitable producer and topic tails.

Client configs come from ``groundwork.kafka`` (every producer: ``acks=all``,
``enable.idempotence``, ``partitioner=murmur2_random``). librdkafka calls block, so they
run in threads; results come back to the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from groundwork.kafka import ReadProgress, TopicPart, TopicReader, producer_config
from groundwork.settings import Settings


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


Handler = Callable[[Sequence[Message]], None]


class TopicTail:
    """Reads whole topics from the beginning and keeps following them (no consumer group).

    ``handler`` runs on the event loop with each batch; ``caught_up`` waits until
    every record that existed when it was called has been handled (``TopicReader``'s rule).
    """

    def __init__(self, settings: Settings, topics: Sequence[str], handler: Handler,
                 loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._handler = handler
        self._loop = loop
        self._handled = ReadProgress()  # the reader's position, as far as handled here
        self._progress = asyncio.Event()
        self._stop = threading.Event()
        self._reader = TopicReader(settings, f"meter-alerts-tail-{uuid.uuid4().hex}")
        try:
            parts = self._reader.partitions(topics)
        except KafkaException as exc:
            self._reader.close()
            raise KafkaException(f"a topic of {', '.join(topics)} does not exist "
                                 f"(run `meter topics create`): {exc}") from None
        self._reader.assign({tp: 0 for tp in parts})
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader = self._reader
        try:
            while not self._stop.is_set():
                batch = reader.poll(500, 0.1)
                self._loop.call_soon_threadsafe(self._apply, batch, dict(reader.progress.reached))
        finally:
            reader.close()

    def _apply(self, batch: Sequence[Message], reached: dict[TopicPart, int]) -> None:
        if batch:
            self._handler(batch)
        self._handled.reached.update(reached)
        self._progress.set()

    async def caught_up(self) -> None:
        ends = await asyncio.to_thread(self._reader.ends)  # where the topics end now
        while not self._handled.caught_up(ends):
            self._progress.clear()
            await self._progress.wait()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
