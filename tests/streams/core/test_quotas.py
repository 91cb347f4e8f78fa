"""S8-S10 thresholds, arms and alert ids, hand-computed."""

from __future__ import annotations

from streams.core.meter import COUNTED

from .builders import Run, api, machine, ms, plan, run, storage, tokens, topup

C = "w1/2025-01-01T00:00:00Z"


def test_s9_exactly_80_percent_fires_and_one_unit_less_does_not() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=1000), tokens("2025-01-02T00:00:00Z", 799))
    assert r.crossings == []
    r.apply(tokens("2025-01-02T00:01:00Z", 1))
    assert r.ids() == [f"{C}/ai_tokens/80"]
    assert (r.crossings[0].current, r.crossings[0].limit) == (800, 1000)


def test_s9_integer_rule_without_float_rounding() -> None:
    # 80 % of 7 is 5.6: 5 does not meet it (500 < 560), 6 does.
    r = Run(plan("2025-01-01T00:00:00Z", schedule_runs=7),
            *[run(f"2025-01-02T00:0{i}:00Z") for i in range(5)])
    assert r.crossings == []
    r.apply(run("2025-01-02T00:06:00Z"))
    assert r.ids() == [f"{C}/schedule_runs/80"]


def test_s9_one_event_70_to_101_fires_80_95_100_lowest_first() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=1000), tokens("2025-01-02T00:00:00Z", 700))
    r.apply(tokens("2025-01-03T00:00:00Z", 310, event_id="big"))
    assert [(c.threshold, c.highest_in_event, c.enforcement) for c in r.crossings] == [
        (80, False, "allow"), (95, False, "allow"), (100, True, "reject")]
    assert {c.event_id for c in r.crossings} == {"big"}
    assert all(c.current == 1010 and c.crossed_at == ms("2025-01-03T00:00:00Z")
               for c in r.crossings)


def test_s9_each_threshold_fires_once_per_arm() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=100),
            *[tokens("2025-01-02T00:00:00Z", 50) for _ in range(5)])
    assert r.ids() == [f"{C}/ai_tokens/80", f"{C}/ai_tokens/95", f"{C}/ai_tokens/100"]


def test_s8_s10_topup_rearms_80_with_arm_2_and_95_stays_arm_1() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=1000), tokens("2025-01-10T00:00:00Z", 850),
            topup("2025-01-11T00:00:00Z", "ai_tokens", 500),
            tokens("2025-01-12T00:00:00Z", 400), tokens("2025-01-13T00:00:00Z", 200))
    assert r.ids() == [f"{C}/ai_tokens/80", f"{C}/ai_tokens/80#2", f"{C}/ai_tokens/95"]
    assert [c.arm for c in r.crossings] == [1, 2, 1]
    assert r.crossings[1].limit == 1500
    assert r.cycle("2025-01-01T00:00:00Z")["limits"]["ai_tokens"] == 1500


def test_s10_topup_not_enough_to_drop_below_does_not_rearm() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=1000), tokens("2025-01-10T00:00:00Z", 850),
            topup("2025-01-11T00:00:00Z", "ai_tokens", 50))  # 850 of 1050 = 80.9 %
    r.apply(tokens("2025-01-12T00:00:00Z", 1))
    assert r.ids() == [f"{C}/ai_tokens/80"]


def test_s10_topup_rearm_third_arm() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=100), tokens("2025-01-02T00:00:00Z", 80),
            topup("2025-01-03T00:00:00Z", "ai_tokens", 100), tokens("2025-01-04T00:00:00Z", 80),
            topup("2025-01-05T00:00:00Z", "ai_tokens", 100), tokens("2025-01-06T00:00:00Z", 80))
    assert r.ids() == [f"{C}/ai_tokens/80", f"{C}/ai_tokens/80#2", f"{C}/ai_tokens/80#3"]


def test_s8_topup_on_unlimited_quota_does_nothing() -> None:
    r = Run(plan("2025-01-01T00:00:00Z"), topup("2025-01-02T00:00:00Z", "ai_tokens", 500),
            tokens("2025-01-03T00:00:00Z", 10_000))
    assert r.crossings == []
    assert r.cycle("2025-01-01T00:00:00Z")["limits"]["ai_tokens"] is None


