"""The benchmark workload: deterministic, valid where it means to be, and drives quotas."""

from __future__ import annotations

from collections import Counter

import orjson

from meter.workload import Drive, Workload, generate_events, generate_lines
from schemas.events import PlanEvent, TokensEvent
from schemas.jsonl import parse_line
from schemas.validation import InvalidEvent


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    wl = Workload(seed=3, events=2000)
    assert list(generate_lines(wl)) == list(generate_lines(wl))
    assert list(generate_lines(wl)) != list(generate_lines(Workload(seed=4, events=2000)))


def test_every_line_is_valid_except_the_few_meant_to_be_bad() -> None:
    wl = Workload(seed=1, events=20_000, invalid_rate=0.01)
    reasons: Counter[str] = Counter()
    types: Counter[str] = Counter()
    for raw in generate_lines(wl):
        try:
            types[type(parse_line(raw, now_ms=wl.now_ms)).__name__] += 1
        except InvalidEvent as exc:
            reasons[exc.reason] += 1
            assert b"bad-" in raw or not raw.endswith(b"}\n")
    assert 100 < sum(reasons.values()) < 400
    assert len(types) == 10
    assert types["PlanEvent"] == wl.workspaces


def test_events_fall_in_the_span_before_now() -> None:
    wl = Workload(seed=2, events=3000, now_ms=1_800_000_000_000, span_days=2)
    times = [e.occurred_at for e in generate_events(wl) if not isinstance(e, PlanEvent)]
    assert wl.start_ms - 86_400_000 <= min(times) and max(times) <= wl.now_ms + 1000


def test_drive_takes_a_workspace_across_every_threshold() -> None:
    wl = Workload(seed=5, events=20_000, drive=(Drive("w0007", "ai_tokens"),
                                                 Drive("w0002", "schedule_runs")))
    events = list(generate_events(wl))
    for workspace, quota in (("w0007", "ai_tokens"), ("w0002", "schedule_runs")):
        plan = next(e for e in events if isinstance(e, PlanEvent) and e.workspace_id == workspace)
        limit = getattr(plan.limits, quota)
        used, fired = 0, []
        seen: set[str] = set()
        for e in events:
            if e.workspace_id != workspace or e.event_id in seen:
                continue
            seen.add(e.event_id)
            if quota == "ai_tokens" and isinstance(e, TokensEvent):
                used += e.input_tokens + e.output_tokens
            elif quota == "schedule_runs" and type(e).__name__ == "ScheduleRunEvent":
                used += 1
            fired += [t for t in (80, 95, 100) if t not in fired and used * 100 >= t * limit]
        assert fired == [80, 95, 100], (workspace, quota, used, limit)


def test_the_generator_streams_a_million_events_without_building_them_first() -> None:
    lines = generate_lines(Workload(events=1_000_000, invalid_rate=0))
    first = [orjson.loads(next(lines)) for _ in range(1000)]
    assert all(obj["type"] for obj in first)
