"""The webhook JSON body of a crossing (pure).

Key order is part of the contract: ``quota``, ``threshold``, ``current``,
``cycle_ends_at`` first, then ``alert_id``, ``workspace_id``, ``limit``,
``cycle_start``, ``crossed_at``, ``enforcement``, then extras; a forecast alert ends
with ``kind`` (``forecast``) and ``forecast_at`` (when 100 % is projected). Times are UTC
``YYYY-MM-DDTHH:MM:SSZ`` strings (``.mmm`` added only for non-zero milliseconds).
"""

from __future__ import annotations

import json
from typing import Any, Final

from alerting.facts import format_time, percent_of
from schemas.quotas import DECISION_AT_LIMIT
from streams.core.quotas import KIND_FORECAST
from streams.core.quotas import ThresholdCrossing as Crossing

BODY_KEYS: Final = ("quota", "threshold", "current", "cycle_ends_at", "alert_id",
                    "workspace_id", "limit", "cycle_start", "crossed_at", "enforcement",
                    "at_limit", "percent", "arm", "event_id")
FORECAST_KEYS: Final = ("kind", "forecast_at")


def webhook_payload(crossing: Crossing) -> dict[str, Any]:
    """The body as an ordered dict (``BODY_KEYS`` order, then a forecast's
    ``FORECAST_KEYS``)."""
    body = {
        "quota": crossing.quota,
        "threshold": crossing.threshold,
        "current": crossing.current,
        "cycle_ends_at": format_time(crossing.cycle_ends_at),
        "alert_id": crossing.alert_id,
        "workspace_id": crossing.workspace_id,
        "limit": crossing.limit,
        "cycle_start": format_time(crossing.cycle_start),
        "crossed_at": format_time(crossing.crossed_at),
        "enforcement": crossing.enforcement,
        "at_limit": DECISION_AT_LIMIT.get(crossing.quota, "reject"),
        "percent": percent_of(crossing.current, crossing.limit),
        "arm": crossing.arm,
        "event_id": crossing.event_id,
    }
    if crossing.kind == KIND_FORECAST and crossing.forecast_at is not None:
        body["kind"] = KIND_FORECAST
        body["forecast_at"] = format_time(crossing.forecast_at)
    return body


def webhook_body(crossing: Crossing) -> bytes:
    """The exact bytes that are signed and sent (compact UTF-8 JSON)."""
    return json.dumps(webhook_payload(crossing), separators=(",", ":"),
                      ensure_ascii=False).encode()
