"""The sink's small HTTP server on 127.0.0.1 (settings.sink_host/sink_port).

GET /healthz              200 while the process runs
GET /readyz               200 once the store answers and the last write went in, else 503
GET /metrics              Prometheus text: rows written, batches, retries, lag
GET /v1/history?workspace=W[&cycles=N]          {"workspace_id", "cycles": [cycle, ...]}
GET /v1/cycle?workspace=W&cycle=START           {"workspace_id", "cycle": cycle}
GET /v1/usage?workspace=W                       {"workspace_id", "cycle": cycle | null}
GET /v1/history.csv?workspace=W[&cycles=N | &cycle=START]   text/csv (sinks.csv_export)
GET /v1/workspaces?limit=N[&offset=M]           {"workspaces": [{"workspace_id", "cycle_start"}]}
GET /v1/alerts?workspace=W&cycle=START          {"crossings": [...], "deliveries": [...]}

Each cycle is the usage.json cycle object plus ``cycle_start`` and ``status``.
START is ``YYYY-MM-DDTHH:MM:SSZ`` or epoch ms. Reads use their own client on the
store, serialized by a lock.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from clickhouse_connect.driver.exceptions import ClickHouseError

from groundwork.http_reply import reply
from sinks.history import DEFAULT_CYCLES, CycleNotFound, HistoryReader
from sinks.metrics import SinkMetrics
from sinks.reads import LocalReads
from sinks.shape import iso, parse_time
from sinks.store import StoreHandle, StoreUnavailable
from sinks.timeline import Queries

log = logging.getLogger(__name__)
MAX_CYCLES = 120


class BadRequest(ValueError):
    pass


class ReadService:
    """Answers read requests from a store handle of its own (reconnects after failures)."""

    def __init__(self, store: StoreHandle, metrics: SinkMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self.lock = threading.Lock()

    def reads(self) -> LocalReads:
        return LocalReads(HistoryReader(self.store.client(), self.store.database))

    def timeline(self) -> Queries:
        return Queries(self.store.client(), self.store.database)

    def ready(self) -> bool:
        # The last write failing counts too: a store that answers SELECT 1 but refuses
        # inserts (read-only disk) is not ready (tests/faults/test_sink_faults.py).
        if not self.metrics.store_ready:
            return False
        with self.lock:
            try:
                self.store.client().query("SELECT 1")
                return True
            except (StoreUnavailable, ClickHouseError, OSError):
                self.store.reset()
                return False

    def handle(self, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        def one(name: str, default: str | None = None) -> str:
            values = query.get(name)
            if not values:
                if default is None:
                    raise BadRequest(f"missing query parameter {name!r}")
                return default
            return values[0]

        def cycles() -> int:
            text = one("cycles", str(DEFAULT_CYCLES))
            if not text.isdigit() or not 1 <= int(text) <= MAX_CYCLES:
                raise BadRequest(f"cycles must be an integer from 1 to {MAX_CYCLES}")
            return int(text)

        def start() -> int:
            try:
                return parse_time(one("cycle"))
            except ValueError as exc:
                raise BadRequest(f"cycle must be YYYY-MM-DDTHH:MM:SSZ or epoch ms: {exc}") from exc

        with self.lock:
            try:
                if path == "/v1/history":
                    ws = one("workspace")
                    return _json(200, {"workspace_id": ws,
                                       "cycles": self.reads().history(ws, cycles())})
                if path == "/v1/cycle":
                    ws = one("workspace")
                    return _json(200, {"workspace_id": ws,
                                       "cycle": self.reads().cycle(ws, start())})
                if path == "/v1/usage":
                    ws = one("workspace")
                    found = self.reads().history(ws, 1)
                    return _json(200, {"workspace_id": ws, "cycle": found[0] if found else None})
                if path == "/v1/workspaces":
                    limit, offset = one("limit", "50"), one("offset", "0")
                    if not (limit.isdigit() and offset.isdigit()) or not 1 <= int(limit) <= 1000:
                        raise BadRequest("limit must be 1..1000 and offset a whole number")
                    listed = self.timeline().workspaces(int(limit), int(offset))
                    return _json(200, {"workspaces": [
                        {"workspace_id": ws, "cycle_start": iso(cycle_start)}
                        for ws, cycle_start in listed]})
                if path == "/v1/alerts":
                    crossings, deliveries = self.timeline().alerts(one("workspace"), start())
                    return _json(200, {"crossings": crossings, "deliveries": deliveries})
                if path == "/v1/history.csv":
                    ws = one("workspace")
                    cycle_start = start() if "cycle" in query else None
                    text = self.reads().csv(ws, cycles=cycles(), cycle_start=cycle_start)
                    return 200, "text/csv; charset=utf-8", text.encode("utf-8")
            except BadRequest as exc:
                return _json(400, {"error": str(exc)})
            except CycleNotFound as exc:
                return _json(404, {"error": str(exc)})
            except (StoreUnavailable, ClickHouseError, OSError) as exc:
                self.store.reset()
                log.warning("read failed: %s", exc)
                return _json(503, {"error": "store unavailable, retry"})
        return _json(404, {"error": f"no such path {path}"})


def _json(status: int, body: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body, ensure_ascii=False).encode("utf-8")


def make_server(host: str, port: int, service: ReadService) -> ThreadingHTTPServer:
    """A bound server (port 0 picks a free one); call ``serve_forever`` in a thread."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "meter-sink"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/healthz":
                status, ctype, body = 200, "text/plain", b"ok\n"
            elif url.path == "/readyz":
                ok = service.ready()
                status, ctype, body = (200 if ok else 503), "text/plain", (
                    b"ready\n" if ok else b"store unavailable\n")
            elif url.path == "/metrics":
                status, ctype = 200, "text/plain; version=0.0.4; charset=utf-8"
                body = service.metrics.render().encode()
            else:
                status, ctype, body = service.handle(url.path, parse_qs(url.query))
            reply(self, status, ctype, body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="sink-http", daemon=True)
    thread.start()
    return thread
