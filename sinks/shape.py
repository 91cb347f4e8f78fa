"""Pure assembly of history: snapshot rows -> cycles in the usage.json shape of DESIGN.md.

No I/O. Every cycle of the window is shown: a cycle without events has zero
counters, carried-over gauges and the limits of the plan in force. A cycle is
``final`` once the workspace's current cycle is two or more cycles later (S4 closes
it), otherwise ``provisional``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from schemas.aggregates import (
    BREAKDOWN_COST_METRICS,
    MACHINE_METRICS,
    MEMBER_METRICS,
    METRICS_OF,
    SKILL_METRICS,
    TOKEN_COST_METRICS,
    TOKEN_METRICS,
    TOTAL_COST_METRICS,
    TOTAL_METRICS,
)
from schemas.events import QUOTAS
from schemas.quotas import GAUGE_NAMES
from sinks.schedule import CycleBounds, PlanRecord, cycles_between, plan_in_force

TOTALS: Final = TOTAL_METRICS
GAUGES: Final = GAUGE_NAMES
# usage.aggregates dimension -> (usage.json key, metrics in order)
BREAKDOWNS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "machine": ("machines", MACHINE_METRICS),
    "member": ("members", MEMBER_METRICS),
    "skill": ("skills", SKILL_METRICS),
    "provider": ("providers", TOKEN_METRICS),
    "model": ("models", TOKEN_METRICS),
}
DIMENSIONS: Final = tuple(METRICS_OF)
_COST_METRICS: Final = frozenset(TOTAL_COST_METRICS + BREAKDOWN_COST_METRICS + TOKEN_COST_METRICS)
PROVISIONAL: Final = "provisional"
FINAL: Final = "final"


class SnapshotRow(NamedTuple):
    """The latest version of one (cycle, dimension, key, metric) of a workspace."""

    cycle_start: int
    dimension: str
    key: str
    metric: str
    value: int | None
    plan: str | None
    cycle_ends_at: int
    version: int


@dataclass(slots=True)
class CycleUsage:
    workspace_id: str
    cycle_start: int
    cycle_ends_at: int
    status: str
    has_events: bool
    plan: str | None
    totals: dict[str, int]
    limits: dict[str, int | None]
    # dimension (machine, member, skill, provider, model) -> key -> metric -> value
    breakdowns: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    prices_version: str | None = None  # the price table that priced the cycle's cost

    def to_json(self) -> dict[str, Any]:
        """The usage.json cycle object (plus ``cycle_start`` and ``status``); cost metrics
        go into its ``cost`` object, as ``meter replay`` writes it."""
        providers: dict[str, dict[str, Any]] = {
            key: {**_counts(metrics), "models": {}}
            for key, metrics in sorted(self.breakdowns.get("provider", {}).items())
        }
        for key, metrics in sorted(self.breakdowns.get("model", {}).items()):
            provider, _, model = key.partition("/")
            entry = providers.setdefault(
                provider, {"input_tokens": 0, "output_tokens": 0, "models": {}})
            entry["models"][model] = _counts(metrics)
        out: dict[str, Any] = {
            "cycle_start": iso(self.cycle_start),
            "cycle_ends_at": iso(self.cycle_ends_at),
            "status": self.status,
            "plan": self.plan,
            "totals": _counts(self.totals),
            "limits": dict(self.limits),
        }
        for dimension in ("machine", "member", "skill"):
            name = BREAKDOWNS[dimension][0]
            out[name] = {k: _counts(v)
                         for k, v in sorted(self.breakdowns.get(dimension, {}).items())}
        out["providers"] = providers
        out["cost"] = self.cost_json()
        return out

    def cost_json(self) -> dict[str, Any]:
        """The ``cost`` object (``streams.core.usage.CycleUsage.cost_json``'s shape; ``prices``
        is the price table recorded on the cycle's rows, null before costs were metered)."""
        def costs(dimension: str) -> dict[str, int]:
            return {k: v.get("cost_micros", 0)
                    for k, v in sorted(self.breakdowns.get(dimension, {}).items())
                    if v.get("cost_micros", 0)}
        return {
            "currency": "USD",
            "unit": "micro_dollars",
            "prices": self.prices_version,
            "total": self.totals.get("cost_micros", 0),
            "unpriced_tokens": self.totals.get("unpriced_tokens", 0),
            "members": costs("member"),
            "machines": costs("machine"),
            "skills": costs("skill"),
            "models": {
                key: {"cost": m.get("cost_micros", 0),
                      "cache_read_tokens": m.get("cache_read_tokens", 0),
                      "cache_write_tokens": m.get("cache_write_tokens", 0),
                      "priced": m.get("unpriced_tokens", 0) == 0,
                      "unpriced_tokens": m.get("unpriced_tokens", 0)}
                for key, m in sorted(self.breakdowns.get("model", {}).items())
            },
        }


def _counts(metrics: dict[str, Any]) -> dict[str, Any]:
    """A metrics dict without its cost metrics (they go to the ``cost`` object)."""
    return {k: v for k, v in metrics.items() if k not in _COST_METRICS}


def iso(ms: int) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ`` (DESIGN: times in outputs)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> int:
    """Epoch ms from ``YYYY-MM-DDTHH:MM:SSZ`` (any RFC 3339) or an integer of milliseconds."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def fill_cycles(data_cycles: Sequence[CycleBounds], plans: Sequence[PlanRecord]
                ) -> list[tuple[CycleBounds, bool]]:
    """Every cycle from the first with events to the last, gaps cut by the plan schedule;
    each paired with whether it has events."""
    out: list[tuple[CycleBounds, bool]] = []
    previous: CycleBounds | None = None
    for cycle in sorted(data_cycles, key=lambda c: c.start):
        if previous is not None and previous.end < cycle.start:
            out.extend((gap, False) for gap in cycles_between(plans, previous.end, cycle.start))
        out.append((cycle, True))
        previous = cycle
    return out


def status_of(index: int, count: int) -> str:
    """Cycle ``index`` of ``count`` consecutive cycles ending with the current one."""
    return FINAL if count - 1 - index >= 2 else PROVISIONAL


def assemble(
    workspace_id: str,
    window: Sequence[tuple[CycleBounds, bool, str]],
    rows: Iterable[SnapshotRow],
    plans: Sequence[PlanRecord],
    gauges_before: dict[str, int],
    prices: Mapping[int, str] | None = None,
) -> list[CycleUsage]:
    """Cycles of ``window`` (bounds, has events, status) from the latest snapshot rows.

    ``gauges_before``: each gauge's value from before the window (carried in);
    ``prices``: each cycle's price table version, by cycle start.
    """
    by_cycle: dict[int, list[SnapshotRow]] = {}
    for row in rows:
        by_cycle.setdefault(row.cycle_start, []).append(row)
    carried = {g: gauges_before.get(g, 0) for g in GAUGES}
    previous_plan: tuple[str | None, dict[str, int | None]] = (None, dict.fromkeys(QUOTAS))
    out: list[CycleUsage] = []
    for bounds, has_events, status in window:
        in_force = plan_in_force(plans, bounds.start + 1) if plans else None
        if in_force is not None:
            plan_name: str | None = in_force.plan
            limits = {q: in_force.limits.get(q) for q in QUOTAS}
        else:
            plan_name, limits = previous_plan[0], dict(previous_plan[1])
        totals = {t: 0 for t in TOTALS}
        totals.update(carried)
        cycle = CycleUsage(workspace_id, bounds.start, bounds.end, status, has_events,
                           plan_name, totals, limits,
                           prices_version=(prices or {}).get(bounds.start))
        best_version = -1
        for row in by_cycle.get(bounds.start, ()):
            if row.version > best_version:
                best_version = row.version
                cycle.plan, cycle.cycle_ends_at = row.plan, row.cycle_ends_at
            _apply(cycle, row)
        carried = {g: cycle.totals[g] for g in GAUGES}
        previous_plan = (cycle.plan, cycle.limits)
        out.append(cycle)
    return out


def _apply(cycle: CycleUsage, row: SnapshotRow) -> None:
    if row.dimension == "totals":
        cycle.totals[row.metric] = row.value or 0
    elif row.dimension == "limits":
        cycle.limits[row.metric] = row.value
    elif row.dimension in BREAKDOWNS:
        entries = cycle.breakdowns.setdefault(row.dimension, {})
        entry = entries.get(row.key)
        if entry is None:
            entry = entries[row.key] = dict.fromkeys(BREAKDOWNS[row.dimension][1], 0)
        entry[row.metric] = row.value or 0
