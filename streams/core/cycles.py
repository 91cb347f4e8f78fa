"""Billing cycles: where each cycle starts and ends (S2) and how plan changes re-cut them (S3).

A ``Schedule`` is one anchor + timezone: cycle k starts at the anchor's local day and
time, k months after the anchor's month, the day clamped to the month's end and
counted from the anchor each time (Jan 31 -> Feb 29 -> Mar 31, never Mar 29), the
local time resolved with ``fold=0`` (S2).

A ``Timeline`` is the workspace's sequence of schedules: a plan change that moves
the anchor or timezone starts a new segment at the end of the cycle containing the
plan event (S3); the first cycle of a segment runs from the segment's start to the
first boundary of the new schedule after it.

Everything here works on integer epoch milliseconds; ``datetime`` is only used to
compute a boundary, and computed boundaries are cached per schedule, so the hot path
(an event inside the current cycle) never gets here at all: the meter compares ms.
"""

from __future__ import annotations

import calendar
from bisect import bisect_right
from datetime import datetime
from functools import lru_cache
from typing import Final, NamedTuple
from zoneinfo import ZoneInfo

from streams.core.timefmt import datetime_of_ms, ms_of_datetime

UTC_ZONE: Final = "UTC"
# The default schedule (no plan): the 1st of each month, 00:00 UTC (S2).
DEFAULT_ANCHOR_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z
# Sentinel for "since forever" (the first segment of every timeline).
BEGINNING: Final = -(2**62)


class CycleBounds(NamedTuple):
    start: int
    end: int


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone (validation has already rejected unknown names)."""
    return ZoneInfo(name)


class Schedule:
    """Cycle boundaries of one anchor instant and IANA timezone (S2)."""

    __slots__ = ("_cache", "_day", "_month0", "_time", "_tz", "anchor_ms", "timezone")

    def __init__(self, anchor_ms: int, timezone: str = UTC_ZONE) -> None:
        self.anchor_ms = anchor_ms
        self.timezone = timezone or UTC_ZONE
        self._tz = zone(self.timezone)
        local = datetime_of_ms(anchor_ms).astimezone(self._tz)
        # Months counted from year 0 so that k months later is plain addition.
        self._month0 = local.year * 12 + local.month - 1
        self._day = local.day
        self._time = (local.hour, local.minute, local.second, local.microsecond)
        # k -> start of cycle k; bounded (see start()).
        self._cache: dict[int, int] = {}

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Schedule)
            and self.anchor_ms == other.anchor_ms
            and self.timezone == other.timezone
        )

    def __hash__(self) -> int:
        return hash((self.anchor_ms, self.timezone))

    def __repr__(self) -> str:
        return f"Schedule({self.anchor_ms}, {self.timezone!r})"

    def start(self, k: int) -> int:
        """Start (epoch ms) of cycle k, k months after the anchor's month (S2)."""
        cached = self._cache.get(k)
        if cached is not None:
            return cached
        year, month0 = divmod(self._month0 + k, 12)
        month = month0 + 1
        # Clamp counted from the anchor's day every time (S2: Jan 31, Feb 29, Mar 31).
        day = min(self._day, calendar.monthrange(year, month)[1])
        hour, minute, second, micro = self._time
        # fold=0: an ambiguous wall time takes the earlier instant; a missing one is
        # converted with the offset before the gap, i.e. moved forward by the gap (S2).
        local = datetime(year, month, day, hour, minute, second, micro, tzinfo=self._tz, fold=0)
        ms = ms_of_datetime(local)
        if len(self._cache) >= 64:  # a workspace touches few cycles; keep this bounded
            self._cache.clear()
        self._cache[k] = ms
        return ms

    def index_of(self, t_ms: int) -> int:
        """k such that start(k) <= t_ms < start(k + 1)."""
        local = datetime_of_ms(t_ms).astimezone(self._tz)
        k = local.year * 12 + local.month - 1 - self._month0
        # The local month is right or off by one (the day/time within the month decides).
        while t_ms < self.start(k):
            k -= 1
        while t_ms >= self.start(k + 1):
            k += 1
        return k

    def cycle_of(self, t_ms: int) -> CycleBounds:
        k = self.index_of(t_ms)
        return CycleBounds(self.start(k), self.start(k + 1))

    def boundary_after(self, t_ms: int) -> int:
        """The first cycle boundary strictly after ``t_ms``."""
        return self.start(self.index_of(t_ms) + 1)


