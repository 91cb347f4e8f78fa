"""A small HTTP server for a service's health, readiness and metrics, in a thread.

``GET /healthz`` answers while the process runs, ``GET /readyz`` 200 or 503 from
``ready()``, ``GET /metrics`` the Prometheus text of ``metrics()``. Anything else is 404.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from groundwork.http_reply import reply

log = logging.getLogger("meter.web")


class StatusServer:
    def __init__(self, host: str, port: int, ready: Callable[[], bool],
                 metrics: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._send(200, "application/json", json.dumps({"status": "alive"}))
                elif self.path == "/readyz":
                    ok = ready()
                    self._send(200 if ok else 503, "application/json",
                               json.dumps({"ready": ok}))
                elif self.path == "/metrics":
                    self._send(200, "text/plain; version=0.0.4", metrics())
                else:
                    self._send(404, "application/json", json.dumps({"error": "not found"}))

            def _send(self, status: int, content_type: str, body: str) -> None:
                reply(self, status, content_type, body.encode())

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would flood the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="status-web",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("health, readiness and metrics on http://127.0.0.1:%d/", self.port)

    def stop(self) -> None:
        # shutdown() waits for serve_forever to notice; never started, it would wait forever
        # (a worker that failed before starting its server hung on exit that way)
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
