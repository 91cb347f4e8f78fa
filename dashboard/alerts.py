"""The alert timeline (pure): each threshold crossing or forecast alert with its outcome
per channel.

Inputs are records in the shapes of ``quota.thresholds`` and ``alerting.deliveries``
(DESIGN.md, "Outputs"; ``schemas/*.avsc``; times as int ms or
``YYYY-MM-DDTHH:MM:SSZ``). A channel's outcome is
its final record (delivered, failed, muted, superseded: the latest of them), else the
latest in-flight one (attempted, retrying: shown as "sending"/"retrying").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from schemas.events import QUOTAS
from sinks.shape import parse_time

CHANNELS: Final = ("email", "slack", "webhook")
FINAL: Final = frozenset({"delivered", "failed", "muted", "superseded"})


@dataclass(frozen=True, slots=True)
class ChannelOutcome:
    channel: str
    status: str  # delivered | failed | muted | superseded | sending | retrying
    attempts: int
    detail: str
    target: str
    recorded_at: int


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    alert_id: str
    quota: str
    threshold: int
    arm: int
    current: int
    limit: int
    crossed_at: int
    enforcement: str
    highest_in_event: bool
    channels: tuple[ChannelOutcome, ...]
    kind: str = "threshold"  # or "forecast" (quota.thresholds v2)
    forecast_at: int | None = None  # a forecast's projected 100 % instant


def as_ms(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"expected a time, got {value!r}")
    if isinstance(value, int):
        return value
    return parse_time(str(value))


def channel_outcome(channel: str, records: Iterable[Mapping[str, Any]]) -> ChannelOutcome:
    """The outcome of one (alert, channel) from all its delivery records."""
    ordered = sorted(records, key=lambda r: (as_ms(r["recorded_at"]), int(r["attempt"])))
    if not ordered:
        raise ValueError("no delivery records")
    finals = [r for r in ordered if r["status"] in FINAL]
    chosen = finals[-1] if finals else ordered[-1]
    status = str(chosen["status"])
    if status == "attempted":
        status = "sending"
    return ChannelOutcome(channel, status, max(int(r["attempt"]) for r in ordered),
                          str(chosen.get("detail") or ""), str(chosen.get("target") or ""),
                          as_ms(chosen["recorded_at"]))


def timeline(crossings: Iterable[Mapping[str, Any]],
             deliveries: Iterable[Mapping[str, Any]]) -> list[TimelineEntry]:
    """Crossings in the order they fired (crossed_at, then S12's quota order, threshold,
    arm), each with its channels in the order email, slack, webhook."""
    by_alert: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for record in deliveries:
        by_alert.setdefault(str(record["alert_id"]), {}).setdefault(
            str(record["channel"]), []).append(record)
    order = {q: i for i, q in enumerate(QUOTAS)}
    entries = []
    for c in crossings:
        channels = by_alert.get(str(c["alert_id"]), {})
        outcomes = tuple(channel_outcome(ch, channels[ch])
                         for ch in sorted(channels, key=_channel_rank))
        entries.append(TimelineEntry(
            str(c["alert_id"]), str(c["quota"]), int(c["threshold"]), int(c["arm"]),
            int(c["current"]), int(c["limit"]), as_ms(c["crossed_at"]),
            str(c["enforcement"]), bool(c["highest_in_event"]), outcomes,
            str(c.get("kind") or "threshold"),
            None if c.get("forecast_at") is None else as_ms(c["forecast_at"])))
    entries.sort(key=lambda e: (e.crossed_at, order.get(e.quota, len(order)), e.threshold,
                                e.arm))
    return entries


def _channel_rank(channel: str) -> tuple[int, str]:
    return (CHANNELS.index(channel) if channel in CHANNELS else len(CHANNELS), channel)


def status_counts(entries: Iterable[TimelineEntry]) -> dict[str, int]:
    """How many channel outcomes have each status (for the timeline's summary line)."""
    counts: dict[str, int] = {}
    for entry in entries:
        for outcome in entry.channels:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts
