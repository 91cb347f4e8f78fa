"""The check API for gateways: ``meter api``.

Answers from an in-memory view of the compacted ``quota.state`` topic
(``QuotaStateView``) with the core's pure enforcement rules (S11), for the cycle
that contains *now*. Every answer carries ``as_of`` (when the workspace's record
was produced) and ``stale``; when the view is older than ``METER_API_STALE_AFTER_S``
hard quotas answer by ``METER_API_STALE_POLICY`` (fail_open or fail_closed).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from groundwork.settings import Settings, get_settings
from schemas.quotas import QuotaName
from streams.check_routes import MAX_AMOUNT, MAX_BATCH, MAX_BODY_BYTES, answer_batch, answer_check
from streams.heap import HeapPolicy
from streams.quota_view import QuotaView, UnknownWorkspace, wall_clock_ms
from streams.state_view import QuotaStateView

HEAP_TICK_S: Final = 2.0  # how often the GC policy runs between requests

# A hot route: request body in, (status, JSON body) out.
HotRoute = Callable[[bytes], tuple[int, bytes]]


class CheckRequest(BaseModel):
    workspace_id: str = Field(min_length=1, description="the workspace asking")
    quota: QuotaName
    amount: int = Field(default=1, ge=0, le=MAX_AMOUNT,
                        description="units the call would use")
    machine_id: str | None = Field(
        default=None, min_length=1,
        description="machines quota: the machine registering (a registered id is always allowed)",
    )


class Decision(BaseModel):
    decision: Literal["allow", "reject", "queue", "throttle", "prune"]
    used: int
    limit: int | None
    percent: int | None
    resets_at: str
    reason: str
    as_of: str
    stale: bool


class ForecastView(BaseModel):
    status: Literal["ok", "reached", "insufficient_data", "unlimited"]
    projected: int | None = Field(description="usage at cycle end at this pace")
    exhausted_at: str | None = Field(
        description="when 100 % is reached at this pace; null: not this cycle")


class QuotaAnswer(BaseModel):
    quota: QuotaName
    used: int
    limit: int | None
    percent: int | None
    decision: Literal["allow", "reject", "queue", "throttle", "prune"]
    resets_at: str
    cycle_ends_at: str
    reason: str
    forecast: ForecastView | None = Field(
        default=None, description="counter quotas only (streams/core/forecast.py)")


class WorkspaceQuotas(BaseModel):
    workspace_id: str
    plan: str | None
    cycle_start: str
    cycle_ends_at: str
    as_of: str
    stale: bool
    quotas: list[QuotaAnswer]


class ApiError(BaseModel):
    error: str
    detail: str


class BatchAnswer(BaseModel):
    results: list[Decision | ApiError] = Field(
        description="one answer per item, in order: a decision, or an error for that item "
                    "alone (malformed_request, unknown_workspace)")


BATCH_REQUEST_SCHEMA: dict[str, Any] = {
    "title": "BatchRequest", "type": "object", "required": ["items"],
    "properties": {"items": {
        "type": "array", "maxItems": MAX_BATCH,
        # any JSON: an item that is not a CheckRequest gets its own error, not the call
        "description": f"up to {MAX_BATCH} checks, each a CheckRequest as for POST /v1/check",
        "items": {}}}}


class ApiMetrics(Collector):
    """Requests by route and status and their time, bumped per request as plain numbers;
    a prometheus_client collector over them and the view, in a registry of its own."""

    def __init__(self, view: QuotaStateView) -> None:
        self.view = view
        self.requests: dict[tuple[str, int], int] = {}
        self.latency_sum_s = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("meter_api_requests_total",
                                       "Requests answered, by route and status",
                                       labels=["route", "status"])
        for (route, status), n in sorted(self.requests.items()):
            requests.add_metric([route, str(status)], n)
        yield requests
        # a summary keeps the sample's name, meter_api_request_seconds_sum, and adds _count
        yield SummaryMetricFamily("meter_api_request_seconds", "Time answering requests",
                                  count_value=sum(self.requests.values()),
                                  sum_value=self.latency_sum_s)
        yield GaugeMetricFamily("meter_api_workspaces", "Workspaces in the view",
                                value=len(self.view))
        yield GaugeMetricFamily("meter_api_view_newest_ms",
                                "Newest quota.state record or heartbeat seen (ms)",
                                value=self.view.newest_seen_ms)

    def render(self) -> str:
        """The Prometheus text exposition of this API's registry."""
        return generate_latest(self.registry).decode()


class AuthAndMetrics:
    """Bearer auth for every /v1 route, and request counts and time, as a plain ASGI
    middleware: Starlette's ``@app.middleware("http")`` runs each request through an
    extra task and memory stream, which was a good part of the check API's latency."""

    def __init__(self, app: ASGIApp, token: bytes | None, metrics: ApiMetrics,
                 hot_routes: dict[str, HotRoute]) -> None:
        self.app, self.token, self.metrics = app, token, metrics
        self.hot_routes = hot_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        path = scope["path"]
        refused = self._refusal(scope) if path.startswith("/v1/") else None
        hot = self.hot_routes.get(path) if scope["method"] == "POST" else None
        if refused is not None:
            await refused(scope, receive, send_and_note)
            route_path = "unmatched"
        elif hot is not None:
            # answered here, without routing, dependencies or model validation
            status, body = hot(await _read_body(receive))
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            route_path = path
        else:
            await self.app(scope, receive, send_and_note)
            route = scope.get("route")  # set by the router on the same scope
            route_path = getattr(route, "path", "unmatched")
        key = (route_path, status)
        self.metrics.requests[key] = self.metrics.requests.get(key, 0) + 1
        self.metrics.latency_sum_s += time.perf_counter() - started

    def _refusal(self, scope: Scope) -> Response | None:
        if self.token is None:
            return _error(401, "unauthorized",
                          "the API has no token configured; set METER_API_TOKEN")
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credential, self.token):
            return _error(401, "unauthorized",
                          "send `Authorization: Bearer <token>` with the API token",
                          {"WWW-Authenticate": "Bearer"})
        return None


