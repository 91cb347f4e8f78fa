"""Hypothesis against the check API (FastAPI TestClient, the real app and view): arbitrary
JSON bodies, paths and headers never get a 5xx; and schemathesis, from the OpenAPI
document: every answer has a documented status and matches its schema. Extends
tests/streams/test_api.py, which covers the documented 401/404/422 cases one by one."""

from __future__ import annotations

import json
from typing import Any

import orjson
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groundwork.settings import load_settings
from schemas.codec import encode_record
from schemas.jsonl import parse_line
from streams.api import create_api
from streams.core.meter import WorkspaceMeter
from streams.state_view import QuotaStateView

TOKEN = "fuzz-token"
NOW = 1_772_532_030_000


def _client() -> TestClient:
    meter = WorkspaceMeter("wa")
    meter.apply(parse_line(orjson.dumps({
        "type": "plan", "event_id": "p", "workspace_id": "wa",
        "occurred_at": "2026-03-01T00:00:00Z", "plan": "team",
        "cycle_anchor": "2026-03-01T00:00:00Z", "timezone": "UTC",
        "limits": {"ai_tokens": 100, "machines": 2}, "owners": ["o@wa.example"]}), now_ms=None))
    view = QuotaStateView(load_settings(api_token=TOKEN))
    view.apply(b"wa", encode_record("quota.state", meter.quota_state_record(NOW)))
    return TestClient(create_api(load_settings(api_token=TOKEN), view=view,
                                 clock_ms=lambda: NOW), raise_server_exceptions=False)


CLIENT = _client()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
quota = st.sampled_from(["ai_tokens", "machines", "storage_bytes", "schedule_runs",
                         "api_requests_per_minute", "api_requests_per_cycle", "", "x"])
check_bodies = st.fixed_dictionaries({}, optional={
    "workspace_id": st.one_of(st.just("wa"), st.text(), json_values),
    "quota": st.one_of(quota, json_values),
    "amount": st.one_of(st.integers(), st.floats(), json_values),
    "machine_id": st.one_of(st.text(), json_values)})
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(check_bodies, json_values), auth=st.booleans())
def test_any_json_body_on_check_gets_no_5xx(body: Any, auth: bool) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
    resp = CLIENT.post("/v1/check", content=json.dumps(body),
                       headers={**headers, "Content-Type": "application/json"})
    assert resp.status_code < 500, (body, resp.text)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200), ctype=header_text)
def test_any_bytes_and_content_type_get_no_5xx(raw: bytes, ctype: str) -> None:
    resp = CLIENT.post("/v1/check", content=raw,
                       headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": ctype})
    assert resp.status_code < 500, (raw, ctype, resp.text)


@settings(max_examples=300, deadline=None)
@given(path=st.text(max_size=60), auth=header_text, method=st.sampled_from(["GET", "POST"]))
def test_any_path_and_authorization_header_get_no_5xx(path: str, auth: str, method: str) -> None:
    from urllib.parse import quote

    resp = CLIENT.request(method, "/v1/workspaces/" + quote(path, safe="") + "/quotas",
                          headers={"Authorization": auth})
    assert resp.status_code < 500, (path, auth, resp.text)
    resp = CLIENT.request(method, "/" + quote(path, safe="/"),
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code < 500, (path, resp.text)


# Schemathesis: cases generated from the OpenAPI document itself, each response checked
# against it (status documented, body matching its schema, no 5xx).
API_SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", CLIENT.app)


@API_SCHEMA.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_documented_route_answers_as_its_openapi_document_says(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
