"""Regression (found by test_rebalance's workload): a gauge event for the previous cycle
processed after another gauge moved in the current cycle must not copy that other gauge
into the previous cycle. Totals never depend on the order across topics (S1)."""

from __future__ import annotations

from itertools import permutations
from typing import Any

import orjson

from tests.faults.support import expected_of


def _line(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def test_previous_cycle_gauges_do_not_depend_on_the_order_across_topics() -> None:
    storage = _line(type="storage", event_id="s1", workspace_id="w",
                    occurred_at="2026-02-01T01:00:00Z", category="transcripts", delta_bytes=100)
    command = _line(type="command", event_id="c1", workspace_id="w",
                    occurred_at="2026-01-31T23:00:00Z", member_id="m", machine_id="b",
                    command="ls")
    machine = _line(type="machine", event_id="m1", workspace_id="w",
                    occurred_at="2026-01-31T23:00:00Z", machine_id="b", action="registered")
    results = set()
    for order in permutations([storage, command, machine]):
        cycles = expected_of(list(order)).usage["workspaces"]["w"]["cycles"]
        results.add(tuple((k, v["totals"]["storage_bytes"], v["totals"]["machines"])
                          for k, v in sorted(cycles.items())))
    assert results == {(("2026-01-01T00:00:00Z", 0, 1), ("2026-02-01T00:00:00Z", 100, 1))}
