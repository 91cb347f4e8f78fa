"""What one workspace used in one cycle: counters, gauge snapshots and breakdowns (S7, S12).

A ``CycleUsage`` is a plain slotted object of ints and small lists, so that the
hot path is attribute arithmetic. It renders itself as a ``usage.json`` cycle
(``to_usage_json``) and as ``usage.aggregates`` rows (``rows``), and serializes to
plain lists (``to_state``/``from_state``) for the stream's table.

Breakdown entries are lists of ints, in this order:
- ``by_machine[machine_id]``: commands, ai_tokens
- ``by_member[member_id]``: ai_tokens, chat_tokens, schedule_runs, commands
- ``by_skill[skill]``: invocations, cache_hits, ai_tokens
- ``by_provider[provider]``: input_tokens, output_tokens
- ``by_model[provider][model]``: input_tokens, output_tokens
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from schemas.aggregates import (
    MACHINE_METRICS,
    MEMBER_METRICS,
    SKILL_METRICS,
    TOKEN_METRICS,
    TOTAL_METRICS,
)
from schemas.events import QUOTAS, Limits
from streams.core.quotas import NO_PLAN, PlanTerms, QuotaArms, effective_limit
from streams.core.timefmt import utc_text

# Dirty markers for usage.aggregates (dimension, key); totals and limits have key "".
TOTALS: Final = ("totals", "")
LIMITS: Final = ("limits", "")

Entry = tuple[str, str]


class CycleUsage:
    """One workspace's usage in one cycle [start, end)."""

    __slots__ = (
        "ai_tokens", "api_busiest_minute", "api_requests", "by_machine", "by_member",
        "by_model", "by_provider", "by_skill", "commands", "dirty", "end", "machines_gauge",
        "plan", "quotas", "schedule_runs", "skill_invocations", "start", "storage_gauge",
        "topups",
    )

    def __init__(self, start: int, end: int, plan: PlanTerms, machines: int, storage: int) -> None:
        self.start = start
        self.end = end
        self.plan = plan  # S12: the plan in force after the last event counted here
        self.topups: list[int] = [0] * 6  # S8: top-ups whose occurred_at is in this cycle
        self.ai_tokens = 0
        self.schedule_runs = 0
        self.api_requests = 0
        self.api_busiest_minute = 0  # S7: the busiest UTC minute's request count
        self.commands = 0
        self.skill_invocations = 0
        # Gauges as shown for this cycle: the running value after its last gauge event,
        # or carried from the cycle before (the current cycle always shows the running value).
        self.machines_gauge = machines
        self.storage_gauge = storage
        self.by_machine: dict[str, list[int]] = {}
        self.by_member: dict[str, list[int]] = {}
        self.by_skill: dict[str, list[int]] = {}
        self.by_provider: dict[str, list[int]] = {}
        self.by_model: dict[str, dict[str, list[int]]] = {}
        self.quotas = QuotaArms()
        # (dimension, key) changed since the last usage.aggregates emission; None when the
        # owner does not track changes (replay), so the hot path skips it.
        self.dirty: set[Entry] | None = None

    # -- limits ------------------------------------------------------------------------

    def limit(self, q: int) -> int | None:
        """S8: the effective limit of quota index ``q`` in this cycle."""
        return effective_limit(self.plan.limits[q], self.topups[q])

    def limits(self) -> list[int | None]:
        plan_limits = self.plan.limits
        return [effective_limit(plan_limits[q], self.topups[q]) for q in range(6)]

    # -- views -------------------------------------------------------------------------

    def totals(self) -> tuple[int, ...]:
        return (
            self.ai_tokens, self.schedule_runs, self.api_requests, self.api_busiest_minute,
            self.machines_gauge, self.storage_gauge, self.commands, self.skill_invocations,
        )

    def to_usage_json(self) -> dict[str, Any]:
        """This cycle as ``usage.json`` shows it (DESIGN.md, ``meter replay``)."""
        return {
            "cycle_ends_at": utc_text(self.end),
            "plan": self.plan.name,
            "totals": dict(zip(TOTAL_METRICS, self.totals(), strict=True)),
            "limits": dict(zip(QUOTAS, self.limits(), strict=True)),
            "machines": {k: dict(zip(MACHINE_METRICS, v, strict=True))
                         for k, v in self.by_machine.items()},
            "members": {k: dict(zip(MEMBER_METRICS, v, strict=True))
                        for k, v in self.by_member.items()},
            "skills": {k: dict(zip(SKILL_METRICS, v, strict=True))
                       for k, v in self.by_skill.items()},
            "providers": {
                p: {
                    "input_tokens": v[0],
                    "output_tokens": v[1],
                    "models": {m: dict(zip(TOKEN_METRICS, mv, strict=True))
                               for m, mv in self.by_model[p].items()},
                }
                for p, v in self.by_provider.items()
            },
        }

    def entries(self) -> Iterator[Entry]:
        """Every (dimension, key) this cycle has (for "mark everything dirty")."""
        yield TOTALS
        yield LIMITS
        for m in self.by_machine:
            yield ("machine", m)
        for m in self.by_member:
            yield ("member", m)
        for s in self.by_skill:
            yield ("skill", s)
        for p, models in self.by_model.items():
            yield ("provider", p)
            for model in models:
                yield ("model", f"{p}/{model}")

    def entry_values(self, entry: Entry) -> list[int | None]:
        """One entry's values in its dimension's metric order (``schemas.aggregates``),
        as a ``usage.aggregates`` entry carries them."""
        dimension, key = entry
        if dimension == "totals":
            return list(self.totals())
        if dimension == "limits":
            return list(self.limits())
        if dimension == "machine":
            return list(self.by_machine.get(key, (0, 0)))
        if dimension == "member":
            return list(self.by_member.get(key, (0, 0, 0, 0)))
        if dimension == "skill":
            return list(self.by_skill.get(key, (0, 0, 0)))
        if dimension == "provider":
            return list(self.by_provider.get(key, (0, 0)))
        # model: "<provider>/<model>", split at the first "/" (providers never contain "/")
        provider, _, model = key.partition("/")
        return list(self.by_model.get(provider, {}).get(model, (0, 0)))

    # -- state -------------------------------------------------------------------------

    def to_state(self) -> list[Any]:
        return [
            self.start, self.end,
            plan_to_state(self.plan),
            self.topups,
            [self.ai_tokens, self.schedule_runs, self.api_requests, self.api_busiest_minute,
             self.commands, self.skill_invocations, self.machines_gauge, self.storage_gauge],
            self.by_machine, self.by_member, self.by_skill, self.by_provider, self.by_model,
            self.quotas.to_state(),
            None if self.dirty is None else sorted(self.dirty),
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> CycleUsage:
        (start, end, plan, topups, counters, by_machine, by_member, by_skill, by_provider,
         by_model, quotas, dirty) = state
        usage = cls(start, end, plan_from_state(plan), 0, 0)
        usage.topups = list(topups)
        (usage.ai_tokens, usage.schedule_runs, usage.api_requests, usage.api_busiest_minute,
         usage.commands, usage.skill_invocations, usage.machines_gauge,
         usage.storage_gauge) = counters
        usage.by_machine = by_machine
        usage.by_member = by_member
        usage.by_skill = by_skill
        usage.by_provider = by_provider
        usage.by_model = by_model
        usage.quotas = QuotaArms.from_state(quotas)
        usage.dirty = None if dirty is None else {(d, k) for d, k in dirty}
        return usage


def plan_from_state(state: list[Any] | None) -> PlanTerms:
    if state is None:
        return NO_PLAN
    name, limits, anchor, timezone = state
    return PlanTerms(name, Limits(*limits), anchor, timezone)


def plan_to_state(plan: PlanTerms) -> list[Any]:
    return [plan.name, list(plan.limits), plan.cycle_anchor, plan.timezone]
