"""Every offset of a partition applied once, in order (streams/continuity.py)."""

from __future__ import annotations

from streams.continuity import OffsetContinuity, Verdict

TOKENS = ("usage.tokens", 0)
PLANS = ("quota.plans", 0)
APPLY, HOLD, ASK = Verdict.APPLY, Verdict.HOLD, Verdict.ASK


def _guard(start: int | None = 0, tp: tuple[str, int] = TOKENS) -> OffsetContinuity:
    guard = OffsetContinuity(holes_allowed=lambda topic: topic == "quota.plans")
    guard.assigned({tp: start})
    return guard


def _applied(guard: OffsetContinuity, offsets: list[int], tp: tuple[str, int] = TOKENS,
             owned: bool = True) -> list[int]:
    return [o for o in offsets if guard.admit(tp, o, owned) is APPLY]


def test_contiguous_offsets_are_applied() -> None:
    guard = _guard(10)
    assert _applied(guard, [10, 11, 12]) == [10, 11, 12]
    assert guard.take_seeks() == {}


def test_a_hole_with_no_record_in_it_is_real_and_the_event_applies() -> None:
    # a transactional producer's commit marker took offset 12
    guard = _guard(10)
    assert _applied(guard, [10, 11]) == [10, 11]
    assert guard.admit(TOKENS, 13, True) is ASK
    assert guard.missing(TOKENS) == 12
    assert guard.answer(TOKENS, 13, first=13) is APPLY
    assert _applied(guard, [14, 15]) == [14, 15]
    assert guard.take_seeks() == {} and guard.holds() == {}
    assert guard.take_holes() == [(TOKENS, 12, 13)]  # the offset commit may pass it
    assert guard.take_holes() == []


def test_a_lost_delivery_holds_later_events_and_seeks_back() -> None:
    # The rebalance test's loss: one offset missing from a batch, the next one fenced it out.
    guard = _guard(10)
    assert _applied(guard, [10, 11]) == [10, 11]
    assert guard.admit(TOKENS, 13, True) is ASK
    assert guard.answer(TOKENS, 13, first=12) is HOLD  # the broker has 12
    assert guard.take_seeks() == {TOKENS: 12}
    assert guard.take_seeks() == {}  # once per hold
    assert guard.holds() == {TOKENS: 12}
    # stale events still buffered after the seek stay held; the refetch ends the hold
    assert _applied(guard, [14, 15, 12, 13, 14, 15]) == [12, 13, 14, 15]
    assert guard.holds() == {}
    assert guard.take_holes() == []  # a lost delivery is no hole: never committed past


def test_without_an_answer_from_the_broker_the_hole_is_held() -> None:
    guard = _guard(10)
    _applied(guard, [10])
    assert guard.admit(TOKENS, 12, True) is ASK
    assert guard.answer(TOKENS, 12, first=None) is HOLD
    assert guard.take_seeks() == {TOKENS: 11}


def test_redeliveries_below_a_hold_apply_and_keep_the_hold() -> None:
    # a refetch from the committed offset: below the hole, seen and fenced; the hold
    # ends only at the missing offset itself
    guard = _guard(0)
    _applied(guard, [0, 1, 2, 3])
    guard.admit(TOKENS, 5, True)
    guard.answer(TOKENS, 5, first=4)
    assert _applied(guard, [1, 2, 3, 5]) == [1, 2, 3]
    assert guard.holds() == {TOKENS: 4}
    assert _applied(guard, [4, 5]) == [4, 5]


def test_a_first_event_beyond_the_committed_offset_is_a_hole() -> None:
    guard = _guard(100)
    assert guard.admit(TOKENS, 140, True) is ASK
    assert guard.missing(TOKENS) == 100


def test_redeliveries_below_the_next_offset_go_to_the_fences() -> None:
    guard = _guard(0)
    assert _applied(guard, [0, 1, 2, 0, 1, 2, 3]) == [0, 1, 2, 0, 1, 2, 3]
    assert guard.take_seeks() == {}


