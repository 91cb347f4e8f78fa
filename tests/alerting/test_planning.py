"""Collapse and mutes: one message per channel for the highest unmuted threshold of an event."""

from __future__ import annotations

from alerting.planning import Action, CollapsePlanner
from schemas.events import Mute
from streams.core.quotas import ThresholdCrossing as Crossing
from tests.alerting.factories import crossing, event_crossings, forecast_alert


def plan(crossings: list[Crossing], mutes: tuple[Mute, ...] = (),
         now_ms: int = 0) -> dict[int, Action]:
    planner: CollapsePlanner[None] = CollapsePlanner(wait_ms=10_000)
    decided: dict[int, Action] = {}
    for c in crossings:
        for d in planner.offer(c, mutes, now_ms, None):
            assert d.crossing.threshold not in decided
            decided[d.crossing.threshold] = d.action
    assert len(planner) == 0
    return decided


def test_one_crossing_is_sent() -> None:
    assert plan(event_crossings(80)) == {80: Action.SEND}


def test_an_event_crossing_three_thresholds_sends_only_the_highest() -> None:
    assert plan(event_crossings(80, 95, 100)) == {
        80: Action.SUPERSEDED, 95: Action.SUPERSEDED, 100: Action.SEND}


def test_mutes_apply_first_and_a_muted_highest_hands_down_to_the_next() -> None:
    assert plan(event_crossings(80, 95, 100), (Mute("ai_tokens", 100),)) == {
        80: Action.SUPERSEDED, 95: Action.SEND, 100: Action.MUTED}


def test_a_whole_muted_quota_sends_nothing() -> None:
    assert plan(event_crossings(80, 95, 100), (Mute("ai_tokens", None),)) == {
        80: Action.MUTED, 95: Action.MUTED, 100: Action.MUTED}


def test_mutes_of_another_quota_change_nothing() -> None:
    assert plan(event_crossings(95, 100), (Mute("machines", None),)) == {
        95: Action.SUPERSEDED, 100: Action.SEND}


def test_when_everything_above_is_muted_the_crossing_is_sent_without_waiting() -> None:
    planner: CollapsePlanner[None] = CollapsePlanner(wait_ms=10_000)
    mutes = (Mute("ai_tokens", 95), Mute("ai_tokens", 100))
    first, second, third = event_crossings(80, 95, 100)
    assert [d.action for d in planner.offer(first, mutes, 0, None)] == [Action.SEND]
    assert [d.action for d in planner.offer(second, mutes, 0, None)] == [Action.MUTED]
    assert [d.action for d in planner.offer(third, mutes, 0, None)] == [Action.MUTED]


def test_a_lower_crossing_waits_for_its_highest_sibling() -> None:
    planner: CollapsePlanner[None] = CollapsePlanner(wait_ms=10_000)
    low, high = event_crossings(80, 95)
    assert planner.offer(low, (), 0, None) == []
    assert len(planner) == 1
    decided = {d.crossing.threshold: d.action for d in planner.offer(high, (), 0, None)}
    assert decided == {80: Action.SUPERSEDED, 95: Action.SEND}


def test_a_muted_middle_with_an_unmuted_top_waits_and_sends_the_highest_unmuted() -> None:
    # 95 muted, 100 not: the event may have been {80, 95} (send 80) or {80, 95, 100} (send 100)
    mutes = (Mute("ai_tokens", 95),)
    assert plan(event_crossings(80, 95), mutes) == {80: Action.SEND, 95: Action.MUTED}
    assert plan(event_crossings(80, 95, 100), mutes) == {
        80: Action.SUPERSEDED, 95: Action.MUTED, 100: Action.SEND}


def test_if_the_highest_never_comes_the_highest_waiting_one_is_sent_after_the_wait() -> None:
    planner: CollapsePlanner[None] = CollapsePlanner(wait_ms=1_000)
    low, mid, _high = event_crossings(80, 95, 100)
    planner.offer(low, (), 0, None)
    planner.offer(mid, (), 0, None)
    assert planner.expire(999) == []
    decided = {d.crossing.threshold: d.action for d in planner.expire(1_000)}
    assert decided == {80: Action.SUPERSEDED, 95: Action.SEND}


def test_crossings_of_other_events_and_quotas_do_not_collapse() -> None:
    planner: CollapsePlanner[None] = CollapsePlanner(wait_ms=10_000)
    a = crossing(80, event_id="e1")
    b = crossing(95, event_id="e2")
    c = crossing(100, event_id="e2", quota="machines")
    actions = [d.action for x in (a, b, c) for d in planner.offer(x, (), 0, None)]
    assert actions == [Action.SEND, Action.SEND, Action.SEND]


def test_a_group_keeps_the_mutes_it_started_with() -> None:
    planner: CollapsePlanner[None] = CollapsePlanner(wait_ms=10_000)
    low, high = event_crossings(80, 100)
    assert planner.offer(low, (), 0, None) == []
    decided = {d.crossing.threshold: d.action
               for d in planner.offer(high, (Mute("ai_tokens", 100),), 0, None)}
    assert decided == {80: Action.SUPERSEDED, 100: Action.SEND}


def test_dropping_a_revoked_partition_forgets_its_waiting_crossings() -> None:
    planner: CollapsePlanner[int] = CollapsePlanner(wait_ms=10_000)
    planner.offer(crossing(80, highest=False, workspace="a"), (), 0, 0)
    planner.offer(crossing(80, highest=False, workspace="b"), (), 0, 1)
    planner.drop(lambda partition: partition != 0)
    assert len(planner) == 1


def test_a_forecast_is_decided_alone_by_its_own_mute() -> None:
    planner: CollapsePlanner[None] = CollapsePlanner(wait_ms=10_000)
    forecast = forecast_alert(event_id="jump")
    low = crossing(80, event_id="jump", highest=False)
    # a waiting 80 % of the same event neither holds up nor supersedes the forecast
    assert planner.offer(low, (), 0, None) == []
    all_thresholds_muted = (Mute("ai_tokens", None),)
    [sent] = planner.offer(forecast, all_thresholds_muted, 0, None)
    assert sent.action is Action.SEND
    [muted] = planner.offer(forecast, (), 0, None, muted_forecasts={"ai_tokens"})
    assert (muted.action, muted.detail) == (Action.MUTED, "ai_tokens forecast is muted")
    # muting the forecast mutes no threshold
    top = crossing(95, event_id="jump")
    decided = {d.crossing.threshold: d.action
               for d in planner.offer(top, (), 0, None, muted_forecasts={"ai_tokens"})}
    assert decided == {80: Action.SUPERSEDED, 95: Action.SEND}
    [other] = planner.offer(forecast_alert(quota="schedule_runs"), (), 0, None,
                            muted_forecasts={"ai_tokens"})
    assert other.action is Action.SEND
