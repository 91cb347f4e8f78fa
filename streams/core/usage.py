"""What one workspace used in one cycle: counters, gauge snapshots and breakdowns (S7, S12).

A ``CycleUsage`` is a plain slotted object of ints and small records, so that the
hot path is attribute arithmetic. It renders itself as a ``usage.json`` cycle
(``to_usage_json``) and as ``usage.aggregates`` values (``entry_values``); its stored
form (the stream's table) is ``streams.core.state_codec``'s.

Breakdown entries are small slotted records whose fields are their dimension's metrics,
in the order ``schemas.aggregates.METRICS_OF`` gives them (``values()``):
- ``by_machine[machine_id]``: ``MachineUsage``
- ``by_member[member_id]``: ``MemberUsage``
- ``by_skill[skill]``: ``SkillUsage``
- ``by_provider[provider]``, ``by_model[provider][model]``: ``TokenUsage``

Cost (``cost_micros``) is integer micro-dollars (``streams.core.pricing``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from schemas.aggregates import (
    MACHINE_METRICS,
    MEMBER_METRICS,
    SKILL_METRICS,
    TOKEN_METRICS,
    TOTAL_METRICS,
)
from schemas.events import QUOTAS, TokensEvent
from streams.core.quotas import QUOTA_COUNT, PlanTerms, QuotaArms, effective_limit
from streams.core.timefmt import utc_text

# Dirty markers for usage.aggregates (dimension, key); totals and limits have key "".
TOTALS: Final = ("totals", "")
LIMITS: Final = ("limits", "")

Entry = tuple[str, str]
Record = TypeVar("Record")


def entry(table: dict[str, Record], key: str, new: Callable[[], Record]) -> Record:
    """``table[key]``, made by ``new()`` on first use (a breakdown entry's first event)."""
    found = table.get(key)
    if found is None:
        found = table[key] = new()
    return found


@dataclass(slots=True)
class MachineUsage:
    """One machine's breakdown entry (``METRICS_OF["machine"]``)."""

    commands: int = 0
    ai_tokens: int = 0
    cost_micros: int = 0

    def values(self) -> tuple[int, ...]:
        return (self.commands, self.ai_tokens, self.cost_micros)


@dataclass(slots=True)
class MemberUsage:
    """One member's breakdown entry (``METRICS_OF["member"]``)."""

    ai_tokens: int = 0
    chat_tokens: int = 0
    schedule_runs: int = 0
    commands: int = 0
    cost_micros: int = 0

    def values(self) -> tuple[int, ...]:
        return (self.ai_tokens, self.chat_tokens, self.schedule_runs, self.commands,
                self.cost_micros)


@dataclass(slots=True)
class SkillUsage:
    """One skill's breakdown entry (``METRICS_OF["skill"]``)."""

    invocations: int = 0
    cache_hits: int = 0
    ai_tokens: int = 0
    cost_micros: int = 0

    def values(self) -> tuple[int, ...]:
        return (self.invocations, self.cache_hits, self.ai_tokens, self.cost_micros)


@dataclass(slots=True)
class TokenUsage:
    """One provider's or model's breakdown entry (``METRICS_OF["provider"]``, the same
    as ``METRICS_OF["model"]``); ``unpriced_tokens`` are not in ``cost_micros``."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_micros: int = 0
    unpriced_tokens: int = 0

    def values(self) -> tuple[int, ...]:
        return (self.input_tokens, self.output_tokens, self.cache_read_tokens,
                self.cache_write_tokens, self.cost_micros, self.unpriced_tokens)

    def add(self, ev: TokensEvent, cost: int, unpriced: int) -> None:
        """Count one tokens event priced at ``cost`` (``unpriced``: its tokens, if the
        price table does not know its model)."""
        self.input_tokens += ev.input_tokens
        self.output_tokens += ev.output_tokens
        self.cache_read_tokens += ev.cache_read_tokens
        self.cache_write_tokens += ev.cache_write_tokens
        self.cost_micros += cost
        self.unpriced_tokens += unpriced


# dimension -> its breakdown record (each record's fields are the dimension's metrics)
BREAKDOWNS: Final = {"machine": MachineUsage, "member": MemberUsage, "skill": SkillUsage,
                     "provider": TokenUsage, "model": TokenUsage}


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
        self.by_machine: dict[str, MachineUsage] = {}
        self.by_member: dict[str, MemberUsage] = {}
        self.by_skill: dict[str, SkillUsage] = {}
        self.by_provider: dict[str, TokenUsage] = {}
        self.by_model: dict[str, dict[str, TokenUsage]] = {}
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
            # usage.json shows the counts; the cost metrics are under "cost"
            "machines": {k: dict(zip(MACHINE_METRICS, v.values(), strict=False))
                         for k, v in self.by_machine.items()},
            "members": {k: dict(zip(MEMBER_METRICS, v.values(), strict=False))
                        for k, v in self.by_member.items()},
            "skills": {k: dict(zip(SKILL_METRICS, v.values(), strict=False))
                       for k, v in self.by_skill.items()},
            "providers": {
                p: {
                    "input_tokens": v.input_tokens,
                    "output_tokens": v.output_tokens,
                    "models": {m: dict(zip(TOKEN_METRICS, mv.values(), strict=False))
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
            "members": {k: v.cost_micros for k, v in self.by_member.items() if v.cost_micros},
            "machines": {k: v.cost_micros for k, v in self.by_machine.items() if v.cost_micros},
            "skills": {k: v.cost_micros for k, v in self.by_skill.items() if v.cost_micros},
            "models": {
                f"{p}/{m}": {"cost": mv.cost_micros, "cache_read_tokens": mv.cache_read_tokens,
                             "cache_write_tokens": mv.cache_write_tokens,
                             "priced": mv.unpriced_tokens == 0,
                             "unpriced_tokens": mv.unpriced_tokens}
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
        found: MachineUsage | MemberUsage | SkillUsage | TokenUsage | None
        if dimension == "machine":
            found = self.by_machine.get(key)
        elif dimension == "member":
            found = self.by_member.get(key)
        elif dimension == "skill":
            found = self.by_skill.get(key)
        elif dimension == "provider":
            found = self.by_provider.get(key)
        else:
            # model: "<provider>/<model>", split at the first "/" (providers never contain "/")
            provider, _, model = key.partition("/")
            found = self.by_model.get(provider, {}).get(model)
        # a key without an entry shows zeros
        return list(BREAKDOWNS[dimension]().values() if found is None else found.values())
