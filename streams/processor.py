"""One batch of consumed records in, everything its transaction writes out.

The glue between the worker's Kafka loop (``streams/worker.py``) and the pure core,
kept free of Kafka so it is tested on its own:

- ``decode_incoming`` decodes and validates one consumed record (``schemas.codec``),
  before the batch is formed: the event time is what aligns the topics (S1);
- ``BatchProcessor.process`` applies a batch to the workspaces' state
  (``WorkspaceMeter.apply``) and returns every record of the batch's transaction:
  crossings, prune requests, dead letters, one ``usage.aggregates`` record per changed
  (workspace, cycle), one ``quota.state`` record and one changelog record per changed
  workspace, and the S6 store's changelog records; with the input offsets to commit;
- after the transaction commits, ``write_committed`` puts the same state into the local
  store's write batch; after an abort, ``abort`` forgets what the batch changed in memory,
  so the workspaces are read again from the store, which holds only committed state.

Versions (``usage.aggregates``, ``quota.state``, the S6 sets' keys) are a sequence in each
workspace's state, so they only grow, across owners too.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from rocksdict import WriteBatch

from schemas.codec import decode_event, encode_record
from schemas.deadletter import deadletter_record
from schemas.events import Event
from schemas.validation import InvalidEvent
from streams.core.dedup import EventIds
from streams.core.meter import WorkspaceMeter
from streams.core.state_codec import decode_meter, encode_meter
from streams.idstore import IdChanges, IdStore
from streams.localstore import LocalStore
from streams.metrics import BatchCounts

_HEADER = struct.Struct(">I")
# Compacted input topics (deploy/topics.toml): a tombstone there is normal, not an error.
COMPACTED_INPUTS: Final = frozenset({"quota.plans", "alerting.settings"})
# The worker's changelogs (base names, deploy/topics.toml), co-partitioned with the inputs.
WORKSPACES_CHANGELOG: Final = "worker.workspaces.changelog"
IDS_CHANGELOG: Final = "worker.ids.changelog"
CHANGELOGS: Final = (WORKSPACES_CHANGELOG, IDS_CHANGELOG)
REJECTED_TIME: Final = -1  # a record that does not decode aligns before every event
log = logging.getLogger("meter.worker")


@dataclass(slots=True)
class Incoming:
    """One consumed record, decoded: an event, a rejection, or nothing to do (a tombstone
    on a compacted control topic); with its original bytes for a dead letter (the core
    may still reject an event: ``cycle_closed``)."""

    topic: str  # the DESIGN.md name (no prefix)
    partition: int
    offset: int
    key: bytes | None
    time: int  # event time for alignment across topics (S1)
    event: Event | None = None
    error: InvalidEvent | None = None
    value: bytes | None = None  # the original bytes, for a dead letter


def decode_incoming(topic: str, partition: int, offset: int, key: bytes | None,
                    value: bytes | None, now_ms: int) -> Incoming:
    """Decode and validate one record of an input topic (S5, S12)."""
    if value is None:
        if topic in COMPACTED_INPUTS:
            return Incoming(topic, partition, offset, key, REJECTED_TIME)
        error = InvalidEvent("undecodable", "empty message (a tombstone on a usage topic)")
        return Incoming(topic, partition, offset, key, REJECTED_TIME, error=error, value=b"")
    try:
        event = decode_event(value, now_ms=now_ms, topic=topic)
        if key is None or key.decode(errors="replace") != event.workspace_id:
            raise InvalidEvent(
                "invalid_value",
                "the message key must be the event's workspace_id (co-partitioning)",
                "workspace_id",
            )
    except InvalidEvent as exc:
        return Incoming(topic, partition, offset, key, REJECTED_TIME, error=exc, value=value)
    return Incoming(topic, partition, offset, key, event.occurred_at, event=event, value=value)


@dataclass(frozen=True, slots=True)
class Output:
    """One record of a batch's transaction."""

    topic: str  # the DESIGN.md name; the worker applies the prefix
    partition: int  # workspace-keyed outputs go to the input's partition (co-partitioning)
    key: bytes
    value: bytes | None


@dataclass(slots=True)
class WorkspaceEntry:
    """A workspace's state between batches: the core's state and, per input topic, the
    last offset applied (the offset fence, an assertion under transactions)."""

    meter: WorkspaceMeter
    fences: dict[str, int] = field(default_factory=dict)  # base topic -> offset

    def to_bytes(self) -> bytes:
        header = orjson.dumps(self.fences)
        return _HEADER.pack(len(header)) + header + encode_meter(self.meter)

    @classmethod
    def from_bytes(cls, data: bytes, ids_from_state: Callable[[Any], EventIds]
                   ) -> WorkspaceEntry:
        (size,) = _HEADER.unpack_from(data)
        meter = decode_meter(data[4 + size:], ids_from_state=ids_from_state)
        return cls(meter=meter, fences=orjson.loads(data[4:4 + size]))


@dataclass(slots=True)
class BatchResult:
    outputs: list[Output] = field(default_factory=list)  # the transaction, changelogs included
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset to apply
    entries: dict[tuple[int, bytes], bytes] = field(default_factory=dict)  # changed state
    ids: IdChanges = field(default_factory=IdChanges)
    fenced: set[int] = field(default_factory=set)  # partitions whose store disagreed
    events: int = 0
    counts: BatchCounts = field(default_factory=BatchCounts)