def test_without_a_committed_offset_the_first_event_sets_the_start() -> None:
    guard = _guard(None)
    assert _applied(guard, [500, 501]) == [500, 501]


def test_compacted_topics_may_have_holes() -> None:
    guard = _guard(0, PLANS)
    assert _applied(guard, [0, 7, 9], tp=PLANS) == [0, 7, 9]
    assert guard.take_holes() == [(PLANS, 1, 7), (PLANS, 8, 9)]


def test_a_revoked_partition_is_held_without_a_seek_until_the_next_assignment() -> None:
    guard = _guard(0)
    assert _applied(guard, [0, 1]) == [0, 1]
    assert _applied(guard, [2, 3], owned=False) == []
    assert guard.take_seeks() == {}
    # back to this worker after the rebalance, where its new owner committed up to 50:
    # stale events below the start go to the fences, the fetch from 50 goes through
    guard.assigned({TOKENS: 50})
    assert _applied(guard, [4, 5]) == [4, 5]
    assert _applied(guard, [50, 51]) == [50, 51]


def test_stale_events_above_the_new_start_are_a_hole() -> None:
    guard = _guard(0)
    _applied(guard, [0, 1, 2])
    guard.assigned({TOKENS: 2})  # kept after a rebalance; 2 was never acked
    assert guard.admit(TOKENS, 3, True) is ASK
    assert guard.answer(TOKENS, 3, first=2) is HOLD
    assert guard.take_seeks() == {TOKENS: 2}
    assert _applied(guard, [4, 2, 3, 4]) == [2, 3, 4]


def test_a_hold_survives_a_late_assignment_and_the_partition_is_sought_back() -> None:
    # The stall: events of the new assignment delivered and held before the assignment
    # was recorded; dropping the hold there left them acked by nobody, delivered never.
    guard = _guard(None)
    _applied(guard, [40, 41])
    assert guard.admit(TOKENS, 43, True) is ASK
    guard.answer(TOKENS, 43, first=42)
    guard.assigned({TOKENS: 40})
    assert guard.holds() == {TOKENS: 42}
    assert guard.take_seeks() == {TOKENS: 40}
    assert _applied(guard, [43, 40, 41, 42, 43]) == [40, 41, 42, 43]


def test_a_hold_the_committed_offset_passed_ends_with_the_assignment() -> None:
    guard = _guard(0)
    _applied(guard, [0, 1])
    _applied(guard, [2, 3], owned=False)
    guard.assigned({TOKENS: 90})
    assert guard.holds() == {} and guard.take_seeks() == {}
    assert _applied(guard, [90, 91]) == [90, 91]


def test_a_failed_batch_is_delivered_again_from_its_first_offset() -> None:
    # 10-14 were admitted, then the batch failed before the broker confirmed it: Faust
    # will not deliver them again by itself, and later events must wait for them.
    guard = _guard(10)
    assert _applied(guard, [10, 11, 12, 13, 14]) == [10, 11, 12, 13, 14]
    guard.redeliver({TOKENS: 10})
    assert guard.take_seeks() == {TOKENS: 10}
    assert _applied(guard, [15, 16]) == []  # already buffered: held
    assert _applied(guard, [10, 11, 12, 13, 14, 15, 16]) == [10, 11, 12, 13, 14, 15, 16]
    assert guard.holds() == {}


def test_a_failed_batch_behind_a_hold_moves_the_hold_back() -> None:
    guard = _guard(10)
    assert _applied(guard, [10, 11]) == [10, 11]
    assert guard.admit(TOKENS, 13, True) is ASK
    assert guard.answer(TOKENS, 13, first=12) is HOLD
    guard.take_seeks()
    guard.redeliver({TOKENS: 10})  # 10 and 11 were in the failed batch
    assert guard.holds() == {TOKENS: 10} and guard.take_seeks() == {TOKENS: 10}
    guard.redeliver({TOKENS: 11})  # a later failure above the hold changes nothing
    assert guard.holds() == {TOKENS: 10} and guard.take_seeks() == {}
