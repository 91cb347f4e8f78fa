"""Usage state (S7, S12), late events (S4), duplicates (S6) and plan moves (S3) in the meter."""

from __future__ import annotations

from streams.core.dedup import IdWindow
from streams.core.meter import COUNTED, DUPLICATE, WorkspaceMeter

from .builders import (
    Run,
    alert_settings,
    api,
    command,
    machine,
    ms,
    plan,
    run,
    skill,
    storage,
    tokens,
    topup,
)

JAN = "2025-01-01T00:00:00Z"
FEB = "2025-02-01T00:00:00Z"
MAR = "2025-03-01T00:00:00Z"


# --- S7 gauges ---------------------------------------------------------------------------

def test_s7_machine_reregistration_not_double_counted_and_unknown_removal_ignored() -> None:
    r = Run(machine("2025-01-02T00:00:00Z", "m1"), machine("2025-01-02T00:01:00Z", "m1"),
            machine("2025-01-02T00:02:00Z", "m2"), machine("2025-01-02T00:03:00Z", "zz", "removed"),
            machine("2025-01-02T00:04:00Z", "m2", "removed"))
    assert r.cycle(JAN)["totals"]["machines"] == 1
    assert r.meter().machine_ids == {"m1"}


def test_s7_storage_absolute_reading_after_deltas_and_never_below_zero() -> None:
    r = Run(storage("2025-01-02T00:00:00Z", delta=500), storage("2025-01-02T00:01:00Z", delta=250),
            storage("2025-01-02T00:02:00Z", total=100),  # replaces the category: 100
            storage("2025-01-02T00:03:00Z", delta=-400),  # never below 0
            storage("2025-01-02T00:04:00Z", delta=70, category="file_index"),
            storage("2025-01-02T00:05:00Z", total=5, category="audit_log"))
    assert r.meter().storage == [0, 5, 70]
    assert r.cycle(JAN)["totals"]["storage_bytes"] == 75


def test_s7_gauges_carried_into_next_cycle_and_earlier_cycle_keeps_its_value() -> None:
    r = Run(machine("2025-01-02T00:00:00Z", "m1"), storage("2025-01-02T00:00:00Z", total=40),
            tokens("2025-02-02T00:00:00Z", 1), machine("2025-02-03T00:00:00Z", "m2"),
            command("2025-04-02T00:00:00Z"))
    assert (r.cycle(JAN)["totals"]["machines"], r.cycle(JAN)["totals"]["storage_bytes"]) == (1, 40)
    assert r.cycle(FEB)["totals"]["machines"] == 2
    assert r.cycle("2025-04-01T00:00:00Z")["totals"]["machines"] == 2
    assert r.cycle("2025-04-01T00:00:00Z")["totals"]["storage_bytes"] == 40
    assert MAR not in r.usage()["workspaces"]["w1"]["cycles"]  # nothing counted in March


def test_s7_api_busiest_minute_kept_for_latest_two_minutes() -> None:
    r = Run(api("2025-01-02T00:00:10Z", 3), api("2025-01-02T00:01:10Z", 2),
            api("2025-01-02T00:00:50Z", 4),  # minute 0 is still one of the latest two: 7
            api("2025-01-02T00:02:00Z", 1),
            api("2025-01-02T00:00:55Z", 100))  # minute 0 dropped: counts toward the cycle only
    totals = r.cycle(JAN)["totals"]
    assert totals["api_requests_per_minute"] == 7
    assert totals["api_requests_per_cycle"] == 110


def test_s7_api_minute_between_the_two_latest_replaces_the_older() -> None:
    r = Run(api("2025-01-02T00:00:00Z", 1), api("2025-01-02T00:05:00Z", 1),
            api("2025-01-02T00:03:00Z", 6), api("2025-01-02T00:03:30Z", 2))
    assert r.cycle(JAN)["totals"]["api_requests_per_minute"] == 8


def test_s7_busiest_minute_is_per_cycle_and_counters_restart() -> None:
    r = Run(api("2025-01-31T23:59:00Z", 9), api("2025-02-01T00:00:00Z", 2))
    assert r.cycle(JAN)["totals"]["api_requests_per_minute"] == 9
    assert r.cycle(FEB)["totals"] == {**r.cycle(FEB)["totals"], "api_requests_per_minute": 2,
                                      "api_requests_per_cycle": 2}


# --- S12 breakdowns ----------------------------------------------------------------------