def test_s8_topups_belong_to_their_cycle() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=1000),
            topup("2025-01-20T00:00:00Z", "ai_tokens", 500), tokens("2025-02-02T00:00:00Z", 800))
    assert r.cycle("2025-01-01T00:00:00Z")["limits"]["ai_tokens"] == 1500
    assert r.cycle("2025-02-01T00:00:00Z")["limits"]["ai_tokens"] == 1000
    assert r.ids() == ["w1/2025-02-01T00:00:00Z/ai_tokens/80"]


def test_s9_downgrade_crosses_several_thresholds_at_the_plan_event() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=10_000), tokens("2025-01-02T00:00:00Z", 960))
    r.apply(plan("2025-01-03T00:00:00Z", anchor="2025-01-01T00:00:00Z", name="free",
                 ai_tokens=1000, event_id="down"))
    assert [(c.threshold, c.highest_in_event, c.event_id, c.current, c.limit)
            for c in r.crossings] == [(80, False, "down", 960, 1000),
                                      (95, True, "down", 960, 1000)]
    assert r.cycle("2025-01-01T00:00:00Z")["plan"] == "free"


def test_s10_lowering_a_limit_never_rearms_and_raising_then_rearms() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=1000), tokens("2025-01-02T00:00:00Z", 800),
            plan("2025-01-03T00:00:00Z", anchor="2025-01-01T00:00:00Z", ai_tokens=900))
    assert r.ids() == [f"{C}/ai_tokens/80"]  # 800/900 = 88.9 %: 80 stays fired, no new id
    r.apply(plan("2025-01-04T00:00:00Z", anchor="2025-01-01T00:00:00Z", ai_tokens=2000),
            tokens("2025-01-05T00:00:00Z", 800))
    assert r.ids() == [f"{C}/ai_tokens/80", f"{C}/ai_tokens/80#2"]


def test_s10_limit_to_null_rearms_and_back_fires_again() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=100), tokens("2025-01-02T00:00:00Z", 90),
            plan("2025-01-03T00:00:00Z", anchor="2025-01-01T00:00:00Z"),
            plan("2025-01-04T00:00:00Z", anchor="2025-01-01T00:00:00Z", ai_tokens=100))
    assert r.ids() == [f"{C}/ai_tokens/80", f"{C}/ai_tokens/80#2"]


def test_s10_gauge_rearms_only_below_t_minus_5_percent() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", storage_bytes=1000),
            storage("2025-01-02T00:00:00Z", total=800),
            storage("2025-01-02T01:00:00Z", total=760),  # 76 %: still >= 75, no re-arm
            storage("2025-01-02T02:00:00Z", total=800))
    assert r.ids() == [f"{C}/storage_bytes/80"]
    r.apply(storage("2025-01-02T03:00:00Z", total=749),  # below 75 %: re-armed
            storage("2025-01-02T04:00:00Z", total=800))
    assert r.ids() == [f"{C}/storage_bytes/80", f"{C}/storage_bytes/80#2"]


def test_s9_storage_evaluated_even_when_value_does_not_move() -> None:
    r = Run(storage("2025-01-01T10:00:00Z", total=900),
            plan("2025-01-02T00:00:00Z", anchor="2025-01-01T00:00:00Z", storage_bytes=1000))
    assert r.ids() == [f"{C}/storage_bytes/80"]  # the plan evaluates every quota


def test_s9_new_cycle_re_evaluates_every_quota_gauges_fire_again() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", machines=2, storage_bytes=1000),
            machine("2025-01-02T00:00:00Z", "m1"), machine("2025-01-02T00:00:01Z", "m2"),
            storage("2025-01-02T00:00:02Z", total=960))
    first = r.ids()
    assert first == [f"{C}/machines/80", f"{C}/machines/95", f"{C}/machines/100",
                     f"{C}/storage_bytes/80", f"{C}/storage_bytes/95"]
    outcome = r.apply(tokens("2025-02-03T00:00:00Z", 1, event_id="feb"))
    feb = "w1/2025-02-01T00:00:00Z"
    # One event: machines first, then storage (S12 order), lowest first within each.
    assert [c.alert_id for c in outcome.crossings] == [
        f"{feb}/machines/80", f"{feb}/machines/95", f"{feb}/machines/100",
        f"{feb}/storage_bytes/80", f"{feb}/storage_bytes/95"]
    assert [c.highest_in_event for c in outcome.crossings] == [False, False, True, False, True]
    assert {c.event_id for c in outcome.crossings} == {"feb"}
    assert r.cycle("2025-02-01T00:00:00Z")["totals"]["machines"] == 2


