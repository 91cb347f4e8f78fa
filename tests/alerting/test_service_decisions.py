"""``AlertService``'s delivery decisions without a broker: crossings and delivery records
in memory (``tests/alerting/memory.py``), a clock the test moves, and the real edges
people see: an SMTP server (aiosmtpd) and HTTP receivers on 127.0.0.1.

The same decisions on a real broker, with restarts and rebalances: ``test_consumer.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from alerting.retry import RetryPolicy, classify_http
from groundwork.settings import Settings, load_settings
from schemas.events import Mute
from tests.alerting.factories import crossing, forecast_alert
from tests.alerting.kafka_helpers import (
    alert_config,
    done,
    metrics_text,
    plan_item,
    serving,
    settings_item,
    statuses,
)
from tests.alerting.memory import MemoryCrossings, MemoryEdges
from tests.alerting.receivers import Script, SmtpSink, WebhookReceiver
from tests.waiting import wait_until_async

SECRET = "whsec_" + base64.b64encode(b"decisions-test-secret-00001").decode()
OWNERS = ["owner1@example.com", "owner2@example.com"]
CHANNELS = ("email", "slack", "webhook")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a service whose Kafka edge is in memory (no broker is asked)."""
    return load_settings(data_dir=tmp_path / "data", topic_prefix="decisions.")


@contextlib.asynccontextmanager
async def three_channels(settings: Settings
                         ) -> AsyncIterator[tuple[SmtpSink, WebhookReceiver, MemoryEdges]]:
    """An SMTP server, an HTTP receiver whose ``hook`` checks signatures with ``SECRET``,
    and in-memory edges holding w1's plan (its owners get the emails)."""
    with SmtpSink() as smtp:
        async with WebhookReceiver() as rx:
            rx.scripts["hook"] = Script(secret=SECRET)
            edges = MemoryEdges(settings)
            edges.publish("quota.plans", *plan_item("w1", OWNERS))
            yield smtp, rx, edges


def waiting(edges: MemoryEdges, seconds: float) -> Callable[[], bool]:
    """The service is asleep on the clock, ``seconds`` from waking (and nothing else is)."""
    return lambda: edges.clock.waiting() == [seconds]


def configure(edges: MemoryEdges, workspace: str, **fields: Any) -> None:
    edges.publish("alerting.settings", *settings_item(workspace, **fields))


def test_a_crossing_is_delivered_to_each_configured_channel_once(settings: Settings) -> None:
    async def scenario() -> None:
        async with three_channels(settings) as (smtp, rx, edges):
            configure(edges, "w1", slack=rx.url("slack"), webhook=rx.url("hook"),
                      secret=SECRET)
            c = crossing(95, workspace="w1")
            config = alert_config(settings, smtp.port, metrics_port=0)
            async with serving(edges.service(config)) as service:
                edges.crossings.publish([c])
                await wait_until_async(lambda: done(service, c.alert_id, *CHANNELS),
                                       "three outcomes")
                metrics = await metrics_text(service)
            [(rcpt, message)] = smtp.messages
            assert rcpt == OWNERS and "95 %" in message["Subject"]
            assert len(rx.ok("slack")) == 1
            [hook] = rx.ok("hook")
            assert hook.verified and hook.webhook_id == c.alert_id
            records = edges.deliveries()
            for channel in CHANNELS:
                assert statuses(records, c.alert_id, channel) == ["attempted#1",
                                                                  "delivered#1"]
            assert 'meter_alert_deliveries_total{channel="email",outcome="delivered"} 1' \
                in metrics
            assert edges.crossings.committed == {0: 1}  # the stop committed past it
    asyncio.run(scenario())


