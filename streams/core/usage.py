"""What one workspace used in one cycle: counters, gauge snapshots and breakdowns (S7, S12).

A ``CycleUsage`` is a plain slotted object of ints and small lists, so that the
hot path is attribute arithmetic. It renders itself as a ``usage.json`` cycle
(``to_usage_json``) and as ``usage.aggregates`` rows (``rows``), and serializes to
plain lists (``to_state``/``from_state``) for the stream's table.

Breakdown entries are lists of ints, in this order (``schemas.aggregates.METRICS_OF``):
- ``by_machine[machine_id]``: commands, ai_tokens, cost_micros
- ``by_member[member_id]``: ai_tokens, chat_tokens, schedule_runs, commands, cost_micros
- ``by_skill[skill]``: invocations, cache_hits, ai_tokens, cost_micros
- ``by_provider[provider]``, ``by_model[provider][model]``: input_tokens, output_tokens,
  cache_read_tokens, cache_write_tokens, cost_micros, unpriced_tokens

Cost (``cost_micros``) is integer micro-dollars (``streams.core.pricing``). State written
before costs were metered has shorter lists; ``from_state`` pads them with zeros.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from schemas.aggregates import (
    MACHINE_METRICS,
    MEMBER_METRICS,
    METRICS_OF,
    SKILL_METRICS,
    TOKEN_METRICS,
    TOTAL_METRICS,
)
from schemas.events import QUOTAS, Limits
from streams.core.quotas import NO_PLAN, QUOTA_COUNT, PlanTerms, QuotaArms, effective_limit
from streams.core.timefmt import utc_text

# Dirty markers for usage.aggregates (dimension, key); totals and limits have key "".
TOTALS: Final = ("totals", "")
LIMITS: Final = ("limits", "")

Entry = tuple[str, str]


class CycleUsage:
    """One workspace's usage in one cycle [start, end)."""

    __slots__ = (
        "ai_tokens",
        "api_busiest_minute",
        "api_requests",
        "by_machine",
        "by_member",
        "by_model",
        "by_provider",
        "by_skill",
        "commands",
        "cost_micros",
        "dirty",
        "end",
        "machines_gauge",
        "plan",
        "prices_version",
        "quotas",
        "schedule_runs",
        "skill_invocations",
        "start",
        "storage_gauge",
        "topups",
        "unpriced_tokens",
    )

    def __init__(self, start: int, end: int, plan: PlanTerms, machines: int, storage: int) -> None:
        self.start = start
        self.end = end
        self.plan = plan  # S12: the plan in force after the last event counted here
        self.topups: list[int] = [0] * QUOTA_COUNT  # S8: top-ups whose occurred_at is in this cycle
        self.ai_tokens = 0
        self.schedule_runs = 0
        self.api_requests = 0
        self.api_busiest_minute = 0  # S7: the busiest UTC minute's request count
        self.commands = 0
        self.skill_invocations = 0
        self.cost_micros = 0  # priced tokens, integer micro-dollars (streams.core.pricing)
        self.unpriced_tokens = 0  # input + output tokens of models the price table lacks
        self.prices_version: str | None = None  # the price table of the cycle's cost
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
        return [effective_limit(plan_limits[q], self.topups[q]) for q in range(QUOTA_COUNT)]

    # -- views -------------------------------------------------------------------------

    def totals(self) -> tuple[int, ...]:
        return (
            self.ai_tokens, self.schedule_runs, self.api_requests, self.api_busiest_minute,
            self.machines_gauge, self.storage_gauge, self.commands, self.skill_invocations,
            self.cost_micros, self.unpriced_tokens,
        )

    def to_usage_json(self) -> dict[str, Any]:
        """This cycle as ``usage.json`` shows it (DESIGN.md, ``meter replay``)."""
        return {
            "cycle_ends_at": utc_text(self.end),
            "plan": self.plan.name,
            "totals": dict(zip(TOTAL_METRICS, self.totals(), strict=False)),
            "limits": dict(zip(QUOTAS, self.limits(), strict=True)),
            "machines": {k: dict(zip(MACHINE_METRICS, v, strict=False))
                         for k, v in self.by_machine.items()},
            "members": {k: dict(zip(MEMBER_METRICS, v, strict=False))
                        for k, v in self.by_member.items()},
            "skills": {k: dict(zip(SKILL_METRICS, v, strict=False))
                       for k, v in self.by_skill.items()},
            "providers": {
                p: {
                    "input_tokens": v[0],
                    "output_tokens": v[1],
                    "models": {m: dict(zip(TOKEN_METRICS, mv, strict=False))
                               for m, mv in self.by_model[p].items()},
                }
                for p, v in self.by_provider.items()
            },
            "cost": self.cost_json(),
        }

    def cost_json(self) -> dict[str, Any]:
        """The ``cost`` object of usage.json: micro-dollars (USD) per breakdown; a model the
        price table does not know shows ``"priced": false`` and its tokens, no cost."""
        return {
            "currency": "USD",
            "unit": "micro_dollars",
            "prices": self.prices_version,
            "total": self.cost_micros,
            "unpriced_tokens": self.unpriced_tokens,
            "members": {k: v[4] for k, v in self.by_member.items() if v[4]},
            "machines": {k: v[2] for k, v in self.by_machine.items() if v[2]},
            "skills": {k: v[3] for k, v in self.by_skill.items() if v[3]},
            "models": {
                f"{p}/{m}": {"cost": mv[4], "cache_read_tokens": mv[2],
                             "cache_write_tokens": mv[3], "priced": mv[5] == 0,
                             "unpriced_tokens": mv[5]}
                for p, models in self.by_model.items() for m, mv in models.items()
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
            return list(self.by_machine.get(key, _ZEROS["machine"]))
        if dimension == "member":
            return list(self.by_member.get(key, _ZEROS["member"]))
        if dimension == "skill":
            return list(self.by_skill.get(key, _ZEROS["skill"]))
        if dimension == "provider":
            return list(self.by_provider.get(key, _ZEROS["provider"]))
        # model: "<provider>/<model>", split at the first "/" (providers never contain "/")
        provider, _, model = key.partition("/")
        return list(self.by_model.get(provider, {}).get(model, _ZEROS["model"]))

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
            [self.cost_micros, self.unpriced_tokens, self.prices_version],
        ]

    @classmethod
    def from_state(cls, state: list[Any]) -> CycleUsage:
        (start, end, plan, topups, counters, by_machine, by_member, by_skill, by_provider,
         by_model, quotas, dirty) = state[:12]
        # state written before costs were metered: no cost slot, shorter breakdown lists
        cost: list[Any] = state[12] if len(state) > 12 else [0, 0, None]
        usage = cls(start, end, plan_from_state(plan), 0, 0)
        usage.topups = list(topups)
        (usage.ai_tokens, usage.schedule_runs, usage.api_requests, usage.api_busiest_minute,
         usage.commands, usage.skill_invocations, usage.machines_gauge,
         usage.storage_gauge) = counters
        usage.cost_micros, usage.unpriced_tokens = int(cost[0]), int(cost[1])
        usage.prices_version = cost[2]
        usage.by_machine = _padded(by_machine, "machine")
        usage.by_member = _padded(by_member, "member")
        usage.by_skill = _padded(by_skill, "skill")
        usage.by_provider = _padded(by_provider, "provider")
        usage.by_model = {p: _padded(models, "model") for p, models in by_model.items()}
        usage.quotas = QuotaArms.from_state(quotas)
        usage.dirty = None if dirty is None else {(d, k) for d, k in dirty}
        return usage


# A new breakdown entry, per dimension: one zero per metric (METRICS_OF order).
_ZEROS: Final = {d: (0,) * len(METRICS_OF[d]) for d in ("machine", "member", "skill",
                                                        "provider", "model")}


def new_entry(dimension: str) -> list[int]:
    return list(_ZEROS[dimension])


def _padded(entries: dict[str, list[int]], dimension: str) -> dict[str, list[int]]:
    size = len(_ZEROS[dimension])
    for values in entries.values():
        if len(values) < size:
            values.extend([0] * (size - len(values)))
    return entries


def plan_from_state(state: list[Any] | None) -> PlanTerms:
    if state is None:
        return NO_PLAN
    name, limits, anchor, timezone = state
    return PlanTerms(name, Limits(*limits), anchor, timezone)


def plan_to_state(plan: PlanTerms) -> list[Any]:
    return [plan.name, list(plan.limits), plan.cycle_anchor, plan.timezone]
