"""The alerting consumer under faults: every crossing is delivered once per channel, nothing
is lost.

`meter alerts` runs as a real subprocess on the real broker and delivers to a real SMTP
server (aiosmtpd) and real Slack-like and Standard Webhooks receivers on 127.0.0.1
(allow-listed, S13). The test SIGKILLs it at random points while it delivers, and makes the
receivers refuse connections, fail, throttle and answer too late. At the end each channel
has received every due alert id exactly once by id (a receiver deduping by id sees one per
crossing and channel); repeats carry the same id and content and are explained by the
documented crash window or a timeout; every webhook signature verifies; alerting.deliveries
has the outcome of every (crossing, channel); the group's offsets are committed to the end.

Set METER_FAULT_SEED to replay one run's workload and kill points.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from groundwork.settings import Settings
from streams.core.quotas import ThresholdCrossing as Crossing
from tests.alerting.kafka_helpers import publish_crossings
from tests.faults.alert_support import (
    AlertReport,
    AlertsProcess,
    AlertWorkload,
    HttpReceiver,
    MailReceiver,
    Mode,
    analyse,
    build_workload,
    produce_events,
    wait_progress,
    wait_records,
)
from tests.waiting import wait_until_async

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _seed() -> int:
    return int(os.environ.get("METER_FAULT_SEED") or random.randrange(1 << 30))


def _distinct(mail: MailReceiver, slack: HttpReceiver, hooks: HttpReceiver) -> int:
    """Distinct (channel, alert id) pairs accepted so far."""
    return len({(h.channel, h.alert_id) for h in [*mail.hits, *slack.hits, *hooks.hits]
                if h.accepted})


def _accepted(mail: MailReceiver, slack: HttpReceiver, hooks: HttpReceiver) -> int:
    return sum(h.accepted for h in [*mail.hits, *slack.hits, *hooks.hits])


async def _outcomes_then_stop(settings: Settings, workload: AlertWorkload,
                              process: AlertsProcess) -> list[dict[str, Any]]:
    """alerting.deliveries once every (crossing, channel) has its outcome there (or the
    wait ran out: the report names what is missing); then a clean SIGTERM stop."""
    records = await wait_records(settings, list(workload.outcomes()), timeout_s=30,
                                 process=process)
    assert process.stop() == 0, "`meter alerts` did not stop cleanly on SIGTERM"
    return records


async def _leave_nothing_running(process: AlertsProcess, slack: HttpReceiver,
                                 hooks: HttpReceiver) -> None:
    """However the scenario ended: no consumer left in the group, no receiver on a port."""
    if process.proc is not None and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()
    await slack.close()
    await hooks.close()


# ---- 1. SIGKILL mid-delivery, several times --------------------------------------------------

KILLS = 4
KILL_TUNING = {
    "METER_DELIVERY_TIMEOUT_S": "5",
    "METER_DELIVERY_MAX_ATTEMPTS": "10",
    "METER_DELIVERY_BACKOFF_BASE_S": "0.2",
    "METER_DELIVERY_BACKOFF_MAX_S": "1",
    "METER_DELIVERY_RETRY_AFTER_MAX_S": "2",
    "METER_ALERTS_COLLAPSE_WAIT_S": "5",
}


Scenario = Callable[[Settings, Path, int], Coroutine[Any, Any, AlertReport]]


def _assert_exact(scenario: Scenario, settings: Settings, tmp_path: Path) -> None:
    """Run ``scenario`` with a new seed (or METER_FAULT_SEED's), print its report and check
    it: each channel got every due alert id, and no other (repeats count once)."""
    seed = _seed()
    started = time.monotonic()
    report = asyncio.run(scenario(settings, tmp_path, seed))
    report.notes.append(f"took {time.monotonic() - started:.0f} s")
    report.show()
    assert report.delivered_ids == report.expected_ids, f"seed {seed}"
    assert report.differed == [], f"seed {seed}"


def test_sigkill_mid_delivery_loses_nothing_and_repeats_keep_their_id(
        meter_settings: Settings, tmp_path: Path) -> None:
    _assert_exact(_kill_scenario, meter_settings, tmp_path)


async def _kill_scenario(settings: Settings, tmp_path: Path, seed: int) -> AlertReport:
    rng = random.Random(seed)
    workload = build_workload(rng, 12, ("ai_tokens", "schedule_runs", "api_requests_per_cycle"),
                              (1, 2), reemit=0.1)
    expected = workload.expected()
    total = sum(len(ids) for ids in expected.values())
    # slow enough receivers that every kill finds requests in flight
    with MailReceiver(delay_s=0.2) as mail:
        slack = HttpReceiver("slack", delay_s=(0.2, 0.4), seed=seed)
        hooks = HttpReceiver("webhook", {w.name: w.secret for w in workload.workspaces},
                             delay_s=(0.2, 0.4), seed=seed + 1)
        process = AlertsProcess(settings, tmp_path, mail.port, KILL_TUNING)
        kills: list[str] = []
        stalled = False
        try:
            await slack.set_mode(Mode.OK)
            await hooks.set_mode(Mode.OK)
            workload.publish_settings(settings, slack, hooks)
            half = len(workload.events) // 2
            publish_crossings(settings, [c for e in workload.events[:half] for c in e])
            process.start()
            stream = asyncio.create_task(
                produce_events(settings, workload.events[half:], batches=6, pause_s=1.0))
            for _ in range(KILLS):
                goal = _accepted(mail, slack, hooks) + rng.randint(total * 6 // 100,
                                                                   total * 12 // 100)
                if not await wait_progress(lambda: _accepted(mail, slack, hooks), goal,
                                           process):
                    stalled = True  # nothing left to deliver: the report says what is missing
                    break
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                done = _distinct(mail, slack, hooks)
                assert done < total, "the kill came after every delivery: not mid-stream"
                process.kill()
                kills.append(f"{done}/{total}")
                process.start()
            await stream
            at_last_kill = _distinct(mail, slack, hooks)
            if not stalled:
                await wait_progress(lambda: _distinct(mail, slack, hooks), total, process)
                assert _distinct(mail, slack, hooks) > at_last_kill, "the last life had no work"
            records = await _outcomes_then_stop(settings, workload, process)
        finally:
            await _leave_nothing_running(process, slack, hooks)
        hits = {"email": mail.hits, "slack": slack.hits, "webhook": hooks.hits}
    report = analyse(f"alerting: SIGKILL x{KILLS} mid-delivery (seed {seed})", workload, hits,
                     records, process, allowed_repeat_causes=("resent",))
    report.notes.append("distinct deliveries done at each kill: " + ", ".join(kills))
    if stalled:
        report.differed.append(f"deliveries stalled after {len(kills)} kills (nothing more "
                               "arrived while the consumer owned its partitions)")
    return report


# ---- 2. receivers down, failing, throttling, slow, flapping; and SIGKILLs --------------------

SLOW_S = 2.5
TROUBLE_TUNING = {
    "METER_DELIVERY_TIMEOUT_S": "1",  # the slow receivers answer after SLOW_S
    "METER_DELIVERY_MAX_ATTEMPTS": "60",  # outlasts every trouble phase: nothing gives up
    "METER_DELIVERY_BACKOFF_BASE_S": "0.2",
    "METER_DELIVERY_BACKOFF_MAX_S": "1",
    "METER_DELIVERY_RETRY_AFTER_MAX_S": "2",
    "METER_ALERTS_COLLAPSE_WAIT_S": "5",
}
REASONS = ("connection error", "HTTP 500", "HTTP 429", "timed out", "SMTP 451")
DROPPED = ("ServerDisconnectedError", "ClientResponseError")  # reset: reported, not required


def test_flapping_receivers_and_a_killed_consumer_deliver_each_alert_once_by_id(
        meter_settings: Settings, tmp_path: Path) -> None:
    _assert_exact(_trouble_scenario, meter_settings, tmp_path)


async def _trouble_scenario(settings: Settings, tmp_path: Path, seed: int) -> AlertReport:
    started = time.monotonic()
    rng = random.Random(seed)
    workload = build_workload(rng, 6, ("ai_tokens", "storage_bytes"), (1, 2),
                              all_channels=True)
    expected = workload.expected()
    total = sum(len(ids) for ids in expected.values())
    batches = _split(workload.events, 5)
    phases: list[str] = []

    with MailReceiver(delay_s=0.05, slow_s=SLOW_S) as mail:
        slack = HttpReceiver("slack", slow_s=SLOW_S, seed=seed)
        hooks = HttpReceiver("webhook", {w.name: w.secret for w in workload.workspaces},
                             slow_s=SLOW_S, seed=seed + 1)
        process = AlertsProcess(settings, tmp_path, mail.port, TROUBLE_TUNING)

        def http_hits(mode: Mode, since: float) -> int:
            return sum(1 for h in [*slack.hits, *hooks.hits]
                       if h.mode == mode.value and h.arrived >= since)

        def mail_hits(mode: Mode, since: float) -> int:
            return sum(1 for h in mail.hits if h.mode == mode.value and h.arrived >= since)

        async def modes(http: Mode, smtp: Mode) -> None:
            await slack.set_mode(http)
            await hooks.set_mode(http)
            mail.mode = smtp

        async def phase(name: str, http: Mode, smtp: Mode) -> float:
            """Switch the receivers, and publish the next part of the stream."""
            await modes(http, smtp)
            if batches:
                await asyncio.to_thread(publish_crossings, settings, batches.pop(0))
            phases.append(f"{name} at {time.monotonic() - started:.0f} s")
            return time.monotonic()

        async def at_least(condition: Callable[[], bool], what: str, min_s: float,
                           since: float) -> None:
            await wait_until_async(condition, what, timeout_s=120, check=process.check)
            await asyncio.sleep(max(0.0, since + min_s - time.monotonic()))

        async def kill_and_restart() -> float:
            """SIGKILL, start again; when the new life owns partitions (the group waits for
            the dead member's session to expire first)."""
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            assert _distinct(mail, slack, hooks) < total, "the kill is not mid-stream"
            process.kill()
            process.start()
            phases.append(f"SIGKILL + restart at {time.monotonic() - started:.0f} s")
            await wait_until_async(process.assigned, "the restarted consumer's partitions",
                                   timeout_s=120, check=process.check, poll_s=0.2)
            return time.monotonic()

        try:
            workload.publish_settings(settings, slack, hooks)
            # down: nothing listens on the HTTP ports; email works (and shows the consumer live)
            t = await phase("down", Mode.DOWN, Mode.OK)
            process.start()
            await at_least(lambda: mail_hits(Mode.OK, t) > 0, "the first email", 2.5, t)
            t = await phase("500 / SMTP 451", Mode.ERROR, Mode.ERROR)
            await at_least(lambda: http_hits(Mode.ERROR, t) >= 3 and mail_hits(Mode.ERROR, t) > 0,
                           "500s and 451s", 2.0, t)
            t = await phase("429 Retry-After 1", Mode.THROTTLE, Mode.OK)
            await wait_until_async(lambda: http_hits(Mode.THROTTLE, t) > 0, "a 429",
                                   timeout_s=120, check=process.check)
            await kill_and_restart()
            t = await phase("slow (after the timeout)", Mode.SLOW, Mode.SLOW)
            # the restarted consumer's requests meet the slow receivers; kill it again with
            # slow requests in flight
            await wait_until_async(lambda: http_hits(Mode.SLOW, t) > 0,
                                   "a slow answer to the restarted consumer", timeout_s=120,
                                   check=process.check)
            restarted = await kill_and_restart()
            await at_least(lambda: http_hits(Mode.SLOW, restarted) >= 3, "slow answers again",
                           2.0, restarted)
            await phase("flapping", Mode.OK, Mode.OK)
            flaps = [Mode.OK, Mode.DOWN, Mode.ERROR, Mode.THROTTLE, Mode.RESET, Mode.OK,
                     Mode.RESET, Mode.DOWN]
            rng.shuffle(flaps)
            for http in flaps:
                await modes(http, rng.choice((Mode.OK, Mode.ERROR)))
                await asyncio.sleep(0.5)
                process.check()
            await phase("down again", Mode.DOWN, Mode.OK)
            await asyncio.sleep(2.0)
            await phase("ok", Mode.OK, Mode.OK)
            while batches:
                await asyncio.to_thread(publish_crossings, settings, batches.pop(0))
            await wait_progress(lambda: _distinct(mail, slack, hooks), total, process)
            records = await _outcomes_then_stop(settings, workload, process)
        finally:
            await _leave_nothing_running(process, slack, hooks)
        hits = {"email": mail.hits, "slack": slack.hits, "webhook": hooks.hits}

    report = analyse(f"alerting: receivers down/500/429/slow/reset/flapping + SIGKILL x2 "
                     f"(seed {seed})", workload, hits, records, process)
    answers = Counter(f"{h.channel} {h.mode} {h.status}" for hs in hits.values() for h in hs)
    reasons = Counter(reason for r in records if r["status"] == "retrying"
                      for reason in REASONS + DROPPED if reason in (r["detail"] or ""))
    report.notes.append("phases: " + "; ".join(phases))
    report.notes.append("receiver answers: " + ", ".join(
        f"{k} x{v}" for k, v in sorted(answers.items())))
    report.notes.append("retry reasons recorded: " + ", ".join(
        f"{k} {reasons[k]}" for k in REASONS + DROPPED))
    # every kind of trouble happened and was recorded as a retry
    report.differed += [f"no retry recorded for {k}" for k in REASONS if reasons[k] == 0]
    return report


def _split(events: list[list[Crossing]], n: int) -> list[list[Crossing]]:
    """``n`` parts of the stream, each of whole events."""
    size = max(1, -(-len(events) // n))
    return [[c for e in events[i:i + size] for c in e] for i in range(0, len(events), size)]
