"""What people and programs read: email, Slack and webhook renderings of a crossing."""

from __future__ import annotations

import json

import pytest

from alerting.facts import format_amount
from alerting.render_email import ALERT_ID_HEADER, render_email
from alerting.render_slack import render_slack
from alerting.render_webhook import webhook_body
from tests.alerting.factories import crossing, forecast_alert

AT_LIMIT_WORDS = {
    "ai_tokens": "rejected",
    "machines": "registrations are rejected",
    "api_requests_per_cycle": "rejected",
    "schedule_runs": "queued",
    "api_requests_per_minute": "throttled",
    "storage_bytes": "pruned",
}


def _parts(message: object) -> tuple[str, str]:
    from email.message import EmailMessage
    assert isinstance(message, EmailMessage)
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


@pytest.mark.parametrize("quota", sorted(AT_LIMIT_WORDS))
def test_email_says_quota_threshold_usage_what_happens_at_100_and_cycle_end(quota: str) -> None:
    message = render_email(crossing(95, quota=quota, current=960, limit=1000),
                           ["a@example.com", "b@example.com"], "meter@example.com")
    assert message["To"] == "a@example.com, b@example.com"
    assert "95 %" in message["Subject"]
    plain, html = _parts(message)
    for body in (plain, html):
        assert quota in body
        assert "95" in body
        assert f"{format_amount(quota, 960)} of {format_amount(quota, 1000)} (96 %)" in body
        assert AT_LIMIT_WORDS[quota] in body
        assert "2025-02-01 00:00 UTC" in body
        assert "top-up" in body or "higher limit" in body


def test_email_carries_the_alert_id_for_deduplication() -> None:
    c = crossing(100)
    message = render_email(c, ["a@example.com"], "meter@example.com")
    assert message[ALERT_ID_HEADER] == c.alert_id
    assert "limit reached" in message["Subject"]


def test_an_alert_keeps_its_message_id_when_rendered_again() -> None:
    # a repeat after a crash (a new process renders it again) is the same message to mail
    # systems that dedupe by Message-ID; another alert (threshold, arm) is another message
    c = crossing(95)
    first = render_email(c, ["a@example.com"], "meter@example.com")["Message-ID"]
    again = render_email(c, ["a@example.com", "b@example.com"], "meter@example.com")
    assert again["Message-ID"] == first
    assert first.startswith("<") and first.endswith("@example.com>")
    others = {render_email(other, ["a@example.com"], "meter@example.com")["Message-ID"]
              for other in (crossing(100), crossing(95, arm=2), crossing(95, workspace="w2"))}
    assert first not in others and len(others) == 3


def test_email_html_escapes_workspace_ids() -> None:
    _plain, html = _parts(render_email(crossing(80, workspace="<b>x</b>"), ["a@example.com"],
                                       "meter@example.com"))
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_storage_amounts_read_in_binary_units() -> None:
    plain, _ = _parts(render_email(crossing(80, quota="storage_bytes", current=858_993_459,
                                            limit=1_073_741_824), ["a@example.com"], "m@x"))
    assert "819.2 MiB of 1.0 GiB" in plain


def test_slack_is_block_kit_with_the_same_facts() -> None:
    payload = render_slack(crossing(100, quota="schedule_runs", current=120, limit=100))
    assert payload["text"].startswith("Schedule runs limit reached")
    kinds = [b["type"] for b in payload["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    text = json.dumps(payload)
    for fact in ("schedule_runs", "100 %", "120 of 100", "2025-02-01 00:00 UTC", "queued"):
        assert fact in text


def test_webhook_body_starts_with_the_documented_keys_in_order() -> None:
    body = json.loads(webhook_body(crossing(95, current=951, limit=1000)))
    assert list(body)[:10] == ["quota", "threshold", "current", "cycle_ends_at", "alert_id",
                               "workspace_id", "limit", "cycle_start", "crossed_at",
                               "enforcement"]
    assert body["quota"] == "ai_tokens" and body["threshold"] == 95 and body["current"] == 951
    assert body["cycle_ends_at"] == "2025-02-01T00:00:00Z"
    assert body["cycle_start"] == "2025-01-01T00:00:00Z"
    assert body["enforcement"] == "allow" and body["at_limit"] == "reject"


def test_a_forecast_alert_says_when_100_percent_comes_at_this_pace() -> None:
    alert = forecast_alert()
    sentence = ("At this pace AI tokens reach 100 % on Jan 29, 3 days before the cycle ends "
                "(2025-01-29 00:00 UTC).")
    message = render_email(alert, ["a@example.com"], "meter@example.com")
    assert message["Subject"] == "[meter] AI tokens on pace to reach the limit on Jan 29 in " \
                                 "workspace w1"
    assert message[ALERT_ID_HEADER] == "w1/2025-01-01T00:00:00Z/ai_tokens/forecast"
    plain, html = _parts(message)
    assert sentence in plain and sentence in html
    assert "100 of 2,800 (3 %) so far" in plain and "2025-02-01 00:00 UTC" in plain
    assert "has reached" not in plain + html and "has crossed" not in plain + html
    slack = render_slack(alert)
    assert slack["text"] == sentence
    fields = [f["text"] for f in slack["blocks"][1]["fields"]]
    assert "*Forecast*\n100 % on Jan 29" in fields


def test_a_forecast_webhook_adds_kind_and_forecast_at_after_the_documented_keys() -> None:
    body = json.loads(webhook_body(forecast_alert(arm=2)))
    assert list(body)[:4] == ["quota", "threshold", "current", "cycle_ends_at"]
    assert list(body)[-2:] == ["kind", "forecast_at"]
    assert (body["kind"], body["forecast_at"], body["alert_id"], body["enforcement"]) == (
        "forecast", "2025-01-29T00:00:00Z", "w1/2025-01-01T00:00:00Z/ai_tokens/forecast#2",
        "allow")
    assert "kind" not in json.loads(webhook_body(crossing(100)))
