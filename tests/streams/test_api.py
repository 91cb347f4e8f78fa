"""The check API: S11 decisions over HTTP, auth, errors, staleness, and the real topic."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from groundwork.ports import free_port
from groundwork.settings import Settings, load_settings
from schemas.codec import encode_record
from schemas.jsonl import parse_line
from streams.api import create_api
from streams.core.meter import WorkspaceMeter
from streams.state_view import HEARTBEAT_KEY_PREFIX, QuotaStateView, heartbeat_record
from tests.streams.harness import (
    event_line,
    publish_lines,
    running_worker,
    usage_lines,
    wait_caught_up,
)

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = 1_772_532_030_000  # 2026-03-03T10:00:30Z, inside the cycle of the events below
MINUTE = "2026-03-03T10:00:10Z"
LIMIT = 100


def _plan() -> bytes:
    return event_line(type="plan", event_id="p", workspace_id="wa",
                      occurred_at="2026-03-01T00:00:00Z", plan="team",
                      cycle_anchor="2026-03-01T00:00:00Z", timezone="UTC",
                      limits={q: LIMIT for q in ("machines", "ai_tokens", "storage_bytes",
                                                 "schedule_runs", "api_requests_per_minute",
                                                 "api_requests_per_cycle")},
                      owners=["ops@wa.example"])


def _state_record(quota: str, used: int) -> dict[str, Any]:
    meter = WorkspaceMeter("wa")
    for raw in [_plan(), *usage_lines("wa", quota, used, MINUTE)]:
        meter.apply(parse_line(raw, now_ms=None))
    return meter.quota_state_record(NOW)


def _client(records: list[dict[str, Any]], settings: Settings | None = None,
            now_ms: int = NOW) -> TestClient:
    settings = settings or load_settings(api_token=TOKEN)
    view = QuotaStateView(settings)
    for record in records:
        view.apply(record["workspace_id"].encode(), encode_record("quota.state", record))
    return TestClient(create_api(settings, view=view, clock_ms=lambda: now_ms))


EXPECTED_AT_LIMIT = {
    "machines": "reject", "ai_tokens": "reject", "storage_bytes": "prune",
    "schedule_runs": "queue", "api_requests_per_minute": "throttle",
    "api_requests_per_cycle": "reject",
}


@pytest.mark.parametrize("quota", list(EXPECTED_AT_LIMIT))
@pytest.mark.parametrize("percent", [79, 80, 99, 100, 101])
def test_check_decides_per_quota_kind_around_the_limit(quota: str, percent: int) -> None:
    """S11: allowed while used + amount <= limit, else the quota's own decision."""
    used = percent * LIMIT // 100
    with _client([_state_record(quota, used)]) as client:
        answer = client.post("/v1/check", json={"workspace_id": "wa", "quota": quota},
                             headers=AUTH).json()
    expected = "allow" if used + 1 <= LIMIT else EXPECTED_AT_LIMIT[quota]
    assert answer["decision"] == expected, answer
    assert answer["used"] == used
    assert answer["limit"] == LIMIT
    assert answer["percent"] == used * 100 // LIMIT
    assert answer["reason"]
    if quota == "api_requests_per_minute":
        assert answer["resets_at"] == "2026-03-03T10:01:00Z"  # the next minute
    else:
        assert answer["resets_at"] == "2026-04-01T00:00:00Z"  # the cycle's end


def test_a_registered_machine_is_allowed_at_the_limit_and_a_new_one_is_not() -> None:
    with _client([_state_record("machines", LIMIT)]) as client:
        known = client.post("/v1/check", headers=AUTH, json={
            "workspace_id": "wa", "quota": "machines", "machine_id": "box7"}).json()
        new = client.post("/v1/check", headers=AUTH, json={
            "workspace_id": "wa", "quota": "machines", "machine_id": "box-new"}).json()
    assert known["decision"] == "allow"
    assert new["decision"] == "reject"


def test_workspace_quotas_lists_every_quota_with_decision_and_cycle_end() -> None:
    with _client([_state_record("ai_tokens", 100)]) as client:
        body = client.get("/v1/workspaces/wa/quotas", headers=AUTH).json()
    quotas = {q["quota"]: q for q in body["quotas"]}
    assert set(quotas) == set(EXPECTED_AT_LIMIT)
    assert quotas["ai_tokens"]["decision"] == "reject"
    assert quotas["schedule_runs"]["decision"] == "allow"
    assert all(q["cycle_ends_at"] == "2026-04-01T00:00:00Z" for q in body["quotas"])
    assert body["as_of"] == "2026-03-03T10:00:30Z"