def test_s12_breakdowns() -> None:
    r = Run(tokens("2025-01-02T00:00:00Z", 10, out=5, member="bob", machine="m9", skill="sum",
                   provider="anthropic", model="claude", surface="chat"),
            tokens("2025-01-02T00:00:00Z", 1, member="bob", provider="anthropic", model="haiku"),
            skill("2025-01-02T00:00:00Z", "sum", cache_hit=True),
            skill("2025-01-02T00:00:00Z", "sum"),
            command("2025-01-02T00:00:00Z", member="cy", machine="m9"),
            run("2025-01-02T00:00:00Z", member="cy", machine="m8"), alert_settings(JAN))
    c = r.cycle(JAN)
    assert c["members"] == {"bob": {"ai_tokens": 16, "chat_tokens": 15, "schedule_runs": 0,
                                    "commands": 0},
                            "cy": {"ai_tokens": 0, "chat_tokens": 0, "schedule_runs": 1,
                                   "commands": 1}}
    assert c["machines"] == {"m9": {"commands": 1, "ai_tokens": 15}}  # not m8 (schedule_run)
    assert c["skills"] == {"sum": {"invocations": 2, "cache_hits": 1, "ai_tokens": 15}}
    assert c["providers"] == {"anthropic": {"input_tokens": 11, "output_tokens": 5, "models": {
        "claude": {"input_tokens": 10, "output_tokens": 5},
        "haiku": {"input_tokens": 1, "output_tokens": 0}}}}
    assert (c["totals"]["skill_invocations"], c["totals"]["commands"]) == (2, 1)
    assert c["plan"] is None and set(c["limits"].values()) == {None}


def test_s12_control_events_make_a_cycle_appear() -> None:
    r = Run(command("2025-01-02T00:00:00Z"), alert_settings("2025-03-05T00:00:00Z"))
    assert list(r.usage()["workspaces"]["w1"]["cycles"]) == [JAN, MAR]


# --- S4 late events ----------------------------------------------------------------------

def test_s4_previous_cycle_counts_older_is_cycle_closed() -> None:
    r = Run(tokens("2025-01-05T00:00:00Z", 1), tokens("2025-02-05T00:00:00Z", 2),
            tokens("2025-01-20T00:00:00Z", 4))  # previous cycle: counts there
    assert r.outcomes[-1] is COUNTED
    r.apply(tokens("2025-03-05T00:00:00Z", 8))
    late = r.apply(tokens("2025-01-21T00:00:00Z", 16, event_id="late"))
    assert (late.status, late.reason) == ("rejected", "cycle_closed")
    assert late.detail and "closed cycle" in late.detail
    r.apply(tokens("2025-02-21T00:00:00Z", 32))
    assert [r.cycle(s)["totals"]["ai_tokens"] for s in (JAN, FEB, MAR)] == [5, 34, 8]


def test_s4_previous_cycle_is_the_schedules_even_when_empty() -> None:
    r = Run(tokens("2025-01-05T00:00:00Z", 1), tokens("2025-03-05T00:00:00Z", 2))
    assert r.apply(tokens("2025-01-06T00:00:00Z", 1)).reason == "cycle_closed"
    assert r.apply(tokens("2025-02-06T00:00:00Z", 4)) is COUNTED
    assert r.cycle(FEB)["totals"]["ai_tokens"] == 4


def test_s4_late_created_previous_cycle_shows_carried_gauges() -> None:
    r = Run(machine("2025-01-05T00:00:00Z", "m1"), tokens("2025-03-05T00:00:00Z", 2),
            machine("2025-03-06T00:00:00Z", "m2"), command("2025-02-06T00:00:00Z"))
    assert r.cycle(FEB)["totals"]["machines"] == 1  # carried from January
    assert r.cycle(MAR)["totals"]["machines"] == 2


def test_s4_s12_late_gauge_in_closed_cycle_moves_running_gauge_only() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", machines=2), machine("2025-01-05T00:00:00Z", "m1"),
            tokens("2025-03-05T00:00:00Z", 2))
    late = r.apply(machine("2025-01-06T00:00:00Z", "m2", event_id="late-m2"))
    assert late.status == "counted"
    # Evaluated in the current cycle (March).
    assert [c.alert_id for c in late.crossings] == [
        "w1/2025-03-01T00:00:00Z/machines/80", "w1/2025-03-01T00:00:00Z/machines/95",
        "w1/2025-03-01T00:00:00Z/machines/100"]
    assert r.cycle(JAN)["totals"]["machines"] == 1  # a closed cycle never changes
    assert r.cycle(MAR)["totals"]["machines"] == 2


