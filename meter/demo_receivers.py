"""Local stand-ins for the outside world of the demo: a real SMTP server and a real
HTTP webhook receiver that verifies Standard Webhooks signatures, both on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Inbox:
    """Messages the SMTP server received: (recipients, subject)."""

    messages: list[tuple[list[str], str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes

        message = message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), str(message.get("Subject", ""))))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    def __init__(self, port: int) -> None:
        self.inbox = Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=port)
        self.port = port

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@dataclass
class WebhookLog:
    """Webhooks received: alert id -> times seen; bad signatures counted apart."""

    verified: dict[str, int] = field(default_factory=dict)
    bad_signatures: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class WebhookReceiver:
    """POST /hooks/<workspace>: verified with the workspace's secret, answered 204."""

    def __init__(self, port: int, secrets: dict[str, str]) -> None:
        self.log = WebhookLog()
        log, verifiers = self.log, {ws: Webhook(s) for ws, s in secrets.items()}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                workspace = self.path.rstrip("/").rsplit("/", 1)[-1]
                verifier = verifiers.get(workspace)
                try:
                    if verifier is None:
                        raise WebhookVerificationError("unknown workspace")
                    payload = verifier.verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    with log.lock:
                        log.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                with log.lock:
                    alert = str(self.headers.get("webhook-id"))
                    log.verified[alert] = log.verified.get(alert, 0) + 1
                    log.bodies.append(payload if isinstance(payload, dict) else json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, workspace: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{workspace}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
