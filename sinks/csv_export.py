"""CSV export of per-cycle breakdowns for finance reconciliation.

One row per (cycle, dimension, key, metric), with a header; UTF-8 without BOM,
RFC 4180 (CRLF line ends, fields with a comma, quote or line break quoted, quotes
doubled). Columns, in order:

  workspace_id, cycle_start, cycle_ends_at, status, plan, dimension, key, metric, value

- times: UTC ``YYYY-MM-DDTHH:MM:SSZ``; ``status``: provisional | final;
- ``dimension``/``key``/``metric`` as in ``usage.aggregates``: ``totals`` and ``limits``
  (key empty), ``machine``, ``member``, ``skill``, ``provider``, ``model``
  (key ``provider/model``);
- ``value``: an integer; empty for an unlimited limit; ``plan`` empty without a plan.

Rows are ordered by cycle, then dimension (the order above), key, metric. Values are
written verbatim (ids are not altered for spreadsheet safety: import as text).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Final, TextIO

from schemas.aggregates import METRICS_OF
from sinks.shape import BREAKDOWNS, CycleUsage, iso

COLUMNS: Final = (
    "workspace_id", "cycle_start", "cycle_ends_at", "status", "plan",
    "dimension", "key", "metric", "value",
)


def csv_rows(cycles: Iterable[CycleUsage]) -> Iterator[tuple[str, ...]]:
    """The data rows (no header), each a tuple of strings in ``COLUMNS`` order."""
    for cycle in cycles:
        head = (cycle.workspace_id, iso(cycle.cycle_start), iso(cycle.cycle_ends_at),
                cycle.status, cycle.plan or "")
        for metric in METRICS_OF["totals"]:
            yield (*head, "totals", "", metric, str(cycle.totals.get(metric, 0)))
        for metric in METRICS_OF["limits"]:
            limit = cycle.limits.get(metric)
            yield (*head, "limits", "", metric, "" if limit is None else str(limit))
        for dimension in BREAKDOWNS:
            entries = cycle.breakdowns.get(dimension, {})
            for key in sorted(entries):
                for metric in METRICS_OF[dimension]:
                    yield (*head, dimension, key, metric, str(entries[key].get(metric, 0)))


def write_csv(cycles: Iterable[CycleUsage], out: TextIO) -> int:
    """Write header and rows to ``out`` (open it with ``newline=""``); returns data rows."""
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    count = 0
    for row in csv_rows(cycles):
        writer.writerow(row)
        count += 1
    return count


def to_csv(cycles: Iterable[CycleUsage]) -> str:
    buffer = io.StringIO(newline="")
    write_csv(cycles, buffer)
    return buffer.getvalue()
