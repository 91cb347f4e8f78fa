"""S6's id memory (streams/core/dedup.py): 24 h of event time, bounded, serializable."""

from __future__ import annotations

from streams.core.dedup import MIN_SWEEP, WINDOW_MS, CycleIds, IdWindow

T0 = 1_772_532_000_000


def test_an_id_is_a_repeat_while_at_most_24_hours_behind_the_latest() -> None:
    window = IdWindow()
    window.remember("a", T0)
    window.remember("b", T0 + WINDOW_MS)  # exactly 24 h later: "a" is still remembered
    assert window.seen("a") and window.seen("b")
    window.remember("c", T0 + WINDOW_MS + 1)
    assert not window.seen("a")  # 24 h and 1 ms behind: forgotten
    assert not window.seen("never")


def test_an_id_already_outside_the_window_is_not_stored() -> None:
    window = IdWindow()
    window.remember("new", T0 + 2 * WINDOW_MS)
    window.remember("old", T0)
    assert len(window) == 1 and not window.seen("old")


def test_state_round_trip_keeps_live_ids_and_drops_expired_ones() -> None:
    window = IdWindow()
    window.remember("a", T0)
    window.remember("b", T0 + 1000)
    assert IdWindow.from_state(window.to_state()).ids == {"a": T0, "b": T0 + 1000}
    window.remember("c", T0 + WINDOW_MS + 500)  # "a" expired, "b" not
    restored = IdWindow.from_state(window.to_state())
    assert restored.ids == {"b": T0 + 1000, "c": T0 + WINDOW_MS + 500}
    assert restored.seen("b") and restored.seen("c") and not restored.seen("a")
    # a restored window is independent of the one it came from
    window.remember("d", T0 + WINDOW_MS + 600)
    assert not restored.seen("d")


def test_expired_ids_are_swept_when_the_dict_doubles() -> None:
    window = IdWindow()
    for i in range(MIN_SWEEP - 1):
        window.remember(f"old{i}", T0)
    window.remember("late", T0 + WINDOW_MS + 1)  # every "old" id expires; the sweep runs
    assert len(window) == 1


def test_topup_ids_are_kept_while_their_cycle_is_open() -> None:
    ids = CycleIds()
    ids.remember("t1", T0)
    ids.remember("t2", T0 + 10)
    ids.forget_before(T0 + 10)
    assert not ids.seen("t1") and ids.seen("t2")