async def _keep_collections_short() -> None:
    """The worker's GC policy (streams/heap.py), ticked on the event loop between
    requests: the view's thousands of workspaces are long-lived, and each full collection
    that scanned them stopped every request in flight (the check's p99 tail)."""
    policy = HeapPolicy(time.monotonic())
    while True:
        await asyncio.sleep(HEAP_TICK_S)
        policy.tick(time.monotonic())


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False) or sum(map(len, chunks)) > MAX_BODY_BYTES:
            return b"".join(chunks)


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _raw(answer: tuple[int, bytes]) -> Response:
    return Response(answer[1], status_code=answer[0], media_type="application/json")


def _body_doc(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


def create_api(settings: Settings, view: QuotaStateView | None = None,
               clock_ms: Callable[[], int] = wall_clock_ms) -> FastAPI:
    """The FastAPI app; ``view`` defaults to one reading ``quota.state`` from Kafka."""
    state_view = view if view is not None else QuotaStateView(settings)
    quota_view = QuotaView(settings, state_view=state_view, clock_ms=clock_ms)
    token = settings.api_token.get_secret_value().encode() if settings.api_token else None
    metrics = ApiMetrics(state_view)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if view is None:
            state_view.start()
        heap = asyncio.create_task(_keep_collections_short())
        yield
        heap.cancel()
        if view is None:
            state_view.stop()

    api = FastAPI(
        title="workspace-meter check API",
        version="1",
        description="Quota decisions for gateways. Every route under /v1 needs "
                    "`Authorization: Bearer <METER_API_TOKEN>`.",
        lifespan=lifespan,
        responses={401: {"model": ApiError}, 422: {"model": ApiError}},
    )

    hot_routes: dict[str, HotRoute] = {
        "/v1/check": lambda body: answer_check(quota_view, body),
        "/v1/check/batch": lambda body: answer_batch(quota_view, body),
    }
    api.add_middleware(AuthAndMetrics, token=token, metrics=metrics, hot_routes=hot_routes)

    @api.exception_handler(RequestValidationError)
    async def malformed(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        return _error(422, "malformed_request", problems)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI could not parse the body (e.g. not UTF-8)
            return _error(422, "malformed_request", f"body: {exc.detail}")
        slug = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return _error(exc.status_code, slug, str(exc.detail),
                      dict(exc.headers) if exc.headers else None)

    @api.get("/v1/workspaces/{workspace_id}/quotas", response_model=WorkspaceQuotas,
             responses={404: {"model": ApiError}})
    async def workspace_quotas(workspace_id: str) -> Any:
        try:
            answers = quota_view.workspace(workspace_id)
        except UnknownWorkspace as exc:
            return _error(404, "unknown_workspace", str(exc))
        return Response(orjson.dumps(answers.to_json()), media_type="application/json")

    # The two check routes are answered by AuthAndMetrics before routing (hot_routes);
    # these handlers document them and answer the same way should a request reach them.
    @api.post("/v1/check", response_model=Decision, responses={404: {"model": ApiError}},
              openapi_extra=_body_doc(CheckRequest.model_json_schema()))
    async def check(request: Request) -> Any:
        return _raw(answer_check(quota_view, await request.body()))

    @api.post("/v1/check/batch", response_model=BatchAnswer,
              openapi_extra=_body_doc(BATCH_REQUEST_SCHEMA))
    async def check_batch(request: Request) -> Any:
        return _raw(answer_batch(quota_view, await request.body()))

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @api.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ready = state_view.ready
        return JSONResponse({"ready": ready, "workspaces": len(state_view)},
                            status_code=200 if ready else 503)

    @api.get("/metrics", include_in_schema=False)
    async def metrics_page() -> Response:
        return PlainTextResponse(metrics.render())

    return api


def app_from_environment() -> FastAPI:
    """The app of one ``meter api`` worker process, with settings from the environment."""
    return create_api(get_settings())


def serve(settings: Settings) -> None:
    """Serve the check API; with ``METER_API_WORKERS`` > 1, that many processes share the
    port (uvicorn's workers), each with its own whole view of ``quota.state``."""
    import uvicorn

    from groundwork.errors import UserError

    if settings.api_token is None:
        raise UserError("METER_API_TOKEN is not set: the check API requires a bearer token. "
                        "Set it (e.g. METER_API_TOKEN=$(openssl rand -hex 24)) and retry.")
    if settings.api_workers > 1:
        uvicorn.run("streams.api:app_from_environment", factory=True,
                    workers=settings.api_workers, host=settings.api_host,
                    port=settings.api_port, log_level="warning", access_log=False)
    else:
        uvicorn.run(create_api(settings), host=settings.api_host, port=settings.api_port,
                    log_level="warning", access_log=False)
