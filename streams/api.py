"""The check API for gateways: ``meter api``.

Answers from an in-memory view of the compacted ``quota.state`` topic
(``QuotaStateView``) with the core's pure enforcement rules (S11), for the cycle
that contains *now*. Every answer carries ``as_of`` (when the workspace's record
was produced) and ``stale``; when the view is older than ``METER_API_STALE_AFTER_S``
hard quotas answer by ``METER_API_STALE_POLICY`` (fail_open or fail_closed).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meter.settings import Settings, StalePolicy
from schemas.events import QUOTAS
from streams.core.enforcement import Decision as CoreDecision
from streams.core.enforcement import decide_from_state
from streams.core.forecast import COUNTER_QUOTAS, forecast
from streams.core.quotas import DECISION_AT_LIMIT
from streams.core.timefmt import utc_text
from streams.state_view import QuotaStateView

QuotaName = Literal[
    "machines", "ai_tokens", "storage_bytes", "schedule_runs",
    "api_requests_per_minute", "api_requests_per_cycle",
]
assert set(QuotaName.__args__) == set(QUOTAS)  # type: ignore[attr-defined]

# Quotas whose limit rejects (S11); a stale view changes only their answers.
HARD_QUOTAS = frozenset(q for q, d in zip(QUOTAS, DECISION_AT_LIMIT, strict=True) if d == "reject")


def decide_all(record: dict[str, Any], now_ms: int) -> list[CoreDecision]:
    """Every quota's decision for one more unit, in QUOTAS order."""
    return [decide_from_state(record, now_ms, quota) for quota in QUOTAS]


def forecast_view(answer: CoreDecision, now_ms: int) -> dict[str, Any] | None:
    """A counter quota's forecast in the quota listing (None for gauges and the rate)."""
    if answer.quota not in COUNTER_QUOTAS:
        return None
    f = forecast(answer.used, answer.limit, answer.cycle_start, answer.cycle_ends_at, now_ms)
    return {"status": f.status, "projected": f.projected,
            "exhausted_at": None if f.exhausted_at is None else utc_text(f.exhausted_at)}


class CheckRequest(BaseModel):
    workspace_id: str = Field(min_length=1, description="the workspace asking")
    quota: QuotaName
    amount: int = Field(default=1, ge=0, description="units the call would use")
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


class QuotaView(BaseModel):
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
    quotas: list[QuotaView]


class ApiError(BaseModel):
    error: str
    detail: str


class ApiMetrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency_sum_s = 0.0

    def render(self, view: QuotaStateView) -> str:
        lines = ["# HELP meter_api_requests_total Requests answered, by route and status",
                 "# TYPE meter_api_requests_total counter"]
        for (route, status), n in sorted(self.requests.items()):
            lines.append(f'meter_api_requests_total{{route="{route}",status="{status}"}} {n}')
        lines += ["# TYPE meter_api_request_seconds_sum counter",
                  f"meter_api_request_seconds_sum {self.latency_sum_s:.6f}",
                  "# TYPE meter_api_workspaces gauge", f"meter_api_workspaces {len(view)}",
                  "# TYPE meter_api_view_newest_ms gauge",
                  f"meter_api_view_newest_ms {view.newest_seen_ms}"]
        return "\n".join(lines) + "\n"


class AuthAndMetrics:
    """Bearer auth for every /v1 route, and request counts and time, as a plain ASGI
    middleware: Starlette's ``@app.middleware("http")`` runs each request through an
    extra task and memory stream, which was a good part of the check API's latency."""

    def __init__(self, app: ASGIApp, token: bytes | None, metrics: ApiMetrics) -> None:
        self.app, self.token, self.metrics = app, token, metrics

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

        refused = self._refusal(scope) if scope["path"].startswith("/v1/") else None
        if refused is not None:
            await refused(scope, receive, send_and_note)
        else:
            await self.app(scope, receive, send_and_note)
        route = scope.get("route")  # set by the router on the same scope
        key = (getattr(route, "path", "unmatched"), status)
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


