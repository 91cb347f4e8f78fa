"""Every offset of a partition applied once, in order: the guard between Faust and the fences.

The per-workspace offset fences (``streams/processor.py``) drop a redelivered event
because its offset is at or below the last one applied for that topic and partition.
That is exact only if a partition's events are applied in offset order *without holes*:
once offset n + 1 is applied, a missing n looks like a redelivery forever.

Faust does not promise that around rebalances. Its fetcher can drop a message while
delivering later ones (its read-offset filter and queue clearing), events buffered
before a rebalance arrive after it, and its commit logic then commits past the hole
(an off-by-one in ``Consumer._new_offset``). tests/faults/test_rebalance.py lost single
events this way: one offset missing from a batch, the next batch fenced it out.

``OffsetContinuity`` decides per message whether it may be applied now. A message after
a hole is not applied until the hole is explained: logs have real holes (the markers of
transactional producers; compaction), so the agent asks the broker for the first record
at or after the missing offset (``ASK``, then ``answer``). No record there: the hole is
real and the message is applied. A record there: its delivery was lost, so the message
and every later one of its partition are *held*: not applied and not acked (so no
offset after the hole is committed), and the partition is sought back to the missing
offset; the hold ends when that offset arrives. Compacted topics skip the question
(their holes are many and always real).

Pure: the Faust agent feeds it (topic, partition, offset), asks the broker and performs
the seeks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

TopicPartition = tuple[str, int]


class Verdict(Enum):
    APPLY = "apply"
    HOLD = "hold"  # skip without acking: delivered again later
    ASK = "ask"  # a hole before it: ask the broker, then ``answer``


@dataclass(slots=True)
class OffsetContinuity:
    """Tracks, per topic partition, the next offset the agent must apply."""

    # True for topics whose logs may have real holes (compacted control topics).
    holes_allowed: Callable[[str], bool]
    _next: dict[TopicPartition, int] = field(default_factory=dict)
    _held: dict[TopicPartition, int] = field(default_factory=dict)  # first missing offset
    _seeks: dict[TopicPartition, int] = field(default_factory=dict)  # to perform
    # [start, end) ranges found to hold no record, not yet handed to the commit logic
    _holes: list[tuple[TopicPartition, int, int]] = field(default_factory=list)

    def assigned(self, starts: Mapping[TopicPartition, int | None]) -> None:
        """A new assignment: each partition's fetch restarts at ``starts`` (the group's
        committed offset; None when it has none and the reset policy decides).

        A hold on a partition kept stays, with a seek back to the committed offset (at
        or below the hold: held messages are never acked): this can run after events
        of the new assignment were already delivered, and the held ones must come again
        (the stall a fault test found when holds were simply dropped here). A hold the
        committed offset passed (another worker applied those events) ends.
        """
        held, self._held = self._held, {}
        self._seeks.clear()
        self._next = {tp: start for tp, start in starts.items() if start is not None}
        for tp, offset in held.items():
            if tp not in starts:
                continue  # not ours any more
            start = starts[tp]
            if start is None or start <= offset:
                self._held[tp] = offset
                self._seeks[tp] = offset if start is None else start

    def admit(self, tp: TopicPartition, offset: int, owned: bool) -> Verdict:
        held = self._held.get(tp)
        if held is not None:
            if not owned or offset > held:
                return Verdict.HOLD
            if offset == held:  # the missing offset arrived: the hold ends
                del self._held[tp]
                self._next[tp] = offset + 1
            return Verdict.APPLY  # below it: seen before, the fences drop what was applied
        if not owned:
            # A revoked partition's buffered event: its new owner applies it from its
            # committed offset. Held, so nothing after it is applied here either.
            self._held[tp] = offset
            return Verdict.HOLD
        expected = self._next.get(tp)
        if expected is None or offset == expected:
            self._next[tp] = offset + 1
            return Verdict.APPLY
        if offset < expected:
            return Verdict.APPLY  # seen before, in order: the fences drop what was applied
        if self.holes_allowed(tp[0]):
            self._holes.append((tp, expected, offset))
            self._next[tp] = offset + 1
            return Verdict.APPLY
        return Verdict.ASK

    def missing(self, tp: TopicPartition) -> int:
        """After ``ASK``: the first offset not seen (ask the broker about it)."""
        return self._next[tp]

    def answer(self, tp: TopicPartition, offset: int, first: int | None) -> Verdict:
        """After ``ASK`` for ``offset``: ``first`` is the first record at or after the
        missing offset (None: the broker did not say)."""
        if first is not None and first >= offset:  # no record in the hole: it is real
            self._holes.append((tp, self._next[tp], offset))
            self._next[tp] = offset + 1
            return Verdict.APPLY
        missing = self._next[tp]
        self._held[tp] = missing
        self._seeks[tp] = missing
        return Verdict.HOLD

    def redeliver(self, firsts: Mapping[TopicPartition, int]) -> None:
        """Admitted events were not applied (their batch failed): each partition goes
        back to its first such offset, and every later event is held until it comes
        again (the agent seeks there; nothing else would deliver it again)."""
        for tp, offset in firsts.items():
            held = self._held.get(tp)
            if held is None or offset < held:
                self._held[tp] = offset
                self._seeks[tp] = offset

    def take_holes(self) -> list[tuple[TopicPartition, int, int]]:
        """Offset ranges [start, end) found real since the last call: the offset commit
        may pass them (Faust's own gap records may not be trusted, faust_fixes.py)."""
        holes, self._holes = self._holes, []
        return holes

    def take_seeks(self) -> dict[TopicPartition, int]:
        """Partitions to seek back to their first missing offset, once per new hold."""
        seeks, self._seeks = self._seeks, {}
        return seeks

    def holds(self) -> dict[TopicPartition, int]:
        """Every partition held back, with its first missing offset (to seek again if the
        stream does not come back on its own)."""
        return dict(self._held)
