"""Faust's commit bookkeeping with ``streams.faust_fixes``: only offsets acked or verified
as holes are committed (Faust's own gap records also cover offsets nobody applied), and
an offset counted twice does not slow the commit to one offset a second."""

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


def test_fetcher_gaps_are_not_committed_as_if_applied(consumer: Any) -> None:
    # the rebalance test's loss: after a seek back to 12, the fetcher delivered a record
    # fetched before it (offset 20) and recorded 12-20 as a gap; 12-19 were held back,
    # not applied
    acked(consumer, 10, [10, 11, 12, 13])
    consumer._gap[TOKENS].addi(12, 21)
    assert consumer._new_offset(TOKENS) == 14
    assert not consumer._gap[TOKENS].overlaps(0, 14)  # passed records are dropped


def test_verified_holes_are_committed_past(consumer: Any) -> None:
    # a transaction marker at 12, checked with the broker by streams.continuity
    acked(consumer, 10, [10, 11, 13, 14])
    faust_fixes.record_hole(consumer, TOKENS, 12, 13)
    assert consumer._new_offset(TOKENS) == 15
    assert consumer._acked[TOKENS] == []


def test_a_hole_beyond_the_acked_offsets_waits_for_them(consumer: Any) -> None:
    acked(consumer, 10, [10, 11])
    faust_fixes.record_hole(consumer, TOKENS, 20, 30)
    assert consumer._new_offset(TOKENS) == 12


def test_duplicates_do_not_break_the_run(consumer: Any) -> None:
    # the store-loss stall: each commit moved the partition by one offset
    acked(consumer, 493, [492, 493, 493, 494, 494, 495, 495, 496])
    assert consumer._new_offset(TOKENS) == 497


def test_a_missing_offset_stops_the_run_and_the_rest_stays_pending(consumer: Any) -> None:
    acked(consumer, 10, [10, 11, 12, 15, 16])
    assert consumer._new_offset(TOKENS) == 13
    assert consumer._acked[TOKENS] == [15, 16]
    assert consumer._acked_index[TOKENS] == {15, 16}


def test_two_missing_offsets_at_the_head_commit_nothing(consumer: Any) -> None:
    acked(consumer, 10, [12, 13])
    assert consumer._new_offset(TOKENS) is None
    assert consumer._acked[TOKENS] == [12, 13]
