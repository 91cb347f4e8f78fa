"""Real receivers on 127.0.0.1 for the alerting tests and benchmark.

``WebhookReceiver``: an aiohttp server whose paths follow a script (fail N times,
answer slowly, 429 with Retry-After, 400) and verify Standard Webhooks signatures
with the ``standardwebhooks`` library. ``SmtpSink``: an aiosmtpd server that keeps
every message.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from groundwork.ports import free_port


@dataclass
class Script:
    fail_first: int = 0  # answer `fail_status` this many times, then 200
    fail_status: int = 500
    retry_after: str | None = None
    delay_s: float = 0.0  # before answering
    secret: str | None = None  # verify signatures with this secret


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None
    status: int
    at: float = field(default_factory=time.monotonic)
    at_wall: float = field(default_factory=time.time)

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class WebhookReceiver:
    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.received: list[Received] = []
        self._answered: defaultdict[str, int] = defaultdict(int)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.changed = asyncio.Event()

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])  # the port the system chose
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path}"

    def ok(self, path: str) -> list[Received]:
        """Accepted (2xx) deliveries to ``path``."""
        return [r for r in self.received if r.path == path and r.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        script = self.scripts.get(path, Script())
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified: bool | None = None
        if script.secret is not None:
            try:
                Webhook(script.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        if script.delay_s:
            await asyncio.sleep(script.delay_s)
        self._answered[path] += 1
        failing = self._answered[path] <= script.fail_first
        status = script.fail_status if failing else (200 if verified is not False else 401)
        self.received.append(Received(path, headers, body, verified, status))
        self.changed.set()
        extra: dict[str, Any] = {}
        if failing and script.retry_after is not None:
            extra["Retry-After"] = script.retry_after
        return web.Response(status=status, text="ok" if status < 300 else "no", headers=extra)


class _Handler:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


class SmtpSink:
    """aiosmtpd on 127.0.0.1 (a free port), optionally requiring AUTH LOGIN/PLAIN."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.handler = _Handler()
        self._credentials = credentials
        kwargs: dict[str, Any] = {}
        if credentials is not None:
            kwargs.update(auth_required=True, auth_require_tls=False,
                          auth_exclude_mechanism=["LOGIN"], authenticator=self._authenticate)
        self.port = free_port()
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                      **kwargs)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword
        ok = isinstance(auth_data, LoginPassword) and self._credentials == (
            auth_data.login.decode(), auth_data.password.decode())
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        return self.handler.messages
