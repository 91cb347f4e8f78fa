"""S2 cycle arithmetic and S3 timelines, hand-computed."""

from __future__ import annotations

import pytest

from streams.core.cycles import DEFAULT_SCHEDULE, Schedule, Timeline
from streams.core.timefmt import utc_text

from .builders import ms


def starts(schedule: Schedule, n: int) -> list[str]:
    return [utc_text(schedule.start(k)) for k in range(n)]


def test_s2_default_cycles_first_of_month_utc() -> None:
    bounds = DEFAULT_SCHEDULE.cycle_of(ms("2025-04-30T23:59:59.999Z"))
    assert (utc_text(bounds.start), utc_text(bounds.end)) == (
        "2025-04-01T00:00:00Z", "2025-05-01T00:00:00Z")
    assert DEFAULT_SCHEDULE.cycle_of(ms("2025-05-01T00:00:00Z")).start == ms("2025-05-01T00:00:00")


def test_s2_anchor_31st_through_leap_february_and_march() -> None:
    s = Schedule(ms("2024-01-31T00:00:00Z"))
    assert starts(s, 5) == ["2024-01-31T00:00:00Z", "2024-02-29T00:00:00Z",
                            "2024-03-31T00:00:00Z", "2024-04-30T00:00:00Z",
                            "2024-05-31T00:00:00Z"]


def test_s2_anchor_31st_through_non_leap_february_counted_from_anchor() -> None:
    s = Schedule(ms("2025-01-31T12:00:00Z"))
    assert starts(s, 3) == ["2025-01-31T12:00:00Z", "2025-02-28T12:00:00Z",
                            "2025-03-31T12:00:00Z"]
    # Negative k (cycles before the anchor) clamp the same way.
    assert utc_text(s.start(-11)) == "2024-02-29T12:00:00Z"


def test_s2_anchor_30th_march_and_february() -> None:
    s = Schedule(ms("2025-03-30T00:00:00Z"))
    assert utc_text(s.start(-1)) == "2025-02-28T00:00:00Z"
    assert utc_text(s.start(1)) == "2025-04-30T00:00:00Z"


def test_s2_cycle_of_boundaries_are_half_open() -> None:
    s = Schedule(ms("2024-01-31T00:00:00Z"))
    assert utc_text(s.cycle_of(ms("2024-02-28T23:59:59.999Z")).start) == "2024-01-31T00:00:00Z"
    assert utc_text(s.cycle_of(ms("2024-02-29T00:00:00Z")).start) == "2024-02-29T00:00:00Z"


def test_s2_los_angeles_spring_forward_gap_moves_forward() -> None:
    # Anchor 02:30 local on the 10th; 2024-03-10 02:30 does not exist (02:00 -> 03:00):
    # moved forward by the gap, it is 03:30 PDT = 10:30Z.
    s = Schedule(ms("2024-01-10T02:30:00-08:00"), "America/Los_Angeles")
    assert starts(s, 4) == ["2024-01-10T10:30:00Z", "2024-02-10T10:30:00Z",
                            "2024-03-10T10:30:00Z", "2024-04-10T09:30:00Z"]


def test_s2_los_angeles_fall_back_ambiguous_takes_earlier_instant() -> None:
    # 2024-11-03 01:30 happens twice; fold=0 takes PDT (08:30Z), not PST (09:30Z).
    s = Schedule(ms("2024-10-03T01:30:00-07:00"), "America/Los_Angeles")
    assert starts(s, 3) == ["2024-10-03T08:30:00Z", "2024-11-03T08:30:00Z",
                            "2024-12-03T09:30:00Z"]


def test_s2_los_angeles_midnight_anchor_follows_local_midnight_across_dst() -> None:
    s = Schedule(ms("2025-01-01T00:00:00-08:00"), "America/Los_Angeles")
    assert starts(s, 12)[2:4] == ["2025-03-01T08:00:00Z", "2025-04-01T07:00:00Z"]
    assert starts(s, 12)[10:12] == ["2025-11-01T07:00:00Z", "2025-12-01T08:00:00Z"]


def test_s2_kolkata_half_hour_offset() -> None:
    s = Schedule(ms("2025-01-31T00:00:00+05:30"), "Asia/Kolkata")
    # Local midnight on the 31st / clamped 28th = 18:30Z the day before.
    assert starts(s, 3) == ["2025-01-30T18:30:00Z", "2025-02-27T18:30:00Z",
                            "2025-03-30T18:30:00Z"]


