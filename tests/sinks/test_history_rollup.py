"""History from the rollup (``usage_cycles``, one query) equals history from the detail rows,
for generated data: cycles without events between cycles with them, values corrected by
later versions (and stale versions arriving after them, and whole batches written twice),
breakdowns, limits, plans, gauges carried from before the window, and a cycle in progress.
"""

from __future__ import annotations

import random

import pytest
from clickhouse_connect.driver.client import Client

from sinks.ddl import MIGRATIONS
from sinks.history import HistoryReader
from sinks.writer import BatchWriter
from tests.sinks.test_history import month_starts, rec

DIMENSIONS = {"member": ["ai_tokens", "chat_tokens", "schedule_runs", "commands"],
              "machine": ["commands", "ai_tokens"], "model": ["input_tokens", "output_tokens"]}
TOTALS = ["ai_tokens", "schedule_runs", "api_requests_per_cycle", "machines", "storage_bytes",
          "commands"]


def _generate(writer: BatchWriter, seed: int, workspaces: int) -> None:
    rng = random.Random(seed)
    bounds = month_starts("2024-01-01T00:00:00Z", 30)
    version = 0
    for w in range(workspaces):
        ws = f"ws{w}"
        if rng.random() < 0.5:
            anchor = bounds[0]
            writer.add("quota.plans", {
                "workspace_id": ws, "event_id": f"p{w}", "occurred_at": anchor,
                "plan": rng.choice(["team", "pro"]), "cycle_anchor": anchor, "timezone": "UTC",
                "limits": {"ai_tokens": rng.choice([None, 1000])}, "owners": ["o@example.com"]})
        # cycles with events: a random subset (gaps are cycles without events), up to the
        # last one, the cycle in progress
        active = sorted(rng.sample(range(30), rng.randrange(1, 20)))
        for i in active:
            start, end = bounds[i], bounds[i + 1]
            plan = rng.choice([None, "team", "pro"])
            for _ in range(rng.randrange(1, 4)):  # several batches: later versions correct
                version += rng.randrange(1, 5)
                for metric in rng.sample(TOTALS, 3):
                    writer.add("usage.aggregates",
                               rec(ws, start, end, metric, rng.randrange(10_000), version,
                                   plan=plan))
                writer.add("usage.aggregates",
                           rec(ws, start, end, "ai_tokens", rng.choice([None, 500, 0]), version,
                               "limits", plan=plan))
                dimension = rng.choice(list(DIMENSIONS))
                for metric in DIMENSIONS[dimension]:
                    writer.add("usage.aggregates",
                               rec(ws, start, end, metric, rng.randrange(1000), version,
                                   dimension, rng.choice(["k1", "k|2", "openai/gpt-4o"]),
                                   plan=plan))
            # a stale version arriving late must not win
            writer.add("usage.aggregates", rec(ws, start, end, "ai_tokens", 999_999, 0,
                                               plan="stale"))
        writer.flush()


@pytest.mark.parametrize("cycles", [1, 3, 12, 40])
def test_rollup_history_equals_detail_history(writer: BatchWriter, reader: HistoryReader,
                                              cycles: int) -> None:
    _generate(writer, seed=cycles, workspaces=25)
    _generate(writer, seed=cycles, workspaces=25)  # every batch written twice: no change
    seen_empty = False
    for w in range(25):
        ws = f"ws{w}"
        from_rollup = [c.to_json() for c in reader.history(ws, cycles)]
        from_detail = [c.to_json() for c in reader.history_from_detail(ws, cycles)]
        assert from_rollup == from_detail, ws
        assert from_rollup[-1]["status"] == "provisional"  # the cycle in progress
        assert all(c["plan"] != "stale" for c in from_rollup)
        seen_empty |= any(not c.has_events for c in reader.history(ws, cycles))
    assert seen_empty or cycles == 1
    assert reader.history("nobody", cycles) == reader.history_from_detail("nobody", cycles) == []


def test_the_migration_rolls_up_rows_written_before_it(
        writer: BatchWriter, reader: HistoryReader, client: Client) -> None:
    _generate(writer, seed=5, workspaces=5)
    client.command("TRUNCATE TABLE meter.usage_cycles")
    assert reader.history("ws0") == []
    backfill = next(m for m in MIGRATIONS if m.name == "history rollup").statements[-1]
    client.command(backfill.format(db="meter"))
    for w in range(5):
        assert reader.history(f"ws{w}") == reader.history_from_detail(f"ws{w}")
