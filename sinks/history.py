"""History reads: the last N cycles of a workspace (or one cycle), from the store.

Every query is parameterized (``{ws:String}``): a workspace id is data, never SQL.
``history`` (the CLI's and the dashboard's N cycles) is one query on the rollup
``usage_cycles`` (one row per workspace and cycle, sinks/ddl.py) with the workspace's
plans; ``cycle`` (one cycle, for CSV export) and ``history_from_detail`` read the
detail rows of ``usage_snapshots``. Both resolve the latest version of every value
(the rollup read with FINAL, which merges its parts' ``maxMap`` of (version, value)
tuples; ``argMax(tuple(...), version)`` on the detail), so they are exact before
background merges, and they give the same cycles.
"""

from __future__ import annotations

from typing import Final

from clickhouse_connect.driver.client import Client

from schemas.events import QUOTAS
from sinks.ddl import quote_identifier
from sinks.schedule import CycleBounds, PlanRecord
from sinks.shape import GAUGES, CycleUsage, SnapshotRow, assemble, fill_cycles, status_of

DEFAULT_CYCLES: Final = 12

_DATA_CYCLES: Final = """
SELECT toUnixTimestamp64Milli(cycle_start) AS start,
       toUnixTimestamp64Milli(argMax(cycle_ends_at, version)) AS ends
FROM {db}.usage_snapshots
WHERE workspace_id = {{ws:String}}
GROUP BY cycle_start
ORDER BY cycle_start DESC
"""

_PLANS: Final = """
SELECT toUnixTimestamp64Milli(occurred_at), plan, toUnixTimestamp64Milli(cycle_anchor),
       timezone, {limit_columns}
FROM {db}.plans FINAL
WHERE workspace_id = {{ws:String}}
ORDER BY occurred_at, event_id
"""

_ROWS: Final = """
SELECT toUnixTimestamp64Milli(cycle_start), dimension, key, metric,
       argMax(tuple(value, plan, toUnixTimestamp64Milli(cycle_ends_at)), version) AS latest,
       max(version)
FROM {db}.usage_snapshots
WHERE workspace_id = {{ws:String}}
  AND cycle_start >= fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC')
  AND cycle_start <= fromUnixTimestamp64Milli({{hi:Int64}}, 'UTC')
GROUP BY cycle_start, dimension, key, metric
"""

# The price table of each cycle (usage.aggregates v3 rows carry it; every record after the
# cycle's first priced tokens event has it on its totals, so those rows suffice). Null
# (absent) for cycles metered before costs.
_PRICES_OF_CYCLES: Final = """
SELECT toUnixTimestamp64Milli(cycle_start) AS start, argMax(prices_version, version) AS prices
FROM {db}.usage_snapshots
WHERE workspace_id = {{ws:String}} AND dimension = 'totals' AND metric = 'cost_micros'
  AND prices_version IS NOT NULL
GROUP BY cycle_start
"""

_GAUGES_BEFORE: Final = """
SELECT metric, argMax(value, (cycle_start, version))
FROM {db}.usage_snapshots
WHERE workspace_id = {{ws:String}} AND dimension = 'totals' AND metric IN {{gauges:Array(String)}}
  AND cycle_start < fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC')
GROUP BY metric
"""


# Every cycle of the workspace with its latest head and values: in full for the newest
# ``full`` cycles (the window of ``full`` cycles has no older cycle with data), only the
# gauges' totals for older ones (carried into the window). Plans ride along as one column.
# Names and values come as two flat arrays: clickhouse-connect decodes those faster than
# a map of tuples.
_ROLLUP: Final = """
SELECT toUnixTimestamp64Milli(cycle_start), toUnixTimestamp64Milli(head.2), head.3, head.1,
       mapKeys(shown), arrayMap(latest -> latest.2, mapValues(shown)),
       (SELECT groupArray(tuple(toUnixTimestamp64Milli(occurred_at), plan,
                                toUnixTimestamp64Milli(cycle_anchor), timezone,
                                {limit_columns}))
        FROM (SELECT * FROM {db}.plans FINAL WHERE workspace_id = {{ws:String}}
              ORDER BY occurred_at, event_id)),
       (SELECT groupArray(tuple(start, prices)) FROM ({prices}))
FROM (
    SELECT cycle_start, head,
           if(newest <= {{full:UInt32}}, entries,
              mapFilter((name, latest) -> name IN {{gauge_names:Array(String)}}, entries))
               AS shown
    FROM (
        SELECT cycle_start, entries, head,
               row_number() OVER (ORDER BY cycle_start DESC) AS newest
        FROM {db}.usage_cycles FINAL
        WHERE workspace_id = {{ws:String}}
    )
)
ORDER BY cycle_start
"""

ENTRY_SEPARATOR: Final = "|"  # rollup entry names: dimension|metric|key
_GAUGE_NAMES: Final = [f"totals|{g}|" for g in GAUGES]


class CycleNotFound(LookupError):
    """The workspace has no such cycle in its history."""


