"""Memory of event ids for S6 duplicates.

The key is (workspace, type, event_id); a meter holds one workspace and asks its
``EventIds`` (``seen``, ``remember``) with the type's index in ``ID_KINDS``. An id
is remembered while its occurred_at is at most 24 h of event time behind the latest
occurred_at counted for that workspace and type (exactly 24 h behind is still
remembered, S6); an id already outside that window is never stored.

Two implementations share these rules: ``IdWindows`` here keeps the ids in memory
(the replay, tests), and the stream worker keeps them in its own bounded store
(``streams/idstore.py``), never inside the workspace's state. In memory, each type
gets an ``IdWindow``: a dict ``event_id -> occurred_at`` and that type's latest.

Bounding without a per-event heap: ids already outside the window are never
stored, and expired ids are swept out of the dict (one O(size) rebuild) when
- the dict has doubled since the last sweep (bursts), or
- the oldest stored id is more than 48 h behind the latest, i.e. expired for a
  whole window (quiet workspaces, whose dicts never double).
So the dict only holds ids of the last 48 h of event time, at most twice the live
window, and each id is swept at most a couple of times: O(1) amortised per event.
Lookups check the stored time, so lazily kept expired ids never count as duplicates.

Top-up ids are remembered while their cycle is open (current or previous, S6); the
meter keeps those in ``CycleIds`` and drops a cycle's ids when it closes.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

WINDOW_MS: Final = 86_400_000  # S6: 24 hours of event time
NO_TIME: Final = -(2**62)  # "latest" before any id of a type was counted
# The event types with an S6 window, by index (top-ups use CycleIds instead).
ID_KINDS: Final = (
    "tokens", "command", "schedule_run", "skill", "storage", "api", "machine", "plan",
    "alert_settings",
)
(K_TOKENS, K_COMMAND, K_SCHEDULE, K_SKILL, K_STORAGE, K_API, K_MACHINE, K_PLAN,
 K_ALERT) = range(len(ID_KINDS))


class EventIds(Protocol):
    """One workspace's S6 id memory, for every type in ``ID_KINDS``."""

    def seen(self, kind: int, event_id: str) -> bool:
        """True if ``event_id`` of this type is remembered (a repeat)."""

    def remember(self, kind: int, event_id: str, occurred_at: int) -> None:
        """Reserve the id of a counted event (S12: only counted events reserve ids)."""

    def latest_time(self) -> int | None:
        """The latest occurred_at counted of any type, None before the first."""

    def __len__(self) -> int:
        """Ids held in this process's memory (the stream's store holds its own on disk)."""

    def to_state(self) -> Any:
        """What the workspace's serialized state keeps of this memory."""

SWEEP_LAG_MS: Final = 2 * WINDOW_MS  # sweep once the oldest id is this far behind
MIN_SWEEP: Final = 1024


class IdWindow:
    """Ids of one workspace and type seen within 24 h of event time (S6)."""

    __slots__ = ("ids", "latest", "oldest", "sweep_at")

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.latest = NO_TIME  # latest occurred_at counted for this workspace and type
        self.oldest = 2**62  # lower bound of the stored ids' times (exact after a sweep)
        self.sweep_at = MIN_SWEEP

    def seen(self, event_id: str) -> bool:
        """True if ``event_id`` is remembered (a repeat, S6)."""
        when = self.ids.get(event_id)
        return when is not None and when >= self.latest - WINDOW_MS

    def remember(self, event_id: str, occurred_at: int) -> None:
        """Reserve the id of a counted event (S12: only counted events reserve ids)."""
        if occurred_at > self.latest:
            self.latest = occurred_at
        elif occurred_at < self.latest - WINDOW_MS:
            return  # already outside the window: remembering it would change nothing
        if occurred_at < self.oldest:
            self.oldest = occurred_at
        ids = self.ids
        ids[event_id] = occurred_at
        if len(ids) >= self.sweep_at or self.latest - self.oldest > SWEEP_LAG_MS:
            self.sweep()

    def sweep(self) -> None:
        horizon = self.latest - WINDOW_MS
        self.ids = {k: t for k, t in self.ids.items() if t >= horizon}
        self.oldest = min(self.ids.values(), default=2**62)
        self.sweep_at = max(MIN_SWEEP, 2 * len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def to_state(self) -> list[Any]:
        """[latest, {id: occurred_at}] of the live ids, for immediate serialization: when
        none has expired (``oldest`` is a lower bound) the dict itself, not a copy; every
        workspace write serializes its windows, and copying them was ~9 % of a loaded
        worker's time (bench_load profile)."""
        horizon = self.latest - WINDOW_MS
        if self.oldest >= horizon:
            return [self.latest, self.ids]
        return [self.latest, {k: t for k, t in self.ids.items() if t >= horizon}]

    @classmethod
    def from_state(cls, state: list[Any]) -> IdWindow:
        window = cls()
        window.latest = state[0]
        window.ids = dict(state[1])
        window.oldest = min(window.ids.values(), default=2**62)
        window.sweep_at = max(MIN_SWEEP, 2 * len(window.ids))
        return window


class IdWindows:
    """``EventIds`` in memory: one ``IdWindow`` per type, serialized with the state."""

    __slots__ = ("windows",)

    def __init__(self, windows: list[IdWindow] | None = None) -> None:
        self.windows = windows if windows is not None else [IdWindow() for _ in ID_KINDS]

    def seen(self, kind: int, event_id: str) -> bool:
        return self.windows[kind].seen(event_id)

    def remember(self, kind: int, event_id: str, occurred_at: int) -> None:
        self.windows[kind].remember(event_id, occurred_at)

    def latest_time(self) -> int | None:
        latest = max(w.latest for w in self.windows)
        return None if latest == NO_TIME else latest

    def __len__(self) -> int:
        return sum(len(w) for w in self.windows)

    def to_state(self) -> list[Any]:
        return [w.to_state() for w in self.windows]

    @classmethod
    def from_state(cls, state: list[Any]) -> IdWindows:
        return cls([IdWindow.from_state(w) for w in state])


class CycleIds:
    """Top-up ids by the start of the cycle they fell in (S6: kept while it is open)."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def seen(self, event_id: str) -> bool:
        return event_id in self.ids

    def remember(self, event_id: str, cycle_start: int) -> None:
        self.ids[event_id] = cycle_start

    def forget_before(self, cycle_start: int) -> None:
        """Forget ids of cycles that started before ``cycle_start`` (they are closed)."""
        if any(start < cycle_start for start in self.ids.values()):
            self.ids = {k: s for k, s in self.ids.items() if s >= cycle_start}

    def to_state(self) -> dict[str, int]:
        return self.ids

    @classmethod
    def from_state(cls, state: dict[str, int]) -> CycleIds:
        ids = cls()
        ids.ids = dict(state)
        return ids
