"""Reads beyond history: the workspace list and the alert timeline (dashboard, sink API).

Parameterized only (``{ws:String}``); tables are those of ``sinks.ddl``
(``usage_snapshots``, ``threshold_crossings``, ``alert_deliveries``), read with
``FINAL`` where ReplacingMergeTree dedupes by the data. Rows come back as dicts in
the record shapes of ``quota.thresholds`` and ``alerting.deliveries`` (DESIGN.md,
"Outputs"; ``schemas/*.avsc``), times as int ms.
"""

from __future__ import annotations

from typing import Any, Final

from clickhouse_connect.driver.client import Client

from sinks.ddl import quote_identifier

_WORKSPACES: Final = """
SELECT workspace_id, toUnixTimestamp64Milli(max(cycle_start)) AS current_start
FROM {db}.usage_snapshots
GROUP BY workspace_id
ORDER BY workspace_id
LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}
"""

_CROSSINGS: Final = """
SELECT alert_id, workspace_id, quota, threshold, arm, highest_in_event, current, `limit`,
       toUnixTimestamp64Milli(cycle_start), toUnixTimestamp64Milli(cycle_ends_at),
       toUnixTimestamp64Milli(crossed_at), event_id, enforcement, kind,
       toUnixTimestamp64Milli(forecast_at)
FROM {db}.threshold_crossings FINAL
WHERE workspace_id = {{ws:String}}
  AND cycle_start >= fromUnixTimestamp64Milli({{second:Int64}}, 'UTC')
  AND cycle_start < fromUnixTimestamp64Milli({{second:Int64}} + 1000, 'UTC')
ORDER BY crossed_at, threshold, arm
"""
CROSSING_FIELDS: Final = (
    "alert_id", "workspace_id", "quota", "threshold", "arm", "highest_in_event", "current",
    "limit", "cycle_start", "cycle_ends_at", "crossed_at", "event_id", "enforcement", "kind",
    "forecast_at",
)

_DELIVERIES: Final = """
SELECT delivery_id, alert_id, workspace_id, channel, status, attempt, detail, target, quota,
       threshold, toUnixTimestamp64Milli(recorded_at)
FROM {db}.alert_deliveries FINAL
WHERE workspace_id = {{ws:String}} AND alert_id IN {{ids:Array(String)}}
ORDER BY recorded_at, attempt
"""
DELIVERY_FIELDS: Final = (
    "delivery_id", "alert_id", "workspace_id", "channel", "status", "attempt", "detail",
    "target", "quota", "threshold", "recorded_at",
)


class Queries:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        db = quote_identifier(database)
        self._workspaces = _WORKSPACES.format(db=db)
        self._crossings = _CROSSINGS.format(db=db)
        self._deliveries = _DELIVERIES.format(db=db)

    def workspaces(self, limit: int, offset: int = 0) -> list[tuple[str, int]]:
        """(workspace_id, start of its current cycle), by id."""
        result = self.client.query(self._workspaces,
                                   parameters={"limit": limit, "offset": offset})
        return [(str(ws), int(start)) for ws, start in result.result_rows]

    def alerts(self, workspace_id: str, cycle_start: int
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The cycle's crossings and the delivery records of those crossings."""
        crossings = [
            dict(zip(CROSSING_FIELDS, row, strict=True))
            for row in self.client.query(
                # A cycle is named to the second (S2); its start may carry milliseconds.
                self._crossings,
                parameters={"ws": workspace_id, "second": cycle_start // 1000 * 1000}
            ).result_rows
        ]
        if not crossings:
            return [], []
        ids = [c["alert_id"] for c in crossings]
        deliveries = [
            dict(zip(DELIVERY_FIELDS, row, strict=True))
            for row in self.client.query(
                self._deliveries, parameters={"ws": workspace_id, "ids": ids}
            ).result_rows
        ]
        return crossings, deliveries