def test_a_muted_quota_is_recorded_muted_and_not_sent(settings: Settings) -> None:
    async def scenario() -> None:
        async with three_channels(settings) as (smtp, rx, edges):
            configure(edges, "w1", slack=rx.url("slack"), webhook=rx.url("hook"),
                      secret=SECRET, muted=[Mute("ai_tokens", None)])
            muted = crossing(95, workspace="w1", quota="ai_tokens", event_id="e1")
            heard = crossing(80, workspace="w1", quota="machines", event_id="e2")
            async with serving(edges.service(alert_config(settings, smtp.port))) as service:
                edges.crossings.publish([muted, heard])
                await wait_until_async(
                    lambda: done(service, muted.alert_id, *CHANNELS)
                    and done(service, heard.alert_id, *CHANNELS), "six outcomes")
            records = edges.deliveries()
            for channel in CHANNELS:
                assert statuses(records, muted.alert_id, channel) == ["muted#0"]
                assert statuses(records, heard.alert_id, channel) == ["attempted#1",
                                                                      "delivered#1"]
            assert [m["X-Meter-Alert-Id"] for _, m in smtp.messages] == [heard.alert_id]
            assert [r.webhook_id for r in rx.ok("hook")] == [heard.alert_id]
            assert [json.loads(r.body)["blocks"] != [] for r in rx.ok("slack")] == [True]
    asyncio.run(scenario())


def test_a_redelivered_crossing_is_sent_once(settings: Settings) -> None:
    """The same alert id consumed again: in the same run, and by a new consumer that
    reads the topic from the beginning (its ledger is rebuilt from the records)."""
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            rx.scripts["hook"] = Script(secret=SECRET)
            edges = MemoryEdges(settings)
            configure(edges, "w1", email=False, webhook=rx.url("hook"), secret=SECRET)
            c = crossing(80, workspace="w1")
            config = alert_config(settings, 1)
            async with serving(edges.service(config)) as first:
                edges.crossings.publish([c, c])
                await wait_until_async(lambda: first.metrics.crossings_consumed == 2
                                       and first.offsets.pending() == 0, "both copies finished")
            edges.crossings = MemoryCrossings()  # a new group: nothing committed
            edges.crossings.publish([c])
            async with serving(edges.service(config)) as again:
                await wait_until_async(lambda: again.metrics.crossings_consumed == 1
                                       and again.offsets.pending() == 0, "the copy re-read")
                assert sum(again.metrics.attempts.values()) == 0
            assert [r.webhook_id for r in rx.received] == [c.alert_id]
            assert statuses(edges.deliveries(), c.alert_id, "webhook") == ["attempted#1",
                                                                           "delivered#1"]
    asyncio.run(scenario())


@pytest.mark.parametrize(("script", "max_attempts", "expected"), [
    (Script(fail_first=2, fail_status=503), 4,
     ["attempted#1", "retrying#1", "attempted#2", "retrying#2", "attempted#3", "delivered#3"]),
    (Script(fail_first=1, fail_status=429, retry_after="7"), 4,
     ["attempted#1", "retrying#1", "attempted#2", "delivered#2"]),
    (Script(fail_first=99, fail_status=500), 3,
     ["attempted#1", "retrying#1", "attempted#2", "retrying#2", "attempted#3", "failed#3"]),
], ids=["503-twice", "429-retry-after", "gives-up"])
def test_a_failing_webhook_is_retried_after_the_policys_waits(
        settings: Settings, script: Script, max_attempts: int, expected: list[str]) -> None:
    jitter = 0.5

    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            rx.scripts["hook"] = Script(fail_first=script.fail_first,
                                        fail_status=script.fail_status,
                                        retry_after=script.retry_after, secret=SECRET)
            edges = MemoryEdges(settings)
            configure(edges, "w1", email=False, webhook=rx.url("hook"), secret=SECRET)
            c = crossing(80, workspace="w1")
            config = alert_config(settings, 1, max_attempts=max_attempts,
                                  backoff_base_s=1.0, backoff_max_s=60.0,
                                  retry_after_max_s=300.0)
            policy = RetryPolicy(max_attempts, 1.0, 60.0, 300.0)
            failure = classify_http(script.fail_status, script.retry_after, 0)
            retries = min(script.fail_first, max_attempts - 1)
            # 503: 0.75 s then 1.5 s (half the ceiling plus half of the half);
            # 429 with Retry-After 7: 7 s
            waits = [policy.delay(n, failure, jitter) for n in range(1, retries + 1)]
            async with serving(edges.service(config, jitter=jitter)) as service:
                edges.crossings.publish([c])
                for attempt, wait in enumerate(waits, start=1):
                    await wait_until_async(waiting(edges, wait),
                                           f"the wait after attempt {attempt}")
                    edges.clock.advance(wait / 2)
                    assert edges.clock.waiting() == [wait / 2]  # still waiting
                    assert len(rx.received) == attempt  # and nothing sent meanwhile
                    edges.clock.advance(wait / 2)
                await wait_until_async(lambda: done(service, c.alert_id, "webhook"),
                                       "an outcome")
            assert len(rx.received) == retries + 1
            records = [r for r in edges.deliveries() if r["channel"] == "webhook"]
            assert statuses(records, c.alert_id, "webhook") == expected
            announced = [r["detail"] for r in records if r["status"] == "retrying"]
            assert announced == [f"HTTP {script.fail_status}: no; next attempt in {w:.2f} s"
                                 for w in waits]
            if expected[-1].startswith("failed"):
                assert records[-1]["detail"] == (f"HTTP {script.fail_status}: no; gave up "
                                                 f"after attempt {max_attempts}")
    asyncio.run(scenario())


