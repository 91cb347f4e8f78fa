"""Events built directly (no JSON): short constructors with sensible defaults."""

from __future__ import annotations

from itertools import count
from typing import Any

from schemas.events import (
    AlertSettingsEvent,
    ApiEvent,
    CommandEvent,
    ForecastOptIn,
    Limits,
    MachineEvent,
    PlanEvent,
    ScheduleRunEvent,
    SkillEvent,
    StorageEvent,
    TokensEvent,
    TopupEvent,
)
from schemas.validation import parse_rfc3339_ms

_ids = count(1)
WS = "w1"


def ms(text: str) -> int:
    """Epoch ms of an RFC 3339 time (or a bare 'YYYY-MM-DDTHH:MM:SS', taken as UTC)."""
    if text[-1] not in "Zz" and "+" not in text[10:] and "-" not in text[10:]:
        text += "Z"
    return parse_rfc3339_ms(text)


def _id(event_id: str | None) -> str:
    return event_id if event_id is not None else f"e{next(_ids)}"


def plan(at: str, *, anchor: str | None = None, tz: str = "UTC", name: str = "team",
         ws: str = WS, event_id: str | None = None, **limits: Any) -> PlanEvent:
    return PlanEvent(_id(event_id), ws, ms(at), name, ms(anchor or at), tz, Limits(**limits),
                     ("owner@example.com",))


def tokens(at: str, n: int = 1, *, out: int = 0, ws: str = WS, member: str = "alice",
           machine: str | None = None, skill: str | None = None, provider: str = "openai",
           model: str = "gpt-4o", surface: str = "agent", cache_read: int = 0,
           cache_write: int = 0, event_id: str | None = None) -> TokensEvent:
    return TokensEvent(_id(event_id), ws, ms(at), member, machine, skill, provider, model, n,
                       out, surface, cache_read, cache_write)


def command(at: str, *, ws: str = WS, member: str = "alice", machine: str = "m1",
            event_id: str | None = None) -> CommandEvent:
    return CommandEvent(_id(event_id), ws, ms(at), member, machine, "ls")


def run(at: str, *, ws: str = WS, member: str = "alice", machine: str | None = None,
        event_id: str | None = None) -> ScheduleRunEvent:
    return ScheduleRunEvent(_id(event_id), ws, ms(at), member, "nightly", machine)


def skill(at: str, name: str = "search", *, ws: str = WS, member: str = "alice",
          cache_hit: bool = False, event_id: str | None = None) -> SkillEvent:
    return SkillEvent(_id(event_id), ws, ms(at), member, name, None, cache_hit)


def api(at: str, requests: int = 1, *, ws: str = WS, event_id: str | None = None) -> ApiEvent:
    return ApiEvent(_id(event_id), ws, ms(at), None, "rest", requests)


def storage(at: str, *, delta: int | None = None, total: int | None = None,
            category: str = "transcripts", ws: str = WS,
            event_id: str | None = None) -> StorageEvent:
    return StorageEvent(_id(event_id), ws, ms(at), category, delta, total)


def machine(at: str, machine_id: str, action: str = "registered", *, ws: str = WS,
            event_id: str | None = None) -> MachineEvent:
    return MachineEvent(_id(event_id), ws, ms(at), machine_id, action)


def topup(at: str, quota: str, amount: int, *, ws: str = WS,
          event_id: str | None = None) -> TopupEvent:
    return TopupEvent(_id(event_id), ws, ms(at), quota, amount)


def alert_settings(at: str, *, ws: str = WS, event_id: str | None = None,
                   forecasts: dict[str, int | None] | None = None) -> AlertSettingsEvent:
    """``forecasts``: quota -> lead days (None: the default) of the forecast opt-ins."""
    opt_ins = tuple(ForecastOptIn(q, lead) for q, lead in (forecasts or {}).items())
    return AlertSettingsEvent(_id(event_id), ws, ms(at), True, None, None, None, (), opt_ins)


class Run:
    """Drive meters over events; keep outcomes, crossings and every cycle's final numbers."""

    def __init__(self, *events: Any) -> None:
        from streams.core.meter import Outcome, WorkspaceMeter
        from streams.core.quotas import ThresholdCrossing
        from streams.core.replay import UsageCollector

        self.collector = UsageCollector()
        self.meters: dict[str, WorkspaceMeter] = {}
        self.outcomes: list[Outcome] = []
        self.crossings: list[ThresholdCrossing] = []
        self.apply(*events)

    def meter(self, ws: str = WS) -> Any:
        from streams.core.meter import WorkspaceMeter

        if ws not in self.meters:
            self.meters[ws] = WorkspaceMeter(ws, on_cycle_closed=self.collector.cycle_closed)
        return self.meters[ws]

    def apply(self, *events: Any) -> Any:
        outcome = None
        for event in events:
            outcome = self.meter(event.workspace_id).apply(event)
            self.outcomes.append(outcome)
            self.crossings.extend(outcome.crossings)
        return outcome

    def usage(self) -> dict[str, Any]:
        """usage.json as it would be written now (open cycles included)."""
        from streams.core.replay import UsageCollector

        collector = UsageCollector()
        collector.cycles = {ws: dict(c) for ws, c in self.collector.cycles.items()}
        for meter in self.meters.values():
            for record in meter.open_cycles():
                collector.cycle_closed(meter.workspace_id, record)
        return collector.usage_json()

    def cycle(self, start: str, ws: str = WS) -> dict[str, Any]:
        return self.usage()["workspaces"][ws]["cycles"][start]  # type: ignore[no-any-return]

    def ids(self) -> list[str]:
        return [c.alert_id for c in self.crossings]