class HistoryReader:
    """History of workspaces from one client on the store."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        db = quote_identifier(database)
        self._data_cycles = _DATA_CYCLES.format(db=db)
        self._plans = _PLANS.format(
            db=db, limit_columns=", ".join(f"limit_{q}" for q in QUOTAS))
        self._rows = _ROWS.format(db=db)
        self._gauges_before = _GAUGES_BEFORE.format(db=db)
        self._prices = _PRICES_OF_CYCLES.format(db=db)
        self._rollup = _ROLLUP.format(
            db=db, limit_columns=", ".join(f"limit_{q}" for q in QUOTAS),
            prices=self._prices)

    def history(self, workspace_id: str, cycles: int = DEFAULT_CYCLES) -> list[CycleUsage]:
        """The last ``cycles`` cycles up to the workspace's current one, oldest first,
        from the rollup in one query."""
        if cycles < 1:
            raise ValueError("cycles must be at least 1")
        result = self.client.query(self._rollup, parameters={
            "ws": workspace_id, "full": cycles, "gauge_names": _GAUGE_NAMES})
        found = result.result_rows
        if not found:
            return []
        plans = [PlanRecord(int(p[0]), p[1], int(p[2]), p[3], dict(zip(QUOTAS, p[4:], strict=True)))
                 for p in found[0][6]]
        filled = fill_cycles([CycleBounds(int(row[0]), int(row[1])) for row in found], plans)
        count = len(filled)
        window = [(b, has, status_of(i, count)) for i, (b, has) in enumerate(filled)][-cycles:]
        lo = window[0][0].start
        rows: list[SnapshotRow] = []
        before: dict[str, int] = {}
        prices = {int(start): str(version) for start, version in found[0][7]}
        for start, ends, plan, version, names, values, _, _ in found:
            if start < lo:  # older than the window: its gauges carry in (newest wins)
                for name, value in zip(names, values, strict=True):
                    if name in _GAUGE_NAMES:  # a cycle among the newest may hold it all
                        before[GAUGES[_GAUGE_NAMES.index(name)]] = int(value or 0)
                continue
            # every value of the cycle is its latest; the cycle's plan and end are the
            # latest record's (head), as assemble takes them from the newest row
            for name, value in zip(names, values, strict=True):
                dimension, metric, key = name.split(ENTRY_SEPARATOR, 2)
                rows.append(SnapshotRow(start, dimension, key, metric, value, plan, ends,
                                        version))
        return assemble(workspace_id, window, rows, plans, before, prices)

    def history_from_detail(self, workspace_id: str,
                            cycles: int = DEFAULT_CYCLES) -> list[CycleUsage]:
        """``history`` from the detail rows (several queries): what the rollup must equal."""
        if cycles < 1:
            raise ValueError("cycles must be at least 1")
        data = self.data_cycles(workspace_id, limit=cycles)
        if not data:
            return []
        plans = self.plans(workspace_id)
        filled = fill_cycles(data, plans)
        count = len(filled)
        window = [(b, has, status_of(i, count)) for i, (b, has) in enumerate(filled)]
        return self._load(workspace_id, window[-cycles:], plans)

    def current(self, workspace_id: str) -> CycleUsage | None:
        """The workspace's current cycle (the latest with events, S4), or None."""
        found = self.history(workspace_id, cycles=1)
        return found[0] if found else None

    def cycle(self, workspace_id: str, cycle_start: int) -> CycleUsage:
        """One cycle, named by its start; raises ``CycleNotFound``.

        Names are written to the second (``YYYY-MM-DDTHH:MM:SSZ``, S2) while an anchor
        may carry milliseconds, so a name matches the cycle starting within its second.
        """
        data = self.data_cycles(workspace_id)
        plans = self.plans(workspace_id) if data else []
        filled = fill_cycles(data, plans)
        for i, (bounds, has) in enumerate(filled):
            if bounds.start // 1000 == cycle_start // 1000:
                window = [(bounds, has, status_of(i, len(filled)))]
                return self._load(workspace_id, window, plans)[0]
        raise CycleNotFound(f"workspace {workspace_id!r} has no cycle starting at {cycle_start}")

    def data_cycles(self, workspace_id: str, limit: int | None = None) -> list[CycleBounds]:
        """Cycles in which the workspace has snapshot rows, newest first (at most ``limit``)."""
        query = self._data_cycles + (f"LIMIT {int(limit)}" if limit is not None else "")
        result = self.client.query(query, parameters={"ws": workspace_id})
        return [CycleBounds(int(start), int(ends)) for start, ends in result.result_rows]

    def plans(self, workspace_id: str) -> list[PlanRecord]:
        result = self.client.query(self._plans, parameters={"ws": workspace_id})
        return [
            PlanRecord(int(row[0]), row[1], int(row[2]), row[3],
                       dict(zip(QUOTAS, row[4:], strict=True)))
            for row in result.result_rows
        ]

    def _load(self, workspace_id: str, window: list[tuple[CycleBounds, bool, str]],
              plans: list[PlanRecord]) -> list[CycleUsage]:
        lo, hi = window[0][0].start, window[-1][0].start
        result = self.client.query(
            self._rows, parameters={"ws": workspace_id, "lo": lo, "hi": hi})
        rows = [
            SnapshotRow(int(start), dim, key, metric, latest[0], latest[1], int(latest[2]),
                        int(version))
            for start, dim, key, metric, latest, version in result.result_rows
        ]
        first = {(r.metric) for r in rows if r.cycle_start == lo and r.dimension == "totals"}
        missing = [g for g in GAUGES if g not in first]
        before: dict[str, int] = {}
        if missing:
            carried = self.client.query(
                self._gauges_before, parameters={"ws": workspace_id, "lo": lo, "gauges": missing})
            before = {metric: int(value or 0) for metric, value in carried.result_rows}
        prices = {int(start): str(version) for start, version in self.client.query(
            self._prices, parameters={"ws": workspace_id}).result_rows}
        return assemble(workspace_id, window, rows, plans, before, prices)
