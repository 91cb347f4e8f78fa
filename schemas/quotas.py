"""The six quotas, one row each: every fact the code keeps about a quota (S7, S8, S11).

Everything else that lists quotas (``schemas.events.QUOTAS``, the threshold state's
indices in ``streams.core.quotas``, the gauges, the decisions at the limit, the quotas
top-ups apply to, the forecast's counters, the alert texts' labels) is derived from
``QUOTA_SPECS``; adding a quota means adding a row here (and its limit to
``schemas.events.Limits`` and the Avro schemas, which are contracts of their own).

No imports beyond the standard library: ``schemas/`` and the pure core
(``streams/core/``) both read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["gauge", "counter"]
Window = Literal["cycle", "minute"]
# S11: what a check answers once usage would pass the limit. "reject" is the only hard
# decision; the soft ones let the work through later (queue), slower (throttle, advisory)
# or after making room (prune).
AtLimit = Literal["reject", "queue", "throttle", "prune"]
HARD: Final = "reject"


@dataclass(frozen=True, slots=True)
class QuotaSpec:
    """One quota."""

    name: str  # S12's quota name: limits, crossings, checks, totals key
    label: str  # how people read it (alert texts)
    kind: Kind  # S7: a gauge carries across cycles (and re-arms, S10 b); a counter restarts
    window: Window  # what usage counts: the cycle, or the current UTC minute
    at_limit: AtLimit  # S11
    unit: str  # the unit word of a check's reason ("3 of 5 {unit}")
    topups: bool  # S8: top-ups raise its limit
    total_field: str  # the ``CycleUsage`` attribute its total (usage.json, aggregates) shows
    fed_by: tuple[str, ...]  # event types (``schemas.events.EVENT_CLASSES`` keys) moving it

    @property
    def hard(self) -> bool:
        """S11: the limit rejects (the check API's stale answers change only these)."""
        return self.at_limit == HARD

    @property
    def cycle_counter(self) -> bool:
        """Counts up over the cycle from zero: the forecast projects its pace to the end."""
        return self.kind == "counter" and self.window == "cycle"


# The names as a type, spelled out for mypy and the check API's schema (a test holds
# them equal to QUOTA_SPECS).
QuotaName = Literal[
    "machines", "ai_tokens", "storage_bytes", "schedule_runs",
    "api_requests_per_minute", "api_requests_per_cycle",
]

# S12 order: the order of one event's crossings, of limits and of quota.state's entries.
QUOTA_SPECS: Final = (
    QuotaSpec("machines", "Registered machines", "gauge", "cycle", "reject", "machines",
              True, "machines_gauge", ("machine",)),
    QuotaSpec("ai_tokens", "AI tokens", "counter", "cycle", "reject", "tokens",
              True, "ai_tokens", ("tokens",)),
    QuotaSpec("storage_bytes", "Storage", "gauge", "cycle", "prune", "bytes",
              True, "storage_gauge", ("storage",)),
    QuotaSpec("schedule_runs", "Schedule runs", "counter", "cycle", "queue", "schedule runs",
              True, "schedule_runs", ("schedule_run",)),
    # S8: a per-minute rate has no top-ups. Its total is the cycle's busiest minute.
    QuotaSpec("api_requests_per_minute", "API requests per minute", "counter", "minute",
              "throttle", "requests this minute", False, "api_busiest_minute", ("api",)),
    QuotaSpec("api_requests_per_cycle", "API requests this cycle", "counter", "cycle",
              "reject", "requests", True, "api_requests", ("api",)),
)

SPEC_OF: Final[dict[str, QuotaSpec]] = {s.name: s for s in QUOTA_SPECS}
QUOTA_NAMES: Final = tuple(s.name for s in QUOTA_SPECS)
GAUGE_NAMES: Final = tuple(s.name for s in QUOTA_SPECS if s.kind == "gauge")
HARD_NAMES: Final = frozenset(s.name for s in QUOTA_SPECS if s.hard)
TOPUP_NAMES: Final = tuple(s.name for s in QUOTA_SPECS if s.topups)
CYCLE_COUNTER_NAMES: Final = tuple(s.name for s in QUOTA_SPECS if s.cycle_counter)
DECISION_AT_LIMIT: Final[dict[str, str]] = {s.name: s.at_limit for s in QUOTA_SPECS}
