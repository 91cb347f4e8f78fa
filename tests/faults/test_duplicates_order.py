"""Duplicate storms, out-of-order topics and late events from the previous cycle.

The log spans 20 hours around one cycle boundary (Jan 31 10:00 to Feb 1 06:00 UTC, plans
anchored on the 1st), so S4 closes no cycle and every repeat is within S6's 24 h window.
Every event is sent two to four times, the copies minutes of event time apart in the
log. The replay reads the log in time order; the worker gets the topics in another
order (each topic's own order kept, S1): topic by topic, the current cycle before the
late previous-cycle events. Totals must equal the replay; counter alert ids too.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from groundwork.ports import free_port
from groundwork.settings import Settings
from tests.faults.support import (
    compare_stream,
    expected_of,
    produce_all,
    scrape,
    valid_pairs,
    worker_with_plans,
)
from tests.streams.harness import wait_caught_up

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

BOUNDARY = 1_769_904_000_000  # 2026-02-01T00:00:00Z
START, END = BOUNDARY - 14 * 3_600_000, BOUNDARY + 6 * 3_600_000
MINUTE = 60_000


def _log(seed: int, unique: int, workspaces: int) -> tuple[list[bytes], int]:
    """(the log in event-time order with its repeats, number of repeats)."""
    rng = random.Random(seed)
    out: list[tuple[int, int, bytes]] = []
    for w in range(workspaces):
        out.append((START - 1, 0, orjson.dumps({
            "type": "plan", "event_id": f"p{w}", "workspace_id": f"ws{w}",
            "occurred_at": START - 3_600_000, "plan": "team",
            "cycle_anchor": "2026-01-01T00:00:00Z", "timezone": "UTC",
            "limits": {"ai_tokens": 150_000, "schedule_runs": 40,
                       "api_requests_per_cycle": 900, "machines": 4, "storage_bytes": 400_000},
            "owners": [f"ops@ws{w}.example"]})))
    repeats = 0
    for i in range(unique):
        t = START + (END - START) * i // unique
        ws = f"ws{rng.randrange(workspaces)}"
        common: dict[str, Any] = {"event_id": f"e{i}", "workspace_id": ws, "occurred_at": t}
        kind = rng.random()
        if kind < 0.35:
            ev = {"type": "tokens", **common, "member_id": f"m{rng.randrange(4)}",
                  "machine_id": rng.choice([None, "box1", "box2"]),
                  "skill": rng.choice([None, "review"]), "provider": "openai",
                  "model": rng.choice(["small", "large"]), "input_tokens": rng.randrange(900),
                  "output_tokens": rng.randrange(200), "surface": "agent"}
        elif kind < 0.5:
            ev = {"type": "command", **common, "member_id": f"m{rng.randrange(4)}",
                  "machine_id": f"box{rng.randrange(3)}", "command": "make"}
        elif kind < 0.65:
            ev = {"type": "api", **common, "member_id": None, "protocol": "grpc",
                  "requests": rng.randrange(1, 5)}
        elif kind < 0.75:
            ev = {"type": "schedule_run", **common, "member_id": "m0", "schedule_id": "s",
                  "machine_id": None}
        elif kind < 0.85:
            ev = {"type": "skill", **common, "member_id": "m1", "skill": "review",
                  "machine_id": None, "cache_hit": rng.random() < 0.3}
        elif kind < 0.95:
            ev = {"type": "storage", **common, "category": "transcripts",
                  "delta_bytes": rng.randrange(-3000, 12_000)}
        else:
            ev = {"type": "machine", **common, "machine_id": f"box{rng.randrange(6)}",
                  "action": rng.choice(["registered", "registered", "removed"])}
        line = orjson.dumps(ev)
        out.append((t, 0, line))
        for copy in range(rng.randrange(1, 4)):  # 2-4 sends in all
            later = t + rng.randrange(1, 90) * MINUTE  # minutes of event time later
            out.append((later, copy + 1, line))
            repeats += 1
    out.sort(key=lambda x: (x[0], x[1]))
    return [line for _, _, line in out], repeats


def test_duplicate_storms_and_out_of_order_topics_equal_the_replay(
    meter_settings: Settings, tmp_path: Path
) -> None:
    lines, repeats = _log(seed=5, unique=9_000, workspaces=12)
    pairs = valid_pairs(lines)
    assert len(pairs) == len(lines)
    plans = [r for _, r in pairs if r[0] == "quota.plans"]
    usage = [(line, r) for line, r in pairs if r[0] != "quota.plans"]
    # Another order across topics: topic by topic (shuffled), and within each topic the
    # current cycle's events first, the late previous-cycle ones after (each topic's own
    # order stays that of the log: current-cycle part, then previous-cycle part, is
    # what the replay gets too, see below).
    rng = random.Random(9)
    topics = sorted({r[0] for _, r in usage})
    rng.shuffle(topics)
    sent: list[tuple[bytes, tuple[str, bytes, bytes]]] = []
    for topic in topics:
        mine = [p for p in usage if p[1][0] == topic]
        current = [p for p in mine if orjson.loads(p[0])["occurred_at"] >= BOUNDARY]
        previous = [p for p in mine if orjson.loads(p[0])["occurred_at"] < BOUNDARY]
        sent += current + previous
    # The replay's log: the same per-topic order (S1 fixes it only within a topic), but
    # interleaved in event time across topics.
    by_topic: dict[str, list[bytes]] = {t: [ln for ln, r in sent if r[0] == t] for t in topics}
    replay_log = [line for line, r in pairs if r[0] == "quota.plans"]
    cursors = {t: 0 for t in topics}
    for _line, r in usage:  # usage is in event-time order: take that topic's next line
        t = r[0]
        replay_log.append(by_topic[t][cursors[t]])
        cursors[t] += 1
    assert sorted(replay_log) == sorted(lines)

    port = free_port()
    with worker_with_plans(meter_settings, plans, tmp_path / "w.log", web_port=port) as w:
        produce_all(meter_settings, [r for _, r in sent])
        wait_caught_up(meter_settings, proc=w, timeout_s=240)
        metrics = scrape(port)
    expected = expected_of(replay_log)
    assert expected.rejected == 0, "a cycle closed: the log is not what the test means"
    report = compare_stream(meter_settings, "duplicate storms, topics out of order, late events",
                            expected, lines, events_in=len(pairs), duplicates_injected=repeats,
                            metrics=metrics)
    late = int(metrics.get("meter_worker_late_total", 0))
    report.notes.append(f"{len(pairs) - len(plans):,} usage records sent topic by topic "
                        f"({', '.join(topics)}), previous-cycle events last in each; "
                        f"cycle_closed: {late}")
    report.show()
    assert report.differed == []
    assert report.counted_stream == expected.counted
    assert report.duplicates_removed == expected.duplicates == repeats
    assert late == 0
    assert report.crossings_expected_exact > 0, "no counter crossing: the test proves nothing"