def test_a_forecast_has_its_own_mute(settings: Settings) -> None:
    async def scenario() -> None:
        with SmtpSink() as smtp:
            async with WebhookReceiver() as rx:
                for hook in ("w1", "w2"):
                    rx.scripts[hook] = Script(secret=SECRET)
                edges = MemoryEdges(settings)
                edges.publish("quota.plans", *plan_item("w1", OWNERS))
                # w1 mutes every ai_tokens threshold: not its forecast
                configure(edges, "w1", webhook=rx.url("w1"), secret=SECRET,
                          muted=[Mute("ai_tokens", None)])
                # w2 mutes the ai_tokens forecast: not its thresholds
                configure(edges, "w2", email=False, webhook=rx.url("w2"), secret=SECRET,
                          muted_forecasts=["ai_tokens"])
                forecast1, forecast2 = forecast_alert(workspace="w1"), forecast_alert(
                    workspace="w2")
                threshold1, threshold2 = crossing(95, workspace="w1"), crossing(95,
                                                                                workspace="w2")
                async with serving(edges.service(alert_config(settings, smtp.port))) as service:
                    edges.crossings.publish([forecast1, threshold1, forecast2, threshold2])
                    await wait_until_async(
                        lambda: done(service, forecast1.alert_id, "email", "webhook")
                        and done(service, threshold1.alert_id, "email", "webhook")
                        and done(service, forecast2.alert_id, "webhook")
                        and done(service, threshold2.alert_id, "webhook"),
                        "six outcomes")
                records = edges.deliveries()
                for channel in ("email", "webhook"):
                    assert statuses(records, forecast1.alert_id, channel) == [
                        "attempted#1", "delivered#1"]
                    assert statuses(records, threshold1.alert_id, channel) == ["muted#0"]
                assert statuses(records, forecast2.alert_id, "webhook") == ["muted#0"]
                assert statuses(records, threshold2.alert_id, "webhook") == [
                    "attempted#1", "delivered#1"]
                [hook1] = rx.ok("w1")
                body = json.loads(hook1.body)
                assert hook1.webhook_id == forecast1.alert_id
                assert (body["kind"], body["forecast_at"]) == ("forecast", "2025-01-29T00:00:00Z")
                [(_, message)] = smtp.messages
                assert "on pace to reach the limit" in message["Subject"]
                assert [r.webhook_id for r in rx.ok("w2")] == [threshold2.alert_id]
    asyncio.run(scenario())

