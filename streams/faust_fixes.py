"""A fix to faust-streaming's offset commit bookkeeping (0.15.x), installed by ``install``.

Faust commits, per partition, the end of the first run of consecutive offsets in its
list of acked offsets (``Consumer._new_offset``). Offsets its fetcher saw skipped (gaps:
transaction markers, but also the jumps a seek or a re-fetch after recovery makes) are
added to that list as if acked, without checking what is there already. An offset that
is both acked and gap-filled then appears twice, the run ``[n, n, n+1, n+1, ...]`` breaks
after its first element, and each commit (one a second) moves the committed offset by
one: a worker that had applied everything took minutes to commit a partition's last
thousand offsets (found by tests/faults/test_store_loss.py, where it read as a stall).

The fix takes the same offsets as a set (and drops those below the committed offset,
which can never be committed again); everything else is Faust's logic unchanged,
including its tolerance of one missing offset at the head (its gap tracking misses the
first offset after a seek; a lost delivery there is held by ``streams.continuity``, so
nothing after it is acked).
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP


def new_offset(consumer: Any, tp: TP) -> int | None:
    """The offset to commit for ``tp`` (one past the first consecutive run of acked
    offsets), or None; consumes that run from the consumer's bookkeeping."""
    acked: list[int] = consumer._acked[tp]
    if not acked:
        return None
    gaps = consumer._gap[tp]
    if gaps:
        max_offset = max(acked)
        found = sorted(gaps.overlap(0, max_offset), key=lambda interval: interval.begin)
        if found:
            filled = [o for interval in found for o in range(interval.begin, interval.end)]
            acked.extend(filled)
            gaps.chop(0, max(filled[-1], max_offset + 1))
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
    return end


def install() -> None:
    """Replace ``Consumer._new_offset`` for every Faust consumer of this process."""
    Consumer._new_offset = new_offset  # type: ignore[method-assign,assignment]
