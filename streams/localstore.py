"""The worker's local store (RocksDB through rocksdict): its partitions' state between batches.

One store per worker instance, every partition in it under a 2-byte partition prefix, so
a partition is wiped with a few range deletes. What it holds, by key prefix:

- ``W`` + partition + workspace id: the workspace's serialized state (``WorkspaceEntry``);
- ``P`` + partition + 16-byte id hash: the ``occurred_at`` (8 bytes) of a remembered S6 id;
- ``S`` + partition + id-set key: one packed set of S6 ids, as its changelog record holds
  it (``streams/idstore.py`` lays the key out), so a bucket's ids are found for expiry;
- ``M`` + partition + changelog name: the next changelog offset this partition's data
  reflects (restore reads on from there).

The store is written only after a batch's transaction committed (one write batch, the
changelog offsets included), so it never holds what Kafka does not; it may lag behind
after a crash, and the restore brings it up from the changelogs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from rocksdict import (
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
)

WORKSPACE: Final = b"W"
ID_TIME: Final = b"P"
ID_SET: Final = b"S"
META: Final = b"M"
PREFIXES: Final = (WORKSPACE, ID_TIME, ID_SET, META)
_OFFSET = struct.Struct(">q")
# Bounded memory (measured growth without bounds: bench/bench_load.py): two 16 MB write
# buffers and a 32 MB block cache; bloom filters make the many lookups of new S6 ids
# (absent keys) cheap. Index and filter blocks live in the block cache too (the first
# level's pinned), since otherwise they stay on the heap and grow with the S6 store,
# which holds a day of ids.
WRITE_BUFFER_BYTES: Final = 16 << 20
WRITE_BUFFERS: Final = 2
BLOCK_CACHE_BYTES: Final = 32 << 20


class StoreLocked(RuntimeError):
    """Another process holds the store (two workers on one data directory)."""


def partition_prefix(prefix: bytes, partition: int) -> bytes:
    return prefix + partition.to_bytes(2, "big")


def _next_prefix(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


class LocalStore:
    """The RocksDB store of one worker instance (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(WRITE_BUFFERS)
        table = BlockBasedOptions()
        table.set_bloom_filter(10, False)
        table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        try:
            self._db = Rdict(str(path), options)
        except Exception as exc:
            if "lock" in str(exc).lower():
                raise StoreLocked(f"the worker store {path} is in use by another process "
                                  "(each worker needs its own METER_DATA_DIR)") from exc
            raise
        self.path = path

    # -- reads -------------------------------------------------------------------------

    def workspace(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(partition_prefix(WORKSPACE, partition) + key)
        return value

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys in [start, end) with their values, in key order."""
        read = ReadOptions()
        read.set_iterate_upper_bound(end)
        it = self._db.iter(read)
        it.seek(start)
        while it.valid():
            yield it.key(), it.value()
            it.next()

    def changelog_offset(self, partition: int, changelog: str) -> int | None:
        """The next offset of ``changelog`` this partition's data reflects (None: none)."""
        value = self._db.get(partition_prefix(META, partition) + changelog.encode())
        return None if value is None else int(_OFFSET.unpack(value)[0])

    def estimated_keys(self) -> int:
        return int(self._db.property_int_value("rocksdb.estimate-num-keys") or 0)

    # -- writes ------------------------------------------------------------------------

    @staticmethod
    def batch() -> WriteBatch:
        return WriteBatch(raw_mode=True)

    @staticmethod
    def put_workspace(batch: WriteBatch, partition: int, key: bytes, value: bytes | None
                      ) -> None:
        """A workspace's state (None: delete it) into a write batch."""
        full = partition_prefix(WORKSPACE, partition) + key
        if value is None:
            batch.delete(full)
        else:
            batch.put(full, value)

    @staticmethod
    def set_changelog_offset(batch: WriteBatch, partition: int, changelog: str,
                             offset: int) -> None:
        batch.put(partition_prefix(META, partition) + changelog.encode(), _OFFSET.pack(offset))

    def write(self, batch: WriteBatch) -> None:
        if not batch.is_empty():
            self._db.write(batch)

    def wipe(self, partition: int) -> None:
        """Forget everything of one partition (it is restored whole from the changelogs)."""
        batch = self.batch()
        for prefix in PREFIXES:
            start = partition_prefix(prefix, partition)
            batch.delete_range(start, _next_prefix(start))
        self._db.write(batch)

    def close(self) -> None:
        self._db.close()


def range_of(prefix: bytes) -> tuple[bytes, bytes]:
    """[start, end) of every key beginning with ``prefix``."""
    return prefix, _next_prefix(prefix)
