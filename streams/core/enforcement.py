"""Enforcement decisions for the check API (S11).

``decide`` is the rule itself; ``decide_from_state`` answers a check from nothing but
a ``quota.state`` record (what the check API process holds in memory) and the wall
clock, rolling the cycle over on its own when the record's cycle has ended: counters
start from zero, gauges carry, and limits are the plan's without the old cycle's
top-ups (S8: top-ups belong to the cycle they fell in).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final, NamedTuple

from schemas.events import QUOTAS
from schemas.quotas import GAUGE_NAMES, SPEC_OF
from streams.core.cycles import DEFAULT_ANCHOR_MS, Schedule
from streams.core.timefmt import MINUTE_MS, utc_text

GAUGES: Final = frozenset(GAUGE_NAMES)


class Decision(NamedTuple):
    """The answer to "may this go through?" (S11)."""

    allowed: bool
    decision: str  # allow | reject | queue | throttle | prune
    quota: str
    used: int
    limit: int | None
    amount: int
    percent: int | None  # floor(used * 100 / limit)
    cycle_start: int
    cycle_ends_at: int
    resets_at: int  # cycle_ends_at, or the next minute for throttle
    reason: str

    def to_json(self) -> dict[str, Any]:
        record = self._asdict()
        record["cycle_start"] = utc_text(self.cycle_start)
        record["cycle_ends_at"] = utc_text(self.cycle_ends_at)
        record["resets_at"] = utc_text(self.resets_at)
        return record


def percent_of(used: int, limit: int | None) -> int | None:
    """S11: ``floor(used * 100 / limit)``; null without a limit."""
    return None if limit is None else used * 100 // limit


def decide(
    quota: str,
    used: int,
    limit: int | None,
    amount: int = 1,
    *,
    already_registered: bool = False,
    cycle_start: int = 0,
    cycle_ends_at: int = 0,
    now_ms: int = 0,
) -> Decision:
    """S11: allowed when the limit is null or ``used + amount <= limit``, else the
    quota's decision. A machines check for an already registered id is always allowed."""
    spec = SPEC_OF.get(quota)
    if spec is None:
        raise ValueError(f"unknown quota {quota!r}; expected one of {', '.join(QUOTAS)}")
    if amount < 0:
        raise ValueError("amount must be >= 0")
    percent = percent_of(used, limit)
    minute_quota = spec.window == "minute"
    resets_at = (now_ms // MINUTE_MS + 1) * MINUTE_MS if minute_quota else cycle_ends_at
    unit = spec.unit
    if quota == "machines" and already_registered:
        return Decision(True, "allow", quota, used, limit, amount, percent, cycle_start,
                        cycle_ends_at, resets_at, "the machine is already registered")
    if limit is None:
        return Decision(True, "allow", quota, used, limit, amount, percent, cycle_start,
                        cycle_ends_at, resets_at, f"{quota} is unlimited on this plan")
    if used + amount <= limit:
        return Decision(True, "allow", quota, used, limit, amount, percent, cycle_start,
                        cycle_ends_at, resets_at,
                        f"{used} + {amount} of {limit} {unit} ({percent} % used)")
    decision = spec.at_limit
    over = f"{used} of {limit} {unit} used, {amount} more would exceed the limit"
    when = utc_text(resets_at)
    reason = {
        "reject": f"{quota} limit reached: {over}; it resets at {when}",
        "queue": f"{quota} limit reached: {over}; queued until the cycle ends at {when}",
        "throttle": f"{quota} limit reached: {over}; slow down until {when} (advisory)",
        "prune": f"{quota} limit reached: {over}; transcripts will be pruned",
    }[decision]
    if quota == "machines":
        reason = f"machines limit reached: {used} of {limit} registered; a new machine is rejected"
    return Decision(False, decision, quota, used, limit, amount, percent, cycle_start,
                    cycle_ends_at, resets_at, reason)


@lru_cache(maxsize=1024)
def _schedule(anchor_ms: int, timezone: str) -> Schedule:
    return Schedule(anchor_ms, timezone)


def cycle_at(state: Mapping[str, Any], now_ms: int) -> tuple[int, int]:
    """The cycle containing ``now_ms`` as far as a quota.state record tells.

    Inside the record's cycle: its bounds. After it: the record's schedule
    (``cycle_anchor`` and ``timezone``, the schedule in force after ``cycle_ends_at``,
    S3) cut so that no cycle starts before ``cycle_ends_at``.
    """
    start, end = state["cycle_start"], state["cycle_ends_at"]
    if now_ms < end:
        return start, end
    anchor = state.get("cycle_anchor")
    schedule = _schedule(DEFAULT_ANCHOR_MS if anchor is None else anchor,
                         state.get("timezone") or "UTC")
    bounds = schedule.cycle_of(now_ms)
    return max(bounds.start, end), bounds.end


def decide_from_state(
    state: Mapping[str, Any],
    now_ms: int,
    quota: str,
    amount: int = 1,
    machine_id: str | None = None,
) -> Decision:
    """S11 from a quota.state record (as a dict) and the wall clock."""
    entry = next((q for q in state["quotas"] if q["quota"] == quota), None)
    if entry is None:
        raise ValueError(f"unknown quota {quota!r}; expected one of {', '.join(QUOTAS)}")
    used: int = entry["used"]
    limit: int | None = entry["limit"]
    cycle_start, cycle_ends_at = cycle_at(state, now_ms)
    if cycle_start != state["cycle_start"]:
        # A newer cycle than the record's: counters restart, gauges carry, and the
        # old cycle's top-ups no longer apply (S7, S8).
        limit = entry["plan_limit"]
        if quota not in GAUGES:
            used = 0
    # S11: throttle counts the wall-clock minute; the record's count is for api_minute.
    if SPEC_OF[quota].window == "minute" and (
        state.get("api_minute") != now_ms // MINUTE_MS * MINUTE_MS
    ):
        used = 0
    registered = quota == "machines" and machine_id is not None and (
        machine_id in state.get("machine_ids", ())
    )
    return decide(quota, used, limit, amount, already_registered=registered,
                  cycle_start=cycle_start, cycle_ends_at=cycle_ends_at, now_ms=now_ms)