def test_a_new_cycle_without_events_shows_counters_at_zero_and_gauges_carried() -> None:
    records = [_state_record("ai_tokens", 100)]
    machines = _state_record("machines", 3)
    records[0]["machine_ids"] = machines["machine_ids"]
    records[0]["quotas"] = [q if q["quota"] != "machines" else
                            next(m for m in machines["quotas"] if m["quota"] == "machines")
                            for q in records[0]["quotas"]]
    april = 1_775_044_800_000  # 2026-04-01T12:00:00Z
    with _client(records, now_ms=april) as client:
        body = client.get("/v1/workspaces/wa/quotas", headers=AUTH).json()
    quotas = {q["quota"]: q for q in body["quotas"]}
    assert body["cycle_start"] == "2026-04-01T00:00:00Z"
    assert quotas["ai_tokens"]["used"] == 0
    assert quotas["ai_tokens"]["decision"] == "allow"
    assert quotas["machines"]["used"] == 3


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {TOKEN}"}])
def test_requests_without_a_valid_token_get_401_with_a_message(headers: dict[str, str]) -> None:
    with _client([_state_record("ai_tokens", 1)]) as client:
        response = client.post("/v1/check", json={"workspace_id": "wa", "quota": "ai_tokens"},
                               headers=headers)
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_an_unknown_workspace_gets_404() -> None:
    with _client([_state_record("ai_tokens", 1)]) as client:
        check = client.post("/v1/check", json={"workspace_id": "nope", "quota": "ai_tokens"},
                            headers=AUTH)
        listing = client.get("/v1/workspaces/nope/quotas", headers=AUTH)
    assert check.status_code == listing.status_code == 404
    assert "nope" in check.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"quota": "ai_tokens"}, "workspace_id"),
    ({"workspace_id": "wa", "quota": "gpu_minutes"}, "quota"),
    ({"workspace_id": "wa", "quota": "ai_tokens", "amount": -1}, "amount"),
    ({"workspace_id": "wa", "quota": "ai_tokens", "amount": "many"}, "amount"),
    ({"workspace_id": "", "quota": "ai_tokens"}, "workspace_id"),
])
def test_malformed_bodies_get_422_naming_the_field(body: dict[str, Any], field: str) -> None:
    with _client([_state_record("ai_tokens", 1)]) as client:
        response = client.post("/v1/check", json=body, headers=AUTH)
    assert response.status_code == 422
    assert field in response.json()["detail"]


