"""S8-S10 thresholds, arms and alert ids, hand-computed."""

from __future__ import annotations

from streams.core.meter import COUNTED
from streams.core.quotas import ThresholdCrossing
from streams.core.state_codec import decode_meter, encode_meter, meter_from_state, meter_to_state

from .builders import (
    Run,
    alert_settings,
    api,
    machine,
    ms,
    plan,
    run,
    storage,
    tokens,
    topup,
)

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


# --- forecast alerts (opt-in per counter quota in alert_settings) ---------------------------
# Cycle 2025-01: 31 days. At 100 tokens a day, a limit of 2800 is reached on Jan 29 00:00,
# 3 days before the cycle ends (Feb 1).


def _forecasts(r: Run) -> list[ThresholdCrossing]:
    return [c for c in r.crossings if c.kind == "forecast"]


def _paced(*, lead: int | None = None, limit: int = 2800, **opt_in: int | None) -> Run:
    """A plan, the opt-in (``ai_tokens`` with ``lead`` unless ``opt_in`` says otherwise)
    and 100 tokens in the first day, counted at Jan 2 00:00 (the 24 h guard just passed)."""
    forecasts = opt_in or {"ai_tokens": lead}
    return Run(plan("2025-01-01T00:00:00Z", ai_tokens=limit, schedule_runs=10),
               alert_settings("2025-01-01T00:00:00Z", forecasts=forecasts),
               tokens("2025-01-02T00:00:00Z", 100, event_id="t100"))


def test_forecast_fires_once_with_its_own_id_and_the_projected_instant() -> None:
    r = _paced()
    (alert,) = _forecasts(r)
    assert alert.alert_id == f"{C}/ai_tokens/forecast"
    assert (alert.quota, alert.threshold, alert.arm, alert.current, alert.limit) == (
        "ai_tokens", 100, 1, 100, 2800)
    assert alert.forecast_at == ms("2025-01-29T00:00:00Z")
    assert (alert.crossed_at, alert.event_id, alert.enforcement) == (
        ms("2025-01-02T00:00:00Z"), "t100", "allow")
    assert alert.to_json()["forecast_at"] == "2025-01-29T00:00:00Z"
    # the pace holds: the forecast still says 100 % early, but it fired on this arm already
    r.apply(tokens("2025-01-03T00:00:00Z", 100), tokens("2025-01-04T00:00:00Z", 100))
    assert len(_forecasts(r)) == 1
    # the thresholds are untouched by it and keep their own ids
    r.apply(tokens("2025-01-05T00:00:00Z", 1940))
    assert r.ids()[1:] == [f"{C}/ai_tokens/80"]


def test_forecast_needs_the_lead_the_default_is_3_days() -> None:
    assert len(_forecasts(_paced(lead=3))) == 1  # projected exactly 3 days before the end
    assert _forecasts(_paced(lead=4)) == []
    assert len(_forecasts(_paced(lead=0, limit=3099))) == 1  # 1 % of a day before the end
    # the default (3 days): Jan 29 00:00 (limit 2800) is 3 days early, Jan 30 (2900) is 2
    assert len(_forecasts(_paced())) == 1
    assert _forecasts(_paced(limit=2900)) == []


def test_no_forecast_without_the_opt_in_or_for_another_quota() -> None:
    assert _forecasts(_paced(schedule_runs=None)) == []
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=2800),
            tokens("2025-01-02T00:00:00Z", 100))
    assert r.crossings == []
    # opting out again stops it
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=2800),
            alert_settings("2025-01-01T00:00:00Z", forecasts={"ai_tokens": None}),
            alert_settings("2025-01-01T12:00:00Z"), tokens("2025-01-02T00:00:00Z", 100))
    assert r.crossings == []


def test_no_forecast_in_the_first_24_hours_of_a_cycle() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=2800),
            alert_settings("2025-01-01T00:00:00Z", forecasts={"ai_tokens": None}),
            tokens("2025-01-01T23:59:59.999Z", 1000))  # a pace far above the limit
    assert _forecasts(r) == []
    r.apply(tokens("2025-01-02T00:00:00Z", 1))
    (alert,) = _forecasts(r)
    assert alert.forecast_at is not None and alert.forecast_at < ms("2025-01-04T00:00:00Z")


