"""A small, realistic data set for the dashboard tests (numbers chosen by hand).

Workspace ``acme`` (plan ``team``): four monthly cycles, January to April 2026; April is
current and NOW is 2026-04-10T12:00:00Z. Workspace ``beta`` has no plan. The records
are in the shapes of usage.aggregates, quota.thresholds and alerting.deliveries
(DESIGN.md, "Outputs"; ``schemas/*.avsc``) and go into the store through the sink's own writer.
"""

from __future__ import annotations

from typing import Any, Final

from sinks.records import cycle_record
from sinks.shape import parse_time

NOW: Final = parse_time("2026-04-10T12:00:00Z")
JAN, FEB, MAR, APR, MAY = (f"2026-0{m}-01T00:00:00Z" for m in range(1, 6))

LIMITS: Final[dict[str, int | None]] = {
    "machines": 5, "ai_tokens": 1_250_000, "storage_bytes": 3_000_000_000,
    "schedule_runs": 2_000, "api_requests_per_minute": 600, "api_requests_per_cycle": None,
}


def _cycle(ends: str, totals: dict[str, int], **breakdowns: Any) -> dict[str, Any]:
    return {"cycle_ends_at": ends, "plan": "team", "totals": totals, "limits": dict(LIMITS),
            "machines": breakdowns.get("machines", {}), "members": breakdowns.get("members", {}),
            "skills": breakdowns.get("skills", {}), "providers": breakdowns.get("providers", {}),
            # metered before costs: no price table recorded
            "cost": {"currency": "USD", "unit": "micro_dollars", "prices": None, "total": 0,
                     "unpriced_tokens": 0, "members": {}, "machines": {}, "skills": {},
                     "models": {}}}


def _totals(ai: int, runs: int, api: int, storage: int, machines: int = 3, commands: int = 1000,
            skills: int = 100, minute: int = 50) -> dict[str, int]:
    return {"ai_tokens": ai, "schedule_runs": runs, "api_requests_per_cycle": api,
            "api_requests_per_minute": minute, "machines": machines, "storage_bytes": storage,
            "commands": commands, "skill_invocations": skills}


CURRENT: Final = _cycle(
    MAY,
    _totals(1_234_567, 2_000, 45_000, 3_400_000_000, machines=4, commands=5_321, skills=800,
            minute=120),
    machines={
        "build-01": {"commands": 3_000, "ai_tokens": 400_000},
        "build-02": {"commands": 2_000, "ai_tokens": 300_000},
        "laptop-kim": {"commands": 321, "ai_tokens": 34_567},
    },
    members={
        "kim": {"ai_tokens": 700_000, "chat_tokens": 500_000, "schedule_runs": 1_600,
                "commands": 3_321},
        "lee": {"ai_tokens": 534_567, "chat_tokens": 200_000, "schedule_runs": 400,
                "commands": 2_000},
    },
    skills={
        "summarize": {"invocations": 600, "cache_hits": 60, "ai_tokens": 270_000},
        "triage": {"invocations": 200, "cache_hits": 150, "ai_tokens": 20_000},
    },
    providers={
        "anthropic": {"input_tokens": 700_000, "output_tokens": 100_000, "models": {
            "claude-opus-4": {"input_tokens": 600_000, "output_tokens": 80_000},
            "claude-3-haiku": {"input_tokens": 100_000, "output_tokens": 20_000},
        }},
        "openai": {"input_tokens": 380_000, "output_tokens": 54_567, "models": {
            "gpt-4o-mini": {"input_tokens": 380_000, "output_tokens": 54_567},
        }},
    },
)



def _cost(opus: int, haiku: int, mini: int, unpriced: int = 0) -> dict[str, Any]:
    """A usage.json cost object (micro-dollars) over CURRENT's three models."""
    def model(cost: int, unpriced_tokens: int = 0) -> dict[str, Any]:
        return {"cost": cost, "cache_read_tokens": 0, "cache_write_tokens": 0,
                "priced": unpriced_tokens == 0, "unpriced_tokens": unpriced_tokens}
    # "prices": the price table, written on the usage_snapshots rows and read back
    return {"currency": "USD", "unit": "micro_dollars", "prices": "genai-prices 0.2.5",
            "total": opus + haiku + mini, "unpriced_tokens": unpriced,
            "members": {"kim": opus, "lee": haiku + mini}, "machines": {}, "skills": {},
            "models": {"anthropic/claude-3-haiku": model(haiku, unpriced),
                       "anthropic/claude-opus-4": model(opus),
                       "openai/gpt-4o-mini": model(mini)}}


