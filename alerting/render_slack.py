"""The Slack incoming-webhook payload of a crossing: a short Block Kit message (pure)."""

from __future__ import annotations

from typing import Any

from alerting.facts import facts_of
from streams.core.quotas import ThresholdCrossing as Crossing


def _mrkdwn_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_slack(crossing: Crossing, *, prune_target_ratio: float = 0.9) -> dict[str, Any]:
    """``{"text": fallback, "blocks": [...]}`` with the same facts as the email."""
    f = facts_of(crossing, prune_target_ratio=prune_target_ratio)
    icon = ":rotating_light:" if f.reached else ":warning:"
    fields = [
        f"*Quota*\n{f.quota}",
        f"*Threshold*\n{f.threshold} %" if f.forecast is None
        else f"*Forecast*\n100 % on {f.forecast_day}",
        f"*Usage*\n{f.current} of {f.limit} ({f.percent} %)",
        f"*Cycle ends*\n{f.cycle_ends}",
    ]
    text = f.forecast or f"{f.title}: {f.current} of {f.limit} ({f.percent} %)"
    return {
        "text": _mrkdwn_escape(text),
        "blocks": [
            {"type": "header",
             "text": {"type": "plain_text", "text": f.title[:150], "emoji": True}},
            {"type": "section",
             "fields": [{"type": "mrkdwn", "text": _mrkdwn_escape(t)} for t in fields]},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": _mrkdwn_escape(
                 f"{icon} *At 100 %:* {f.at_limit}\n*Reduce:* {f.reduce}\n{f.raise_limit}")}},
            {"type": "context",
             "elements": [{"type": "mrkdwn",
                           "text": _mrkdwn_escape(f"alert id {crossing.alert_id}")}]},
        ],
    }
