"""One attempt per channel against real receivers: SMTP, Slack-like and webhook endpoints."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from alerting.channels import Channels
from alerting.directory import WorkspaceChannels
from alerting.http_client import HttpSender
from alerting.render_email import ALERT_ID_HEADER, render_email
from alerting.retry import Kind
from alerting.smtp_client import SmtpConfig, send_blocking
from tests.alerting.factories import crossing
from tests.alerting.receivers import Script, SmtpSink, WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"test-secret-for-alerting-0001").decode()
ALLOW = frozenset({"127.0.0.1"})


def _smtp(port: int, **kw: object) -> SmtpConfig:
    values: dict[str, object] = dict(host="127.0.0.1", port=port, starttls=False, username=None,
                                     password=None, sender="meter@example.com", timeout_s=5.0)
    values.update(kw)
    return SmtpConfig(**values)  # type: ignore[arg-type]


def test_email_reaches_every_owner_with_text_and_html() -> None:
    with SmtpSink() as smtp:
        owners = ["a@example.com", "b@example.com"]
        result = send_blocking(_smtp(smtp.port), render_email(crossing(95), owners,
                                                              "meter@example.com"), owners)
        assert result.kind is Kind.DELIVERED
        [(rcpt, message)] = smtp.messages
        assert rcpt == owners
        assert message[ALERT_ID_HEADER] == crossing(95).alert_id
        assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_logs_in_with_the_configured_account() -> None:
    with SmtpSink(credentials=("meter", "pw")) as smtp:
        message = render_email(crossing(80), ["a@example.com"], "meter@example.com")
        good = send_blocking(_smtp(smtp.port, username="meter", password="pw"), message,
                             ["a@example.com"])
        bad = send_blocking(_smtp(smtp.port, username="meter", password="wrong"), message,
                            ["a@example.com"])
        assert good.kind is Kind.DELIVERED
        assert bad.kind is Kind.PERMANENT and "wrong" not in bad.reason
        assert len(smtp.messages) == 1


def test_an_unreachable_smtp_server_is_retryable() -> None:
    with SmtpSink() as smtp:
        port = smtp.port
    result = send_blocking(_smtp(port), render_email(crossing(80), ["a@x.org"], "m@x.org"),
                           ["a@x.org"])
    assert result.kind is Kind.RETRYABLE


async def _webhook_attempt(receiver: WebhookReceiver, ws: WorkspaceChannels,
                           allow: frozenset[str] = ALLOW, timeout_s: float = 5.0) -> object:
    async with HttpSender(allow, timeout_s) as http:
        channels = Channels(http, _smtp(1))
        prepared = channels.prepare("webhook", crossing(100), ws)
        if prepared.send is None:
            return prepared.refusal
        return await prepared.send()


def test_webhook_is_signed_and_verifies_with_standardwebhooks() -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            rx.scripts["hook"] = Script(secret=SECRET)
            ws = WorkspaceChannels(webhook_url=rx.url("hook"), webhook_secret=SECRET)
            result = await _webhook_attempt(rx, ws)
            assert getattr(result, "kind", None) is Kind.DELIVERED
            [got] = rx.received
            assert got.verified is True
            assert got.webhook_id == crossing(100).alert_id
            assert json.loads(got.body)["enforcement"] == "reject"
    asyncio.run(scenario())


@pytest.mark.parametrize(("script", "kind", "reason"), [
    (Script(fail_first=1, fail_status=503), Kind.RETRYABLE, "HTTP 503"),
    (Script(fail_first=1, fail_status=429, retry_after="2"), Kind.RETRYABLE, "HTTP 429"),
    (Script(fail_first=1, fail_status=400), Kind.PERMANENT, "HTTP 400"),
    (Script(delay_s=1.0), Kind.RETRYABLE, "timed out"),
])
def test_webhook_answers_are_classified(script: Script, kind: Kind, reason: str) -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            rx.scripts["hook"] = script
            ws = WorkspaceChannels(webhook_url=rx.url("hook"), webhook_secret=SECRET)
            result = await _webhook_attempt(rx, ws, timeout_s=0.3)
            assert getattr(result, "kind", None) is kind
            assert reason in str(getattr(result, "reason", ""))
            if script.retry_after:
                assert getattr(result, "retry_after_s", None) == 2.0
    asyncio.run(scenario())


def test_a_name_resolving_to_loopback_is_refused_before_connecting() -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            ws = WorkspaceChannels(webhook_url=rx.url("hook", host="localhost"),
                                   webhook_secret=SECRET)
            # localhost is not allow-listed (only 127.0.0.1 is), and http is allowed only there
            refusal = await _webhook_attempt(rx, ws)
            assert "https" in str(refusal)
            async with HttpSender(frozenset({"127.0.0.1"}), 5.0) as http:
                result = await http.post_json(f"https://localhost:{rx.port}/hook", b"{}")
            assert result.kind is Kind.PERMANENT
            assert "loopback" in result.reason
            assert rx.received == []
    asyncio.run(scenario())


def test_invalid_urls_and_missing_secrets_are_refused_with_a_clear_reason() -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            for ws, expected in [
                (WorkspaceChannels(webhook_url="hooks.example.com/x", webhook_secret=SECRET),
                 "scheme must be https"),
                (WorkspaceChannels(webhook_url="https://10.0.0.7/x", webhook_secret=SECRET),
                 "private"),
                (WorkspaceChannels(webhook_url=rx.url("hook")), "no webhook_secret"),
            ]:
                refusal = await _webhook_attempt(rx, ws)
                assert expected in str(refusal)
            assert rx.received == []
    asyncio.run(scenario())
