"""One batch of raw Kafka messages in, table writes and output records out.

The glue between the Faust agent and the pure core, kept free of Faust so it is
tested on its own: decode (``schemas.codec``), fence redelivered offsets, call the
core (``WorkspaceMeter.apply``), encode the outputs. The agent only feeds it
messages and performs the writes and sends it returns, in the order that makes
at-least-once delivery exact (see ``streams/app.py`` and the README):

1. each changed workspace's state is written to the table, once per batch, with an
   outbox holding the crossings and prune requests it produced (no await between
   applying and writing, so a cancelled batch never leaves its acks without its state);
2. the outputs (the outboxes, dead letters) are sent and acknowledged by the broker,
   and the outboxes are emptied (persisted with the workspace's next write);
3. then Faust acks the batch's offsets.

Aggregates and quota state go out on a short timer (``take_snapshots``), once per
changed workspace per tick, not per batch: under load a busy workspace changes
thousands of times a second, and the sink and the check API need its latest value.

A crash before 1 lands replays the batch onto the old state; after it, onto the new
state, where the offset fence skips every event already applied and a non-empty
outbox is sent again (the same records: consumers dedupe by ``alert_id``). Faust acks
a batch even when its body is cancelled (shutdown), which is why the write comes first.
"""

from __future__ import annotations

import base64
import logging
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

from schemas.codec import decode_event, encode_record
from schemas.deadletter import deadletter_record
from schemas.validation import InvalidEvent
from streams.core.meter import WorkspaceMeter
from streams.metrics import WorkerMetrics

_HEADER = struct.Struct(">I")
# Compacted input topics (deploy/topics.toml): tombstones and real offset holes are normal.
COMPACTED_INPUTS = frozenset({"quota.plans", "alerting.settings"})
log = logging.getLogger("meter.worker")


@dataclass(frozen=True, slots=True)
class RawMessage:
    """What the processor needs of one consumed record."""

    topic: str  # the real topic name (with the settings' prefix)
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class OutputRecord:
    topic: str  # the DESIGN.md name; the agent applies the prefix
    key: bytes
    value: bytes


