"""The batching writer: add records, flush by size (rows) or age, write each table in one insert.

A batch is kept per table as columns (``TableSpec.to_columns``) and inserted column
oriented: no tuple per row, no transpose, and far fewer objects for the garbage
collector to walk, which is most of what a writer costs beyond the raw insert.

Bound to offset commits: ``flush`` returns the offsets to commit and only after every
row of the batch is in the store. While the store is unavailable it retries with
capped exponential backoff and keeps every row (it never drops one); stopping during
a retry raises ``SinkStopped`` without returning offsets, so nothing is committed.
Writing a batch twice is harmless: every table's reads are idempotent by the data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.metrics import SinkMetrics
from sinks.rows import TABLE_OF_TOPIC, Columns, TableSpec
from sinks.store import StoreHandle, StoreUnavailable

log = logging.getLogger(__name__)


class SinkStopped(Exception):
    """Asked to stop while a batch was not yet written; nothing was committed."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record came from: the real topic name (with prefix), partition, offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.2
    max_s: float = 10.0
    factor: float = 2.0

    def delays(self) -> Iterator[float]:
        delay = self.initial_s
        while True:
            yield delay
            delay = min(self.max_s, delay * self.factor)


DEFAULT_BACKOFF: Final = Backoff()


class BatchWriter:
    def __init__(
        self,
        store: StoreHandle,
        *,
        max_rows: int = 20_000,
        max_delay_s: float = 1.0,
        metrics: SinkMetrics | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self.metrics = metrics or SinkMetrics()
        self.backoff = backoff
        self.stop = stop or threading.Event()
        self._clock = clock
        self._columns: dict[str, Columns] = {}
        self._rows: dict[str, int] = {}  # rows held per table
        self._specs: dict[str, TableSpec] = {}
        self._next_offsets: dict[tuple[str, int], int] = {}
        self._count = 0
        self._first_at: float | None = None

    # -- batching ---------------------------------------------------------------------

    def add(self, topic: str, record: Mapping[str, Any], position: Position | None = None) -> None:
        """Map one record of base topic ``topic`` (as written, any registered version) to
        its rows and keep them for the next flush; its position counts even without rows."""
        spec = TABLE_OF_TOPIC[topic]
        columns = self._columns.get(spec.table)
        if columns is None:
            columns = self._columns[spec.table] = spec.empty_columns()
            self._rows[spec.table] = 0
            self._specs[spec.table] = spec
        held = self._rows[spec.table]
        try:
            new = spec.to_columns(record, columns)
        except Exception:
            for column in columns:  # a record that does not map leaves no part of a row
                del column[held:]
            raise
        self._rows[spec.table] = held + new
        self.track(position)
        self._count += new

    def track(self, position: Position | None) -> None:
        """Count a consumed position in this batch (also for records that produce no row)."""
        if position is not None:
            self._next_offsets[(position.topic, position.partition)] = position.offset + 1
        if self._first_at is None:
            self._first_at = self._clock()

    @property
    def pending(self) -> int:
        """Rows waiting for the next flush."""
        return self._count

    def due(self) -> bool:
        """True when the batch is full or its oldest record waited ``max_delay_s``."""
        if self._count >= self.max_rows:
            return True
        return self._first_at is not None and self._clock() - self._first_at >= self.max_delay_s

    def discard(self) -> None:
        """Forget the batch (partitions revoked: their new owner re-reads from the commit)."""
        self._columns.clear()
        self._rows.clear()
        self._next_offsets.clear()
        self._count = 0
        self._first_at = None

    # -- writing ----------------------------------------------------------------------

    def flush(self) -> list[Position]:
        """Write every pending row, retrying until done; returns the offsets to commit."""
        delays = self.backoff.delays()
        for table in list(self._columns):
            columns, rows = self._columns[table], self._rows[table]
            while True:
                try:
                    self.write(self._specs[table], columns, rows)
                    break
                except (StoreUnavailable, ClickHouseError, OSError) as exc:
                    self.metrics.store_ready = False
                    self.metrics.retried()
                    self.store.reset()
                    delay = next(delays)
                    log.warning("writing %d rows to %s failed (%s); retrying in %.1fs",
                                rows, table, exc, delay)
                    if self.stop.wait(delay):
                        raise SinkStopped(f"stopped with {self._count} rows unwritten") from exc
            del self._columns[table], self._rows[table]
        offsets = [Position(t, p, o) for (t, p), o in self._next_offsets.items()]
        self.discard()
        self.metrics.batch_done(int(time.time() * 1000))
        return offsets

    def write(self, spec: TableSpec, columns: Columns, rows: int) -> None:
        """One insert of the ``rows`` held in ``columns`` into ``spec.table`` (raises if
        the store fails; the columns are left as they were, for a retry)."""
        if not rows:
            return
        self.store.client().insert(
            spec.table, columns, column_names=spec.columns, column_type_names=spec.types,
            database=self.store.database, column_oriented=True,
        )
        self.metrics.store_ready = True
        self.metrics.wrote(spec.table, rows)
