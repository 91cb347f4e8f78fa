"""Cycle bounds for history (S2, S3): which cycles a workspace's plan schedule cuts.

History shows every cycle in its window, including cycles without events; their
bounds come from the plan schedule in force. ``next_boundary`` is the one call
into the pure cycle arithmetic of ``streams.core.cycles``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from streams.core.cycles import DEFAULT_ANCHOR_MS, CycleBounds, Schedule

__all__ = ["CycleBounds", "PlanRecord", "cycles_between", "next_boundary", "plan_in_force"]


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """A workspace's plan as history needs it (one row of the ``plans`` table)."""

    occurred_at: int
    plan: str
    cycle_anchor: int
    timezone: str
    limits: dict[str, int | None]


def next_boundary(anchor_ms: int, timezone: str, after_ms: int) -> int:
    """The first cycle start of the schedule (anchor, timezone) strictly after ``after_ms``."""
    return _schedule(anchor_ms, timezone or "UTC").boundary_after(after_ms)


def plan_in_force(plans: Sequence[PlanRecord], at_ms: int) -> PlanRecord | None:
    """The latest plan whose event happened before ``at_ms`` (plans sorted by occurred_at)."""
    found: PlanRecord | None = None
    for plan in plans:
        if plan.occurred_at < at_ms:
            found = plan
        else:
            break
    return found


def cycles_between(plans: Sequence[PlanRecord], start_ms: int, stop_ms: int) -> list[CycleBounds]:
    """The cycles that tile [start_ms, stop_ms): each ends at the next boundary of the
    schedule in force at its start (S3), cut at ``stop_ms``."""
    out: list[CycleBounds] = []
    cursor = start_ms
    while cursor < stop_ms:
        plan = plan_in_force(plans, cursor)
        if plan is None:
            end = next_boundary(DEFAULT_ANCHOR_MS, "UTC", cursor)
        else:
            end = next_boundary(plan.cycle_anchor, plan.timezone, cursor)
        end = min(end, stop_ms)
        out.append(CycleBounds(cursor, end))
        cursor = end
    return out


@lru_cache(maxsize=256)
def _schedule(anchor_ms: int, timezone: str) -> Schedule:
    return Schedule(anchor_ms, timezone)