def _json(body: dict[str, Any]) -> Response:
    # returned as is: FastAPI would otherwise validate and serialize it again through
    # the response model (which still documents it in the OpenAPI document)
    return Response(orjson.dumps(body), media_type="application/json")


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def create_api(settings: Settings, view: QuotaStateView | None = None,
               clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> FastAPI:
    """The FastAPI app; ``view`` defaults to one reading ``quota.state`` from Kafka."""
    state_view = view if view is not None else QuotaStateView(settings)
    token = settings.api_token.get_secret_value().encode() if settings.api_token else None
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if view is None:
            state_view.start()
        yield
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

    api.add_middleware(AuthAndMetrics, token=token, metrics=metrics)

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

    def stale_now(now_ms: int) -> bool:
        return now_ms - state_view.newest_seen_ms > settings.api_stale_after_s * 1000

    @api.get("/v1/workspaces/{workspace_id}/quotas", response_model=WorkspaceQuotas,
             responses={404: {"model": ApiError}})
    async def workspace_quotas(workspace_id: str) -> Any:
        record = state_view.get(workspace_id)
        if record is None:
            return _error(404, "unknown_workspace",
                          f"no usage or plan is known for workspace {workspace_id!r}")
        now_ms = clock_ms()
        stale = stale_now(now_ms)
        answers = decide_all(record, now_ms)
        return _json({
            "workspace_id": workspace_id, "plan": record["plan"],
            "cycle_start": utc_text(answers[0].cycle_start),
            "cycle_ends_at": utc_text(answers[0].cycle_ends_at),
            "as_of": utc_text(record["as_of"]), "stale": stale,
            "quotas": [
                {"quota": a.quota, "used": a.used, "limit": a.limit, "percent": a.percent,
                 "decision": _apply_stale_policy(settings, a.quota, a.decision, stale),
                 "resets_at": utc_text(a.resets_at), "cycle_ends_at": utc_text(a.cycle_ends_at),
                 "reason": a.reason, "forecast": forecast_view(a, now_ms)}
                for a in answers
            ],
        })

    @api.post("/v1/check", response_model=Decision, responses={404: {"model": ApiError}})
    async def check(body: CheckRequest) -> Any:
        record = state_view.get(body.workspace_id)
        if record is None:
            return _error(404, "unknown_workspace",
                          f"no usage or plan is known for workspace {body.workspace_id!r}")
        now_ms = clock_ms()
        stale = stale_now(now_ms)
        answer = decide_from_state(record, now_ms, body.quota, body.amount, body.machine_id)
        decision = _apply_stale_policy(settings, body.quota, answer.decision, stale)
        reason = answer.reason
        if decision != answer.decision:
            reason = (f"the usage view is older than {settings.api_stale_after_s:g} s; "
                      f"{settings.api_stale_policy.value} policy: {decision}")
        return _json({"decision": decision, "used": answer.used, "limit": answer.limit,
                      "percent": answer.percent, "resets_at": utc_text(answer.resets_at),
                      "reason": reason, "as_of": utc_text(record["as_of"]), "stale": stale})

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
        return PlainTextResponse(metrics.render(state_view))

    return api


def _apply_stale_policy(settings: Settings, quota: str, decision: str, stale: bool) -> str:
    """A stale view changes hard quotas' answers only (S11's reject quotas)."""
    if not stale or quota not in HARD_QUOTAS:
        return decision
    return "allow" if settings.api_stale_policy is StalePolicy.FAIL_OPEN else "reject"


def serve(settings: Settings) -> None:
    import uvicorn

    from meter.errors import UserError

    if settings.api_token is None:
        raise UserError("METER_API_TOKEN is not set: the check API requires a bearer token. "
                        "Set it (e.g. METER_API_TOKEN=$(openssl rand -hex 24)) and retry.")
    uvicorn.run(create_api(settings), host=settings.api_host, port=settings.api_port,
                log_level="warning", access_log=False)
