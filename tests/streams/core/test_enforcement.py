"""S11 decisions, from raw numbers and from a quota.state record alone."""

from __future__ import annotations

from typing import Any

import pytest

from streams.core.enforcement import decide, decide_from_state
from streams.core.meter import WorkspaceMeter

from .builders import api, machine, ms, plan, run, storage, tokens, topup

AT_LIMIT = {
    "machines": "reject", "ai_tokens": "reject", "api_requests_per_cycle": "reject",
    "schedule_runs": "queue", "api_requests_per_minute": "throttle", "storage_bytes": "prune",
}


@pytest.mark.parametrize("quota", sorted(AT_LIMIT))
@pytest.mark.parametrize(("used", "allowed", "percent"), [
    (79, True, 79), (80, True, 80), (99, True, 99), (100, False, 100), (101, False, 101)])
def test_s11_decision_at_percentages(quota: str, used: int, allowed: bool, percent: int) -> None:
    d = decide(quota, used, 100, 1, cycle_ends_at=ms("2025-02-01T00:00:00Z"),
               now_ms=ms("2025-01-10T10:10:10Z"))
    assert (d.allowed, d.percent) == (allowed, percent)
    assert d.decision == ("allow" if allowed else AT_LIMIT[quota])
    expected_reset = "2025-01-10T10:11:00Z" if quota == "api_requests_per_minute" else (
        "2025-02-01T00:00:00Z")
    assert d.to_json()["resets_at"] == expected_reset
    assert d.reason


def test_s11_amount_counts() -> None:
    assert decide("ai_tokens", 90, 100, 10).allowed
    assert not decide("ai_tokens", 90, 100, 11).allowed


def test_s11_percent_floor_and_unlimited() -> None:
    assert decide("ai_tokens", 2, 3).percent == 66
    d = decide("ai_tokens", 10**9, None, 10**9)
    assert (d.allowed, d.percent, d.decision) == (True, None, "allow")


def test_s11_machines_registered_id_always_allowed() -> None:
    assert decide("machines", 5, 5, already_registered=True).allowed
    assert decide("machines", 6, 5, already_registered=True).allowed
    assert decide("machines", 5, 5).decision == "reject"


def test_unknown_quota_is_an_error() -> None:
    with pytest.raises(ValueError):
        decide("gpu_minutes", 1, 1)


def _state(*events: Any, as_of: str = "2025-01-20T00:00:00Z") -> dict[str, Any]:
    meter = WorkspaceMeter("w1")
    for event in events:
        meter.apply(event)
    return meter.quota_state_record(ms(as_of))


def test_s11_from_state_every_quota() -> None:
    state = _state(
        plan("2025-01-01T00:00:00Z", machines=2, ai_tokens=100, storage_bytes=100,
             schedule_runs=5, api_requests_per_minute=10, api_requests_per_cycle=50),
        machine("2025-01-02T00:00:00Z", "m1"), machine("2025-01-02T00:00:00Z", "m2"),
        tokens("2025-01-02T00:00:00Z", 100), storage("2025-01-02T00:00:00Z", total=100),
        *[run("2025-01-02T00:00:00Z") for _ in range(5)], api("2025-01-02T00:00:30Z", 10),
    )
    now = ms("2025-01-02T00:00:40Z")
    assert decide_from_state(state, now, "machines", machine_id="m1").allowed
    assert decide_from_state(state, now, "machines", machine_id="m3").decision == "reject"
    assert decide_from_state(state, now, "ai_tokens").decision == "reject"
    assert decide_from_state(state, now, "storage_bytes").decision == "prune"
    queued = decide_from_state(state, now, "schedule_runs")
    assert queued.decision == "queue" and queued.resets_at == ms("2025-02-01T00:00:00Z")
    throttled = decide_from_state(state, now, "api_requests_per_minute")
    assert throttled.decision == "throttle"
    assert throttled.resets_at == ms("2025-01-02T00:01:00Z")
    # Another wall-clock minute: the per-minute count starts again.
    assert decide_from_state(state, ms("2025-01-02T00:01:01Z"), "api_requests_per_minute").allowed
    assert decide_from_state(state, now, "api_requests_per_cycle", 40).allowed
    assert not decide_from_state(state, now, "api_requests_per_cycle", 41).allowed


def test_s11_from_state_after_cycle_end_counters_zero_gauges_carry_no_topups() -> None:
    state = _state(plan("2025-01-01T00:00:00Z", machines=1, ai_tokens=100),
                   machine("2025-01-02T00:00:00Z", "m1"), tokens("2025-01-02T00:00:00Z", 100),
                   topup("2025-01-03T00:00:00Z", "ai_tokens", 50))
    jan = ms("2025-01-15T00:00:00Z")
    assert decide_from_state(state, jan, "ai_tokens", 50).allowed
    assert decide_from_state(state, jan, "ai_tokens", 51).decision == "reject"
    feb = ms("2025-02-03T00:00:00Z")
    d = decide_from_state(state, feb, "ai_tokens", 100)
    assert (d.allowed, d.used, d.limit) == (True, 0, 100)
    assert not decide_from_state(state, feb, "ai_tokens", 101).allowed  # top-up gone
    assert (d.cycle_start, d.cycle_ends_at) == (ms("2025-02-01T00:00:00Z"),
                                                ms("2025-03-01T00:00:00Z"))
    assert decide_from_state(state, feb, "machines", machine_id="m2").decision == "reject"


def test_s11_from_state_rolls_over_with_pending_anchor_move() -> None:
    state = _state(plan("2025-01-01T00:00:00Z", ai_tokens=100), tokens("2025-01-02T00:00:00Z", 1),
                   plan("2025-01-03T00:00:00Z", anchor="2025-01-20T00:00:00Z", ai_tokens=100))
    assert state["cycle_ends_at"] == ms("2025-02-01T00:00:00Z")
    d = decide_from_state(state, ms("2025-02-05T00:00:00Z"), "ai_tokens")
    assert (d.cycle_start, d.cycle_ends_at) == (ms("2025-02-01T00:00:00Z"),
                                                ms("2025-02-20T00:00:00Z"))
    d = decide_from_state(state, ms("2025-03-05T00:00:00Z"), "ai_tokens")
    assert (d.cycle_start, d.cycle_ends_at) == (ms("2025-02-20T00:00:00Z"),
                                                ms("2025-03-20T00:00:00Z"))


def test_s11_from_state_without_plan_allows_everything() -> None:
    state = _state(tokens("2025-01-02T00:00:00Z", 10**9))
    assert state["cycle_anchor"] is None and state["plan"] is None
    d = decide_from_state(state, ms("2025-03-02T00:00:00Z"), "ai_tokens", 10**9)
    assert d.allowed and d.cycle_start == ms("2025-03-01T00:00:00Z")
