"""Faust's commit bookkeeping with the fix of ``streams.faust_fixes``: a partition whose
acked offsets were also gap-filled commits its whole run at once, not one offset a
commit (the creep tests/faults/test_store_loss.py saw as a stall)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust
import pytest
from faust.types import TP

from streams import faust_fixes

TOKENS = TP("usage.tokens", 0)


@pytest.fixture
def consumer() -> Iterator[Any]:
    app = faust.App("faust-fixes-test", broker="kafka://127.0.0.1:9", store="memory://")
    faust_fixes.install()
    yield app.consumer


def acked(consumer: Any, committed: int | None, offsets: list[int]) -> None:
    consumer._committed_offset[TOKENS] = committed
    consumer._acked[TOKENS] = list(offsets)
    consumer._acked_index[TOKENS] = set(offsets)


def test_offsets_acked_and_gap_filled_commit_in_one_step(consumer: Any) -> None:
    # 100-199 acked, and the fetcher recorded 150-159 as a gap too (a re-fetch jump)
    acked(consumer, 100, list(range(100, 200)))
    consumer._gap[TOKENS].addi(150, 160)
    assert consumer._new_offset(TOKENS) == 200
    assert consumer._acked[TOKENS] == []
    assert consumer._acked_index[TOKENS] == set()


def test_duplicates_do_not_break_the_run(consumer: Any) -> None:
    acked(consumer, 493, [492, 493, 493, 494, 494, 495, 495, 496])
    assert consumer._new_offset(TOKENS) == 497


def test_a_hole_stops_the_run_and_stays_pending(consumer: Any) -> None:
    acked(consumer, 10, [10, 11, 12, 15, 16])
    assert consumer._new_offset(TOKENS) == 13
    assert consumer._acked[TOKENS] == [15, 16]
    assert consumer._acked_index[TOKENS] == {15, 16}


def test_two_missing_offsets_at_the_head_commit_nothing(consumer: Any) -> None:
    acked(consumer, 10, [12, 13])
    assert consumer._new_offset(TOKENS) is None
    assert consumer._acked[TOKENS] == [12, 13]


def test_gaps_fill_only_up_to_the_highest_acked_offset(consumer: Any) -> None:
    # a gap beyond every acked offset (held messages after a seek) is not committed
    acked(consumer, 10, [10, 11])
    consumer._gap[TOKENS].addi(20, 30)
    assert consumer._new_offset(TOKENS) == 12
