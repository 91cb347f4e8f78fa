"""`meter alerts` end to end on a real broker, SMTP server and HTTP receivers."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from groundwork.settings import Settings
from schemas.codec import encode_record
from schemas.events import Mute
from streams.core.quotas import ThresholdCrossing as Crossing
from tests.alerting.factories import crossing, event_crossings, forecast_alert
from tests.alerting.kafka_helpers import (
    alert_config,
    done,
    metrics_text,
    publish,
    publish_crossings,
    publish_plan,
    publish_settings,
    read_deliveries,
    running,
    settings_item,
    statuses,
)
from tests.alerting.receivers import Script, SmtpSink, WebhookReceiver
from tests.meter.transactions import Item, TransactionalWriter
from tests.waiting import wait_until_async

pytestmark = pytest.mark.kafka

SECRET = "whsec_" + base64.b64encode(b"consumer-test-secret-000001").decode()
OWNERS = ["owner1@example.com", "owner2@example.com"]


def test_a_crossing_is_emailed_to_owners_posted_to_slack_and_sent_as_signed_webhook(
        meter_settings: Settings) -> None:
    async def scenario() -> None:
        with SmtpSink() as smtp:
            async with WebhookReceiver() as rx:
                rx.scripts["hook"] = Script(secret=SECRET)
                publish_plan(meter_settings, "w1", OWNERS)
                publish_settings(meter_settings, "w1", slack=rx.url("slack"),
                                 webhook=rx.url("hook"), secret=SECRET)
                c = crossing(95, workspace="w1")
                async with running(alert_config(meter_settings, smtp.port)) as service:
                    publish_crossings(meter_settings, [c])
                    await wait_until_async(
                        lambda: done(service, c.alert_id, "email", "slack", "webhook"),
                        "three deliveries")
                    metrics = await metrics_text(service)
                [(rcpt, message)] = smtp.messages
                assert rcpt == OWNERS and "95 %" in message["Subject"]
                [slack] = rx.ok("slack")
                assert "blocks" in json.loads(slack.body)
                [hook] = rx.ok("hook")
                assert hook.verified and hook.webhook_id == c.alert_id
                records = read_deliveries(meter_settings)
                for channel in ("email", "slack", "webhook"):
                    assert statuses(records, c.alert_id, channel) == ["attempted#1", "delivered#1"]
                webhook_target = {r["target"] for r in records if r["channel"] == "webhook"}
                assert webhook_target == {rx.url("hook")}
                assert 'meter_alert_deliveries_total{channel="webhook",outcome="delivered"} 1' \
                    in metrics
                assert "meter_alert_retry_queue_depth 0" in metrics
    asyncio.run(scenario())


@pytest.mark.parametrize(("script", "expected"), [
    (Script(fail_first=2, fail_status=503),
     ["attempted#1", "retrying#1", "attempted#2", "retrying#2", "attempted#3", "delivered#3"]),
    (Script(fail_first=1, fail_status=429, retry_after="1"),
     ["attempted#1", "retrying#1", "attempted#2", "delivered#2"]),
    (Script(fail_first=1, fail_status=400), ["attempted#1", "failed#1"]),
    (Script(fail_first=99, fail_status=500),
     ["attempted#1", "retrying#1", "attempted#2", "retrying#2", "attempted#3", "retrying#3",
      "attempted#4", "failed#4"]),
], ids=["503-twice", "429-retry-after", "400-no-retry", "gives-up"])
def test_retries_follow_the_policy_and_every_step_is_recorded(
        meter_settings: Settings, script: Script, expected: list[str]) -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            rx.scripts["hook"] = script
            publish_settings(meter_settings, "w1", email=False, webhook=rx.url("hook"),
                             secret=SECRET)
            c = crossing(80, workspace="w1")
            async with running(alert_config(meter_settings, 1)) as service:
                publish_crossings(meter_settings, [c])
                await wait_until_async(lambda: done(service, c.alert_id, "webhook"), "an outcome")
            records = read_deliveries(meter_settings)
            assert statuses(records, c.alert_id, "webhook") == expected
            final = [r for r in records if r["status"] in ("failed", "delivered")][-1]
            if final["status"] == "failed":
                assert f"HTTP {script.fail_status}" in final["detail"]
            if script.retry_after:
                retrying = next(r for r in records if r["status"] == "retrying")
                assert "next attempt in 1.00 s" in retrying["detail"]
    asyncio.run(scenario())


def test_mutes_apply_first_and_only_the_highest_unmuted_threshold_is_sent(
        meter_settings: Settings) -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            rx.scripts["hook"] = Script(secret=SECRET)
            publish_settings(meter_settings, "w1", email=False, webhook=rx.url("hook"),
                             secret=SECRET, muted=[Mute("ai_tokens", 100)])
            group = event_crossings(80, 95, 100, workspace="w1", event_id="jump")
            alone = crossing(80, workspace="w1", quota="machines", event_id="m1")
            async with running(alert_config(meter_settings, 1)) as service:
                publish_crossings(meter_settings, [*group, alone])
                await wait_until_async(lambda: all(done(service, c.alert_id, "webhook")
                                                   for c in [*group, alone]), "four outcomes")
            sent = sorted(json.loads(r.body)["alert_id"] for r in rx.ok("hook"))
            assert sent == sorted([group[1].alert_id, alone.alert_id])
            records = read_deliveries(meter_settings)
            assert statuses(records, group[0].alert_id, "webhook") == ["superseded#0"]
            assert statuses(records, group[2].alert_id, "webhook") == ["muted#0"]
    asyncio.run(scenario())


def test_a_forecast_is_delivered_signed_with_forecast_at_and_has_its_own_mute(
        meter_settings: Settings) -> None:
    async def scenario() -> None:
        with SmtpSink() as smtp:
            async with WebhookReceiver() as rx:
                for hook in ("w1", "w2"):
                    rx.scripts[hook] = Script(secret=SECRET)
                publish_plan(meter_settings, "w1", OWNERS)
                # w1 mutes every ai_tokens threshold: not its forecast
                publish_settings(meter_settings, "w1", webhook=rx.url("w1"), secret=SECRET,
                                 muted=[Mute("ai_tokens", None)])
                # w2 mutes the ai_tokens forecast: not its thresholds
                publish_settings(meter_settings, "w2", email=False, webhook=rx.url("w2"),
                                 secret=SECRET, muted_forecasts=["ai_tokens"])
                forecast1 = forecast_alert(workspace="w1")
                forecast2 = forecast_alert(workspace="w2")
                threshold2 = crossing(95, workspace="w2")
                async with running(alert_config(meter_settings, smtp.port)) as service:
                    publish_crossings(meter_settings, [forecast1, forecast2, threshold2])
                    await wait_until_async(
                        lambda: done(service, forecast1.alert_id, "email", "webhook")
                        and done(service, forecast2.alert_id, "webhook")
                        and done(service, threshold2.alert_id, "webhook"), "four outcomes")
                [sent1] = rx.ok("w1")
                assert sent1.verified and sent1.webhook_id == forecast1.alert_id
                body = json.loads(sent1.body)
                assert (body["kind"], body["forecast_at"]) == ("forecast", "2025-01-29T00:00:00Z")
                [(rcpt, message)] = smtp.messages
                assert rcpt == OWNERS and "on pace to reach the limit" in message["Subject"]
                [sent2] = rx.ok("w2")
                assert sent2.verified and sent2.webhook_id == threshold2.alert_id
                records = read_deliveries(meter_settings)
                assert statuses(records, forecast1.alert_id, "webhook") == [
                    "attempted#1", "delivered#1"]
                assert statuses(records, forecast2.alert_id, "webhook") == ["muted#0"]
                assert statuses(records, threshold2.alert_id, "webhook") == [
                    "attempted#1", "delivered#1"]
    asyncio.run(scenario())


def test_unsafe_or_invalid_urls_are_refused_and_recorded(meter_settings: Settings) -> None:
    async def scenario() -> None:
        publish(meter_settings, "alerting.settings", [
            settings_item("plain-http", email=False, webhook="http://hooks.example.com/x?token=abc",
                          secret=SECRET),
            settings_item("private", email=False, slack="https://10.0.0.8/services/T/B/C"),
            settings_item("garbage", email=False, webhook="not a url", secret=SECRET)])
        cs = [crossing(80, workspace=w) for w in ("plain-http", "private", "garbage")]
        async with running(alert_config(meter_settings, 1)) as service:
            publish_crossings(meter_settings, cs)
            await wait_until_async(lambda: done(service, cs[0].alert_id, "webhook")
                                   and done(service, cs[1].alert_id, "slack")
                                   and done(service, cs[2].alert_id, "webhook"), "three refusals")
        records = {r["workspace_id"]: r for r in read_deliveries(meter_settings)}
        assert records["plain-http"]["status"] == "failed"
        assert "must use https" in records["plain-http"]["detail"]
        assert records["plain-http"]["target"] == "http://hooks.example.com/x"
        assert "private" in records["private"]["detail"]
        assert records["private"]["target"] == "https://10.0.0.8/…"
        assert "scheme must be https" in records["garbage"]["detail"]
    asyncio.run(scenario())


def test_settings_changes_apply_while_running(meter_settings: Settings) -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            publish_settings(meter_settings, "w1", email=False, webhook=rx.url("old"),
                             secret=SECRET)
            first, second = crossing(80, workspace="w1"), crossing(95, workspace="w1")
            async with running(alert_config(meter_settings, 1)) as service:
                publish_crossings(meter_settings, [first])
                await wait_until_async(lambda: done(service, first.alert_id, "webhook"), "first")
                seen = service.directory.updates
                publish_settings(meter_settings, "w1", email=False, webhook=rx.url("new"),
                                 secret=SECRET)
                await wait_until_async(lambda: service.directory.updates > seen, "settings update")
                publish_crossings(meter_settings, [second])
                await wait_until_async(lambda: done(service, second.alert_id, "webhook"), "second")
            assert [r.webhook_id for r in rx.ok("old")] == [first.alert_id]
            assert [r.webhook_id for r in rx.ok("new")] == [second.alert_id]
    asyncio.run(scenario())


def test_crossings_of_an_aborted_transaction_are_never_delivered(
        meter_settings: Settings) -> None:
    """The worker writes crossings in transactions: the consumer reads committed ones only."""
    def item(c: Crossing) -> Item:
        return None, c.workspace_id.encode(), encode_record("quota.thresholds", c._asdict())

    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            publish_settings(meter_settings, "w1", email=False, webhook=rx.url("hook"),
                             secret=SECRET)
            aborted = crossing(80, workspace="w1", event_id="e1")
            kept = crossing(95, workspace="w1", event_id="e2")
            writer = TransactionalWriter(meter_settings, "quota.thresholds")
            writer.abort([item(aborted)])
            writer.commit([item(kept)])  # same key, same partition: after the aborted one
            async with running(alert_config(meter_settings, 1)) as service:
                await wait_until_async(lambda: done(service, kept.alert_id, "webhook"),
                                       "the commit")
            assert _delivered_ids(rx, "hook") == [kept.alert_id]
            records = read_deliveries(meter_settings)
            assert {r["alert_id"] for r in records} == {kept.alert_id}
    asyncio.run(scenario())


def test_a_slow_endpoint_does_not_hold_up_other_workspaces(meter_settings: Settings) -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            rx.scripts["slow"] = Script(delay_s=3.0)
            publish_settings(meter_settings, "slow-ws", email=False, webhook=rx.url("slow"),
                             secret=SECRET)
            fast = [f"fast-{i}" for i in range(5)]
            publish(meter_settings, "alerting.settings", [
                settings_item(ws, email=False, webhook=rx.url(ws), secret=SECRET) for ws in fast])
            slow_c = crossing(80, workspace="slow-ws")
            fast_cs = [crossing(80, workspace=ws) for ws in fast]
            config = alert_config(meter_settings, 1, timeout_s=0.5, max_attempts=2)
            async with running(config) as service:
                publish_crossings(meter_settings, [slow_c, *fast_cs])
                await wait_until_async(
                    lambda: all(done(service, c.alert_id, "webhook") for c in fast_cs),
                    "the fast workspaces")
                # the slow one is still retrying its timeouts when the others are all delivered
                assert not done(service, slow_c.alert_id, "webhook")
                await wait_until_async(lambda: done(service, slow_c.alert_id, "webhook"),
                                       "slow outcome")
            records = read_deliveries(meter_settings)
            assert statuses(records, slow_c.alert_id, "webhook")[-1] == "failed#2"
            assert "timed out" in [r for r in records if r["alert_id"] == slow_c.alert_id
                                   ][-1]["detail"]
    asyncio.run(scenario())


def slow_webhooks(settings: Settings, rx: WebhookReceiver, prefix: str, n: int) -> list[str]:
    """``n`` workspaces, each with its own webhook answering after 0.3 s: deliveries are
    in flight when a consumer stops or a partition moves."""
    workspaces = [f"{prefix}{i}" for i in range(n)]
    for ws in workspaces:
        rx.scripts[ws] = Script(delay_s=0.3, secret=SECRET)
    publish(settings, "alerting.settings", [
        settings_item(ws, email=False, webhook=rx.url(ws), secret=SECRET)
        for ws in workspaces])
    return workspaces


def _delivered_ids(rx: WebhookReceiver, path: str) -> list[str]:
    return [r.webhook_id for r in rx.ok(path)]


@pytest.mark.parametrize("crash", [False, True], ids=["graceful-restart", "crash-restart"])
def test_restart_in_the_middle_of_deliveries_loses_nothing(meter_settings: Settings,
                                                           crash: bool) -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            workspaces = slow_webhooks(meter_settings, rx, "r", 12)
            cs = [crossing(t, workspace=ws, event_id=f"e{t}") for ws in workspaces
                  for t in (80, 95, 100)]
            config = alert_config(meter_settings, 1)
            async with running(config) as first:
                publish_crossings(meter_settings, cs)
                await wait_until_async(lambda: len(rx.received) >= 6, "some deliveries")
                if crash:
                    await first.abort()
            before = len(rx.received)
            async with running(config) as second:
                await wait_until_async(lambda: all(done(second, c.alert_id, "webhook") for c in cs),
                                       "every crossing after the restart")
            assert len(rx.received) > before  # the second consumer had work left
            ids = [r.webhook_id for r in rx.received if r.status < 300]
            assert set(ids) == {c.alert_id for c in cs}  # nothing lost
            records = read_deliveries(meter_settings)
            repeats = {i for i in ids if ids.count(i) > 1}
            if not crash:
                assert repeats == set()
            for alert_id in repeats:  # only the documented window, and recorded as such
                history = [r for r in records if r["alert_id"] == alert_id]
                assert any(r["detail"] and r["detail"].startswith("resent:") for r in history)
            for c in cs:
                assert [s for s in statuses(records, c.alert_id, "webhook")
                        if s.startswith("delivered")] != []
    asyncio.run(scenario())


def test_a_new_consumer_rebuilds_what_was_delivered_and_sends_nothing_again(
        meter_settings: Settings) -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            publish_settings(meter_settings, "w1", email=False, webhook=rx.url("hook"),
                             secret=SECRET)
            cs = [crossing(80, workspace="w1", event_id="a"),
                  crossing(95, workspace="w1", event_id="b")]
            async with running(alert_config(meter_settings, 1)) as service:
                publish_crossings(meter_settings, cs)
                await wait_until_async(
                    lambda: all(done(service, c.alert_id, "webhook") for c in cs),
                    "both delivered")
            # another group reads quota.thresholds from the beginning again
            async with running(alert_config(meter_settings, 1)) as again:
                await wait_until_async(lambda: again.offsets.to_commit() != {} or
                                       again.metrics.crossings_consumed >= 2, "re-read")
                await wait_until_async(lambda: again.offsets.pending() == 0, "all finished")
            assert sorted(_delivered_ids(rx, "hook")) == sorted(c.alert_id for c in cs)
    asyncio.run(scenario())



def test_a_rebalance_moves_workspaces_without_repeats_or_losses(meter_settings: Settings) -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as rx:
            workspaces = slow_webhooks(meter_settings, rx, "b", 8)
            cs = [crossing(t, workspace=ws, event_id=f"e{t}.{arm}", arm=arm)
                  for ws in workspaces for arm in (1, 2, 3) for t in (80, 95, 100)]
            config = alert_config(meter_settings, 1)
            async with running(config) as first:
                publish_crossings(meter_settings, cs)
                await wait_until_async(lambda: len(rx.received) >= 8, "some deliveries")
                async with running(config) as second:  # joins the group: partitions move
                    await wait_until_async(lambda: bool(second.assigned),
                                           "a partition for the newcomer")
                    await wait_until_async(
                        lambda: {r.webhook_id for r in rx.received if r.status < 300}
                        >= {c.alert_id for c in cs}
                        and first.offsets.pending() == 0
                        and second.offsets.pending() == 0, "everything delivered")
                    moved = sum(second.metrics.attempts.values())
            assert moved > 0  # the newcomer delivered some workspaces' crossings
            ids = [r.webhook_id for r in rx.received if r.status < 300]
            assert sorted(ids) == sorted(c.alert_id for c in cs)  # each exactly once
    asyncio.run(scenario())
