"""Faust's offset commit bookkeeping (faust-streaming 0.15.x), corrected; ``install`` puts
``new_offset`` in place of ``Consumer._new_offset`` for every consumer of the process.

Faust commits, per partition, the end of the first run of consecutive offsets in its
list of acked offsets, after adding the offsets its fetcher saw skipped ("gaps") as if
acked. Two faults, both found by tests/faults:

- **Gaps are not only holes in the log.** The fetcher records a gap whenever the
  offsets it sees jump: at a transaction marker, but also when it delivers a record
  fetched before a seek back took effect, or after dropping records itself. Filling
  those in committed offsets nobody had applied: a worker stopped just after such a
  commit lost the events in between (test_rebalance, one tokens event). Here the only
  offsets filled in are the holes ``streams.continuity`` verified with the broker (or
  found on compacted topics), registered with ``record_hole``; Faust's own gap records
  are dropped as the commit passes them, so they do not pile up.
- **An offset counted twice broke the run.** A gap filled over offsets that were also
  acked put them in the list twice (``[492, 493, 493, 494, 494, ...]``); the run then
  ended after one element and each commit (one a second) moved the partition by one
  offset: minutes to commit a recovered partition (test_store_loss's stall). Offsets
  are taken as a set here.

Kept from Faust: one missing offset at the head of the list is tolerated (its seek
bookkeeping can leave the committed offset one short); a lost delivery there is held by
``streams.continuity``, so nothing after it is acked.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

_HOLES = "_meter_holes"  # consumer attribute: TP -> IntervalTree of verified holes


def _holes(consumer: Any, tp: TP) -> IntervalTree:
    holes: dict[TP, IntervalTree] | None = getattr(consumer, _HOLES, None)
    if holes is None:
        holes = {}
        setattr(consumer, _HOLES, holes)
    tree = holes.get(tp)
    if tree is None:
        tree = holes[tp] = IntervalTree()
    return tree


def record_hole(consumer: Any, tp: TP, start: int, end: int) -> None:
    """Offsets [start, end) of ``tp`` hold no record a consumer is given (checked with
    the broker, or a compacted topic): commits may pass them."""
    if start < end:
        _holes(consumer, tp).addi(start, end)


def new_offset(consumer: Any, tp: TP) -> int | None:
    """The offset to commit for ``tp`` (one past the first consecutive run of acked
    offsets and verified holes), or None; consumes that run from the bookkeeping."""
    acked: list[int] = consumer._acked[tp]
    if not acked:
        return None
    holes = _holes(consumer, tp)
    max_offset = max(acked)
    if holes:
        found = sorted(holes.overlap(0, max_offset + 1), key=lambda interval: interval.begin)
        if found:
            acked.extend(o for interval in found for o in range(interval.begin, interval.end))
            holes.chop(0, max(max(interval.end for interval in found), max_offset + 1))
    committed: int | None = consumer._committed_offset[tp]
    offsets = sorted({o for o in acked if committed is None or o >= committed})
    acked[:] = offsets
    if not offsets:
        return None
    if committed and offsets[0] - committed > 1:  # Faust's head tolerance, kept
        return None
    end = offsets[0]
    for offset in offsets:
        if offset != end:
            break
        end += 1
    del acked[: end - offsets[0]]
    index: set[int] = consumer._acked_index[tp]
    index.difference_update([o for o in index if o < end])
    gaps = consumer._gap.get(tp)
    if gaps:
        gaps.chop(0, end)  # Faust's own records: never used, kept bounded
    return end


def install() -> None:
    """Replace ``Consumer._new_offset`` for every Faust consumer of this process."""
    Consumer._new_offset = new_offset  # type: ignore[method-assign,assignment]
