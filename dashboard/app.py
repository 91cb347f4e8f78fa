"""The dashboard's HTTP app (FastAPI): pages, CSV downloads, the JSON API, static files.

Routes (workspace ids travel as query parameters, so any id works in a URL):
  GET /                                  workspaces (current cycle of each), ?page=N
  GET /workspace?id=W[&cycle=START]      a workspace (default: its current cycle);
      &sort_<table>=<column>.<asc|desc> (tables machines, members, skills, providers),
      &metric=<total> (the 12-cycle chart)
  GET /export.csv?workspace=W[&cycle=START | &cycles=N]   sinks.csv_export bytes
  GET /api/v1/workspaces[?page=N]        {"workspaces": [{"workspace_id", "cycle_start"}]}
  GET /api/v1/history?workspace=W[&cycles=N]  {"workspace_id", "cycles": [cycle...]}
  GET /api/v1/cycle?workspace=W[&cycle=START] the cycle object (usage.json + cycle_start,
                                              status); default the current cycle
  GET /api/v1/usage.json?workspace=W[&cycles=N | &cycle=START]  a usage.json document
  GET /healthz, /static/dashboard.css, /static/favicon.svg, /api/openapi.json

START is ``YYYY-MM-DDTHH:MM:SSZ`` or epoch ms. Handlers are plain ``def``: the store
client blocks, so they run in the server's thread pool.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, Final

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from dashboard.alerts import timeline
from dashboard.checkapi import CheckApi
from dashboard.pages import index_page, message_page, workspace_page
from dashboard.quotas import Decisions
from dashboard.sources import CycleNotFound, NotServed, SourceUnavailable, UsageSource
from dashboard.views import (
    HISTORY_METRICS,
    TABLES,
    AlertsView,
    IndexView,
    WorkspaceRow,
    WorkspaceView,
)
from sinks.shape import iso, parse_time

HISTORY_CYCLES: Final = 12
MAX_CYCLES: Final = 120
PAGE_SIZE: Final = 50
_STATIC: Final = {"dashboard.css": "text/css; charset=utf-8",
                  "favicon.svg": "image/svg+xml"}


class BadRequest(ValueError):
    pass


def _start(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise BadRequest(f"cycle must be YYYY-MM-DDTHH:MM:SSZ or epoch ms, got {text!r}") from exc


def _cycles(value: int) -> int:
    if not 1 <= value <= MAX_CYCLES:
        raise BadRequest(f"cycles must be from 1 to {MAX_CYCLES}")
    return value


def _filename(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)) + ".csv"


def usage_document(workspace_id: str, cycles: list[dict[str, Any]]) -> dict[str, Any]:
    """A usage.json document (DESIGN.md) of one workspace's cycles."""
    out: dict[str, Any] = {}
    for cycle in cycles:
        out[str(cycle["cycle_start"])] = {k: v for k, v in cycle.items()
                                          if k not in ("cycle_start", "status")}
    return {"workspaces": {workspace_id: {"cycles": out}}}