class BatchProcessor:
    """Applies batches to per-workspace state held in memory, backed by the local store.

    Entries are read from the store on first use and kept in memory while this worker
    owns their partition (``drop_partitions`` forgets them on revocation).
    """

    def __init__(self, store: LocalStore, ids: IdStore,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._store = store
        self._ids = ids
        self._cache: dict[bytes, tuple[int, WorkspaceEntry]] = {}
        self._clock_ms = clock_ms
        self._touched: dict[bytes, tuple[int, WorkspaceEntry]] = {}  # by the open batch

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the entries of partitions this worker no longer owns."""
        gone = set(partitions)
        for key in [k for k, (p, _) in self._cache.items() if p in gone]:
            del self._cache[key]

    def _entry(self, partition: int, key: bytes) -> WorkspaceEntry:
        cached = self._cache.get(key)
        if cached is not None:
            return cached[1]
        data = self._store.workspace(partition, key)
        if data is None:
            entry = WorkspaceEntry(WorkspaceMeter(key.decode(),
                                                  ids=self._ids.of(partition, key)))
        else:
            entry = WorkspaceEntry.from_bytes(
                data, lambda state: self._ids.of(partition, key, state))
        self._cache[key] = (partition, entry)
        return entry

    def process(self, records: Iterable[Incoming]) -> BatchResult:
        result = BatchResult()
        outputs = result.outputs
        counts = result.counts
        now_ms = self._clock_ms()
        # workspaces this batch changed (abort forgets them, even if this raises halfway)
        touched = self._touched = {}
        for rec in records:
            result.offsets[(rec.topic, rec.partition)] = rec.offset + 1
            result.events += 1
            event = rec.event
            if event is None:
                if rec.error is not None:
                    outputs.append(self._deadletter(rec, rec.error.reason, rec.error.detail,
                                                    now_ms, counts))
                continue
            key = rec.key or b""
            entry = self._entry(rec.partition, key)
            if rec.offset <= entry.fences.get(rec.topic, -1):
                # Never under transactions: the store holds state Kafka does not.
                counts.fence_violations += 1
                result.fenced.add(rec.partition)
                continue
            try:
                outcome = entry.meter.apply(event)
            except Exception as exc:  # a core bug must not lose the event or stop the stream
                log.exception("the metering core failed on %s[%d]@%d", rec.topic,
                              rec.partition, rec.offset)
                touched[key] = (rec.partition, entry)  # whatever it changed is kept
                outputs.append(self._deadletter(
                    rec, "invalid_value",
                    f"the metering core failed on it: {type(exc).__name__}: {exc}", now_ms,
                    counts))
                continue
            counts.processed += 1
            status = outcome.status
            if status == "counted":
                entry.fences[rec.topic] = rec.offset
                touched[key] = (rec.partition, entry)
            elif status == "duplicate":
                counts.deduplicated += 1
            else:
                if outcome.reason == "cycle_closed":
                    counts.late += 1
                outputs.append(self._deadletter(rec, outcome.reason or "invalid_value",
                                                outcome.detail or "", now_ms, counts))
            for crossing in outcome.crossings:
                outputs.append(Output("quota.thresholds", rec.partition, key,
                                      encode_record("quota.thresholds", crossing.to_record())))
                counts.crossings += 1
            for prune in outcome.prune_requests:
                outputs.append(Output("storage.prune_requests", rec.partition, key,
                                      encode_record("storage.prune_requests", prune.to_record())))
        seq_of: dict[bytes, int] = {}
        for key, (partition, entry) in touched.items():
            meter = entry.meter
            for aggregate in meter.take_changed_aggregates(now_ms):
                outputs.append(Output("usage.aggregates", partition, key,
                                      encode_record("usage.aggregates", aggregate)))
                counts.aggregate_records += 1
            outputs.append(Output("quota.state", partition, key,
                                  encode_record("quota.state", meter.quota_state_record(now_ms))))
            value = entry.to_bytes()
            outputs.append(Output(WORKSPACES_CHANGELOG, partition, key, value))
            result.entries[(partition, key)] = value
            seq_of[key] = meter.version
        result.ids = self._ids.take_changes(seq_of)
        outputs.extend(Output(IDS_CHANGELOG, p, key, value)
                       for p, key, value in result.ids.records)
        return result

    def write_committed(self, result: BatchResult, batch: WriteBatch) -> None:
        """The committed batch's state, into the local store's write batch."""
        for (partition, key), value in result.entries.items():
            self._store.put_workspace(batch, partition, key, value)
        self._ids.write(result.ids, batch)
        self._touched = {}

    def abort(self) -> None:
        """The batch's transaction aborted: forget what it changed in memory (the store
        holds the committed state, read again on the next use)."""
        for key in self._touched:
            self._cache.pop(key, None)
        self._touched = {}
        self._ids.discard()

    def workspaces_cached(self) -> int:
        return len(self._cache)

    @staticmethod
    def _deadletter(rec: Incoming, reason: str, detail: str, now_ms: int,
                    counts: BatchCounts) -> Output:
        counts.dead_lettered += 1
        record = deadletter_record(rec.topic, rec.partition, rec.offset, reason, detail,
                                   rec.value or b"", now_ms)
        return Output("usage.deadletter", rec.partition, rec.key or b"",
                      encode_record("usage.deadletter", record))
