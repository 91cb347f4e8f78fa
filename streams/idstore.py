"""The stream's S6 id store: event ids in the local store and a compacted changelog, never
inside the workspace's state (DESIGN.md, "The S6 store").

An id is kept as a 16-byte hash of (workspace, type, event_id) with its ``occurred_at``,
so the 24 h rule of S6 stays exact (``seen`` compares the stored time with the type's
latest). Ids are grouped by event-time bucket (six hours) for expiry only: when a type's
latest ``occurred_at`` moves on, its buckets wholly outside the window are dropped at
once, so an idle workspace keeps its ids and a busy one holds about one window (and at
most one bucket more).

What a batch remembers is held in memory until its transaction commits; then it goes
to the local store and, as changelog records, to Kafka in that same transaction:

- one record per (workspace, type, bucket) and batch, keyed (workspace, type, bucket,
  seq) with ``seq`` the workspace's state version after the batch (it only grows,
  across owners too, so keys never collide), its value the packed ids (hash + time);
- a tombstone for every such key when its bucket expires. The topic is compacted, never
  time-retained: time retention would forget ids S6 must keep.

Per id the local store holds one ``P`` key (hash -> time); the packed set is stored once
under its ``S`` key, which is how expiry finds a bucket's ids.
"""

from __future__ import annotations

import struct
from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, Final

from rocksdict import WriteBatch

from streams.core.dedup import ID_KINDS, NO_TIME, WINDOW_MS
from streams.localstore import ID_SET, ID_TIME, LocalStore, partition_prefix, range_of

# How often a busy workspace's ids expire: each bucket is dropped whole (one scan of its
# sets), so it keeps up to 30 h of ids for a 24 h window; hourly buckets cost five times
# the scans (bench/bench_worker.py profile: 13 % of a backlog's time in those scans).
BUCKET_MS: Final = 6 * 3_600_000
_TIME = struct.Struct(">q")
_ENTRY: Final = 16 + 8  # hash + occurred_at in a packed set
_BUCKET_SEQ = struct.Struct(">IQ")


def id_hash(workspace: bytes, kind: int, event_id: str) -> bytes:
    """16 bytes naming (workspace, type, event_id); a collision needs ~2^64 ids."""
    return blake2b(len(workspace).to_bytes(2, "big") + workspace + bytes((kind,))
                   + event_id.encode(), digest_size=16).digest()


def set_prefix(workspace: bytes, kind: int) -> bytes:
    """The id-set key's (workspace, type) part: changelog keys start with it."""
    return len(workspace).to_bytes(2, "big") + workspace + bytes((kind,))


def set_key(workspace: bytes, kind: int, bucket: int, seq: int) -> bytes:
    """The changelog key of one packed id set (and, behind ``S`` + partition, its store key)."""
    return set_prefix(workspace, kind) + _BUCKET_SEQ.pack(bucket, seq)


def parse_set_key(key: bytes) -> tuple[bytes, int, int]:
    """(workspace, type, bucket) of an id-set key."""
    size = int.from_bytes(key[:2], "big")
    workspace = key[2:2 + size]
    kind = key[2 + size]
    bucket, _ = _BUCKET_SEQ.unpack_from(key, 3 + size)
    return workspace, kind, bucket


def expired_below(latest: int) -> int:
    """Buckets below this one lie wholly outside the S6 window behind ``latest``."""
    return (latest - WINDOW_MS) // BUCKET_MS


@dataclass(slots=True)
class IdChanges:
    """What one batch changed in the S6 store: changelog records, then local writes."""

    # (partition, changelog key, packed ids or None for a tombstone)
    records: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)
    # (partition, changelog key, packed ids) of the sets that expired: deleted locally
    expired: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    # (partition, changelog key, packed ids) of the new sets
    new_sets: list[tuple[int, bytes, bytes]] = field(default_factory=list)