def create_app(source: UsageSource, check_api: CheckApi | None,
               clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> FastAPI:
    # No Swagger UI: it loads from a CDN, and the dashboard works offline.
    app = FastAPI(title="workspace-meter dashboard", version="1", docs_url=None,
                  redoc_url=None, openapi_url="/api/openapi.json")
    static = {name: resources.files("dashboard").joinpath("static", name).read_bytes()
              for name in _STATIC}

    def html(body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status_code=status)

    def problem(title: str, message: str, status: int) -> HTMLResponse:
        return html(message_page(title, message, source=source.description, now_ms=clock_ms()),
                    status)

    def decisions_for(workspace_id: str) -> Decisions:
        if check_api is None:
            return Decisions.unavailable("no check API is configured")
        return check_api.quotas(workspace_id)

    def alerts_for(workspace_id: str, cycle_start: int) -> AlertsView:
        try:
            crossings, deliveries = source.alerts(workspace_id, cycle_start)
        except (NotServed, SourceUnavailable) as exc:
            return AlertsView(False, str(exc))
        return AlertsView(True, "", timeline(crossings, deliveries))

    @app.exception_handler(SourceUnavailable)
    async def unavailable(request: Request, exc: SourceUnavailable) -> Response:
        if request.url.path.startswith("/api/") or request.url.path.endswith(".csv"):
            return JSONResponse({"error": "store unavailable", "detail": str(exc)},
                                status_code=503)
        return problem("Usage data unavailable", str(exc), 503)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> Response:
        if request.url.path.startswith("/api/") or request.url.path.endswith(".csv"):
            return JSONResponse({"error": "bad request", "detail": str(exc)}, status_code=400)
        return problem("Bad request", str(exc), 400)

    @app.exception_handler(CycleNotFound)
    async def not_found(request: Request, exc: CycleNotFound) -> Response:
        if request.url.path.startswith("/api/") or request.url.path.endswith(".csv"):
            return JSONResponse({"error": "not found", "detail": str(exc)}, status_code=404)
        return problem("Not found", str(exc), 404)

    @app.get("/", response_class=HTMLResponse)
    def index(page: int = Query(1, ge=1)) -> HTMLResponse:
        now = clock_ms()
        try:
            listed = source.workspaces(PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
        except NotServed as exc:
            return html(index_page(IndexView([], now, source.description,
                                             f"Workspace list unavailable: {exc}. "
                                             "Open a workspace by its id.")))
        rows = []
        for workspace_id, _ in listed[:PAGE_SIZE]:
            found = source.history(workspace_id, 1)
            rows.append(WorkspaceRow(workspace_id, found[0] if found else None))
        return html(index_page(IndexView(rows, now, source.description, page=page,
                                         more=len(listed) > PAGE_SIZE)))

    @app.get("/workspace", response_class=HTMLResponse)
    def workspace(request: Request,
                  workspace_id: str = Query(..., alias="id", min_length=1),
                  cycle: str | None = None, metric: str = "ai_tokens") -> HTMLResponse:
        ws = workspace_id
        history = source.history(ws, HISTORY_CYCLES)
        if not history:
            return problem("No usage yet", f"No usage is recorded for workspace {ws!r}.", 404)
        selected = history[-1]
        if cycle is not None:
            start = _start(cycle)
            match = [c for c in history if parse_time(str(c["cycle_start"])) == start]
            selected = match[0] if match else source.cycle(ws, start)
        is_current = selected["cycle_start"] == history[-1]["cycle_start"]
        metric = metric if metric in HISTORY_METRICS else "ai_tokens"
        sorts: Mapping[str, str | None] = {
            t: request.query_params.get(f"sort_{t}") for t in TABLES
            if request.query_params.get(f"sort_{t}")}
        view = WorkspaceView(
            ws, selected, history,
            decisions_for(ws) if is_current else Decisions.unavailable("an earlier cycle"),
            alerts_for(ws, parse_time(str(selected["cycle_start"]))),
            clock_ms(), source.description, sorts, metric)
        return html(workspace_page(view))

    @app.get("/export.csv")
    def export(workspace: str = Query(..., min_length=1), cycle: str | None = None,
               cycles: int = HISTORY_CYCLES) -> Response:
        start = _start(cycle) if cycle is not None else None
        text = source.csv(workspace, cycles=_cycles(cycles), cycle_start=start)
        name = _filename(workspace, str(cycle)) if cycle else _filename(
            workspace, f"last-{cycles}-cycles")
        return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/v1/workspaces")
    def api_workspaces(page: int = Query(1, ge=1)) -> JSONResponse:
        try:
            listed = source.workspaces(PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
        except NotServed as exc:
            return JSONResponse({"error": "not served", "detail": str(exc)}, status_code=501)
        return JSONResponse({
            "workspaces": [{"workspace_id": w, "cycle_start": iso(s)}
                           for w, s in listed[:PAGE_SIZE]],
            "next_page": page + 1 if len(listed) > PAGE_SIZE else None,
        })

    @app.get("/api/v1/history")
    def api_history(workspace: str = Query(..., min_length=1),
                    cycles: int = HISTORY_CYCLES) -> JSONResponse:
        return JSONResponse({"workspace_id": workspace,
                             "cycles": source.history(workspace, _cycles(cycles))})

    def one_cycle(workspace: str, cycle: str | None) -> dict[str, Any]:
        if cycle is not None:
            return source.cycle(workspace, _start(cycle))
        found = source.history(workspace, 1)
        if not found:
            raise CycleNotFound(f"no usage is recorded for workspace {workspace!r}")
        return found[0]

    @app.get("/api/v1/cycle")
    def api_cycle(workspace: str = Query(..., min_length=1),
                  cycle: str | None = None) -> JSONResponse:
        return JSONResponse(one_cycle(workspace, cycle))

    @app.get("/api/v1/usage.json")
    def api_usage(workspace: str = Query(..., min_length=1), cycle: str | None = None,
                  cycles: int = HISTORY_CYCLES) -> JSONResponse:
        chosen = ([one_cycle(workspace, cycle)] if cycle is not None
                  else source.history(workspace, _cycles(cycles)))
        return JSONResponse(usage_document(workspace, chosen))

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in static:
            return Response(b"not found\n", status_code=404, media_type="text/plain")
        return Response(static[name], media_type=_STATIC[name],
                        headers={"Cache-Control": "public, max-age=300"})

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(static["favicon.svg"], media_type=_STATIC["favicon.svg"])

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "alive", "source": source.description}

    return app
