"""Typed, immutable usage and control events: what every entry point decodes to.

Every decoder (Avro from Kafka, JSON lines, the check API) produces these objects
through ``schemas.validation``; the metering core consumes nothing else.

They are ``NamedTuple``s on purpose: a tuple is the cheapest immutable object
CPython builds (the replay hot path creates one per event), attribute access is
a C-level slot lookup, and they compare and hash by value.

Times are integer epoch milliseconds, UTC (S12: digits past milliseconds are
truncated), so the core never touches ``datetime`` on the hot path.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from schemas.quotas import QUOTA_NAMES

# The six quota names (``schemas.quotas``), in the order S12 lists crossings of one event.
QUOTAS: Final = QUOTA_NAMES
THRESHOLDS: Final = (80, 95, 100)

SURFACES: Final = ("chat", "agent", "skill", "schedule")
STORAGE_CATEGORIES: Final = ("transcripts", "audit_log", "file_index")
API_PROTOCOLS: Final = ("rest", "grpc")
MACHINE_ACTIONS: Final = ("registered", "removed")


class Limits(NamedTuple):
    """A plan's limits; ``None`` is unlimited. Field order is ``QUOTAS`` (a test holds it)."""

    machines: int | None = None
    ai_tokens: int | None = None
    storage_bytes: int | None = None
    schedule_runs: int | None = None
    api_requests_per_minute: int | None = None
    api_requests_per_cycle: int | None = None


UNLIMITED: Final = Limits()


class Mute(NamedTuple):
    """Mutes one quota's alerts: one threshold, or all three when ``threshold`` is None."""

    quota: str
    threshold: int | None


# Forecast alerts (opt-in per counter quota in alert_settings): the quotas that have
# them, and how many days before the cycle ends 100 % must be projected when an opt-in
# names no lead.
FORECAST_QUOTAS: Final = ("ai_tokens", "schedule_runs", "api_requests_per_cycle")
DEFAULT_FORECAST_LEAD_DAYS: Final = 3
MAX_FORECAST_LEAD_DAYS: Final = 365


class ForecastOptIn(NamedTuple):
    """Forecast alerts for one counter quota; ``lead_days`` None means the default (3)."""

    quota: str
    lead_days: int | None = None


class TokensEvent(NamedTuple):
    event_id: str
    workspace_id: str
    occurred_at: int
    member_id: str
    machine_id: str | None
    skill: str | None
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    surface: str
    # Of input_tokens, those read from / written to the prompt cache (usage.tokens v2).
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class CommandEvent(NamedTuple):
    event_id: str
    workspace_id: str
    occurred_at: int
    member_id: str
    machine_id: str
    command: str


class ScheduleRunEvent(NamedTuple):
    event_id: str
    workspace_id: str
    occurred_at: int
    member_id: str
    schedule_id: str
    machine_id: str | None


class SkillEvent(NamedTuple):
    event_id: str
    workspace_id: str
    occurred_at: int
    member_id: str
    skill: str
    machine_id: str | None
    cache_hit: bool


class StorageEvent(NamedTuple):
    """Exactly one of ``delta_bytes`` (signed) and ``total_bytes`` is set (S12)."""

    event_id: str
    workspace_id: str
    occurred_at: int
    category: str
    delta_bytes: int | None
    total_bytes: int | None


class ApiEvent(NamedTuple):
    event_id: str
    workspace_id: str
    occurred_at: int
    member_id: str | None
    protocol: str
    requests: int


class MachineEvent(NamedTuple):
    event_id: str
    workspace_id: str
    occurred_at: int
    machine_id: str
    action: str


class PlanEvent(NamedTuple):
    event_id: str
    workspace_id: str
    occurred_at: int
    plan: str
    cycle_anchor: int
    timezone: str
    limits: Limits
    owners: tuple[str, ...]


class TopupEvent(NamedTuple):
    event_id: str
    workspace_id: str
    occurred_at: int
    quota: str
    amount: int


class AlertSettingsEvent(NamedTuple):
    """A workspace's alert channels; every field optional, ``None`` clears it (S12)."""

    event_id: str
    workspace_id: str
    occurred_at: int
    email: bool | None
    slack_webhook_url: str | None
    webhook_url: str | None
    webhook_secret: str | None
    muted: tuple[Mute, ...]
    forecasts: tuple[ForecastOptIn, ...] = ()  # alerting.settings v2
    muted_forecasts: tuple[str, ...] = ()  # quotas whose forecast alerts are muted


Event = (
    TokensEvent
    | CommandEvent
    | ScheduleRunEvent
    | SkillEvent
    | StorageEvent
    | ApiEvent
    | MachineEvent
    | PlanEvent
    | TopupEvent
    | AlertSettingsEvent
)

# type name (the JSON lines ``type`` tag) -> (event class, Kafka topic)
EVENT_CLASSES: Final[dict[str, type[Event]]] = {
    "tokens": TokensEvent,
    "command": CommandEvent,
    "schedule_run": ScheduleRunEvent,
    "skill": SkillEvent,
    "storage": StorageEvent,
    "api": ApiEvent,
    "machine": MachineEvent,
    "plan": PlanEvent,
    "topup": TopupEvent,
    "alert_settings": AlertSettingsEvent,
}
TOPIC_OF_TYPE: Final[dict[str, str]] = {
    "tokens": "usage.tokens",
    "command": "usage.commands",
    "schedule_run": "usage.schedules",
    "skill": "usage.skills",
    "storage": "usage.storage",
    "api": "usage.api",
    "machine": "usage.machines",
    "plan": "quota.plans",
    "topup": "quota.topups",
    "alert_settings": "alerting.settings",
}
TYPE_OF_CLASS: Final[dict[type[Event], str]] = {cls: name for name, cls in EVENT_CLASSES.items()}
TYPE_OF_TOPIC: Final[dict[str, str]] = {topic: name for name, topic in TOPIC_OF_TYPE.items()}
RAW_USAGE_TOPICS: Final = tuple(TOPIC_OF_TYPE[t] for t in (
    "tokens", "command", "schedule_run", "skill", "storage", "api", "machine"))


def type_of(event: Event) -> str:
    """The JSON lines ``type`` tag of an event."""
    return TYPE_OF_CLASS[type(event)]
