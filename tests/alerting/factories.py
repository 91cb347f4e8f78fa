"""Crossings and settings for the alerting tests, built the way the stream emits them."""

from __future__ import annotations

from datetime import UTC, datetime

from alerting.facts import format_time
from schemas.quotas import DECISION_AT_LIMIT
from streams.core.quotas import QUOTA_INDEX, QuotaArms
from streams.core.quotas import ThresholdCrossing as Crossing

CYCLE_START = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
CYCLE_ENDS = int(datetime(2025, 2, 1, tzinfo=UTC).timestamp() * 1000)
CROSSED_AT = int(datetime(2025, 1, 6, tzinfo=UTC).timestamp() * 1000)


def crossing(threshold: int = 80, *, workspace: str = "w1", quota: str = "ai_tokens",
             event_id: str = "e1", highest: bool = True, current: int | None = None,
             limit: int = 1000, arm: int = 1) -> Crossing:
    alert_id = f"{workspace}/{format_time(CYCLE_START)}/{quota}/{threshold}"
    if arm > 1:
        alert_id += f"#{arm}"
    return Crossing(
        alert_id=alert_id, workspace_id=workspace, quota=quota, threshold=threshold, arm=arm,
        highest_in_event=highest,
        current=current if current is not None else limit * threshold // 100,
        limit=limit, cycle_start=CYCLE_START, cycle_ends_at=CYCLE_ENDS, crossed_at=CROSSED_AT,
        event_id=event_id,
        enforcement=DECISION_AT_LIMIT[quota] if threshold == 100 else "allow")


DAY_MS = 86_400_000


def forecast_alert(*, workspace: str = "w1", quota: str = "ai_tokens", event_id: str = "e1",
                   arm: int = 1) -> Crossing:
    """A forecast alert as the core emits it: 100 of 2800 used in the cycle's first day
    projects 100 % on Jan 29, 3 days (the default lead) before the cycle ends."""
    q = QUOTA_INDEX[quota]
    arms = QuotaArms()
    arms.forecast_arms[q] = arm
    alert = arms.forecast(q, 100, 2800, 3 * DAY_MS, workspace, CYCLE_START, CYCLE_ENDS,
                          CYCLE_START + DAY_MS, event_id)
    assert alert is not None
    return alert


def event_crossings(*thresholds: int, **kwargs: object) -> list[Crossing]:
    """The crossings one event emits: lowest first, the last one ``highest_in_event``."""
    ordered = sorted(thresholds)
    return [crossing(t, highest=t == ordered[-1], **kwargs)  # type: ignore[arg-type]
            for t in ordered]
