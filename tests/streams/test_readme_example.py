"""The README's gateway example (``QuotaGate``, ASGI middleware over an embedded
``QuotaView``) runs as printed, against the real broker.

The code block is taken from README.md and executed unchanged, with its settings from
``METER_*`` as the README says; the test supplies only the ``gateway_app`` it wraps.
``quota.state`` holds, for the current cycle, a workspace over its AI-token limit and
one under it, written in a transaction as the worker writes it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from groundwork.settings import Settings, get_settings
from schemas.codec import encode_record
from schemas.events import QUOTAS
from schemas.jsonl import parse_line
from streams.core.timefmt import utc_text
from tests.meter.transactions import TransactionalWriter
from tests.streams.harness import event_line, usage_lines

pytestmark = pytest.mark.kafka

README = Path(__file__).resolve().parents[2] / "README.md"
LIMIT = 1_000


def readme_gateway_example() -> str:
    """The Python block of README.md that defines ``QuotaGate``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (block,) = [b for b in blocks if "class QuotaGate" in b]
    return str(block)


def state_now(workspace: str, ai_tokens: int, now_ms: int) -> dict[str, Any]:
    """The ``quota.state`` record of a workspace on a plan since this month's start that
    used ``ai_tokens`` just now."""
    from streams.core.meter import WorkspaceMeter

    now = time.gmtime(now_ms / 1000)
    month_start = f"{now.tm_year:04d}-{now.tm_mon:02d}-01T00:00:00Z"
    meter = WorkspaceMeter(workspace)
    plan = event_line(type="plan", event_id="p", workspace_id=workspace,
                      occurred_at=month_start, plan="team", cycle_anchor=month_start,
                      timezone="UTC", limits={q: LIMIT for q in QUOTAS},
                      owners=["ops@example.com"])
    for raw in [plan, *usage_lines(workspace, "ai_tokens", ai_tokens, utc_text(now_ms))]:
        meter.apply(parse_line(raw, now_ms=None))
    return meter.quota_state_record(now_ms)


@pytest.fixture
def environment(meter_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``METER_*`` for the example's ``QuotaView()``: this test's broker and topics."""
    monkeypatch.setenv("METER_KAFKA_BOOTSTRAP", meter_settings.kafka_bootstrap)
    monkeypatch.setenv("METER_TOPIC_PREFIX", meter_settings.topic_prefix)
    monkeypatch.setenv("METER_DATA_DIR", str(meter_settings.data_dir))
    get_settings.cache_clear()
    now_ms = int(time.time() * 1000)
    TransactionalWriter(meter_settings, "quota.state").commit([
        (None, ws.encode(), encode_record("quota.state", state_now(ws, used, now_ms)))
        for ws, used in (("w-over", LIMIT + 1), ("w-under", LIMIT // 2))])
    yield
    get_settings.cache_clear()


async def gateway_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The application behind the gate: answers 200 "served"."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})


def test_the_readme_gateway_refuses_a_workspace_out_of_ai_tokens_and_serves_the_rest(
        environment: None) -> None:
    example: dict[str, Any] = {"gateway_app": gateway_app}
    exec(compile(readme_gateway_example(), str(README), "exec"), example)
    view = example["view"]
    try:
        assert view.ready  # the example waited for the view to load
        assert view.settings.topic_prefix == get_settings().topic_prefix

        async def post(headers: dict[str, str]) -> httpx.Response:
            transport = httpx.ASGITransport(app=example["app"])
            async with httpx.AsyncClient(transport=transport, base_url="http://gate") as http:
                return await http.post("/v1/chat", headers=headers, content=b"{}")

        over = asyncio.run(post({"x-workspace-id": "w-over"}))
        assert over.status_code == 429
        assert over.text == view.check("w-over", "ai_tokens", amount=1).reason
        assert over.text  # the reason says why
        for headers in ({"x-workspace-id": "w-under"},  # under its limit
                        {"x-workspace-id": "w-nobody"},  # no plan known yet: let through
                        {}):  # no workspace named: not the gate's business
            served = asyncio.run(post(headers))
            assert (served.status_code, served.text) == (200, "served"), headers
    finally:
        view.stop()