def test_s4_gauge_event_in_previous_cycle_updates_previous_and_current() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", storage_bytes=100), tokens("2025-02-05T00:00:00Z", 2))
    outcome = r.apply(storage("2025-01-30T00:00:00Z", total=90))
    assert [c.alert_id for c in outcome.crossings] == [
        "w1/2025-01-01T00:00:00Z/storage_bytes/80", "w1/2025-02-01T00:00:00Z/storage_bytes/80"]
    assert r.cycle(JAN)["totals"]["storage_bytes"] == 90
    assert r.cycle(FEB)["totals"]["storage_bytes"] == 90


def test_s4_late_event_counts_under_plan_in_force_when_processed() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", name="small", ai_tokens=100),
            tokens("2025-01-05T00:00:00Z", 10), tokens("2025-02-05T00:00:00Z", 1),
            plan("2025-02-06T00:00:00Z", anchor=JAN, name="big", ai_tokens=10))
    outcome = r.apply(tokens("2025-01-20T00:00:00Z", 1))
    assert r.cycle(JAN)["plan"] == "big" and r.cycle(JAN)["limits"]["ai_tokens"] == 10
    assert [c.alert_id for c in outcome.crossings] == [
        "w1/2025-01-01T00:00:00Z/ai_tokens/80", "w1/2025-01-01T00:00:00Z/ai_tokens/95",
        "w1/2025-01-01T00:00:00Z/ai_tokens/100"]


# --- S6 duplicates -----------------------------------------------------------------------

def test_s6_duplicate_within_window_counts_once_per_workspace_and_type() -> None:
    r = Run(command("2025-01-02T00:00:00Z", event_id="x"),
            command("2025-01-02T00:00:00Z", event_id="x"),
            run("2025-01-02T00:00:00Z", event_id="x"), command("2025-01-02T00:00:00Z", event_id="x",
                                                                ws="w2"))
    assert [o.status for o in r.outcomes] == ["counted", "duplicate", "counted", "counted"]
    assert r.outcomes[1] is DUPLICATE


def test_s6_exactly_24h_behind_is_remembered_more_is_forgotten() -> None:
    r = Run(tokens("2025-01-02T00:00:00Z", 1, event_id="a"),
            tokens("2025-01-02T00:00:00.001Z", 1, event_id="b"),
            tokens("2025-01-03T00:00:00.001Z", 1, event_id="c"))  # latest: a is 24h+1ms behind
    assert r.apply(tokens("2025-01-02T00:00:00.001Z", 1, event_id="b")) is DUPLICATE
    assert r.apply(tokens("2025-01-02T00:00:00Z", 1, event_id="a")) is COUNTED
    assert r.cycle(JAN)["totals"]["ai_tokens"] == 4


def test_s6_window_is_per_type_so_skew_between_topics_never_shortens_it() -> None:
    r = Run(command("2025-01-02T00:00:00Z", event_id="a"), tokens("2025-01-09T00:00:00Z", 1))
    assert r.apply(command("2025-01-02T00:00:00Z", event_id="a")) is DUPLICATE


def test_s6_only_counted_events_reserve_their_id() -> None:
    r = Run(tokens("2025-01-05T00:00:00Z", 1), tokens("2025-03-05T00:00:00Z", 1))
    assert r.apply(tokens("2025-01-06T00:00:00Z", 1, event_id="z")).reason == "cycle_closed"
    assert r.apply(tokens("2025-03-06T00:00:00Z", 1, event_id="z")) is COUNTED


def test_s6_topup_ids_remembered_while_cycle_open() -> None:
    r = Run(plan(JAN, ai_tokens=10), topup("2025-01-05T00:00:00Z", "ai_tokens", 5, event_id="u"),
            tokens("2025-02-20T00:00:00Z", 1))
    assert r.apply(topup("2025-01-05T00:00:00Z", "ai_tokens", 5, event_id="u")) is DUPLICATE
    r.apply(tokens("2025-03-20T00:00:00Z", 1))  # January closes: its top-up ids go
    assert r.meter().topup_ids.ids == {}
    assert r.apply(topup("2025-03-21T00:00:00Z", "ai_tokens", 5, event_id="u")) is not DUPLICATE


def test_s6_id_memory_is_bounded_by_the_window() -> None:
    window = IdWindow()
    for i in range(200_000):
        window.remember(f"id{i}", i * 1000)  # one id per second of event time
    # 24 h = 86 400 ids live; the sweep keeps at most twice that.
    assert len(window) <= 2 * 86_401 + 1024
    assert window.seen("id199999") and not window.seen("id0")


