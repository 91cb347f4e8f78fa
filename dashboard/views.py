"""What a page shows (pure view models), built by the app from the sources' answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from dashboard.alerts import TimelineEntry
from dashboard.quotas import Decisions
from sinks.shape import parse_time

Cycle = Mapping[str, Any]  # the usage.json cycle object plus cycle_start and status

COST: Final = "cost_micros"  # the cycle's AI cost (micro-dollars), from its cost object
HISTORY_METRICS: Final = (
    "ai_tokens", "schedule_runs", "api_requests_per_cycle", "storage_bytes", "machines",
    "commands", "skill_invocations", "api_requests_per_minute", COST,
)
TABLES: Final = ("machines", "members", "skills", "providers")


@dataclass(frozen=True, slots=True)
class AlertsView:
    available: bool
    note: str
    entries: Sequence[TimelineEntry] = ()


@dataclass(frozen=True, slots=True)
class WorkspaceView:
    workspace_id: str
    cycle: Cycle
    history: Sequence[Cycle]  # oldest first, the current cycle last
    decisions: Decisions
    alerts: AlertsView
    now_ms: int
    source: str
    sorts: Mapping[str, str | None] = field(default_factory=dict)
    metric: str = "ai_tokens"

    @property
    def cycle_start(self) -> int:
        return parse_time(str(self.cycle["cycle_start"]))

    @property
    def cycle_ends_at(self) -> int:
        return parse_time(str(self.cycle["cycle_ends_at"]))

    @property
    def is_current(self) -> bool:
        return bool(self.history) and self.history[-1]["cycle_start"] == self.cycle["cycle_start"]


@dataclass(frozen=True, slots=True)
class WorkspaceRow:
    workspace_id: str
    cycle: Cycle | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class IndexView:
    rows: Sequence[WorkspaceRow]
    now_ms: int
    source: str
    note: str = ""
    page: int = 1
    more: bool = False
