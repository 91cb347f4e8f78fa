"""Writing records the way the worker does: with a transactional producer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Producer

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

    def abort(self, items: Sequence[Item]) -> None:
        self._write(items)
        self._producer.abort_transaction(30)
        # The broker writes the abort markers after answering: let them land, so the
        # aborted records really sit before the end the reader sees.
        time.sleep(0.5)

    @contextmanager
    def open(self, items: Sequence[Item]) -> Iterator[None]:
        """A transaction left open while the body runs, committed after it."""
        self._write(items)
        try:
            yield
        finally:
            self._producer.commit_transaction(30)