CURRENT["cost"] = _cost(15_000_000, 65_000, 89_740)

ACME: Final[dict[str, dict[str, Any]]] = {
    JAN: _cycle(FEB, _totals(800_000, 1_200, 30_000, 2_000_000_000)),
    FEB: _cycle(MAR, _totals(950_000, 1_500, 35_000, 2_500_000_000)),
    MAR: _cycle(APR, _totals(1_100_000, 1_800, 41_000, 2_900_000_000)),
    APR: CURRENT,
}

BETA_CYCLE: Final = {
    "cycle_ends_at": MAY, "plan": None,
    "totals": _totals(5_000, 0, 10, 1_000, machines=1, commands=7, skills=0, minute=3),
    "limits": dict.fromkeys(LIMITS),
    "machines": {"m1": {"commands": 7, "ai_tokens": 0}},
    "members": {"ann": {"ai_tokens": 5_000, "chat_tokens": 5_000, "schedule_runs": 0,
                        "commands": 7}},
    "skills": {},
    "providers": {"openai": {"input_tokens": 4_000, "output_tokens": 1_000, "models": {
        "gpt-4o": {"input_tokens": 4_000, "output_tokens": 1_000}}}},
}


def aggregate_records() -> list[dict[str, Any]]:
    """usage.aggregates records of both workspaces (one per cycle, one version per cycle)."""
    records = [cycle_record("acme", start, cycle, version=version, emitted_at=NOW)
               for version, (start, cycle) in enumerate(ACME.items(), start=1)]
    records.append(cycle_record("beta", APR, BETA_CYCLE, version=1, emitted_at=NOW))
    return records


def _crossing(quota: str, threshold: int, current: int, crossed_at: str, event_id: str,
              enforcement: str = "allow", highest: bool = True) -> dict[str, Any]:
    limit = LIMITS[quota]
    assert limit is not None
    return {
        "alert_id": f"acme/{APR}/{quota}/{threshold}", "workspace_id": "acme", "quota": quota,
        "threshold": threshold, "arm": 1, "highest_in_event": highest, "current": current,
        "limit": limit, "cycle_start": parse_time(APR), "cycle_ends_at": parse_time(MAY),
        "crossed_at": parse_time(crossed_at), "event_id": event_id, "enforcement": enforcement,
    }


CROSSINGS: Final = [
    _crossing("storage_bytes", 80, 3_400_000_000, "2026-04-03T08:00:00Z", "s1", highest=False),
    _crossing("storage_bytes", 95, 3_400_000_000, "2026-04-03T08:00:00Z", "s1", highest=False),
    _crossing("storage_bytes", 100, 3_400_000_000, "2026-04-03T08:00:00Z", "s1", "prune"),
    _crossing("ai_tokens", 80, 1_000_100, "2026-04-05T10:30:00Z", "t7"),
    _crossing("schedule_runs", 80, 1_600, "2026-04-08T00:15:00Z", "r1600"),
    _crossing("schedule_runs", 95, 1_900, "2026-04-09T06:00:00Z", "r1900"),
    _crossing("ai_tokens", 95, 1_187_500, "2026-04-09T14:00:00Z", "t9"),
    _crossing("schedule_runs", 100, 2_000, "2026-04-10T09:00:00Z", "r2000", "queue"),
]


def _delivery(quota: str, threshold: int, channel: str, status: str, attempt: int,
              at: str, detail: str | None = None) -> dict[str, Any]:
    alert_id = f"acme/{APR}/{quota}/{threshold}"
    return {
        "delivery_id": f"{alert_id}|{channel}|{attempt}|{status}", "alert_id": alert_id,
        "workspace_id": "acme", "channel": channel, "status": status, "attempt": attempt,
        "detail": detail, "target": "ops@acme.example" if channel == "email" else None,
        "quota": quota, "threshold": threshold, "recorded_at": parse_time(at),
    }


