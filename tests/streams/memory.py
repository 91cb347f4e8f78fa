"""An in-memory source and sink for the worker's batch processor (streams/processor.py),
in the manner of Bytewax's ``TestingSource`` and ``TestingSink``: the worker's loop
(streams/worker.py) without Kafka, for fast tests of what its transactions hold.

- ``MemorySource`` holds the input topics as logs per (topic, partition), filled as the
  real producers fill them: each event on its type's topic, on the partition Kafka's
  default partitioner picks for its workspace key (murmur2), at the next offset. Batches
  are formed by the worker's own ``EventTimeAligner`` (S1), every partition read to its
  end; ``seek`` goes back to committed offsets, as the worker's rewind does.
- ``MemorySink`` takes each ``BatchResult`` as one transaction. A commit keeps its
  outputs (Avro decoded), the input offsets, and the changelogs' next offsets, and puts
  the batch's state into the real local store (``write_committed`` with a ``WriteBatch``,
  as ``Worker._write_committed`` does); an abort keeps nothing and calls
  ``processor.abort()``.
- ``run`` drives them: batch, process, commit, or (every ``abort_every``-th transaction)
  abort and read again from the committed offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from groundwork.partitioning import partition_for
from schemas.codec import decode_record, encode_event, key_of, topic_of
from schemas.events import Event
from schemas.jsonl import parse_line
from schemas.validation import InvalidEvent
from streams.align import EventTimeAligner
from streams.localstore import LocalStore
from streams.processor import CHANGELOGS, BatchProcessor, BatchResult, Incoming, decode_incoming
from streams.worker import INPUT_TOPICS

NOW_MS: Final = 1_772_532_000_000  # 2026-03-03T10:00:00Z: the worker's wall clock here
TopicPartition = tuple[str, int]


def _event_of(item: Event | Mapping[str, Any] | bytes | str) -> Event:
    """An event from a typed event, a JSON object (dict) or a JSON line."""
    if isinstance(item, Mapping):
        return parse_line(orjson.dumps(dict(item)), now_ms=None)
    if isinstance(item, bytes | str):
        return parse_line(item, now_ms=None)
    return item


@dataclass
class MemorySource:
    """The worker's input topics in memory, read in batches of ``batch_size``."""

    partitions: int = 4
    batch_size: int = 100
    now_ms: int = NOW_MS  # the wall clock ``decode_incoming`` validates against
    logs: dict[TopicPartition, list[Incoming]] = field(default_factory=dict)
    rejected_lines: int = 0  # lines ``extend`` refused, as ``meter publish`` would
    _aligner: EventTimeAligner = field(init=False)

    def __post_init__(self) -> None:
        self._aligner = EventTimeAligner(INPUT_TOPICS)
        self._aligner.assign(range(self.partitions))

    @classmethod
    def of(cls, items: Iterable[Event | Mapping[str, Any] | bytes | str], *,
           partitions: int = 4, batch_size: int = 100) -> MemorySource:
        source = cls(partitions=partitions, batch_size=batch_size)
        source.extend(items)
        return source

    def extend(self, items: Iterable[Event | Mapping[str, Any] | bytes | str]) -> None:
        """Publish events; an invalid one is refused at the edge (counted, never on a
        topic), as ``meter publish`` refuses it."""
        for item in items:
            try:
                event = _event_of(item)
            except InvalidEvent:
                self.rejected_lines += 1
                continue
            self.publish(event)

    def publish(self, event: Event) -> Incoming:
        """One event on its topic, keyed and partitioned by its workspace."""
        return self.append(topic_of(event), key_of(event.workspace_id), encode_event(event))

    def append(self, topic: str, key: bytes | None, value: bytes | None) -> Incoming:
        """Any bytes on an input topic (undecodable ones too), on the key's partition."""
        partition = partition_for(key or b"", self.partitions)
        log = self.logs.setdefault((topic, partition), [])
        rec = decode_incoming(topic, partition, len(log), key, value, self.now_ms)
        log.append(rec)
        self._aligner.add(rec)
        self._aligner.mark_end(topic, partition)
        return rec

    def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Read every partition again from ``offsets`` (next offset to read; absent: 0),
        forgetting what was queued, as the worker's rewind does (``aligner.clear``)."""
        self._aligner.clear()
        for (topic, partition), log in self.logs.items():
            for rec in log[offsets.get((topic, partition), 0):]:
                self._aligner.add(rec)
        for topic in INPUT_TOPICS:
            for partition in range(self.partitions):
                self._aligner.mark_end(topic, partition)

    def take(self) -> list[Incoming]:
        """The next batch (empty: every partition is read to its end)."""
        return self._aligner.take(self.batch_size, 0.0, lambda _t, _p: False)

    def ends(self) -> dict[TopicPartition, int]:
        return {tp: len(log) for tp, log in self.logs.items()}


@dataclass(frozen=True, slots=True)
class Committed:
    """One committed output record; ``value`` decoded where it is Avro."""

    topic: str
    partition: int
    key: bytes
    value: Any


@dataclass
class MemorySink:
    """The worker's transactions in memory, over a real local store."""

    store: LocalStore
    outputs: list[Committed] = field(default_factory=list)  # every committed record, in order
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # committed input offsets
    changelog_ends: dict[TopicPartition, int] = field(default_factory=dict)
    transactions: int = 0  # committed
    aborted: int = 0

    def commit(self, processor: BatchProcessor, result: BatchResult) -> None:
        written: set[TopicPartition] = set()  # changelog partitions of this transaction
        for out in result.outputs:
            if out.topic in CHANGELOGS:
                tp = (out.topic, out.partition)
                self.changelog_ends[tp] = self.changelog_ends.get(tp, 0) + 1
                written.add(tp)
                value: Any = out.value
            else:
                value = None if out.value is None else decode_record(out.value)[1]
            self.outputs.append(Committed(out.topic, out.partition, out.key, value))
        self.offsets.update(result.offsets)
        batch = self.store.batch()
        processor.write_committed(result, batch)
        for changelog, partition in written:  # as delivery reports give them to the worker
            self.store.set_changelog_offset(batch, partition, changelog,
                                            self.changelog_ends[(changelog, partition)])
        self.store.write(batch)
        self.transactions += 1

    def abort(self, processor: BatchProcessor) -> None:
        processor.abort()
        self.aborted += 1

    def records(self, topic: str) -> list[Any]:
        """The committed values of ``topic``, in the order they were written."""
        return [c.value for c in self.outputs if c.topic == topic]

    def latest(self, topic: str) -> dict[bytes, Any]:
        """A compacted topic as it reads in the end: the last value of each key."""
        return {c.key: c.value for c in self.outputs if c.topic == topic}


def run(processor: BatchProcessor, source: MemorySource, sink: MemorySink,
        abort_every: int | None = None) -> None:
    """The worker's loop in miniature, from the sink's committed offsets to the end of
    every partition: every ``abort_every``-th transaction aborts, and its records are
    read again from the committed offsets (the worker's rewind)."""
    if abort_every is not None and abort_every < 2:
        raise ValueError("abort_every must be at least 2, or no transaction commits")
    source.seek(sink.offsets)
    attempt = 0
    while batch := source.take():
        attempt += 1
        result = processor.process(batch)
        if abort_every is not None and attempt % abort_every == 0:
            sink.abort(processor)
            source.seek(sink.offsets)
            continue
        sink.commit(processor, result)
