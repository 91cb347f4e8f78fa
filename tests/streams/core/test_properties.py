"""Hypothesis properties of the core (S1, S9, S10, state round trip)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Event, Limits, PlanEvent
from streams.core.quotas import ThresholdCrossing
from streams.core.state_codec import decode_meter, encode_meter

from .builders import Run, api, command, machine, ms, run, skill, storage, tokens, topup

BASE = ms("2025-01-01T00:00:00Z")
HOUR = 3_600_000


def _at(hours: int) -> str:
    from streams.core.timefmt import utc_text

    return utc_text(BASE + hours * HOUR)


counter_event = st.one_of(
    st.builds(lambda h, n, m: tokens(_at(h), n, member=m, machine=m),
              st.integers(0, 24 * 27), st.integers(0, 500), st.sampled_from(["a", "b"])),
    st.builds(lambda h: run(_at(h)), st.integers(0, 24 * 27)),
    st.builds(lambda h, n: api(_at(h), n), st.integers(0, 24 * 27), st.integers(0, 50)),
    st.builds(lambda h, m: command(_at(h), machine=m), st.integers(0, 24 * 27),
              st.sampled_from(["m1", "m2"])),
    st.builds(lambda h, s: skill(_at(h), s), st.integers(0, 24 * 27), st.sampled_from(["x", "y"])),
)

any_event = st.one_of(
    counter_event,
    st.builds(lambda h, t: storage(_at(h), total=t), st.integers(0, 24 * 80), st.integers(0, 300)),
    st.builds(lambda h, d: storage(_at(h), delta=d), st.integers(0, 24 * 80),
              st.integers(-200, 200)),
    st.builds(lambda h, m, a: machine(_at(h), m, a), st.integers(0, 24 * 80),
              st.sampled_from(["m1", "m2", "m3"]), st.sampled_from(["registered", "removed"])),
    st.builds(lambda h, q, a: topup(_at(h), q, a), st.integers(0, 24 * 80),
              st.sampled_from(["ai_tokens", "storage_bytes", "machines"]), st.integers(0, 300)),
    st.builds(lambda h, n: tokens(_at(h), n), st.integers(24 * 20, 24 * 80), st.integers(0, 300)),
)

limit = st.one_of(st.none(), st.integers(1, 1000))
plan_event = st.builds(
    lambda lims: PlanEvent("p0", "w1", BASE, "team", BASE, "UTC", Limits(*lims), ("o@x.io",)),
    st.tuples(st.integers(1, 4), limit, st.integers(1, 500), limit, st.integers(1, 60), limit),
)


def _type_of(event: Event) -> str:
    return type(event).__name__


@settings(max_examples=60, deadline=None)
@given(st.lists(counter_event, max_size=40), st.randoms(use_true_random=False))
def test_s1_counter_totals_independent_of_order_across_types(
    events: list[Event], rnd: Any
) -> None:
    # Reorder across types while keeping each type's own order (one partition per topic).
    by_type: dict[str, list[Event]] = {}
    for event in events:
        by_type.setdefault(_type_of(event), []).append(event)
    queues = {k: list(v) for k, v in by_type.items()}
    shuffled: list[Event] = []
    while queues:
        key = rnd.choice(sorted(queues))
        shuffled.append(queues[key].pop(0))
        if not queues[key]:
            del queues[key]
    a, b = Run(*events), Run(*shuffled)
    for usage in (a.usage(), b.usage()):
        for cycle in usage["workspaces"].get("w1", {}).get("cycles", {}).values():
            cycle["totals"].pop("api_requests_per_minute")  # S7: needs the minute window
    assert a.usage() == b.usage()


def _check_crossings(crossings: list[ThresholdCrossing]) -> None:
    seen = set()
    for c in crossings:
        key = (c.workspace_id, c.cycle_start, c.quota, c.threshold, c.arm)
        assert key not in seen, key  # each (workspace, cycle, quota, threshold, arm) once
        seen.add(key)
        assert c.current * 100 >= c.threshold * c.limit  # S9 at every crossing
        expected = f"{c.workspace_id}/{c.alert_id.split('/')[1]}/{c.quota}/{c.threshold}"
        assert c.alert_id == (expected if c.arm == 1 else f"{expected}#{c.arm}")
    assert len({c.alert_id for c in crossings}) == len(crossings)


@settings(max_examples=80, deadline=None)
@given(plan_event, st.lists(any_event, max_size=60))
def test_s9_s10_each_arm_fires_once_and_only_when_met(plan: PlanEvent, events: list[Event]) -> None:
    r = Run(plan, *events)
    _check_crossings(r.crossings)


@settings(max_examples=60, deadline=None)
@given(plan_event, st.lists(counter_event, max_size=40))
def test_s1_final_usage_meeting_a_threshold_has_fired(plan: PlanEvent, events: list[Event]) -> None:
    r = Run(plan, *events)
    usage = r.usage()["workspaces"]["w1"]["cycles"]
    fired = {c.alert_id.split("#")[0] for c in r.crossings}
    for start, cycle in usage.items():
        for quota in ("ai_tokens", "schedule_runs", "api_requests_per_cycle"):
            lim = cycle["limits"][quota]
            for t in (80, 95, 100):
                if lim is not None and cycle["totals"][quota] * 100 >= t * lim:
                    assert f"w1/{start}/{quota}/{t}" in fired


@settings(max_examples=60, deadline=None)
@given(plan_event, st.lists(any_event, max_size=50), st.integers(0, 50))
def test_round_trip_mid_stream_gives_identical_results(
    plan: PlanEvent, events: list[Event], cut: int
) -> None:
    events = [plan, *events]
    cut = min(cut, len(events))
    straight = Run(*events)
    resumed = Run(*events[:cut])
    meter = resumed.meter()
    blob = encode_meter(meter)
    resumed.meters["w1"] = decode_meter(
        blob, on_cycle_closed=resumed.collector.cycle_closed)
    assert encode_meter(resumed.meters["w1"]) == blob
    resumed.outcomes = []
    resumed.apply(*events[cut:])
    assert resumed.outcomes == straight.outcomes[cut:]
    assert resumed.usage() == straight.usage()
    assert encode_meter(resumed.meter()) == encode_meter(straight.meter())
