"""Analyst views give the right numbers before background merges (several parts, no OPTIMIZE)."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.shape import parse_time
from sinks.timeline import Queries
from sinks.writer import BatchWriter

MAR, APR, MAY = (parse_time(f"2025-0{m}-01T00:00:00Z") for m in (3, 4, 5))
CROSSING = {"alert_id": "w1/2025-04-01T00:00:00Z/ai_tokens/80", "workspace_id": "w1",
            "quota": "ai_tokens", "threshold": 80, "arm": 1, "highest_in_event": True,
            "current": 800, "limit": 1000, "cycle_start": APR, "cycle_ends_at": MAY,
            "crossed_at": APR + 1, "event_id": "e1", "enforcement": "allow"}


def rec(start: int, end: int, dimension: str, key: str, metric: str, value: int | None,
        version: int, ws: str = "w1") -> dict[str, Any]:
    """A usage.aggregates record of version 1 (one value), as the sink reads it."""
    return {"workspace_id": ws, "cycle_start": start, "cycle_ends_at": end, "plan": "team",
            "dimension": dimension, "key": key, "metric": metric, "value": value,
            "version": version, "emitted_at": 0}


def april(dimension: str, key: str, metric: str, *versions: tuple[int, int]
          ) -> list[dict[str, Any]]:
    """``rec``s of one value of workspace w1's April cycle: (value, version) in the order
    they are written."""
    return [rec(APR, MAY, dimension, key, metric, value, version) for value, version in versions]


def write_in_separate_parts(writer: BatchWriter, records: list[dict[str, Any]]) -> None:
    for record in records:  # one insert each: one part each, duplicates included
        writer.add("usage.aggregates", record)
        writer.flush()


def parts(client: Client) -> int:
    return int(client.query(
        "SELECT count() FROM system.parts WHERE database = 'meter' AND table = 'usage_snapshots'"
        " AND active").result_rows[0][0])


def test_breakdown_views_take_the_latest_version_before_merges(
        writer: BatchWriter, client: Client) -> None:
    write_in_separate_parts(writer, [
        *april("provider", "openai", "input_tokens", (10, 1), (40, 3), (40, 3)),
        *april("provider", "openai", "output_tokens", (4, 2)),
        *april("model", "openai/gpt-4o", "input_tokens", (40, 3), (30, 2)),
        *april("member", "alice", "ai_tokens", (44, 3), (14, 2)),
        *april("machine", "m1", "commands", (2, 4), (2, 4)),
        *april("skill", "search", "invocations", (3, 5)),
        *april("skill", "search", "cache_hits", (1, 5)),
    ])
    assert parts(client) > 1
    q = client.query
    assert q("SELECT provider, input_tokens, output_tokens FROM meter.usage_by_provider"
             ).result_rows == [("openai", 40, 4)]
    assert q("SELECT provider, model, input_tokens FROM meter.usage_by_model"
             ).result_rows == [("openai", "gpt-4o", 40)]
    assert q("SELECT member_id, ai_tokens FROM meter.usage_by_member").result_rows == [
        ("alice", 44)]
    assert q("SELECT machine_id, commands FROM meter.usage_by_machine").result_rows == [("m1", 2)]
    assert q("SELECT skill, invocations, cache_hits FROM meter.usage_by_skill").result_rows == [
        ("search", 3, 1)]


def test_current_cycle_view_has_counters_of_the_current_cycle_and_carried_gauges(
        writer: BatchWriter, client: Client) -> None:
    write_in_separate_parts(writer, [
        rec(MAR, APR, "totals", "", "storage_bytes", 900, 1),
        rec(MAR, APR, "totals", "", "machines", 2, 2),
        rec(MAR, APR, "totals", "", "ai_tokens", 500, 3),
        rec(APR, MAY, "totals", "", "ai_tokens", 7, 4),
        rec(APR, MAY, "totals", "", "ai_tokens", 12, 5),
        rec(APR, MAY, "totals", "", "machines", 3, 6),
        rec(MAR, APR, "totals", "", "commands", 1, 1, ws="w2"),
    ])
    rows = client.query(
        "SELECT workspace_id, toUnixTimestamp64Milli(cycle_start), ai_tokens, machines, "
        "storage_bytes, commands FROM meter.current_cycle ORDER BY workspace_id").result_rows
    assert rows == [("w1", APR, 12, 3, 900, 0), ("w2", MAR, 0, 0, 0, 1)]


def test_crossing_and_delivery_views_count_each_id_once(
        writer: BatchWriter, client: Client) -> None:
    crossing = CROSSING
    for _ in range(3):
        writer.add("quota.thresholds", crossing)
        writer.flush()
    assert client.query("SELECT count() FROM meter.crossings").result_rows == [(1,)]


def test_a_forecast_alert_reads_back_beside_the_crossings_with_its_kind(
        writer: BatchWriter, client: Client) -> None:
    crossing = {**CROSSING, "crossed_at": APR + 2}
    forecast = {**crossing, "alert_id": "w1/2025-04-01T00:00:00Z/ai_tokens/forecast",
                "threshold": 100, "current": 400, "crossed_at": APR + 1, "event_id": "e0",
                "kind": "forecast", "forecast_at": MAY - 5 * 86_400_000}
    for record in (crossing, forecast, forecast):  # a redelivered forecast is one row
        writer.add("quota.thresholds", record)
        writer.flush()
    crossings, _ = Queries(client, "meter").alerts("w1", APR)
    assert [(c["alert_id"], c["kind"], c["forecast_at"]) for c in crossings] == [
        (forecast["alert_id"], "forecast", MAY - 5 * 86_400_000),
        (crossing["alert_id"], "threshold", None)]
    assert client.query("SELECT kind, count() FROM meter.crossings GROUP BY kind ORDER BY kind"
                        ).result_rows == [("forecast", 1), ("threshold", 1)]
