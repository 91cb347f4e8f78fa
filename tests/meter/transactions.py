"""Writing records the way the worker does: with a transactional producer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, Producer

from groundwork.kafka import stable_ends
from groundwork.settings import Settings
from schemas.codec import encode_record
from streams.state_view import heartbeat_record

Item = tuple[int | None, bytes, bytes]  # (partition, None for the key's; key; value)


def state_record(workspace: str, version: int) -> dict[str, Any]:
    """A minimal valid ``quota.state`` record; ``as_of`` = ``version`` (tests compare it)."""
    return {**heartbeat_record("test", version, version), "workspace_id": workspace}


def state_item(partition: int, workspace: str, version: int) -> Item:
    return (partition, workspace.encode(),
            encode_record("quota.state", state_record(workspace, version)))


class TransactionalWriter:
    """One ``transactional.id``: every ``commit`` / ``abort`` / ``open`` is one transaction."""

    def __init__(self, settings: Settings, base_topic: str) -> None:
        self.topic = settings.topic(base_topic)
        self._producer = Producer({"bootstrap.servers": settings.kafka_bootstrap,
                                   "transactional.id": f"test-{uuid.uuid4().hex}",
                                   "partitioner": "murmur2_random"})
        self._producer.init_transactions(30)
        # where a read_committed reader ends (the last stable offset) and where the log
        # ends (the high watermark): equal once no transaction is open or unsettled
        self._stable = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                                 "group.id": "unused", "isolation.level": "read_committed"})
        self._log_end = Consumer({"bootstrap.servers": settings.kafka_bootstrap,
                                  "group.id": "unused", "isolation.level": "read_uncommitted"})
        self._partitions = range(settings.kafka_partitions)

    def _settle(self, timeout_s: float = 30.0) -> None:
        """Until the transaction's markers are on the log. ``commit_transaction`` and
        ``abort_transaction`` return once the coordinator has decided; it writes the
        markers to the partitions after that, and only then does the last stable offset
        move (a reader asking for the end at once could still see the old one)."""
        deadline = time.monotonic() + timeout_s
        parts = [(self.topic, p) for p in self._partitions]
        # stable_ends asks each consumer where it ends (and again while a new topic's
        # partition has no leader yet)
        while stable_ends(self._stable, parts) != stable_ends(self._log_end, parts):
            assert time.monotonic() < deadline, f"{self.topic} did not settle"
            time.sleep(0.02)

    def _write(self, items: Sequence[Item]) -> None:
        self._producer.begin_transaction()
        for partition, key, value in items:
            self._producer.produce(self.topic, key=key, value=value,
                                   partition=-1 if partition is None else partition)  # -1: by key
        # abort_transaction purges what is still queued: send it, so it is on the log.
        assert self._producer.flush(30) == 0

    def commit(self, items: Sequence[Item]) -> None:
        self._write(items)
        self._producer.commit_transaction(30)
        self._settle()

    def abort(self, items: Sequence[Item]) -> None:
        self._write(items)
        self._producer.abort_transaction(30)
        self._settle()  # the aborted records really sit before the end a reader sees

    @contextmanager
    def open(self, items: Sequence[Item]) -> Iterator[None]:
        """A transaction left open while the body runs, committed after it."""
        self._write(items)
        try:
            yield
        finally:
            self._producer.commit_transaction(30)
            self._settle()
