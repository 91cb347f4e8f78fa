"""The alert timeline: order of crossings and each channel's outcome."""

from __future__ import annotations

from typing import Any

from dashboard.alerts import channel_outcome, status_counts, timeline
from tests.dashboard import data


def _record(status: str, attempt: int, at: int, detail: str | None = None) -> dict[str, Any]:
    return {"status": status, "attempt": attempt, "recorded_at": at, "detail": detail,
            "target": None}


def test_a_final_record_wins_over_later_in_flight_ones() -> None:
    records = [_record("attempted", 1, 1), _record("delivered", 1, 2),
               _record("attempted", 2, 3)]  # a repeat in the documented crash window
    assert channel_outcome("email", records).status == "delivered"


def test_in_flight_channels_show_sending_or_retrying() -> None:
    assert channel_outcome("slack", [_record("attempted", 1, 1)]).status == "sending"
    outcome = channel_outcome("webhook", [_record("attempted", 1, 1),
                                          _record("retrying", 1, 2, "HTTP 503")])
    assert (outcome.status, outcome.detail, outcome.attempts) == ("retrying", "HTTP 503", 1)


def test_times_may_be_text() -> None:
    outcome = channel_outcome("email", [
        {"status": "failed", "attempt": 5, "recorded_at": "2026-04-05T10:31:01Z"}])
    assert outcome.recorded_at == 1_775_385_061_000


def test_the_timeline_orders_crossings_and_joins_deliveries() -> None:
    entries = timeline(reversed(data.CROSSINGS), data.DELIVERIES)
    assert [e.alert_id for e in entries] == [c["alert_id"] for c in data.CROSSINGS]
    got = {e.alert_id: {o.channel: o.status for o in e.channels} for e in entries}
    assert got == data.EXPECTED_CHANNELS
    webhook = next(o for o in entries[3].channels if o.channel == "webhook")
    assert (webhook.status, webhook.attempts, webhook.detail) == ("failed", 2, "HTTP 503")
    assert status_counts(entries) == {"superseded": 6, "delivered": 3, "muted": 2,
                                      "failed": 1, "sending": 1}


def test_same_instant_crossings_follow_quota_then_threshold_order() -> None:
    same = [{**c, "crossed_at": 5} for c in data.CROSSINGS[:4]]
    entries = timeline(same, [])
    assert [(e.quota, e.threshold) for e in entries] == [
        ("ai_tokens", 80), ("storage_bytes", 80), ("storage_bytes", 95), ("storage_bytes", 100)]


def test_a_forecast_alert_is_an_entry_of_its_own_kind() -> None:
    forecast = {**data.CROSSINGS[0], "alert_id": "w/2026-04-01T00:00:00Z/ai_tokens/forecast",
                "threshold": 100, "kind": "forecast", "forecast_at": "2026-04-26T00:00:00Z"}
    [entry, threshold] = timeline([forecast, {**data.CROSSINGS[0], "crossed_at": 1 << 50}], [])
    assert (entry.kind, entry.forecast_at) == ("forecast", 1_777_161_600_000)
    assert (threshold.kind, threshold.forecast_at) == ("threshold", None)