def test_a_body_that_is_not_json_gets_422() -> None:
    with _client([_state_record("ai_tokens", 1)]) as client:
        response = client.post("/v1/check", content=b"{not json", headers={
            **AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422


def test_a_body_that_is_not_utf8_gets_422_in_the_api_error_format() -> None:
    # found by schemathesis: FastAPI answered 400 {"detail": ...}, undocumented
    with _client([_state_record("ai_tokens", 1)]) as client:
        response = client.post("/v1/check", content=b"B\xff\x17", headers={
            **AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == "malformed_request"


def test_an_unknown_route_gets_404_in_the_api_error_format() -> None:
    with _client([]) as client:
        response = client.get("/v1/nowhere", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found"}


@pytest.mark.parametrize("policy, expected", [("fail_open", "allow"), ("fail_closed", "reject")])
def test_a_stale_view_answers_hard_quotas_by_the_policy(policy: str, expected: str) -> None:
    settings = load_settings(api_token=TOKEN, api_stale_after_s=30, api_stale_policy=policy)
    an_hour_later = NOW + 3_600_000
    record = _state_record("ai_tokens", 50)
    with _client([record], settings=settings, now_ms=an_hour_later) as client:
        hard = client.post("/v1/check", json={"workspace_id": "wa", "quota": "ai_tokens",
                                              "amount": 80}, headers=AUTH).json()
        soft = client.post("/v1/check", json={"workspace_id": "wa", "quota": "schedule_runs",
                                              "amount": 500}, headers=AUTH).json()
    assert hard["stale"] is True
    assert hard["decision"] == expected
    assert soft["decision"] == "queue"  # soft quotas keep their own answer


def test_a_heartbeat_keeps_an_idle_view_fresh() -> None:
    settings = load_settings(api_token=TOKEN, api_stale_after_s=30)
    later = NOW + 3_600_000
    view = QuotaStateView(settings)
    record = _state_record("ai_tokens", 50)
    view.apply(b"wa", encode_record("quota.state", record))
    view.apply(HEARTBEAT_KEY_PREFIX + b"w1",
               encode_record("quota.state", heartbeat_record("w1", 1, later - 1000)))
    with TestClient(create_api(settings, view=view, clock_ms=lambda: later)) as client:
        answer = client.post("/v1/check", json={"workspace_id": "wa", "quota": "ai_tokens"},
                             headers=AUTH).json()
    assert answer["stale"] is False


def test_metrics_count_requests_by_route_and_status() -> None:
    with _client([_state_record("ai_tokens", 10)]) as client:
        check = {"workspace_id": "wa", "quota": "ai_tokens"}
        assert client.post("/v1/check", json=check, headers=AUTH).status_code == 200
        assert client.post("/v1/check", json=check, headers=AUTH).status_code == 200
        assert client.post("/v1/check", json=check).status_code == 401
        assert client.get("/v1/workspaces/nobody/quotas", headers=AUTH).status_code == 404
        assert client.get("/nowhere").status_code == 404
        text = client.get("/metrics").text
    assert 'meter_api_requests_total{route="/v1/check",status="200"} 2' in text
    # refused before routing: counted, under no route
    assert 'meter_api_requests_total{route="unmatched",status="401"} 1' in text
    assert ('meter_api_requests_total{route="/v1/workspaces/{workspace_id}/quotas",'
            'status="404"} 1') in text
    assert 'meter_api_requests_total{route="unmatched",status="404"} 1' in text


def test_the_openapi_document_describes_both_routes() -> None:
    with _client([]) as client:
        spec = client.get("/openapi.json").json()
    assert {"/v1/check", "/v1/workspaces/{workspace_id}/quotas"} <= set(spec["paths"])


@pytest.fixture
def api_process(meter_settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = dict(os.environ, METER_KAFKA_BOOTSTRAP=meter_settings.kafka_bootstrap,
               METER_TOPIC_PREFIX=meter_settings.topic_prefix, METER_API_PORT=str(port),
               METER_API_TOKEN=TOKEN, METER_DATA_DIR=str(tmp_path / "api"))
    with (tmp_path / "api.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "meter.cli_entry", "api"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.kafka
def test_meter_api_answers_from_the_real_quota_state_topic(
    meter_settings: Settings, acceptance_dir: Path, tmp_path: Path, api_process: str
) -> None:
    publish_lines(meter_settings, (acceptance_dir / "jump_70_to_101" / "events.jsonl")
                  .read_bytes().splitlines())
    with running_worker(meter_settings, tmp_path / "worker.log") as proc:
        wait_caught_up(meter_settings, proc=proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            response = httpx.get(f"{api_process}/v1/workspaces/w5/quotas", headers=AUTH)
            if response.status_code == 200:
                break
            time.sleep(0.3)
    assert response.status_code == 200, response.text
    quotas = {q["quota"]: q for q in response.json()["quotas"]}
    # The events are from 2025: the cycle containing now has counters at zero.
    assert quotas["ai_tokens"]["used"] == 0
    assert quotas["ai_tokens"]["limit"] == 1000
    assert httpx.get(f"{api_process}/readyz").status_code == 200
    assert "meter_api_requests_total" in httpx.get(f"{api_process}/metrics").text


def test_the_quota_listing_forecasts_counter_quotas() -> None:
    """50 of 100 AI tokens by 2026-03-03T10:00:30Z (2 days 10 h into a March cycle): at
    that pace 100 % comes 2 days 10 h later; gauges get no forecast."""
    with _client([_state_record("ai_tokens", 50)]) as client:
        body = client.get("/v1/workspaces/wa/quotas", headers=AUTH).json()
    quotas = {q["quota"]: q for q in body["quotas"]}
    assert quotas["ai_tokens"]["forecast"] == {
        "status": "ok", "projected": 50 + 50 * (31 * 86_400 - 208_830) // 208_830,
        "exhausted_at": "2026-03-05T20:01:00Z"}
    assert quotas["schedule_runs"]["forecast"]["status"] == "insufficient_data"  # none used
    assert quotas["machines"]["forecast"] is None
    assert quotas["api_requests_per_minute"]["forecast"] is None