# --- S3 plans ----------------------------------------------------------------------------

def test_s12_first_plan_applies_at_once_and_cuts_cycles_from_start() -> None:
    r = Run(plan("2025-01-20T00:00:00Z", anchor="2025-01-15T00:00:00Z", ai_tokens=100),
            tokens("2025-02-10T00:00:00Z", 1))
    assert list(r.usage()["workspaces"]["w1"]["cycles"]) == ["2025-01-15T00:00:00Z"]
    assert r.cycle("2025-01-15T00:00:00Z")["cycle_ends_at"] == "2025-02-15T00:00:00Z"


def test_s3_anchor_move_takes_effect_at_end_of_plan_events_cycle() -> None:
    r = Run(command("2025-01-02T00:00:00Z"),
            plan("2025-01-10T00:00:00Z", anchor="2025-01-20T00:00:00Z", name="team", ai_tokens=5),
            tokens("2025-01-25T00:00:00Z", 1), tokens("2025-02-05T00:00:00Z", 2),
            tokens("2025-02-25T00:00:00Z", 4))
    cycles = r.usage()["workspaces"]["w1"]["cycles"]
    assert list(cycles) == [JAN, FEB, "2025-02-20T00:00:00Z"]
    assert cycles[JAN]["cycle_ends_at"] == FEB
    assert cycles[FEB]["cycle_ends_at"] == "2025-02-20T00:00:00Z"  # the transition cycle
    assert cycles["2025-02-20T00:00:00Z"]["cycle_ends_at"] == "2025-03-20T00:00:00Z"
    assert [cycles[s]["totals"]["ai_tokens"] for s in cycles] == [1, 2, 4]
    assert cycles[JAN]["plan"] == "team" and cycles[JAN]["limits"]["ai_tokens"] == 5


def test_s3_timezone_move() -> None:
    r = Run(plan("2025-01-01T00:00:00Z", anchor=JAN, ai_tokens=5),
            plan("2025-01-10T00:00:00Z", anchor="2025-01-01T00:00:00+05:30", tz="Asia/Kolkata"),
            tokens("2025-02-10T00:00:00Z", 1), tokens("2025-03-10T00:00:00Z", 1))
    cycles = r.usage()["workspaces"]["w1"]["cycles"]
    assert list(cycles) == [JAN, FEB, "2025-02-28T18:30:00Z"]
    assert cycles[FEB]["cycle_ends_at"] == "2025-02-28T18:30:00Z"


def test_plan_limits_apply_to_the_plan_events_cycle_only_from_then() -> None:
    r = Run(tokens("2025-01-02T00:00:00Z", 900),
            plan("2025-01-03T00:00:00Z", anchor=JAN, ai_tokens=1000))
    # Not the first event: the cycle is not re-cut, but the limits apply at once (S12).
    assert [c.threshold for c in r.crossings] == [80]
    assert r.cycle(JAN)["limits"]["ai_tokens"] == 1000


def test_s12_metering_is_not_enforcement() -> None:
    r = Run(plan(JAN, ai_tokens=1), tokens("2025-01-02T00:00:00Z", 50))
    assert r.cycle(JAN)["totals"]["ai_tokens"] == 50


def test_meter_ignores_zero_counts_but_creates_entries() -> None:
    r = Run(tokens("2025-01-02T00:00:00Z", 0), api("2025-01-02T00:00:00Z", 0))
    assert r.cycle(JAN)["totals"]["ai_tokens"] == 0
    assert r.cycle(JAN)["members"]["alice"]["ai_tokens"] == 0


def test_event_time_is_latest_counted_occurred_at() -> None:
    meter = WorkspaceMeter("w1")
    assert meter.event_time is None
    meter.apply(tokens("2025-01-02T00:00:00Z", 1))
    meter.apply(command("2025-01-03T00:00:00Z"))
    assert meter.event_time == ms("2025-01-03T00:00:00Z")


def test_s6_quiet_windows_are_swept_by_event_time_too() -> None:
    window = IdWindow()
    hour = 3_600_000
    for i in range(100):
        window.remember(f"id{i}", i * hour)  # one id per hour: never doubles past 1024
    # Only ids of the last 48 h of event time are kept (24 h live + one window of lag).
    assert len(window) <= 49
    assert window.seen("id99") and window.seen("id75") and not window.seen("id74")