def test_s2_auckland_southern_hemisphere_dst() -> None:
    # NZDT (+13) until 2025-04-06 03:00, then NZST (+12); back to NZDT on 2025-09-28.
    s = Schedule(ms("2025-03-15T09:00:00+13:00"), "Pacific/Auckland")
    assert starts(s, 8) == [
        "2025-03-14T20:00:00Z", "2025-04-14T21:00:00Z", "2025-05-14T21:00:00Z",
        "2025-06-14T21:00:00Z", "2025-07-14T21:00:00Z", "2025-08-14T21:00:00Z",
        "2025-09-14T21:00:00Z", "2025-10-14T20:00:00Z",
    ]


def test_s2_auckland_gap_at_0230_moves_forward() -> None:
    # 2025-09-28 02:00 -> 03:00 in Auckland: 02:30 does not exist; it becomes 03:30 NZDT.
    s = Schedule(ms("2025-08-28T02:30:00+12:00"), "Pacific/Auckland")
    assert utc_text(s.start(1)) == "2025-09-27T14:30:00Z"  # 03:30 NZDT (+13)


@pytest.mark.parametrize("t", ["2024-03-10T10:29:59.999Z", "2024-03-10T10:30:00Z",
                               "2024-12-31T23:59:59Z", "2023-06-01T00:00:00Z"])
def test_s2_cycle_of_contains_t(t: str) -> None:
    s = Schedule(ms("2024-01-31T02:30:00-08:00"), "America/Los_Angeles")
    bounds = s.cycle_of(ms(t))
    assert bounds.start <= ms(t) < bounds.end
    assert s.boundary_after(ms(t)) == bounds.end


def test_s3_timeline_change_takes_effect_at_cycle_end_then_next_new_boundary() -> None:
    timeline = Timeline()
    old_cycle = timeline.cycle_of(ms("2025-03-10T00:00:00Z"))
    new = Schedule(ms("2025-03-15T00:00:00Z"))
    assert timeline.change_at(old_cycle.end, new)
    # March stays whole; the transition cycle runs Apr 1 -> Apr 15; then the 15th.
    assert timeline.cycle_of(ms("2025-03-31T00:00:00Z")) == old_cycle
    bounds = timeline.cycle_of(ms("2025-04-02T00:00:00Z"))
    assert (utc_text(bounds.start), utc_text(bounds.end)) == (
        "2025-04-01T00:00:00Z", "2025-04-15T00:00:00Z")
    bounds = timeline.cycle_of(ms("2025-04-20T00:00:00Z"))
    assert (utc_text(bounds.start), utc_text(bounds.end)) == (
        "2025-04-15T00:00:00Z", "2025-05-15T00:00:00Z")


def test_s3_timezone_change_runs_transition_to_next_local_boundary() -> None:
    timeline = Timeline()
    end = timeline.cycle_of(ms("2025-03-10T00:00:00Z")).end
    timeline.change_at(end, Schedule(ms("2025-01-01T00:00:00Z"), "Europe/London"))
    # 2025-04-01 00:00 London is 2025-03-31T23:00Z (BST): before the change point, so
    # the transition cycle runs from Apr 1 00:00Z to May 1 00:00 London.
    bounds = timeline.cycle_of(ms("2025-04-10T00:00:00Z"))
    assert (utc_text(bounds.start), utc_text(bounds.end)) == (
        "2025-04-01T00:00:00Z", "2025-04-30T23:00:00Z")


def test_s3_second_change_in_same_cycle_replaces_pending_one_and_same_cancels() -> None:
    timeline = Timeline()
    end = timeline.cycle_of(ms("2025-03-10T00:00:00Z")).end
    timeline.change_at(end, Schedule(ms("2025-03-15T00:00:00Z")))
    timeline.change_at(end, Schedule(ms("2025-03-20T00:00:00Z")))
    assert utc_text(timeline.cycle_of(ms("2025-04-02T00:00:00Z")).end) == "2025-04-20T00:00:00Z"
    timeline.change_at(end, DEFAULT_SCHEDULE)
    assert len(timeline.starts) == 1
    assert utc_text(timeline.cycle_of(ms("2025-04-02T00:00:00Z")).end) == "2025-05-01T00:00:00Z"


def test_s3_forgetting_old_segments_keeps_transition_cycle() -> None:
    timeline = Timeline()
    end = timeline.cycle_of(ms("2025-03-10T00:00:00Z")).end
    timeline.change_at(end, Schedule(ms("2025-03-15T00:00:00Z")))
    timeline.forget_before(ms("2025-04-01T00:00:00Z"))
    bounds = timeline.cycle_of(ms("2025-04-02T00:00:00Z"))
    assert (utc_text(bounds.start), utc_text(bounds.end)) == (
        "2025-04-01T00:00:00Z", "2025-04-15T00:00:00Z")
    assert timeline.cycle_of(ms("2025-02-02T00:00:00Z")).end <= ms("2025-04-01T00:00:00Z")