@dataclass(slots=True)
class WorkspaceEntry:
    """A workspace's state as held between batches: the core's state, the offset fences
    and the outbox of crossings and prune requests not yet acknowledged by the broker."""

    meter: WorkspaceMeter
    # (base topic, partition) -> last applied offset. All of one workspace's events of one
    # topic come from one partition (keyed by workspace), so this fences redelivery exactly.
    fences: dict[str, int] = field(default_factory=dict)
    # (base topic, encoded record): written with the state that produced them, sent after,
    # cleared once acknowledged; a workspace recovered with a non-empty outbox sends it
    # again (the same records under the same ids: consumers dedupe by alert_id).
    outbox: list[tuple[str, bytes]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        header = orjson.dumps({
            "fences": self.fences,
            "outbox": [[topic, base64.b64encode(value).decode()] for topic, value in self.outbox],
        })
        return _HEADER.pack(len(header)) + header + self.meter.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> WorkspaceEntry:
        (size,) = _HEADER.unpack_from(data)
        header = orjson.loads(data[4 : 4 + size])
        outbox = [(topic, base64.b64decode(value)) for topic, value in header["outbox"]]
        return cls(meter=WorkspaceMeter.from_bytes(data[4 + size :]), fences=header["fences"],
                   outbox=outbox)


@dataclass(slots=True)
class BatchResult:
    outputs: list[OutputRecord] = field(default_factory=list)
    # workspace key -> (serialized entry, the last message of that workspace in the batch)
    writes: dict[bytes, tuple[bytes, RawMessage]] = field(default_factory=dict)
    # entries whose outbox ``outputs`` holds: ``acknowledged`` empties them
    sent: list[WorkspaceEntry] = field(default_factory=list)

    def acknowledged(self) -> None:
        """The broker acknowledged ``outputs``: the outboxes are done (the next write of
        each workspace persists that)."""
        for entry in self.sent:
            entry.outbox.clear()


class BatchProcessor:
    """Applies batches of raw messages to per-workspace state.

    ``load`` reads a workspace's serialized entry from the table (None when new).
    Deserialized entries are cached between batches (``drop`` forgets the ones of a
    revoked partition), so a busy workspace is decoded once, not once per batch.
    """

    def __init__(
        self,
        load: Callable[[bytes], bytes | None],
        topic_prefix: str = "",
        metrics: WorkerMetrics | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._load = load
        self._prefix = topic_prefix
        self._cache: dict[bytes, tuple[int, WorkspaceEntry]] = {}
        self._dirty: set[bytes] = set()  # workspaces changed since the last snapshots
        self._recovered_outbox: list[OutputRecord] = []  # to send again after a recovery
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self._clock_ms = clock_ms

    def base_topic(self, topic: str) -> str:
        if self._prefix and topic.startswith(self._prefix):
            return topic[len(self._prefix):]
        return topic

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget cached entries of partitions this worker no longer owns."""
        gone = set(partitions)
        for key in [k for k, (p, _) in self._cache.items() if p in gone]:
            del self._cache[key]

    def forget(self) -> None:
        """Forget every cached entry: after a batch failed halfway, the cache may hold
        applied events the table never got; the table is the truth to reload."""
        self._cache.clear()

    def _entry(self, key: bytes, partition: int) -> WorkspaceEntry:
        cached = self._cache.get(key)
        if cached is not None:
            return cached[1]
        data = self._load(key)
        if data is None:
            entry = WorkspaceEntry(meter=WorkspaceMeter(key.decode()))
        else:
            entry = WorkspaceEntry.from_bytes(data)
            # Recovered state: the sink gets a full snapshot under a newer version, so rows
            # emitted before a crash but never persisted are superseded (DESIGN, "State and
            # exactness"); the outbox goes out again.
            entry.meter.mark_all_dirty()
            self._recovered_outbox.extend(
                OutputRecord(topic, key, value) for topic, value in entry.outbox)
        self._cache[key] = (partition, entry)
        return entry

    def process(self, messages: Iterable[RawMessage]) -> BatchResult:
        result = BatchResult()
        touched: dict[bytes, tuple[WorkspaceEntry, RawMessage]] = {}
        metrics = self.metrics
        now_ms = self._clock_ms()
        for msg in messages:
            base = self.base_topic(msg.topic)
            if msg.value is None:
                if base in COMPACTED_INPUTS:  # a tombstone on a compacted control topic
                    continue
                result.outputs.append(self._deadletter(
                    msg, base, "undecodable", "empty message (a tombstone on a usage topic)",
                    now_ms))
                metrics.dead_lettered += 1
                continue
            try:
                event = decode_event(msg.value, now_ms=now_ms, topic=base)
                if msg.key is None or msg.key.decode(errors="replace") != event.workspace_id:
                    raise InvalidEvent(
                        "invalid_value",
                        "the message key must be the event's workspace_id (co-partitioning)",
                        "workspace_id",
                    )
            except InvalidEvent as exc:
                result.outputs.append(self._deadletter(msg, base, exc.reason, exc.detail, now_ms))
                metrics.dead_lettered += 1
                continue
            key = msg.key
            entry = self._entry(key, msg.partition)
            fence_key = f"{base}:{msg.partition}"
            if msg.offset <= entry.fences.get(fence_key, -1):
                metrics.redelivered += 1
                # Written again all the same: after a crash the local store can be ahead
                # of the changelog (stored, killed before the changelog record's ack);
                # this write brings the changelog up to what the fence says.
                touched[key] = (entry, msg)
                continue
            entry.fences[fence_key] = msg.offset
            touched[key] = (entry, msg)
            try:
                outcome = entry.meter.apply(event)
            except Exception as exc:  # a core bug must not lose the event or stop the stream
                log.exception("the metering core failed on %s[%d]@%d", base, msg.partition,
                              msg.offset)
                result.outputs.append(self._deadletter(
                    msg, base, "invalid_value",
                    f"the metering core failed on it: {type(exc).__name__}: {exc}", now_ms))
                metrics.dead_lettered += 1
                continue
            metrics.processed += 1
            if outcome.status == "duplicate":
                metrics.deduplicated += 1
            elif outcome.status == "rejected":
                metrics.dead_lettered += 1
                if outcome.reason == "cycle_closed":
                    metrics.late += 1
                result.outputs.append(
                    self._deadletter(msg, base, outcome.reason or "invalid_value",
                                     outcome.detail or "", now_ms))
            for crossing in outcome.crossings:
                value = encode_record("quota.thresholds", crossing.to_record())
                entry.outbox.append(("quota.thresholds", value))
                result.outputs.append(OutputRecord("quota.thresholds", key, value))
                metrics.crossings += 1
            for prune in outcome.prune_requests:
                value = encode_record("storage.prune_requests", prune.to_record())
                entry.outbox.append(("storage.prune_requests", value))
                result.outputs.append(OutputRecord("storage.prune_requests", key, value))
        result.outputs.extend(self._recovered_outbox)
        self._recovered_outbox.clear()
        for key, (entry, last) in touched.items():
            result.writes[key] = (entry.to_bytes(), last)
        result.sent = [entry for entry, _ in touched.values() if entry.outbox]
        self._dirty.update(touched)
        return result

    def held_in_memory(self) -> tuple[int, int]:
        """(workspaces cached, S6 event ids they hold): what the worker's heap grows with."""
        return len(self._cache), sum(e.meter.remembered_ids() for _, e in self._cache.values())

    def take_snapshots(self, now_ms: int | None = None) -> list[OutputRecord]:
        """``usage.aggregates`` rows and a ``quota.state`` record of every workspace
        changed since the last call (run on a short timer, not per batch).

        This changes the in-memory meters (versions, dirty sets) without writing the
        table: harmless, because a workspace loaded from the table after a crash is
        marked all dirty under a newer version (``_entry``), so anything emitted here
        and not persisted is superseded.
        """
        now = self._clock_ms() if now_ms is None else now_ms
        outputs: list[OutputRecord] = []
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            cached = self._cache.get(key)
            if cached is None:  # its partition was revoked meanwhile
                continue
            meter = cached[1].meter
            for row in meter.take_changed_rows(now):
                outputs.append(OutputRecord(
                    "usage.aggregates", key, encode_record("usage.aggregates", row)))
                self.metrics.aggregate_rows += 1
            outputs.append(OutputRecord(
                "quota.state", key, encode_record("quota.state", meter.quota_state_record(now))))
        return outputs

    def _deadletter(
        self, msg: RawMessage, base: str, reason: str, detail: str, now_ms: int
    ) -> OutputRecord:
        record = deadletter_record(base, msg.partition, msg.offset, reason, detail,
                                   msg.value or b"", now_ms)
        return OutputRecord("usage.deadletter", msg.key or b"",
                            encode_record("usage.deadletter", record))
