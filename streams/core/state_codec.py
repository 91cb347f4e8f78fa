"""The stored form of a ``WorkspaceMeter``: the stream's changelog and local store value.

    blob = encode_meter(meter)                  # orjson bytes, once per batch
    meter = decode_meter(blob, ids_from_state=...)

The state is a JSON object of plain lists and ints (format ``STATE_FORMAT``), kept
compact because the stream writes it for every changed workspace of every batch.
What was written must keep reading back: a worker restores its workspaces from the
changelog written by the code before it (tests/streams/core/golden/). So a field is
only ever added, and a reader takes its absence as the value before it existed:
- a cycle without its cost slot (written before costs were metered) has cost 0 and
  shorter breakdown lists, which read as zero for the metrics they lack;
- a meter without ``fc`` (written before forecast alerts) has no quota opted in.

The parts with a memory of their own keep their own form: the S6 ids
(``EventIds.to_state``: the stream keeps only each type's latest time there, its ids
live in its store), the top-up ids (``CycleIds``), a cycle's threshold arms
(``QuotaArms``) and the schedule (``Timeline.segments``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from schemas.events import Limits
from streams.core.cycles import Timeline
from streams.core.dedup import CycleIds, EventIds, IdWindows
from streams.core.meter import CycleListener, WorkspaceMeter
from streams.core.quotas import NO_PLAN, PlanTerms, QuotaArms
from streams.core.usage import (
    CycleUsage,
    MachineUsage,
    MemberUsage,
    SkillUsage,
    TokenUsage,
)

STATE_FORMAT: Final = 1


def encode_meter(meter: WorkspaceMeter) -> bytes:
    """Compact serialization (orjson): the stream's changelog and local store value."""
    return orjson.dumps(meter_to_state(meter))


def decode_meter(
    data: bytes, *, on_cycle_closed: CycleListener | None = None,
    ids_from_state: Callable[[Any], EventIds] = IdWindows.from_state,
) -> WorkspaceMeter:
    """The meter ``encode_meter`` wrote (see ``meter_from_state``)."""
    return meter_from_state(orjson.loads(data), on_cycle_closed=on_cycle_closed,
                            ids_from_state=ids_from_state)


def meter_to_state(meter: WorkspaceMeter) -> dict[str, Any]:
    return {
        "f": STATE_FORMAT,
        "ws": meter.workspace_id,
        "tl": meter.timeline.segments(),
        "plan": plan_to_state(meter.plan),
        "cur": None if meter.cur is None else cycle_to_state(meter.cur),
        "prev": None if meter.prev is None else cycle_to_state(meter.prev),
        "ps": meter.prev_start,
        "carry": [meter.carry_machines, meter.carry_storage],
        "mids": sorted(meter.machine_ids),
        "st": meter.storage,
        "min": [meter.minute_old, meter.count_old, meter.minute_new, meter.count_new],
        "ids": meter.ids.to_state(),
        "tids": meter.topup_ids.to_state(),
        "v": meter.version,
        "closed": meter.pending_aggregates,
        "track": meter.track_changes,
        "fc": meter.forecast_leads,
    }


def meter_from_state(
    state: dict[str, Any], *, on_cycle_closed: CycleListener | None = None,
    ids_from_state: Callable[[Any], EventIds] = IdWindows.from_state,
) -> WorkspaceMeter:
    """``ids_from_state`` rebuilds the S6 memory from what ``EventIds.to_state`` kept."""
    if state.get("f") != STATE_FORMAT:
        raise ValueError(f"unknown meter state format {state.get('f')!r}")
    meter = WorkspaceMeter(state["ws"], track_changes=state["track"],
                           on_cycle_closed=on_cycle_closed)
    meter.timeline = Timeline.from_segments([(s[0], s[1], s[2]) for s in state["tl"]])
    meter.plan = plan_from_state(state["plan"])
    meter.cur = None if state["cur"] is None else cycle_from_state(state["cur"])
    meter.prev = None if state["prev"] is None else cycle_from_state(state["prev"])
    # Cycles share the plan object in force while it is unchanged (identity fast path).
    for record in meter.open_cycles():
        if record.plan == meter.plan:
            record.plan = meter.plan
    meter.prev_start = state["ps"]
    meter.carry_machines, meter.carry_storage = state["carry"]
    meter.machine_ids = set(state["mids"])
    meter.storage = list(state["st"])
    meter.storage_total = sum(meter.storage)
    meter.minute_old, meter.count_old, meter.minute_new, meter.count_new = state["min"]
    meter.ids = ids_from_state(state["ids"])
    meter.topup_ids = CycleIds.from_state(state["tids"])
    meter.version = state["v"]
    meter.pending_aggregates = list(state["closed"])
    forecast_leads = state.get("fc")
    if forecast_leads:  # absent in state written before forecast alerts: none opted in
        meter.forecast_leads = list(forecast_leads)
    return meter


def cycle_to_state(usage: CycleUsage) -> list[Any]:
    return [
        usage.start, usage.end,
        plan_to_state(usage.plan),
        usage.topups,
        [usage.ai_tokens, usage.schedule_runs, usage.api_requests, usage.api_busiest_minute,
         usage.commands, usage.skill_invocations, usage.machines_gauge, usage.storage_gauge],
        {k: v.values() for k, v in usage.by_machine.items()},
        {k: v.values() for k, v in usage.by_member.items()},
        {k: v.values() for k, v in usage.by_skill.items()},
        {k: v.values() for k, v in usage.by_provider.items()},
        {p: {m: v.values() for m, v in models.items()} for p, models in usage.by_model.items()},
        usage.quotas.to_state(),
        None if usage.dirty is None else sorted(usage.dirty),
        [usage.cost_micros, usage.unpriced_tokens, usage.prices_version],
    ]


def cycle_from_state(state: list[Any]) -> CycleUsage:
    (start, end, plan, topups, counters, by_machine, by_member, by_skill, by_provider,
     by_model, quotas, dirty) = state[:12]
    # state written before costs were metered: no cost slot, and breakdown lists without
    # the cost metrics (a record's missing trailing fields are 0)
    cost: list[Any] = state[12] if len(state) > 12 else [0, 0, None]
    usage = CycleUsage(start, end, plan_from_state(plan), 0, 0)
    usage.topups = list(topups)
    (usage.ai_tokens, usage.schedule_runs, usage.api_requests, usage.api_busiest_minute,
     usage.commands, usage.skill_invocations, usage.machines_gauge,
     usage.storage_gauge) = counters
    usage.cost_micros, usage.unpriced_tokens = int(cost[0]), int(cost[1])
    usage.prices_version = cost[2]
    usage.by_machine = {k: MachineUsage(*v) for k, v in by_machine.items()}
    usage.by_member = {k: MemberUsage(*v) for k, v in by_member.items()}
    usage.by_skill = {k: SkillUsage(*v) for k, v in by_skill.items()}
    usage.by_provider = {k: TokenUsage(*v) for k, v in by_provider.items()}
    usage.by_model = {p: {m: TokenUsage(*v) for m, v in models.items()}
                      for p, models in by_model.items()}
    usage.quotas = QuotaArms.from_state(quotas)
    usage.dirty = None if dirty is None else {(d, k) for d, k in dirty}
    return usage


def plan_to_state(plan: PlanTerms) -> list[Any]:
    return [plan.name, list(plan.limits), plan.cycle_anchor, plan.timezone]


def plan_from_state(state: list[Any] | None) -> PlanTerms:
    if state is None:
        return NO_PLAN
    name, limits, anchor, timezone = state
    return PlanTerms(name, Limits(*limits), anchor, timezone)
