"""History: the last 12 cycles, every cycle in range shown, gauges carried, final or not."""

from __future__ import annotations

from typing import Any

import pytest

from sinks.history import CycleNotFound, HistoryReader
from sinks.schedule import next_boundary
from sinks.shape import iso, parse_time
from sinks.writer import BatchWriter

NO_PLAN_ANCHOR = parse_time("2000-01-01T00:00:00Z")


def month_starts(first: str, count: int) -> list[int]:
    out = [parse_time(first)]
    while len(out) < count + 1:
        out.append(next_boundary(NO_PLAN_ANCHOR, "UTC", out[-1]))
    return out


def rec(ws: str, start: int, end: int, metric: str, value: int | None, version: int,
        dimension: str = "totals", key: str = "", plan: str | None = None) -> dict[str, Any]:
    """A usage.aggregates record of version 1 (one value), as the sink reads it."""
    return {"workspace_id": ws, "cycle_start": start, "cycle_ends_at": end, "plan": plan,
            "dimension": dimension, "key": key, "metric": metric, "value": value,
            "version": version, "emitted_at": 0}


def test_history_shows_the_last_12_cycles_not_13(
        writer: BatchWriter, reader: HistoryReader) -> None:
    bounds = month_starts("2024-01-01T00:00:00Z", 13)
    for i in range(13):
        writer.add("usage.aggregates",
                   rec("w1", bounds[i], bounds[i + 1], "ai_tokens", 100 + i, i + 1))
    writer.flush()
    cycles = reader.history("w1")
    assert len(cycles) == 12
    assert iso(cycles[0].cycle_start) == "2024-02-01T00:00:00Z"
    assert iso(cycles[-1].cycle_start) == "2025-01-01T00:00:00Z"
    assert iso(cycles[-1].cycle_ends_at) == "2025-02-01T00:00:00Z"
    assert [c.totals["ai_tokens"] for c in cycles] == list(range(101, 113))
    assert len(reader.history("w1", cycles=3)) == 3
    assert len(reader.history("w1", cycles=40)) == 13


def test_cycles_without_events_are_shown_with_zero_counters_and_carried_gauges(
        writer: BatchWriter, reader: HistoryReader) -> None:
    b = month_starts("2025-01-01T00:00:00Z", 6)
    writer.add("usage.aggregates", rec("w1", b[0], b[1], "machines", 3, 1))
    writer.add("usage.aggregates", rec("w1", b[0], b[1], "storage_bytes", 700, 2))
    writer.add("usage.aggregates", rec("w1", b[0], b[1], "ai_tokens", 50, 3))
    writer.add("usage.aggregates", rec("w1", b[4], b[5], "ai_tokens", 9, 4))  # May: no gauges
    writer.flush()
    cycles = reader.history("w1")
    assert [iso(c.cycle_start) for c in cycles] == [
        "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z",
        "2025-04-01T00:00:00Z", "2025-05-01T00:00:00Z"]
    assert [c.has_events for c in cycles] == [True, False, False, False, True]
    assert [c.totals["ai_tokens"] for c in cycles] == [50, 0, 0, 0, 9]
    assert [c.totals["machines"] for c in cycles] == [3, 3, 3, 3, 3]
    assert [c.totals["storage_bytes"] for c in cycles] == [700] * 5
    assert [c.status for c in cycles] == ["final", "final", "final", "provisional",
                                          "provisional"]


def test_gauges_carry_into_the_window_from_before_it(
        writer: BatchWriter, reader: HistoryReader) -> None:
    b = month_starts("2024-01-01T00:00:00Z", 14)
    writer.add("usage.aggregates", rec("w1", b[0], b[1], "storage_bytes", 4096, 1))
    for i in range(1, 14):
        writer.add("usage.aggregates", rec("w1", b[i], b[i + 1], "commands", i, i + 1))
    writer.flush()
    cycles = reader.history("w1")
    assert len(cycles) == 12
    assert {c.totals["storage_bytes"] for c in cycles} == {4096}


def test_gap_cycles_follow_the_plan_schedule(writer: BatchWriter, reader: HistoryReader) -> None:
    anchor = parse_time("2025-01-15T09:00:00Z")
    writer.add("quota.plans", {
        "workspace_id": "w1", "event_id": "p1", "occurred_at": anchor, "plan": "team",
        "cycle_anchor": anchor, "timezone": "Europe/Berlin",
        "limits": {"ai_tokens": 5000}, "owners": ["o@example.com"]})
    jan, feb = anchor, parse_time("2025-02-15T09:00:00Z")
    apr, may = parse_time("2025-04-15T08:00:00Z"), parse_time("2025-05-15T08:00:00Z")
    writer.add("usage.aggregates", rec("w1", jan, feb, "ai_tokens", 10, 1, plan="team"))
    writer.add("usage.aggregates", rec("w1", jan, feb, "ai_tokens", 5000, 2, "limits",
                                       plan="team"))
    writer.add("usage.aggregates", rec("w1", apr, may, "ai_tokens", 20, 3, plan="team"))
    writer.flush()
    cycles = reader.history("w1")
    assert [(iso(c.cycle_start), iso(c.cycle_ends_at)) for c in cycles] == [
        ("2025-01-15T09:00:00Z", "2025-02-15T09:00:00Z"),
        ("2025-02-15T09:00:00Z", "2025-03-15T09:00:00Z"),
        ("2025-03-15T09:00:00Z", "2025-04-15T08:00:00Z"),  # Berlin summer time starts
        ("2025-04-15T08:00:00Z", "2025-05-15T08:00:00Z"),
    ]
    gap = cycles[1]
    assert (gap.plan, gap.limits["ai_tokens"], gap.limits["machines"]) == ("team", 5000, None)


def test_one_cycle_by_its_start_and_an_unknown_start(
        writer: BatchWriter, reader: HistoryReader) -> None:
    b = month_starts("2025-01-01T00:00:00Z", 4)
    for i in range(4):
        writer.add("usage.aggregates", rec("w1", b[i], b[i + 1], "commands", i + 1, i + 1))
    writer.flush()
    cycle = reader.cycle("w1", b[1])
    assert (cycle.totals["commands"], cycle.status) == (2, "final")
    assert reader.cycle("w1", b[2]).status == "provisional"
    # Cycles are named to the second (S2): a name matches a start within its second,
    # and the next second names nothing.
    assert reader.cycle("w1", b[1] + 999).cycle_start == b[1]
    with pytest.raises(CycleNotFound):
        reader.cycle("w1", b[1] + 1000)


def test_a_workspace_without_rows_has_no_history(reader: HistoryReader) -> None:
    assert reader.history("nobody") == []
    assert reader.current("nobody") is None


@pytest.mark.parametrize("evil", ["x' OR 1=1 --", "w1'; DROP TABLE meter.usage_snapshots; --",
                                  "w1\\", "{ws:String}", "`w1`"])
def test_injection_attempts_are_just_workspace_ids(
        writer: BatchWriter, reader: HistoryReader, evil: str) -> None:
    b = month_starts("2025-01-01T00:00:00Z", 1)
    writer.add("usage.aggregates", rec("w1", b[0], b[1], "commands", 5, 1))
    writer.add("usage.aggregates", rec(evil, b[0], b[1], "commands", 7, 1))
    writer.flush()
    (mine,) = reader.history(evil)
    assert (mine.workspace_id, mine.totals["commands"]) == (evil, 7)
    assert reader.history("w1")[0].totals["commands"] == 5
    with pytest.raises(CycleNotFound):
        reader.cycle(evil, 0)
