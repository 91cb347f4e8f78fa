"""The meter's stored state (the stream's changelog and local store value): the bytes a
workspace's state is written as must keep reading back, byte for byte.

The golden files under ``golden/`` were written by the code before the state format
moved out of ``WorkspaceMeter`` (commit 5a09f2d, 2026-12-05); a stream worker restoring
from its changelog reads such bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from schemas.aggregates import METRICS_OF
from streams.core.meter import WorkspaceMeter
from streams.core.state_codec import decode_meter, encode_meter
from streams.core.usage import BREAKDOWNS

from .builders import (
    alert_settings,
    api,
    command,
    machine,
    plan,
    run,
    skill,
    storage,
    tokens,
    topup,
)

GOLDEN = Path(__file__).parent / "golden"


def every_kind_of_state() -> list[Any]:
    """Events leaving every part of the state non-trivial: a closed cycle not yet emitted,
    a previous and a current cycle, every breakdown (an unpriced model too), fired arms,
    forecast opt-ins and their arms, top-ups, both API minutes, gauges of every kind, a
    pending schedule change in another time zone."""
    return [
        plan("2025-01-01T00:00:00Z", event_id="p1", machines=3, ai_tokens=1000,
             storage_bytes=1000, schedule_runs=10, api_requests_per_minute=5,
             api_requests_per_cycle=100),
        tokens("2025-01-02T00:00:00Z", 900, machine="m1", skill="search", event_id="t1"),
        command("2025-01-03T00:00:00Z", member="bob", machine="m2", event_id="c1"),
        tokens("2025-03-02T00:00:00Z", 300, out=20, member="bob", machine="m1",
               provider="acme", model="in-house-1", surface="chat", event_id="t2"),
        alert_settings("2025-03-02T01:00:00Z", forecasts={"ai_tokens": 3, "schedule_runs": None},
                       event_id="a1"),
        tokens("2025-02-10T00:00:00Z", 50, cache_read=400, cache_write=7, skill="search",
               event_id="t3"),  # late: the previous cycle gets a record of its own
        machine("2025-02-11T00:00:00Z", "m1", event_id="m1"),
        topup("2025-03-03T00:00:00Z", "ai_tokens", 500, event_id="u1"),
        tokens("2025-03-03T00:00:00Z", 700, member="carol", provider="anthropic",
               model="claude-3-5-sonnet", event_id="t4"),
        run("2025-03-03T00:00:00Z", event_id="r1"),
        run("2025-03-03T00:00:01Z", member="bob", event_id="r2"),
        skill("2025-03-03T00:00:02Z", "search", cache_hit=True, event_id="s1"),
        skill("2025-03-03T00:00:03Z", "summarize", event_id="s2"),
        api("2025-03-03T00:01:00Z", 3, event_id="x1"),
        api("2025-03-03T00:02:00Z", 6, event_id="x2"),
        api("2025-03-03T00:01:30Z", 1, event_id="x3"),
        storage("2025-03-03T00:00:00Z", total=600, event_id="b1"),
        storage("2025-03-03T00:00:01Z", delta=500, category="audit_log", event_id="b2"),
        storage("2025-03-03T00:00:02Z", delta=-9, category="file_index", event_id="b3"),
        machine("2025-03-04T00:00:00Z", "m2", event_id="m2"),
        machine("2025-03-04T00:00:01Z", "m3", event_id="m3"),
        machine("2025-03-04T00:00:02Z", "m2", "removed", event_id="m4"),
        plan("2025-03-05T00:00:00Z", event_id="p2", anchor="2025-03-15T00:00:00Z",
             tz="Europe/Berlin", name="pro", machines=5, ai_tokens=5000),
        tokens("2025-03-05T00:00:00Z", 1, event_id="t1"),  # a duplicate
    ]


def _meter(track_changes: bool) -> WorkspaceMeter:
    meter = WorkspaceMeter("w1", track_changes=track_changes)
    for event in every_kind_of_state():
        meter.apply(event)
    return meter


CASES: dict[str, Callable[[], WorkspaceMeter]] = {
    "meter_state_stream.json": lambda: _meter(True),
    "meter_state_replay.json": lambda: _meter(False),
    "meter_state_empty.json": lambda: WorkspaceMeter("w0"),
}


def write_golden() -> None:
    """Rewrite the golden files from this code (only on purpose: a new state format)."""
    GOLDEN.mkdir(exist_ok=True)
    for name, build in CASES.items():
        (GOLDEN / name).write_bytes(encode_meter(build()))


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_same_events_write_the_golden_bytes(name: str) -> None:
    assert encode_meter(CASES[name]()) == (GOLDEN / name).read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_bytes_read_back_and_write_the_same_bytes(name: str) -> None:
    blob = (GOLDEN / name).read_bytes()
    assert encode_meter(decode_meter(blob)) == blob


@pytest.mark.parametrize("dimension", sorted(BREAKDOWNS))
def test_breakdown_records_store_their_metrics_in_the_contract_order(dimension: str) -> None:
    record_type = BREAKDOWNS[dimension]
    assert tuple(f.name for f in fields(record_type)) == METRICS_OF[dimension]
    numbered = record_type(*range(1, len(METRICS_OF[dimension]) + 1))
    assert numbered.values() == tuple(range(1, len(METRICS_OF[dimension]) + 1))
    # a record stored before its trailing metrics existed reads them as zero
    assert record_type(7).values() == (7,) + (0,) * (len(METRICS_OF[dimension]) - 1)