DELIVERIES: Final = [
    *(_delivery("storage_bytes", t, ch, "superseded", 0, "2026-04-03T08:00:01Z")
      for t in (80, 95) for ch in ("email", "slack", "webhook")),
    _delivery("storage_bytes", 100, "email", "attempted", 1, "2026-04-03T08:00:01Z"),
    _delivery("storage_bytes", 100, "email", "delivered", 1, "2026-04-03T08:00:02Z"),
    _delivery("storage_bytes", 100, "slack", "muted", 0, "2026-04-03T08:00:01Z"),
    _delivery("storage_bytes", 100, "webhook", "attempted", 1, "2026-04-03T08:00:01Z"),
    _delivery("storage_bytes", 100, "webhook", "delivered", 1, "2026-04-03T08:00:02Z"),
    _delivery("ai_tokens", 80, "email", "attempted", 1, "2026-04-05T10:30:01Z"),
    _delivery("ai_tokens", 80, "email", "delivered", 1, "2026-04-05T10:30:02Z"),
    _delivery("ai_tokens", 80, "webhook", "attempted", 1, "2026-04-05T10:30:01Z"),
    _delivery("ai_tokens", 80, "webhook", "retrying", 1, "2026-04-05T10:30:03Z", "HTTP 503"),
    _delivery("ai_tokens", 80, "webhook", "attempted", 2, "2026-04-05T10:31:00Z"),
    _delivery("ai_tokens", 80, "webhook", "failed", 2, "2026-04-05T10:31:01Z", "HTTP 503"),
    _delivery("schedule_runs", 80, "email", "muted", 0, "2026-04-08T00:15:01Z"),
    _delivery("ai_tokens", 95, "email", "attempted", 1, "2026-04-09T14:00:01Z"),
]

# Outcome per (alert, channel) the timeline must show.
EXPECTED_CHANNELS: Final = {
    f"acme/{APR}/storage_bytes/80": {"email": "superseded", "slack": "superseded",
                                     "webhook": "superseded"},
    f"acme/{APR}/storage_bytes/95": {"email": "superseded", "slack": "superseded",
                                     "webhook": "superseded"},
    f"acme/{APR}/storage_bytes/100": {"email": "delivered", "slack": "muted",
                                      "webhook": "delivered"},
    f"acme/{APR}/ai_tokens/80": {"email": "delivered", "webhook": "failed"},
    f"acme/{APR}/schedule_runs/80": {"email": "muted"},
    f"acme/{APR}/schedule_runs/95": {},
    f"acme/{APR}/ai_tokens/95": {"email": "sending"},
    f"acme/{APR}/schedule_runs/100": {},
}


def quota_state_record() -> dict[str, Any]:
    """acme's quota.state record (``schemas/quota.state.avsc``) as the worker makes it at NOW."""
    totals = CURRENT["totals"]
    quotas = []
    for quota, limit in LIMITS.items():
        used = int(totals[quota])
        decision = "allow" if limit is None or used + 1 <= limit else {
            "machines": "reject", "ai_tokens": "reject", "storage_bytes": "prune",
            "schedule_runs": "queue", "api_requests_per_minute": "throttle",
            "api_requests_per_cycle": "reject"}[quota]
        quotas.append({"quota": quota, "used": used, "limit": limit, "plan_limit": limit,
                       "percent": None if limit is None else used * 100 // limit,
                       "decision": decision})
    return {
        "workspace_id": "acme", "version": 7, "as_of": NOW - 5_000, "event_time": NOW - 60_000,
        "plan": "team", "cycle_anchor": parse_time(JAN), "timezone": "UTC",
        "cycle_start": parse_time(APR), "cycle_ends_at": parse_time(MAY),
        "machine_ids": ["build-01", "build-02", "laptop-kim", "spare"], "quotas": quotas,
        "api_minute": None,
    }
