"""Quota bars (pure): each quota's use against its limit, threshold marks and the decision.

``used`` and ``limit`` come from the cycle read from ClickHouse (the usage.json cycle
shape); the decision "now" comes from the check API, which is authoritative for the
current wall-clock cycle (S11). Without an answer from it, decisions are unavailable
and say why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from schemas.events import QUOTAS, THRESHOLDS
from sinks.shape import parse_time

DECISIONS: Final = ("allow", "queue", "throttle", "prune", "reject")
HEADROOM: Final = 1.1  # the bar runs to 110 % of the limit


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """The check API's answer for one quota (one more unit)."""

    decision: str
    used: int
    limit: int | None
    resets_at: int
    reason: str


@dataclass(frozen=True, slots=True)
class Decisions:
    """All quotas' decisions for a workspace, or why there are none."""

    available: bool
    note: str
    as_of: int | None = None
    stale: bool = False
    cycle_start: int | None = None
    cycle_ends_at: int | None = None
    by_quota: Mapping[str, QuotaDecision] = field(default_factory=dict)

    @classmethod
    def unavailable(cls, note: str) -> Decisions:
        return cls(False, note)


def parse_quotas_answer(body: Mapping[str, Any]) -> Decisions:
    """``GET /v1/workspaces/{id}/quotas`` of the check API -> ``Decisions``.

    Raises ``ValueError`` (or ``KeyError``/``TypeError``) when the body is not that shape.
    """
    by_quota: dict[str, QuotaDecision] = {}
    for entry in body["quotas"]:
        decision = str(entry["decision"])
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}")
        limit = entry.get("limit")
        by_quota[str(entry["quota"])] = QuotaDecision(
            decision, int(entry["used"]), None if limit is None else int(limit),
            parse_time(str(entry["resets_at"])), str(entry.get("reason") or ""))
    stale = bool(body.get("stale", False))
    note = ("the check API's view is stale: decisions may lag behind usage" if stale
            else "decisions from the check API")
    return Decisions(True, note, parse_time(str(body["as_of"])), stale,
                     parse_time(str(body["cycle_start"])), parse_time(str(body["cycle_ends_at"])),
                     by_quota)


@dataclass(frozen=True, slots=True)
class QuotaBar:
    quota: str
    used: int
    limit: int | None
    percent: int | None  # floor(used * 100 / limit) (S11)
    met: tuple[int, ...]  # thresholds met: used * 100 >= t * limit (S9)
    level: str  # ok | t80 | t95 | over | unlimited
    decision: QuotaDecision | None

    @property
    def scale(self) -> float:
        """The value at the bar's right end: the limit plus ``HEADROOM`` (room past 100 %
        for overuse and the marks' labels), or the usage when it goes beyond that."""
        if self.limit is None:
            return 0.0
        return max(self.limit * HEADROOM, float(self.used))

    @property
    def fill(self) -> float:
        """Share of the bar that is used (0..1)."""
        return self.used / self.scale if self.scale else 0.0

    def mark(self, threshold: int) -> float:
        """Where threshold ``threshold`` sits on the bar (0..1)."""
        if self.limit is None or not self.scale:
            return 0.0
        return threshold * self.limit / 100 / self.scale


def level_of(met: tuple[int, ...], limit: int | None) -> str:
    if limit is None:
        return "unlimited"
    if 100 in met:
        return "over"
    if 95 in met:
        return "t95"
    if 80 in met:
        return "t80"
    return "ok"


def quota_bar(quota: str, used: int, limit: int | None,
              decision: QuotaDecision | None = None) -> QuotaBar:
    met = () if limit is None else tuple(t for t in THRESHOLDS if used * 100 >= t * limit)
    percent = None if limit is None else used * 100 // limit
    return QuotaBar(quota, used, limit, percent, met, level_of(met, limit), decision)


def quota_bars(cycle: Mapping[str, Any], decisions: Decisions | None = None) -> list[QuotaBar]:
    """One bar per quota (QUOTAS order) of a cycle in the usage.json cycle shape."""
    totals: Mapping[str, int] = cycle.get("totals", {})
    limits: Mapping[str, int | None] = cycle.get("limits", {})
    chosen = decisions.by_quota if decisions is not None and decisions.available else {}
    return [quota_bar(q, int(totals.get(q, 0)), limits.get(q), chosen.get(q)) for q in QUOTAS]
