"""Collapse and mutes: which crossings of one event become a message (pure).

Mutes apply first: a muted crossing is recorded as ``muted``. Of the unmuted
crossings of one event and quota (the group ``(workspace, event_id, quota)``),
only the highest threshold is sent; the others are ``superseded``.

A crossing is decided as soon as that is possible:
- muted: at once;
- ``highest_in_event`` and unmuted: sent at once, lower ones waiting in its
  group are superseded;
- not the highest, but every higher threshold of its quota is muted: nothing
  above it can be sent, so it is sent at once;
- otherwise it waits for its group's highest crossing (which, being muted,
  hands the message down to the highest unmuted waiting one), or for
  ``wait_ms`` to pass (the highest never came): then the highest waiting one is sent.

A group keeps the mutes it started with, so a settings change between two
crossings of one event never yields two messages.

A forecast alert (``kind`` forecast) is decided alone, at once: muted when its quota's
forecasts are muted (``muted_forecasts``; threshold mutes do not apply to it, nor it
to thresholds), else sent. It never supersedes a threshold crossing of the same event
nor is superseded by one: it says something else (when 100 % will come).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, NamedTuple, TypeVar

from schemas.events import THRESHOLDS, Mute
from streams.core.quotas import KIND_FORECAST
from streams.core.quotas import ThresholdCrossing as Crossing

T = TypeVar("T")


class Action(StrEnum):
    SEND = "send"
    SUPERSEDED = "superseded"
    MUTED = "muted"


class Decision(NamedTuple, Generic[T]):
    crossing: Crossing
    action: Action
    detail: str | None
    tag: T


def is_muted(mutes: Collection[Mute], quota: str, threshold: int) -> bool:
    return any(m.quota == quota and m.threshold in (None, threshold) for m in mutes)


GroupKey = tuple[str, str, str]


@dataclass
class _Group(Generic[T]):
    mutes: frozenset[Mute]
    started_ms: int
    waiting: list[tuple[Crossing, T]] = field(default_factory=list)
    sent_threshold: int | None = None


class CollapsePlanner(Generic[T]):
    """Feeds crossings in partition order; returns decisions as they become possible."""

    def __init__(self, wait_ms: int) -> None:
        self._wait_ms = wait_ms
        self._groups: dict[GroupKey, _Group[T]] = {}

    def __len__(self) -> int:
        """Crossings waiting for a decision."""
        return sum(len(g.waiting) for g in self._groups.values())

    def offer(self, crossing: Crossing, mutes: Iterable[Mute], now_ms: int,
              tag: T, muted_forecasts: Collection[str] = ()) -> list[Decision[T]]:
        if crossing.kind == KIND_FORECAST:
            if crossing.quota in muted_forecasts:
                return [Decision(crossing, Action.MUTED,
                                 f"{crossing.quota} forecast is muted", tag)]
            return [Decision(crossing, Action.SEND, None, tag)]
        key = (crossing.workspace_id, crossing.event_id, crossing.quota)
        group = self._groups.get(key)
        if group is None:
            group = _Group(frozenset(mutes), now_ms)
            self._groups[key] = group
        decisions: list[Decision[T]] = []
        if is_muted(group.mutes, crossing.quota, crossing.threshold):
            decisions.append(Decision(crossing, Action.MUTED,
                                      f"{crossing.quota} {crossing.threshold} % is muted", tag))
        elif group.sent_threshold is not None:
            decisions.append(self._superseded(crossing, group.sent_threshold, tag))
        elif crossing.highest_in_event or not self._unmuted_above(group, crossing):
            decisions.append(Decision(crossing, Action.SEND, None, tag))
            group.sent_threshold = crossing.threshold
            decisions.extend(self._superseded(c, crossing.threshold, t)
                             for c, t in group.waiting)
            group.waiting.clear()
        else:
            group.waiting.append((crossing, tag))
        if crossing.highest_in_event:
            decisions.extend(self._resolve(group))
            del self._groups[key]
        return decisions

    def expire(self, now_ms: int) -> list[Decision[T]]:
        """Decide the groups whose highest crossing has not come within ``wait_ms``."""
        decisions: list[Decision[T]] = []
        for key, group in list(self._groups.items()):
            if now_ms - group.started_ms >= self._wait_ms:
                decisions.extend(self._resolve(group))
                del self._groups[key]
        return decisions

    def drop(self, keep: Callable[[T], bool]) -> None:
        """Forget waiting crossings whose tag ``keep`` rejects (revoked partitions)."""
        for key, group in list(self._groups.items()):
            group.waiting = [(c, t) for c, t in group.waiting if keep(t)]
            if not group.waiting and group.sent_threshold is None:
                del self._groups[key]

    @staticmethod
    def _unmuted_above(group: _Group[T], crossing: Crossing) -> bool:
        return any(t > crossing.threshold and not is_muted(group.mutes, crossing.quota, t)
                   for t in THRESHOLDS)

    @staticmethod
    def _superseded(crossing: Crossing, by: int, tag: T) -> Decision[T]:
        return Decision(crossing, Action.SUPERSEDED,
                        f"superseded by the {by} % alert of the same event", tag)

    def _resolve(self, group: _Group[T]) -> list[Decision[T]]:
        if not group.waiting:
            return []
        top = max(c.threshold for c, _ in group.waiting)
        decisions = [Decision(c, Action.SEND, None, t) if c.threshold == top
                     else self._superseded(c, top, t) for c, t in group.waiting]
        group.waiting.clear()
        group.sent_threshold = top
        return decisions
