"""The human facts of a crossing, shared by the email, Slack and webhook renderings.

Pure: what a quota is called, how its amounts read, what S11 does at 100 %,
when the cycle ends and what the owner can do about it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, NamedTuple

from schemas.quotas import QUOTA_SPECS, SPEC_OF
from streams.core.quotas import KIND_FORECAST
from streams.core.quotas import ThresholdCrossing as Crossing

QUOTA_LABELS: Final[dict[str, str]] = {s.name: s.label for s in QUOTA_SPECS}

_AT_LIMIT: Final[dict[str, str]] = {
    "machines": "New machine registrations are rejected; machines already registered keep "
                "working.",
    "ai_tokens": "AI requests (chat, agents, skills, schedules) are rejected until {ends}.",
    "api_requests_per_cycle": "REST and gRPC API requests are rejected until {ends}.",
    "schedule_runs": "New schedule runs are queued and resume when the cycle ends at {ends}.",
    "api_requests_per_minute": "API requests over the per-minute limit are throttled until the "
                               "next minute (advisory: gateways slow callers down).",
    "storage_bytes": "Old transcripts are pruned to bring storage back to {target} % of the "
                     "limit.",
}

_REDUCE: Final[dict[str, str]] = {
    "machines": "Remove machines that are no longer used.",
    "ai_tokens": "Use smaller models or shorter prompts, and pause agents or schedules that "
                 "call AI models.",
    "api_requests_per_cycle": "Batch or cache API calls and stop clients that poll.",
    "schedule_runs": "Run schedules less often or disable ones that are not needed.",
    "api_requests_per_minute": "Spread API calls over time (client-side rate limiting, "
                               "backoff on 429).",
    "storage_bytes": "Delete old transcripts and files you no longer need.",
}

_RAISE_TOPUP: Final = "buy a top-up for this cycle or move to a plan with a higher limit"
# for a quota without top-ups (schemas.quotas): the per-minute rate
_RAISE_PLAN_ONLY: Final = "move to a plan with a higher limit (per-minute limits have no top-ups)"

_BYTE_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_time(ms: int) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ`` (with ``.mmm`` only when the milliseconds are not 0)."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ms % 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_time_human(ms: int) -> str:
    """``2025-02-01 00:00 UTC``: for people."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_day(ms: int) -> str:
    """``Dec 19``: the UTC day, for people."""
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{moment:%b} {moment.day}"


def format_lead(ms: int) -> str:
    """How long before the cycle end: whole days, or hours when less than two days."""
    hours = ms // 3_600_000
    if hours >= 48:
        return f"{hours // 24} days"
    return "1 hour" if hours == 1 else f"{hours} hours"


def format_amount(quota: str, value: int) -> str:
    """A usage amount in the quota's unit: bytes in binary units, counts with separators."""
    if quota != "storage_bytes":
        return f"{value:,}"
    size = float(value)
    for unit in _BYTE_UNITS:
        if abs(size) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{value:,} B" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def percent_of(current: int, limit: int) -> int:
    """S11 ``percent``: ``floor(used * 100 / limit)``."""
    return current * 100 // limit if limit > 0 else 0


class AlertFacts(NamedTuple):
    """Everything a person needs to read about one crossing, as text."""

    workspace_id: str
    quota: str
    quota_label: str
    threshold: int
    percent: int
    current: str
    limit: str
    cycle_ends: str
    at_limit: str
    reduce: str
    raise_limit: str
    reached: bool
    # a forecast alert: "At this pace AI tokens reach 100 % on Dec 19, 3 days before the
    # cycle ends." (None for a threshold crossing)
    forecast: str | None = None
    forecast_day: str | None = None

    @property
    def title(self) -> str:
        if self.forecast_day is not None:
            return (f"{self.quota_label} on pace to reach the limit on {self.forecast_day} "
                    f"in workspace {self.workspace_id}")
        if self.reached:
            return f"{self.quota_label} limit reached in workspace {self.workspace_id}"
        return (f"{self.quota_label} at {self.threshold} % of the limit in workspace "
                f"{self.workspace_id}")


def facts_of(crossing: Crossing, *, prune_target_ratio: float = 0.9) -> AlertFacts:
    """The readable facts of ``crossing``."""
    quota = crossing.quota
    ends = format_time_human(crossing.cycle_ends_at)
    at_limit = _AT_LIMIT.get(quota, "The quota's limit is enforced.").format(
        ends=ends, target=round(prune_target_ratio * 100))
    spec = SPEC_OF.get(quota)
    raise_how = _RAISE_PLAN_ONLY if spec is not None and not spec.topups else _RAISE_TOPUP
    forecast = day = None
    if crossing.kind == KIND_FORECAST and crossing.forecast_at is not None:
        day = format_day(crossing.forecast_at)
        lead = format_lead(crossing.cycle_ends_at - crossing.forecast_at)
        forecast = (f"At this pace {QUOTA_LABELS.get(quota, quota)} reach 100 % on {day}, "
                    f"{lead} before the cycle ends ({format_time_human(crossing.forecast_at)})."
                    )
    return AlertFacts(
        workspace_id=crossing.workspace_id,
        quota=quota,
        quota_label=QUOTA_LABELS.get(quota, quota),
        threshold=crossing.threshold,
        percent=percent_of(crossing.current, crossing.limit),
        current=format_amount(quota, crossing.current),
        limit=format_amount(quota, crossing.limit),
        cycle_ends=ends,
        at_limit=at_limit,
        reduce=_REDUCE.get(quota, "Reduce usage of this quota."),
        raise_limit=f"To raise the limit, {raise_how}.",
        reached=crossing.threshold >= 100 and forecast is None,
        forecast=forecast,
        forecast_day=day,
    )