def test_s11_machines_100_crossing_enforcement_reject() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", machines=1), machine("2025-01-02T00:00:00Z", "m1"))
    assert [(c.threshold, c.enforcement) for c in r.crossings] == [
        (80, "allow"), (95, "allow"), (100, "reject")]


def test_storage_100_percent_sends_prune_request_to_90_percent() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", storage_bytes=1000),
            storage("2025-01-02T00:00:00Z", total=300, category="audit_log"))
    outcome = r.apply(storage("2025-01-02T01:00:00Z", delta=800, event_id="big"))
    assert [c.threshold for c in outcome.crossings] == [80, 95, 100]
    (prune,) = outcome.prune_requests
    assert prune.request_id == f"{C}/storage_bytes/100"
    assert (prune.current, prune.limit, prune.target, prune.bytes_to_free) == (1100, 1000, 900, 200)
    assert prune.category == "transcripts"
    assert prune.to_record()["requested_at"] == ms("2025-01-02T01:00:00Z")


def test_s9_api_minute_quota_uses_the_minute_count() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", api_requests_per_minute=10),
            api("2025-01-02T00:00:10Z", 7), api("2025-01-02T00:01:10Z", 7))
    assert r.crossings == []
    r.apply(api("2025-01-02T00:01:50Z", 1))
    assert r.ids() == [f"{C}/api_requests_per_minute/80"]
    assert r.crossings[0].current == 8
    r.apply(api("2025-01-02T00:02:00Z", 10))
    # Same cycle, not a gauge: 80 already fired; 95 and 100 now, enforcement throttle.
    assert [(c.threshold, c.enforcement) for c in r.crossings[1:]] == [
        (95, "allow"), (100, "throttle")]


def test_s9_api_event_evaluates_both_api_quotas_in_quota_order() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", api_requests_per_minute=10, api_requests_per_cycle=10))
    outcome = r.apply(api("2025-01-02T00:00:00Z", 10))
    assert [(c.quota, c.threshold, c.highest_in_event) for c in outcome.crossings] == [
        ("api_requests_per_minute", 80, False), ("api_requests_per_minute", 95, False),
        ("api_requests_per_minute", 100, True), ("api_requests_per_cycle", 80, False),
        ("api_requests_per_cycle", 95, False), ("api_requests_per_cycle", 100, True)]


def test_s12_no_plan_and_null_limits_never_fire() -> None:
    r = Run(tokens("2025-01-02T00:00:00Z", 10**12), machine("2025-01-02T00:00:00Z", "m1"),
            plan("2025-01-03T00:00:00Z", anchor="2025-01-01T00:00:00Z"))
    assert r.crossings == []
    assert r.outcomes[0] is COUNTED


def test_crossing_record_and_json_forms() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=10), tokens("2025-01-02T03:04:05.678Z", 8))
    crossing = r.crossings[0]
    record = crossing.to_record()
    assert set(record) == {"alert_id", "workspace_id", "quota", "threshold", "arm",
                           "highest_in_event", "current", "limit", "cycle_start",
                           "cycle_ends_at", "crossed_at", "event_id", "enforcement", "kind",
                           "forecast_at"}
    assert (record["kind"], record["forecast_at"]) == ("threshold", None)
    assert record["crossed_at"] == ms("2025-01-02T03:04:05.678Z")
    as_json = crossing.to_json()
    assert (as_json["cycle_start"], as_json["cycle_ends_at"], as_json["crossed_at"]) == (
        "2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z", "2025-01-02T03:04:05Z")
    # thresholds.jsonl keeps DESIGN.md's fields for a threshold crossing
    assert "kind" not in as_json and "forecast_at" not in as_json
