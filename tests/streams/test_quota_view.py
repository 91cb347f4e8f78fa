"""The embedded ``QuotaView`` and the HTTP check API give the same answers.

Both read a generated ``quota.state`` from the real broker (written in a transaction, as
the worker writes it), each with its own consumer: every quota kind at 79/80/99/100/101 %
of its limit, checked fresh, in a new cycle with no events yet, and stale under the
fail-open and the fail-closed policy, plus an unknown workspace. The batch route answers
each item as the single route does, and one bad item never fails the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from groundwork.settings import Settings, StalePolicy
from schemas.codec import encode_record
from schemas.events import QUOTAS
from schemas.jsonl import parse_line
from streams.api import create_api
from streams.quota_view import HARD_QUOTAS, QuotaView, UnknownWorkspace
from streams.state_view import HEARTBEAT_KEY_PREFIX, heartbeat_record
from tests.meter.transactions import Item, TransactionalWriter
from tests.streams.harness import event_line, usage_lines
from tests.waiting import wait_until

pytestmark = pytest.mark.kafka

TOKEN = "view-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = 1_772_532_030_000  # 2026-03-03T10:00:30Z, inside the March cycle
APRIL = 1_775_044_800_000  # 2026-04-01T12:00:00Z: the next cycle, no events in it yet
LIMIT = 100
PERCENTS = (79, 80, 99, 100, 101)
AT_LIMIT = {"machines": "reject", "ai_tokens": "reject", "storage_bytes": "prune",
            "schedule_runs": "queue", "api_requests_per_minute": "throttle",
            "api_requests_per_cycle": "reject"}


def _state(workspace: str, quota: str, used: int) -> dict[str, Any]:
    from streams.core.meter import WorkspaceMeter

    meter = WorkspaceMeter(workspace)
    plan = event_line(type="plan", event_id="p", workspace_id=workspace,
                      occurred_at="2026-03-01T00:00:00Z", plan="team",
                      cycle_anchor="2026-03-01T00:00:00Z", timezone="UTC",
                      limits={q: LIMIT for q in QUOTAS}, owners=["ops@example.com"])
    for raw in [plan, *usage_lines(workspace, quota, used, "2026-03-03T10:00:10Z")]:
        meter.apply(parse_line(raw, now_ms=None))
    return meter.quota_state_record(NOW)


def _workspaces() -> dict[str, tuple[str, int]]:
    return {f"w-{quota}-{percent}": (quota, percent * LIMIT // 100)
            for quota in QUOTAS for percent in PERCENTS}


@pytest.fixture(scope="module")
def clock() -> list[int]:
    return [NOW]


@pytest.fixture
def published(meter_settings: Settings) -> Settings:
    writer = TransactionalWriter(meter_settings, "quota.state")
    items: list[Item] = [(None, ws.encode(), encode_record("quota.state", _state(ws, quota, used)))
             for ws, (quota, used) in _workspaces().items()]
    # a worker heartbeat in April keeps the view fresh for the rollover checks
    items.append((0, HEARTBEAT_KEY_PREFIX + b"w1",
                  encode_record("quota.state", heartbeat_record("w1", 1, APRIL))))
    writer.commit(items)
    return meter_settings


Pair = tuple[QuotaView, TestClient]


@pytest.fixture
def pairs(published: Settings, clock: list[int]) -> Iterator[dict[str, Pair]]:
    """Per stale policy: an embedded view and an HTTP API, each reading the topic itself."""
    made: dict[str, Pair] = {}
    try:
        for policy in ("fail_open", "fail_closed"):
            settings = published.model_copy(update={
                "api_token": SecretStr(TOKEN), "api_stale_after_s": 30,
                "api_stale_policy": StalePolicy(policy)})
            view = QuotaView(settings, clock_ms=lambda: clock[0]).start()
            client = TestClient(create_api(settings, clock_ms=lambda: clock[0]))
            client.__enter__()
            made[policy] = (view, client)
        for view, client in made.values():
            assert view.wait_ready(30)
            _wait_http_ready(client)
            assert len(view) == len(_workspaces())
        yield made
    finally:
        for view, client in made.values():
            client.__exit__(None, None, None)
            view.stop()


def _wait_http_ready(client: TestClient) -> None:
    wait_until(lambda: client.get("/readyz").status_code == 200, "the API's view to get ready",
               timeout_s=30)


def _embedded(view: QuotaView, check: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    try:
        answer = view.check(check["workspace_id"], check["quota"], check.get("amount", 1),
                            check.get("machine_id"))
    except UnknownWorkspace as exc:
        return 404, {"error": "unknown_workspace", "detail": str(exc)}
    return 200, answer.to_json()


def _checks() -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for ws in _workspaces():
        for quota in QUOTAS:
            checks.append({"workspace_id": ws, "quota": quota})
            checks.append({"workspace_id": ws, "quota": quota, "amount": 0})
            checks.append({"workspace_id": ws, "quota": quota, "amount": 25})
        checks.append({"workspace_id": ws, "quota": "machines", "machine_id": "box0"})
        checks.append({"workspace_id": ws, "quota": "machines", "machine_id": "box-new"})
    checks.append({"workspace_id": "nobody", "quota": "ai_tokens"})
    return checks


def _compare(view: QuotaView, client: TestClient) -> dict[tuple[str, str, int, str | None],
                                                         dict[str, Any]]:
    """Every check through the view, the single route and the batch route: equal."""
    checks = _checks()
    answers = {}
    for check in checks:
        status, embedded = _embedded(view, check)
        response = client.post("/v1/check", json=check, headers=AUTH)
        assert (response.status_code, response.json()) == (status, embedded), check
        answers[(check["workspace_id"], check["quota"], check.get("amount", 1),
                 check.get("machine_id"))] = embedded
    for start in range(0, len(checks), 100):
        chunk = checks[start:start + 100]
        batch = client.post("/v1/check/batch", json={"items": chunk}, headers=AUTH)
        assert batch.status_code == 200
        assert batch.json()["results"] == [_embedded(view, c)[1] for c in chunk]
    return answers


def test_fresh_answers_are_equal_and_follow_s11(pairs: dict[str, Pair],
                                                clock: list[int]) -> None:
    clock[0] = NOW
    for view, client in pairs.values():
        answers = _compare(view, client)
        for ws, (quota, used) in _workspaces().items():
            answer = answers[(ws, quota, 1, None)]
            assert answer["decision"] == ("allow" if used + 1 <= LIMIT else AT_LIMIT[quota])
            assert (answer["used"], answer["limit"], answer["stale"]) == (used, LIMIT, False)
        assert answers[("nobody", "ai_tokens", 1, None)]["error"] == "unknown_workspace"
        assert view.as_of == APRIL and not view.stale


def test_a_new_cycle_with_no_events_is_answered_the_same(pairs: dict[str, Pair],
                                                         clock: list[int]) -> None:
    clock[0] = APRIL + 10_000
    for view, client in pairs.values():
        answers = _compare(view, client)
        for ws, (quota, used) in _workspaces().items():
            answer = answers[(ws, quota, 1, None)]
            carried = quota in ("machines", "storage_bytes")  # gauges carry, counters restart
            assert answer["used"] == (used if carried else 0), (ws, answer)
            assert answer["resets_at"] in ("2026-05-01T00:00:00Z", "2026-04-01T12:01:00Z")


@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
def test_a_stale_view_is_answered_the_same_by_policy(pairs: dict[str, Pair], clock: list[int],
                                                     policy: str) -> None:
    clock[0] = APRIL + 3_600_000
    view, client = pairs[policy]
    assert view.stale
    answers = _compare(view, client)
    for (_, quota, _amount, machine_id), answer in answers.items():
        if "error" in answer:
            continue
        assert answer["stale"] is True
        if quota in HARD_QUOTAS and machine_id is None:
            assert answer["decision"] == ("allow" if policy == "fail_open" else "reject"), answer


def test_a_batch_answers_each_item_and_a_bad_item_never_fails_the_call(
        pairs: dict[str, Pair], clock: list[int]) -> None:
    clock[0] = NOW
    _, client = pairs["fail_open"]
    items: list[Any] = [
        {"workspace_id": "w-ai_tokens-100", "quota": "ai_tokens"},
        {"workspace_id": "w-ai_tokens-100", "quota": "gpu_minutes"},
        {"workspace_id": "nobody", "quota": "ai_tokens"},
        {"workspace_id": "w-ai_tokens-79", "quota": "ai_tokens", "amount": -3},
        "not an object",
        {"quota": "ai_tokens"},
        {"workspace_id": "w-ai_tokens-79", "quota": "ai_tokens", "amount": "many"},
        {"workspace_id": "w-ai_tokens-79", "quota": "ai_tokens", "amount": 21},
    ]
    response = client.post("/v1/check/batch", json={"items": items}, headers=AUTH)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == len(items)
    assert results[0]["decision"] == "reject"
    assert results[7]["decision"] == "allow"
    assert [r.get("error") for r in results[1:7]] == [
        "malformed_request", "unknown_workspace", "malformed_request", "malformed_request",
        "malformed_request", "malformed_request"]
    assert "quota" in results[1]["detail"] and "amount" in results[3]["detail"]
    assert "workspace_id" in results[5]["detail"] and "amount" in results[6]["detail"]
    # only a body that is not a list of at most 100 checks fails the call
    too_many = client.post("/v1/check/batch", headers=AUTH,
                           json={"items": [items[0]] * 101})
    not_a_list = client.post("/v1/check/batch", headers=AUTH, json={"items": "x"})
    assert (too_many.status_code, not_a_list.status_code) == (422, 422)
    assert "at most 100" in too_many.json()["detail"]