class IdStore:
    """The S6 ids of every partition this worker holds, and the open batch's additions."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self._times: dict[bytes, int] = {}  # P key -> occurred_at, remembered this batch
        # (partition, workspace, type, bucket) -> packed ids remembered this batch
        self._sets: dict[tuple[int, bytes, int, int], list[bytes]] = {}
        self._expired: list[tuple[int, bytes, int, int]] = []  # (p, workspace, type, bucket)

    def of(self, partition: int, workspace: bytes, state: Any = None) -> StoredIds:
        """One workspace's ``EventIds`` (``state``: what its ``to_state`` kept)."""
        ids = StoredIds(self, partition, workspace)
        if state is not None:
            ids.latest = list(state[0])
            ids.buckets = [list(b) for b in state[1]]
        return ids

    def time_of(self, id_key: bytes) -> int | None:
        t = self._times.get(id_key)
        if t is not None:
            return t
        value = self._store.get(id_key)
        return None if value is None else int(_TIME.unpack(value)[0])

    def add(self, partition: int, workspace: bytes, kind: int, bucket: int, id_key: bytes,
            occurred_at: int) -> None:
        self._times[id_key] = occurred_at
        packed = id_key[3:] + _TIME.pack(occurred_at)
        sets = self._sets
        key = (partition, workspace, kind, bucket)
        found = sets.get(key)
        if found is None:
            sets[key] = [packed]
        else:
            found.append(packed)

    def expire(self, partition: int, workspace: bytes, kind: int, bucket: int) -> None:
        self._expired.append((partition, workspace, kind, bucket))

    def discard(self) -> None:
        """Forget the open batch (its transaction aborted)."""
        self._times.clear()
        self._sets.clear()
        self._expired.clear()

    def take_changes(self, seq_of: dict[bytes, int]) -> IdChanges:
        """The open batch's changes, its sets keyed with ``seq_of[workspace]``; the batch
        is closed (its additions are read from the store once written)."""
        changes = IdChanges()
        for p, ws, kind, bucket in self._expired:
            # remembered, then expired within this batch: never written at all
            self._sets.pop((p, ws, kind, bucket), None)
            start, stop = self._bucket_range(p, ws, kind, bucket)
            for key, value in self._store.scan(start, stop):
                changes.records.append((p, key[3:], None))
                changes.expired.append((p, key[3:], value))
        for (p, ws, kind, bucket), packed in self._sets.items():
            key = set_key(ws, kind, bucket, seq_of[ws])
            value = b"".join(packed)
            changes.records.append((p, key, value))
            changes.new_sets.append((p, key, value))
        self._times = {}
        self._sets = {}
        self._expired = []
        return changes

    def write(self, changes: IdChanges, batch: WriteBatch) -> None:
        """Apply committed changes to the local write batch: expiries first, so an id
        remembered again in a newer bucket keeps its new time."""
        for p, key, value in changes.expired:
            self._delete_set(batch, p, key, value)
        for p, key, value in changes.new_sets:
            self.put_set(batch, p, key, value)

    def put_set(self, batch: WriteBatch, partition: int, key: bytes, value: bytes) -> None:
        """Store one packed set and each of its ids (a batch's or a restored record)."""
        batch.put(partition_prefix(ID_SET, partition) + key, value)
        prefix = partition_prefix(ID_TIME, partition)
        put = batch.put
        for i in range(0, len(value), _ENTRY):
            put(prefix + value[i:i + 16], value[i + 16:i + _ENTRY])

    def delete_set_bucket(self, batch: WriteBatch, partition: int, key: bytes) -> None:
        """A restored tombstone: its whole bucket expired."""
        workspace, kind, bucket = parse_set_key(key)
        start, stop = self._bucket_range(partition, workspace, kind, bucket)
        for stored_key, value in self._store.scan(start, stop):
            self._delete_set(batch, partition, stored_key[3:], value)

    def _bucket_range(self, partition: int, workspace: bytes, kind: int, bucket: int
                      ) -> tuple[bytes, bytes]:
        prefix = partition_prefix(ID_SET, partition) + set_prefix(workspace, kind)
        return prefix + bucket.to_bytes(4, "big"), prefix + (bucket + 1).to_bytes(4, "big")

    def _delete_set(self, batch: WriteBatch, partition: int, key: bytes, value: bytes) -> None:
        """Delete an expired set and its ids, except an id remembered again later (after
        it had expired), which lives on in a newer bucket."""
        bucket_end = _TIME.pack((parse_set_key(key)[2] + 1) * BUCKET_MS)
        prefix = partition_prefix(ID_TIME, partition)
        get = self._store.get
        for i in range(0, len(value), _ENTRY):
            id_key = prefix + value[i:i + 16]
            stored = get(id_key)
            # times are positive: their big-endian bytes order as the numbers do
            if stored is not None and stored < bucket_end:
                batch.delete(id_key)
        batch.delete(partition_prefix(ID_SET, partition) + key)

    @staticmethod
    def partition_range(partition: int) -> Iterable[tuple[bytes, bytes]]:
        return (range_of(partition_prefix(ID_TIME, partition)),
                range_of(partition_prefix(ID_SET, partition)))


class StoredIds:
    """One workspace's S6 memory backed by the ``IdStore`` (an ``EventIds``).

    Its state (serialized with the workspace) is, per type, the latest ``occurred_at``
    and the buckets holding ids (a few: the window spans five); the ids live in the store.
    """

    __slots__ = ("_last", "_partition", "_prefix", "_store", "_workspace", "buckets", "latest")

    def __init__(self, store: IdStore, partition: int, workspace: bytes) -> None:
        self._store = store
        self._partition = partition
        self._workspace = workspace
        self._prefix = partition_prefix(ID_TIME, partition)
        self.latest = [NO_TIME] * len(ID_KINDS)
        self.buckets: list[list[int]] = [[] for _ in ID_KINDS]  # sorted
        self._last: tuple[int, str, bytes] = (-1, "", b"")  # seen() then remember(): hash once

    def _key(self, kind: int, event_id: str) -> bytes:
        last = self._last
        if last[0] == kind and last[1] == event_id:
            return last[2]
        key = self._prefix + id_hash(self._workspace, kind, event_id)
        self._last = (kind, event_id, key)
        return key

    def seen(self, kind: int, event_id: str) -> bool:
        t = self._store.time_of(self._key(kind, event_id))
        return t is not None and t >= self.latest[kind] - WINDOW_MS

    def remember(self, kind: int, event_id: str, occurred_at: int) -> None:
        latest = self.latest[kind]
        buckets = self.buckets[kind]
        if occurred_at > latest:
            self.latest[kind] = occurred_at
            below = expired_below(occurred_at)
            while buckets and buckets[0] < below:
                self._store.expire(self._partition, self._workspace, kind, buckets.pop(0))
        elif occurred_at < latest - WINDOW_MS:
            return  # already outside the window: remembering it would change nothing
        bucket = occurred_at // BUCKET_MS
        if not buckets or buckets[-1] < bucket:
            buckets.append(bucket)
        elif bucket not in buckets:
            insort(buckets, bucket)
        self._store.add(self._partition, self._workspace, kind, bucket,
                        self._key(kind, event_id), occurred_at)

    def latest_time(self) -> int | None:
        latest = max(self.latest)
        return None if latest == NO_TIME else latest

    def __len__(self) -> int:
        return 0  # held in the store, not in this process's heap

    def to_state(self) -> list[Any]:
        return [self.latest, self.buckets]