def test_no_forecast_once_the_limit_is_reached_or_without_a_limit() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", ai_tokens=100),
            alert_settings("2025-01-01T00:00:00Z", forecasts={"ai_tokens": 0}),
            tokens("2025-01-02T00:00:00Z", 100))
    assert [c.threshold for c in r.crossings] == [80, 95, 100]
    assert _forecasts(r) == []
    r = Run(plan("2025-01-01T00:00:00Z"),
            alert_settings("2025-01-01T00:00:00Z", forecasts={"ai_tokens": 0}),
            tokens("2025-01-02T00:00:00Z", 10**9))
    assert r.crossings == []


def test_a_topup_re_arms_the_forecast_as_it_re_arms_thresholds() -> None:
    r = _paced()
    assert len(_forecasts(r)) == 1
    # 2800 more: 100 % moves past the cycle end (a rising limit re-arms; S10 a)
    r.apply(topup("2025-01-03T00:00:00Z", "ai_tokens", 2800))
    assert len(_forecasts(r)) == 1
    # a faster pace: 1300 tokens in 3 days projects 5600 on Jan 13 22:09:13.847
    r.apply(tokens("2025-01-04T00:00:00Z", 1200, event_id="t1200"))
    _first, second = _forecasts(r)
    assert (second.alert_id, second.arm, second.limit, second.event_id) == (
        f"{C}/ai_tokens/forecast#2", 2, 5600, "t1200")
    assert second.forecast_at == ms("2025-01-04T00:00:00Z") + -(-4300 * 3 * 86_400_000 // 1300)


def test_a_plan_change_re_arms_and_a_lower_limit_never_does() -> None:
    r = _paced()
    r.apply(plan("2025-01-03T00:00:00Z", ai_tokens=2000))  # lower: no re-arm
    assert len(_forecasts(r)) == 1
    r.apply(plan("2025-01-03T01:00:00Z", ai_tokens=100_000))  # higher: arm 2, not projected
    assert len(_forecasts(r)) == 1
    # back to a limit this pace reaches in time: the plan change itself evaluates it
    r.apply(plan("2025-01-03T02:00:00Z", ai_tokens=1000))
    assert [a.alert_id for a in _forecasts(r)] == [f"{C}/ai_tokens/forecast",
                                                    f"{C}/ai_tokens/forecast#2"]


def test_the_opt_in_is_evaluated_at_once_and_arms_restart_each_cycle() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", schedule_runs=20),
            *[run(f"2025-01-0{d}T00:00:00Z") for d in (1, 2, 3)])
    assert r.crossings == []
    r.apply(alert_settings("2025-01-04T00:00:00Z", forecasts={"schedule_runs": 3},
                           event_id="opt-in"))
    (alert,) = _forecasts(r)  # 3 runs in 3 days: 20 on Jan 21, 11 days early
    assert (alert.event_id, alert.forecast_at) == ("opt-in", ms("2025-01-21T00:00:00Z"))
    r.apply(*[run(f"2025-02-0{d}T00:00:00Z") for d in (1, 2, 3)])
    assert [a.alert_id for a in _forecasts(r)][1:] == [
        "w1/2025-02-01T00:00:00Z/schedule_runs/forecast"]


def test_forecast_state_survives_a_restore_and_old_state_has_no_opt_in() -> None:
    r = _paced()
    meter = r.meter()
    restored = decode_meter(encode_meter(meter))
    assert restored.apply(tokens("2025-01-03T00:00:00Z", 100)).crossings == ()
    assert restored.forecast_leads[1] == 3 * 86_400_000
    state = meter_to_state(meter)
    assert len(state["cur"][10]) == 5  # the quota arms, with the forecast arms
    del state["fc"]
    state["cur"][10] = state["cur"][10][:3]  # quota arms as written before forecast alerts
    old = meter_from_state(state)
    assert old.forecast_leads == [None] * 6
    assert old.apply(tokens("2025-01-03T00:00:00Z", 100)).crossings == ()
