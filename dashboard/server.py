"""Running the dashboard: uvicorn in the foreground (the CLI) or in a thread (tests, demo)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from dashboard.app import create_app
from dashboard.checkapi import CheckApi
from dashboard.sources import SourceMode, UsageSource, choose_source
from groundwork.settings import Settings


def build(settings: Settings, mode: SourceMode = "auto") -> tuple[FastAPI, UsageSource, CheckApi]:
    """The app on the source chosen for ``settings`` and a check API client."""
    source = choose_source(settings, mode)
    check_api = CheckApi.from_settings(settings)
    return create_app(source, check_api), source, check_api


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port`` (0: a free port); raises ``OSError``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _server(app: FastAPI) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))


def serve(settings: Settings, mode: SourceMode = "auto") -> None:
    """Serve on settings.dashboard_host:dashboard_port until interrupted.

    Raises ``OSError`` when the port cannot be bound (before any source is opened).
    """
    sock = bind(settings.dashboard_host, settings.dashboard_port)
    app, source, check_api = build(settings, mode)
    try:
        _server(app).run(sockets=[sock])
    finally:
        check_api.close()
        source.close()
        sock.close()


@dataclass
class Running:
    """A dashboard served from a thread; ``stop`` ends it."""

    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                    timeout_s: float = 20.0) -> Running:
    """Start ``app`` on ``host:port`` (0: a free port) and wait until it accepts."""
    sock = bind(host, port)
    bound = int(sock.getsockname()[1])
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="dashboard-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard did not start on {host}:{bound}")
        time.sleep(0.02)
    return Running(server, thread, f"http://{host}:{bound}")
