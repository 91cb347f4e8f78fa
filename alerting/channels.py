"""Turning a crossing into one channel's send: email, Slack or webhook.

``Channels.prepare`` renders once per crossing and channel and returns either
a refusal (nothing can be sent: no owners, an unsafe URL, a bad secret) or a
``send`` coroutine function that performs one attempt (the webhook is signed
again at each attempt, so its timestamp is fresh).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from alerting.directory import WorkspaceChannels
from alerting.http_client import HttpSender
from alerting.records import Channel, target_of
from alerting.render_email import render_email
from alerting.render_slack import render_slack
from alerting.render_webhook import webhook_body
from alerting.retry import AttemptResult
from alerting.signing import InvalidSecret, parse_secrets, sign_headers
from alerting.smtp_client import SmtpConfig, send_email
from alerting.url_safety import UnsafeUrl
from streams.core.quotas import ThresholdCrossing as Crossing

Send = Callable[[], Awaitable[AttemptResult]]


class Prepared(NamedTuple):
    target: str | None
    send: Send | None
    refusal: str | None = None


class Channels:
    def __init__(self, http: HttpSender, smtp: SmtpConfig, *,
                 prune_target_ratio: float = 0.9) -> None:
        self._http = http
        self._smtp = smtp
        self._prune_target_ratio = prune_target_ratio

    def prepare(self, channel: Channel, crossing: Crossing, ws: WorkspaceChannels) -> Prepared:
        if channel == "email":
            return self._email(crossing, ws)
        if channel == "slack":
            return self._slack(crossing, ws)
        return self._webhook(crossing, ws)

    def _email(self, crossing: Crossing, ws: WorkspaceChannels) -> Prepared:
        owners = ws.owners
        if not owners:
            return Prepared(None, None, "no owner addresses: the workspace's plan names no "
                                        "owners (or no plan has been seen)")
        message = render_email(crossing, owners, self._smtp.sender,
                               prune_target_ratio=self._prune_target_ratio)

        async def send() -> AttemptResult:
            return await send_email(self._smtp, message, owners)

        return Prepared(target_of("email", owners=owners), send)

    def _checked_url(self, channel: Channel, url: str | None,
                     setting: str) -> tuple[str, str | None, Prepared | None]:
        """``url`` (empty when unset), its target, and the refusal if it may not be posted
        to (``setting``: the workspace setting that names it)."""
        url = url or ""
        target = target_of(channel, url=url)
        try:
            self._http.check(url)
        except UnsafeUrl as exc:
            return url, target, Prepared(target, None, f"{setting}: {exc}")
        return url, target, None

    def _slack(self, crossing: Crossing, ws: WorkspaceChannels) -> Prepared:
        url, target, refused = self._checked_url("slack", ws.slack_webhook_url,
                                                 "slack_webhook_url")
        if refused is not None:
            return refused
        body = json.dumps(render_slack(crossing, prune_target_ratio=self._prune_target_ratio),
                          separators=(",", ":")).encode()

        async def send() -> AttemptResult:
            return await self._http.post_json(url, body)

        return Prepared(target, send)

    def _webhook(self, crossing: Crossing, ws: WorkspaceChannels) -> Prepared:
        url, target, refused = self._checked_url("webhook", ws.webhook_url, "webhook_url")
        if refused is not None:
            return refused
        if not ws.webhook_secret:
            return Prepared(target, None, "no webhook_secret set: webhooks are only sent signed")
        try:
            keys = parse_secrets(ws.webhook_secret)
        except InvalidSecret as exc:
            return Prepared(target, None, str(exc))
        body = webhook_body(crossing)

        async def send() -> AttemptResult:
            headers = sign_headers(crossing.alert_id, int(time.time()), body, keys)
            return await self._http.post_json(url, body, headers)

        return Prepared(target, send)
