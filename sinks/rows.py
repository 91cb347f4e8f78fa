"""Pure row mapping: a decoded record (dict, times as int ms) -> the row tuples of its table.

No I/O here. ``TABLE_OF_TOPIC`` names, for each topic the sink reads, the table, its
columns (names and ClickHouse types, matching the latest migration in ``ddl``), the
function that maps one record to its rows, and one that appends the same rows to a
batch kept as columns (the writer's form: clickhouse-connect inserts columns without
a transpose, and no tuple per row is made; the two always agree). The sink reads records as their
producer wrote them (``schemas.codec.decode_written``), so a table's function maps a
record of every registered version of its topic: a ``usage.aggregates`` record of
version 2 holds many values (one row each, none for an empty ``values``), one of
version 1 a single value. Times stay integer milliseconds: clickhouse-connect writes
ints into ``DateTime64(3)`` as ticks, with no datetime objects on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from schemas.aggregates import METRICS_OF, values_of
from schemas.events import QUOTAS

Record = Mapping[str, Any]
Row = tuple[Any, ...]
Columns = list[list[Any]]  # one list per column of the table, all of the same length


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    to_rows: Callable[[Record], Sequence[Row]]
    # appends the rows of one record to ``Columns`` and returns how many; a record that
    # does not map raises, possibly with some columns grown (the writer cuts them back)
    to_columns: Callable[[Record, Columns], int]

    def empty_columns(self) -> Columns:
        return [[] for _ in self.columns]


def ms(value: Any) -> int:
    """Epoch milliseconds from an int (the codec's form) or an RFC 3339 string."""
    if type(value) is int:  # the hot path: the codec gives ints
        return value
    if isinstance(value, bool):
        raise TypeError(f"expected epoch milliseconds, got {value!r}")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return int(parsed.timestamp() * 1000)
    raise TypeError(f"expected epoch milliseconds, got {value!r}")


def one_row(to_row: Callable[[Record], Row]) -> Callable[[Record], Sequence[Row]]:
    """The ``to_rows`` of a table whose records are one row each."""
    return lambda r: (to_row(r),)


def one_row_columns(to_row: Callable[[Record], Row]) -> Callable[[Record, Columns], int]:
    """The ``to_columns`` of a table whose records are one row each."""

    def append(r: Record, columns: Columns) -> int:
        row = to_row(r)  # raises before any column grows
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        return 1

    return append


def aggregate_rows(r: Record) -> list[Row]:
    """One row per value: version 2 holds them in ``entries`` (``schemas.aggregates``),
    version 1 carries its one value in the record itself."""
    ws, start, end, plan = (r["workspace_id"], ms(r["cycle_start"]), ms(r["cycle_ends_at"]),
                            r.get("plan"))
    version, emitted_at = r["version"], ms(r["emitted_at"])
    values = (values_of(r) if "entries" in r
              else ((r["dimension"], r["key"], r["metric"], r["value"]),))
    prices = r.get("prices_version")  # version 3 on; None before
    return [(ws, start, end, plan, dimension, key, metric, value, version, emitted_at, prices)
            for dimension, key, metric, value in values]


def aggregate_columns(r: Record, columns: Columns) -> int:
    """``aggregate_rows`` appended to columns: a record's head repeats over its values and
    an entry's dimension and key over the entry's, so each column grows by one C-level
    list operation per record or entry instead of one tuple per value. (The writer calls
    this once per record, so it is written for speed: ``+=`` of a repeated one-item list
    is twice as fast as ``extend(repeat(...))``, ``ms`` is called only off its fast path.)"""
    (c_ws, c_start, c_end, c_plan, c_dimension, c_key, c_metric, c_value, c_version,
     c_emitted, c_prices) = columns
    ws, start, end, plan = r["workspace_id"], r["cycle_start"], r["cycle_ends_at"], r.get("plan")
    version, emitted_at, prices = r["version"], r["emitted_at"], r.get("prices_version")
    if type(start) is not int:
        start = ms(start)
    if type(end) is not int:
        end = ms(end)
    if type(emitted_at) is not int:
        emitted_at = ms(emitted_at)
    if "entries" in r:
        count = 0
        for entry in r["entries"]:
            dimension, values = entry["dimension"], entry["values"]
            metrics = METRICS_OF.get(dimension, ())
            # cut to the same length, as values_of's zip does
            n = len(values)
            if n > len(metrics):
                n = len(metrics)
                values = values[:n]
            elif n < len(metrics):
                metrics = metrics[:n]
            if n:
                c_dimension += [dimension] * n
                c_key += [entry["key"]] * n
                c_metric += metrics
                c_value += values
                count += n
        if not count:
            return 0
    else:
        c_dimension.append(r["dimension"])
        c_key.append(r["key"])
        c_metric.append(r["metric"])
        c_value.append(r["value"])
        count = 1
    c_ws += [ws] * count
    c_start += [start] * count
    c_end += [end] * count
    c_plan += [plan] * count
    c_version += [version] * count
    c_emitted += [emitted_at] * count
    c_prices += [prices] * count
    return count


def crossing_row(r: Record) -> Row:
    """A threshold crossing or a forecast alert (quota.thresholds v2: ``kind``,
    ``forecast_at``; version 1 records are threshold crossings)."""
    forecast_at = r.get("forecast_at")
    return (
        r["alert_id"], r["workspace_id"], r["quota"], int(r["threshold"]), int(r["arm"]),
        bool(r["highest_in_event"]), int(r["current"]), int(r["limit"]),
        ms(r["cycle_start"]), ms(r["cycle_ends_at"]), ms(r["crossed_at"]),
        r["event_id"], r["enforcement"], r.get("kind") or "threshold",
        None if forecast_at is None else ms(forecast_at),
    )


def delivery_row(r: Record) -> Row:
    return (
        r["delivery_id"], r["alert_id"], r["workspace_id"], r["channel"], r["status"],
        int(r["attempt"]), r.get("detail"), r.get("target"), r["quota"], int(r["threshold"]),
        ms(r["recorded_at"]),
    )


def deadletter_row(r: Record) -> Row:
    original = r.get("original")
    raw = original if isinstance(original, bytes | bytearray) else str(original or "").encode()
    partition, offset = r.get("partition"), r.get("offset")
    return (
        r["source_topic"], -1 if partition is None else int(partition),
        -1 if offset is None else int(offset), r["reason"], r.get("detail") or "", bytes(raw),
        ms(r["seen_at"]),
    )


def plan_row(r: Record) -> Row:
    limits: Mapping[str, Any] = r.get("limits") or {}
    if not isinstance(limits, Mapping):  # a Limits NamedTuple
        limits = limits._asdict()
    return (
        r["workspace_id"], r["event_id"], ms(r["occurred_at"]), r["plan"],
        ms(r["cycle_anchor"]), r.get("timezone") or "UTC",
        *(None if limits.get(q) is None else int(limits[q]) for q in QUOTAS),
        list(r.get("owners") or ()),
    )


_DT: Final = "DateTime64(3, 'UTC')"

AGGREGATES: Final = TableSpec(
    "usage_snapshots",
    ("workspace_id", "cycle_start", "cycle_ends_at", "plan", "dimension", "key", "metric",
     "value", "version", "emitted_at", "prices_version"),
    ("String", _DT, _DT, "Nullable(String)", "LowCardinality(String)", "String",
     "LowCardinality(String)", "Nullable(Int64)", "UInt64", _DT, "Nullable(String)"),
    aggregate_rows,
    aggregate_columns,
)
CROSSINGS: Final = TableSpec(
    "threshold_crossings",
    ("alert_id", "workspace_id", "quota", "threshold", "arm", "highest_in_event", "current",
     "limit", "cycle_start", "cycle_ends_at", "crossed_at", "event_id", "enforcement", "kind",
     "forecast_at"),
    ("String", "String", "LowCardinality(String)", "UInt8", "UInt32", "Bool", "Int64", "Int64",
     _DT, _DT, _DT, "String", "LowCardinality(String)", "LowCardinality(String)",
     "Nullable(DateTime64(3, 'UTC'))"),
    one_row(crossing_row),
    one_row_columns(crossing_row),
)
DELIVERIES: Final = TableSpec(
    "alert_deliveries",
    ("delivery_id", "alert_id", "workspace_id", "channel", "status", "attempt", "detail",
     "target", "quota", "threshold", "recorded_at"),
    ("String", "String", "String", "LowCardinality(String)", "LowCardinality(String)", "UInt32",
     "Nullable(String)", "Nullable(String)", "LowCardinality(String)", "UInt8", _DT),
    one_row(delivery_row),
    one_row_columns(delivery_row),
)
DEADLETTERS: Final = TableSpec(
    "dead_letters",
    ("source_topic", "partition", "offset", "reason", "detail", "original", "seen_at"),
    ("LowCardinality(String)", "Int32", "Int64", "LowCardinality(String)", "String", "String",
     _DT),
    one_row(deadletter_row),
    one_row_columns(deadletter_row),
)
PLANS: Final = TableSpec(
    "plans",
    ("workspace_id", "event_id", "occurred_at", "plan", "cycle_anchor", "timezone",
     *(f"limit_{q}" for q in QUOTAS), "owners"),
    ("String", "String", _DT, "String", _DT, "String", *("Nullable(Int64)" for _ in QUOTAS),
     "Array(String)"),
    one_row(plan_row),
    one_row_columns(plan_row),
)

# DESIGN.md base topic name (no topic_prefix) -> where its records go.
TABLE_OF_TOPIC: Final[dict[str, TableSpec]] = {
    "usage.aggregates": AGGREGATES,
    "quota.thresholds": CROSSINGS,
    "alerting.deliveries": DELIVERIES,
    "usage.deadletter": DEADLETTERS,
    "quota.plans": PLANS,
}
SINK_TOPICS: Final = tuple(TABLE_OF_TOPIC)
