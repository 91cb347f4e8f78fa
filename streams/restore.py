"""Restore: bring the local store of assigned partitions up to the end of their changelogs.

Each partition is read from the changelog offsets saved in the local store (a restart
with its disk replays only the tail) or, when none is saved or a saved offset is out of
range (compacted past, or the topic was recreated), wiped and read whole. The reader
uses read_committed and stops at each partition's end of partition, which librdkafka
raises at the last stable offset (the high watermark may never be reached past a
trailing commit marker). Every partition is read in one pass, so a restore costs one
fetch round, not one per partition. Records go to the store in write batches, each with
the changelog offsets it reflects, so a restore cut short resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streams.idstore import IdStore
from streams.localstore import LocalStore
from streams.processor import CHANGELOGS, WORKSPACES_CHANGELOG

log = logging.getLogger("meter.worker")
WRITE_EVERY: Final = 20_000  # restored records per local write batch
TIMEOUT_S: Final = 60.0



def drain(consumer: Consumer, limit: int, wait_s: float) -> list[Message]:
    """What the consumer holds now, up to ``limit``; if nothing, wait up to ``wait_s`` for
    the first message (``consume`` with a timeout would wait the whole timeout for the
    ``limit``-th: latency)."""
    messages: list[Message] = consumer.consume(limit, 0)
    if messages or wait_s <= 0:
        return messages
    first = consumer.poll(wait_s)
    if first is None:
        return []
    return [first, *consumer.consume(limit - 1, 0)]



class RestoreFailed(RuntimeError):
    """A changelog could not be read to its end."""


class ChangelogRestore:
    """Reads the worker's changelogs into its local store (see the module docstring)."""

    def __init__(self, consumer: Consumer, store: LocalStore, ids: IdStore,
                 topic: Callable[[str], str]) -> None:
        self._consumer = consumer  # assign() only, read_committed, partition EOF on
        self._store = store
        self._ids = ids
        self._topic = topic  # base name -> real topic name
        self._base = {topic(c): c for c in CHANGELOGS}
        self.wiped = 0

    def restore(self, partitions: Iterable[int]) -> int:
        """Records read for ``partitions``, now in the store up to their changelogs' end."""
        reads = [tp for p in sorted(partitions) for tp in self._starts(p)]
        if not reads:
            return 0
        self._consumer.assign(reads)
        try:
            return self._read({(tp.topic, tp.partition) for tp in reads})
        finally:
            self._consumer.unassign()

    def _starts(self, partition: int) -> list[TopicPartition]:
        """Where to read each changelog of ``partition`` from; none that is read to its
        end already (its end saved at once, so a restart does not wipe it again)."""
        bounds = {c: self._consumer.get_watermark_offsets(
            TopicPartition(self._topic(c), partition), TIMEOUT_S) for c in CHANGELOGS}
        saved: dict[str, int] = {}
        for changelog, (low, end) in bounds.items():
            offset = self._store.changelog_offset(partition, changelog)
            if offset is None or not low <= offset <= end:
                if offset is not None:
                    log.warning("partition %d: saved offset %d of %s is outside [%d, %d] "
                                "(compacted past, or the topic was recreated): restoring the "
                                "partition whole", partition, offset, changelog, low, end)
                saved = {}
                break
            saved[changelog] = offset
        if not saved:
            self._store.wipe(partition)
            self.wiped += 1
            saved = {c: low for c, (low, _) in bounds.items()}
        reads = []
        done = self._store.batch()
        for changelog, offset in saved.items():
            end = bounds[changelog][1]
            if offset < end:
                reads.append(TopicPartition(self._topic(changelog), partition, offset))
            else:
                self._store.set_changelog_offset(done, partition, changelog, end)
        self._store.write(done)
        return reads

    def _read(self, pending: set[tuple[str, int]]) -> int:
        offsets: dict[tuple[str, int], int] = {}  # (base changelog, partition) -> next
        batch = self._store.batch()
        count = 0
        last_progress = time.monotonic()
        while pending:
            if time.monotonic() - last_progress > 5 * TIMEOUT_S:
                raise RestoreFailed(f"no progress reading {sorted(pending)}")
            for msg in drain(self._consumer, WRITE_EVERY, 1.0):
                last_progress = time.monotonic()
                topic, partition = str(msg.topic()), int(msg.partition() or 0)
                changelog = self._base[topic]
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        offsets[(changelog, partition)] = int(msg.offset() or 0)
                        pending.discard((topic, partition))
                    elif error.fatal():
                        raise RestoreFailed(f"{topic}[{partition}]: {error.str()}")
                    else:
                        log.warning("restoring %s[%d]: %s", topic, partition, error.str())
                    continue
                key, value = msg.key() or b"", msg.value()
                if changelog == WORKSPACES_CHANGELOG:
                    self._store.put_workspace(batch, partition, key, value)
                elif value is not None:
                    self._ids.put_set(batch, partition, key, value)
                else:  # an expired bucket: its deletes read the store, so flush first
                    self._flush(batch, offsets)
                    batch = self._store.batch()
                    self._ids.delete_set_bucket(batch, partition, key)
                offsets[(changelog, partition)] = int(msg.offset() or 0) + 1
                count += 1
            if batch.len() >= WRITE_EVERY:
                self._flush(batch, offsets)
                batch = self._store.batch()
        self._flush(batch, offsets)
        return count

    def close(self) -> None:
        self._consumer.close()

    def _flush(self, batch: Any, offsets: dict[tuple[str, int], int]) -> None:
        for (changelog, partition), offset in offsets.items():
            self._store.set_changelog_offset(batch, partition, changelog, offset)
        self._store.write(batch)
