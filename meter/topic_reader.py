"""Read a whole topic, from the beginning to the end it has now, decoded; and where a
topic ends and where a consumer group stands on it.

For summaries and tests that need "everything on this topic": the demo's summary,
integration tests. Not a consumer for services (they commit and follow).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

from meter.settings import Settings
from schemas.codec import decode_record


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
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}


def read_all(settings: Settings, base: str, timeout_s: float = 30.0
             ) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every record of a topic up to its current end, decoded: [(key, record)].

    Tombstones are skipped. Raises ``TimeoutError`` if the end is not reached in time.
    """
    from confluent_kafka import Consumer, TopicPartition

    ends = end_offsets(settings, (base,))
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                         "group.id": f"meter-reader-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, 0) for (t, p), end in ends.items() if end > 0])
    out: list[tuple[bytes | None, dict[str, Any]]] = []
    remaining = {k for k, end in ends.items() if end > 0}
    deadline = time.monotonic() + timeout_s
    try:
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {settings.topic(base)} to its end "
                                   f"within {timeout_s:.0f} s")
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                tp = (str(msg.topic()), int(msg.partition() or 0))
                offset, value = int(msg.offset() or 0), msg.value()
                if value is not None and offset < ends[tp]:
                    out.append((msg.key(), decode_record(value)[1]))
                if offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()
    return out