DEFAULT_SCHEDULE: Final = Schedule(DEFAULT_ANCHOR_MS, UTC_ZONE)


class Timeline:
    """A workspace's schedules over time (S3). Segment i applies from ``starts[i]``.

    Invariant: every segment start after the first is a boundary of the segment
    before it (the end of the cycle containing a plan event), so cycles never overlap.
    Segments wholly before the previous cycle are dropped (``forget_before``), which
    keeps the state bounded.
    """

    __slots__ = ("schedules", "starts")

    def __init__(self, schedule: Schedule = DEFAULT_SCHEDULE) -> None:
        self.starts: list[int] = [BEGINNING]
        self.schedules: list[Schedule] = [schedule]

    @classmethod
    def from_segments(cls, segments: list[tuple[int, int, str]]) -> Timeline:
        timeline = cls()
        timeline.starts = [start for start, _, _ in segments]
        timeline.schedules = [Schedule(anchor, tz) for _, anchor, tz in segments]
        return timeline

    def segments(self) -> list[tuple[int, int, str]]:
        return [
            (start, s.anchor_ms, s.timezone)
            for start, s in zip(self.starts, self.schedules, strict=True)
        ]

    def cycle_of(self, t_ms: int) -> CycleBounds:
        """The cycle containing ``t_ms`` (S2, S3)."""
        i = bisect_right(self.starts, t_ms) - 1
        if i < 0:
            # Before every kept segment: a long-closed cycle; exact bounds only need to lie
            # before the first kept segment so that S4 classifies the event as closed.
            return self._clip(0, self.schedules[0].cycle_of(min(t_ms, self.starts[0] - 1)))
        schedule = self.schedules[i]
        seg_start = self.starts[i]
        if seg_start != BEGINNING:
            # S3: the first cycle of a new schedule runs from the change to its next boundary.
            first_end = schedule.boundary_after(seg_start)
            if t_ms < first_end:
                return self._clip(i, CycleBounds(seg_start, first_end))
        return self._clip(i, schedule.cycle_of(t_ms))

    def _clip(self, i: int, bounds: CycleBounds) -> CycleBounds:
        if i + 1 < len(self.starts) and bounds.end > self.starts[i + 1]:
            return CycleBounds(bounds.start, self.starts[i + 1])
        return bounds

    def schedule_at(self, t_ms: int) -> Schedule:
        return self.schedules[max(0, bisect_right(self.starts, t_ms) - 1)]

    @property
    def latest(self) -> Schedule:
        """The schedule in force after every pending change."""
        return self.schedules[-1]

    def change_at(self, from_ms: int, schedule: Schedule) -> bool:
        """Use ``schedule`` from ``from_ms`` on (replacing later changes). True if it differs."""
        if self.schedule_at(from_ms) == schedule and self.starts[-1] <= from_ms:
            return False
        i = bisect_right(self.starts, from_ms - 1)  # keep segments starting before from_ms
        del self.starts[i:]
        del self.schedules[i:]
        if self.schedules and self.schedules[-1] == schedule:
            return True  # the change only cancelled a pending one
        self.starts.append(from_ms)
        self.schedules.append(schedule)
        return True

    def forget_before(self, t_ms: int) -> None:
        """Drop segments that end at or before ``t_ms`` (no cycle there is open any more)."""
        drop = 0
        while drop + 1 < len(self.starts) and self.starts[drop + 1] <= t_ms:
            drop += 1
        if drop:
            # The first kept segment may become the first one; keep its start so that its
            # first (S3 transition) cycle is still cut from it.
            del self.starts[:drop]
            del self.schedules[:drop]
