"""Pieces of the alerting fault tests (``test_alerting_faults.py``): real receivers whose
behaviour the test switches while it runs, `meter alerts` as a real subprocess that the
test kills, a workload of crossings with the deliveries it must produce, and the table
each test prints.

Receivers (all on 127.0.0.1, nothing mocked):
- ``HttpReceiver``: an aiohttp server, one per HTTP channel (a Slack-like incoming webhook
  and a Standard Webhooks receiver). Modes: ok, down (the port is closed: connections are
  refused and open ones dropped), 500, 429 with ``Retry-After: 1``, slow (answers after
  the client's timeout, having acted on the alert: the response is what gets lost), reset
  (the connection is dropped without an answer, or after a garbled status line).
- ``MailReceiver``: aiosmtpd; modes ok, 451 (a transient SMTP failure) and slow (aiosmtpd
  drops a message whose client hung up before the reply, so slow SMTP means a timeout and
  a retry, not a repeat).
Every request is kept as a ``Hit`` with the id a receiver dedupes by: ``webhook-id``,
the Slack message's "alert id" line, the email's ``X-Meter-Alert-Id`` header (and its
Message-ID, which mail systems dedupe by).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from confluent_kafka import Consumer, TopicPartition
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from groundwork.kafka import consumer_config
from groundwork.ports import free_port
from groundwork.settings import Settings
from schemas.events import Mute
from streams.core.quotas import ThresholdCrossing as Crossing
from tests.alerting.factories import crossing
from tests.alerting.kafka_helpers import (
    publish,
    publish_crossings,
    publish_plan,
    read_deliveries,
    settings_item,
)
from tests.faults.support import PrintedReport, render_rows

CHANNELS: Final = ("email", "slack", "webhook")
RETRY_AFTER_S: Final = "1"
_SLACK_ID = re.compile(r"^alert id (\S+)$")


class Mode(StrEnum):
    OK = "ok"
    DOWN = "down"
    ERROR = "error"  # HTTP 500, SMTP 451
    THROTTLE = "429"  # HTTP 429 with Retry-After (SMTP: ok)
    SLOW = "slow"  # the answer comes after the client's timeout
    RESET = "reset"  # the connection drops without an answer (or after a garbled one)


@dataclass(frozen=True)
class Hit:
    """One request a receiver got, and what it answered."""

    channel: str
    workspace: str
    alert_id: str  # the id a receiver dedupes by
    status: int  # HTTP or SMTP reply code; 2xx: the receiver accepted and acted on it
    mode: str
    content: str  # what a repeat must repeat exactly (the body)
    verified: bool | None = None  # webhook: the Standard Webhooks signature verified
    problem: str | None = None  # the id and the body disagree, unknown workspace, ...
    arrived: float = field(default_factory=time.monotonic)  # when the request came in
    message_id: str | None = None  # email: the Message-ID mail systems dedupe by

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


# ---- receivers ---------------------------------------------------------------------------

class HttpReceiver:
    """A Slack-like (``channel="slack"``) or Standard Webhooks (``"webhook"``) receiver;
    the path is the workspace; webhook signatures are verified with that workspace's secret."""

    def __init__(self, channel: str, secrets: Mapping[str, str] | None = None, *,
                 delay_s: tuple[float, float] = (0.0, 0.0), slow_s: float = 2.5,
                 seed: int = 0) -> None:
        self.channel = channel
        self.secrets = dict(secrets or {})
        self.delay_s = delay_s
        self.slow_s = slow_s
        self.port = free_port()
        self.mode = Mode.DOWN
        self.hits: list[Hit] = []
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None

    def url(self, workspace: str) -> str:
        return f"http://127.0.0.1:{self.port}/{workspace}"

    async def set_mode(self, mode: Mode) -> None:
        if mode is Mode.DOWN:
            self.mode = mode
            await self._down()
        else:
            await self._up()
            self.mode = mode

    async def close(self) -> None:
        await self._down()

    async def _up(self) -> None:
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_post("/{workspace}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._runner = runner

    async def _down(self) -> None:
        """Close the listening socket and every connection (keep-alive ones too)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _inspect(self, workspace: str, body: bytes,
                 headers: Mapping[str, str]) -> tuple[str, bool | None, str | None]:
        """(the id to dedupe by, signature verified, a problem)."""
        try:
            payload = json.loads(body)
        except ValueError:
            return "", None, "body is not JSON"
        if self.channel == "webhook":
            alert_id = headers.get("webhook-id", "")
            secret = self.secrets.get(workspace)
            if secret is None:
                return alert_id, False, f"no secret for workspace {workspace}"
            try:
                Webhook(secret).verify(body, dict(headers))
                verified = True
            except WebhookVerificationError:
                verified = False
            if payload.get("alert_id") != alert_id:
                return alert_id, verified, (f"webhook-id {alert_id!r} but body alert_id "
                                            f"{payload.get('alert_id')!r}")
            if payload.get("workspace_id") != workspace:
                return alert_id, verified, f"workspace {payload.get('workspace_id')!r} at " \
                                           f"/{workspace}"
            return alert_id, verified, None
        try:
            context = payload["blocks"][-1]["elements"][0]["text"]
        except (KeyError, IndexError, TypeError):
            return "", None, "no alert id line in the Slack message"
        found = _SLACK_ID.match(str(context))
        if found is None:
            return "", None, f"unexpected Slack context {context!r}"
        alert_id = found.group(1)
        if not alert_id.startswith(workspace + "/"):
            return alert_id, None, f"alert {alert_id} posted to /{workspace}"
        return alert_id, None, None

    async def _handle(self, request: web.Request) -> web.Response:
        mode, arrived = self.mode, time.monotonic()
        workspace = request.match_info["workspace"]
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        alert_id, verified, problem = self._inspect(workspace, body, headers)
        extra: dict[str, str] = {}
        if mode is Mode.ERROR:
            status = 500
        elif mode is Mode.THROTTLE:
            status = 429
            extra["Retry-After"] = RETRY_AFTER_S
        elif mode is Mode.DOWN:  # arrived while the server was closing
            status = 503
        elif mode is Mode.RESET and request.transport is not None:
            garbled = self._rng.random() < 0.5
            if garbled:
                request.transport.write(b"HTTP/1.1 2xx maybe\r\nnot a header\r\n\r\n")
            request.transport.close()
            self.hits.append(Hit(self.channel, workspace, alert_id, 0, mode.value,
                                 body.decode("utf-8", "replace"), verified, problem, arrived))
            return web.Response(status=204)  # goes nowhere: the connection is closed
        else:
            if mode is Mode.SLOW:
                await asyncio.sleep(self.slow_s)
            elif self.delay_s[1] > 0:
                await asyncio.sleep(self._rng.uniform(*self.delay_s))
            status = 200 if verified is not False and problem is None else 401
        self.hits.append(Hit(self.channel, workspace, alert_id, status, mode.value,
                             body.decode("utf-8", "replace"), verified, problem, arrived))
        return web.Response(status=status, text="ok" if status < 300 else "no", headers=extra)


class MailReceiver:
    """aiosmtpd on 127.0.0.1 that keeps every message (or answers 451, or slowly)."""

    def __init__(self, *, delay_s: float = 0.0, slow_s: float = 2.5) -> None:
        self.port = free_port()
        self.mode = Mode.OK
        self.delay_s = delay_s
        self.slow_s = slow_s
        self._hits: list[Hit] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                      ready_timeout=30)

    def __enter__(self) -> MailReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        mode, arrived = self.mode, time.monotonic()
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        alert_id = str(message.get("X-Meter-Alert-Id", ""))
        workspace = alert_id.partition("/")[0]
        problem = None if alert_id else "no X-Meter-Alert-Id header"
        plain = message.get_body(preferencelist=("plain",))
        text = plain.get_content() if plain is not None else ""
        if alert_id and f"Alert id: {alert_id}" not in text:
            problem = f"the text does not name alert {alert_id}"
        summary = f"To: {sorted(envelope.rcpt_tos)}\nSubject: {message.get('Subject')}\n\n{text}"
        if mode is Mode.ERROR:
            code, reply = 451, "451 4.3.0 try again later"
        else:
            await asyncio.sleep(self.slow_s if mode is Mode.SLOW else self.delay_s)
            code, reply = 250, "250 OK"
        with self._lock:
            self._hits.append(Hit("email", workspace, alert_id, code, mode.value, summary,
                                  None, problem, arrived, str(message.get("Message-ID"))))
        return reply


# ---- the consumer under test ---------------------------------------------------------------

class AlertsProcess:
    """`meter alerts` (the real CLI) as a subprocess: started, SIGKILLed, restarted."""

    def __init__(self, settings: Settings, logs: Path, smtp_port: int,
                 tuning: Mapping[str, str]) -> None:
        self.settings = settings
        self.logs = logs
        self.group = f"alerts-faults-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ)
        self.env.update({
            "METER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "METER_TOPIC_PREFIX": settings.topic_prefix,
            "METER_KAFKA_PARTITIONS": str(settings.kafka_partitions),
            "METER_DATA_DIR": str(settings.data_dir),
            "METER_SMTP_HOST": "127.0.0.1",
            "METER_SMTP_PORT": str(smtp_port),
            # S13: loopback receivers over http only because they are allow-listed
            "METER_DELIVERY_ALLOW_HOSTS": '["127.0.0.1"]',
            "METER_ALERTS_GROUP_ID": self.group,
            "METER_ALERTS_METRICS_PORT": "0",
            **tuning,
        })
        self.proc: subprocess.Popen[bytes] | None = None
        self.lives = 0
        self.kills = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.lives += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meter.cli_entry", "alerts", "-v"], env=self.env,
                stdout=out, stderr=subprocess.STDOUT)

    @property
    def log(self) -> Path:
        return self.logs / f"alerts-{self.lives}.log"

    def assigned(self) -> bool:
        """This life has been given partitions of quota.thresholds (it logs that, -v)."""
        return self.log.exists() and b"assigned partitions [" in self.log.read_bytes()

    def check(self) -> None:
        """Fail if the consumer died on its own (a crash is a bug)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"`meter alerts` exited with {self.proc.returncode} "
                                 f"(see {self.log})")

    def kill(self) -> None:
        self.check()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> int:
        """SIGTERM (in-flight deliveries finish, finished offsets are committed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode

    def committed_vs_end(self) -> tuple[dict[int, int], dict[int, int]]:
        """The group's committed offsets on quota.thresholds, and the topic's end offsets."""
        topic = self.settings.topic("quota.thresholds")
        consumer = Consumer(consumer_config(self.settings, self.group))
        try:
            meta = consumer.list_topics(topic, timeout=10)
            parts = [TopicPartition(topic, p) for p in sorted(meta.topics[topic].partitions)]
            ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1]
                    for tp in parts}
            # an empty partition has nothing to commit: no commit there is its end (0)
            done = {tp.partition: 0 if tp.offset < 0 and ends[tp.partition] == 0 else tp.offset
                    for tp in consumer.committed(parts, timeout=10)}
            return done, ends
        finally:
            consumer.close()


# ---- the workload ------------------------------------------------------------------------

@dataclass(frozen=True)
class Workspace:
    name: str
    email: bool
    slack: bool
    webhook: bool
    secret: str
    muted: tuple[Mute, ...] = ()

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(ch for ch, on in zip(CHANNELS, (self.email, self.slack, self.webhook),
                                          strict=True) if on)

    @property
    def owners(self) -> list[str]:
        return [f"ops@{self.name}.example.com", f"cto@{self.name}.example.com"]


# the shapes a quota's three thresholds take across events: one event each, a jump over
# all three in one event, or one crossing then a jump over the other two, and so on
SHAPES: Final = (((80,), (95,), (100,)), ((80, 95, 100),), ((80,), (95, 100)),
                 ((80, 95), (100,)))


@dataclass
class AlertWorkload:
    workspaces: list[Workspace]
    events: list[list[Crossing]]  # each event's crossings, lowest threshold first
    reemitted: int = 0  # events of ``events`` that repeat an earlier one (same alert ids)

    @property
    def crossings(self) -> list[Crossing]:
        return [c for event in self.events for c in event]

    def outcomes(self) -> dict[tuple[str, str], str]:
        """(alert_id, channel) -> the final outcome every configured channel must record:
        the highest unmuted threshold of an event is delivered, the rest superseded or muted."""
        by_name = {w.name: w for w in self.workspaces}
        out: dict[tuple[str, str], str] = {}
        for event in self.events:
            ws = by_name[event[0].workspace_id]
            unmuted = [c for c in event if not any(
                m.quota == c.quota and m.threshold in (None, c.threshold) for m in ws.muted)]
            top = max((c.threshold for c in unmuted), default=None)
            for c in event:
                status = ("muted" if c not in unmuted else
                          "delivered" if c.threshold == top else "superseded")
                for channel in ws.channels:
                    out[(c.alert_id, channel)] = status
        return out

    def expected(self) -> dict[str, set[str]]:
        """Per channel, the alert ids that must reach it (each exactly once by id)."""
        want: dict[str, set[str]] = {ch: set() for ch in CHANNELS}
        for (alert_id, channel), status in self.outcomes().items():
            if status == "delivered":
                want[channel].add(alert_id)
        return want

    def publish_settings(self, settings: Settings, slack: HttpReceiver,
                         hooks: HttpReceiver) -> None:
        """Plans (the email owners) and alerting.settings, before any crossing."""
        for w in self.workspaces:
            publish_plan(settings, w.name, w.owners)
        publish(settings, "alerting.settings", [
            settings_item(w.name, email=w.email,
                          slack=slack.url(w.name) if w.slack else None,
                          webhook=hooks.url(w.name) if w.webhook else None,
                          secret=w.secret, muted=w.muted)
            for w in self.workspaces])


def build_workload(rng: random.Random, workspaces: int, quotas: Sequence[str],
                   arms: Sequence[int], *, all_channels: bool = False,
                   reemit: float = 0.0) -> AlertWorkload:
    """Workspaces with different channels (and a mute), and their crossings' events;
    ``reemit``: the share of events the stream emits again later (as after a worker
    crash, DESIGN.md: consumers dedupe by alert_id)."""
    spaces = []
    for i in range(workspaces):
        name = f"fw{i:02d}-{uuid.uuid4().hex[:4]}"
        muted: tuple[Mute, ...] = ()
        if i % 5 == 4:
            muted = (Mute(quotas[0], 100),)
        spaces.append(Workspace(name, email=all_channels or i % 6 != 5,
                                slack=all_channels or i % 4 != 3,
                                webhook=all_channels or i % 3 != 2,
                                secret=new_secret(), muted=muted))
    events: list[list[Crossing]] = []
    for ws in spaces:
        for quota in quotas:
            for arm in arms:
                for n, thresholds in enumerate(rng.choice(SHAPES)):
                    top = max(thresholds)
                    events.append([
                        crossing(t, workspace=ws.name, quota=quota, arm=arm,
                                 event_id=f"{quota}-{arm}-{n}", highest=t == top,
                                 current=1000 * top // 100, limit=1000)
                        for t in thresholds])
    # workspaces interleave, each workspace's events stay in order (one partition each)
    queues = [[e for e in events if e[0].workspace_id == ws.name] for ws in spaces]
    ordered: list[list[Crossing]] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        ordered.append(queue.pop(0))
    copies = rng.sample(ordered, int(len(ordered) * reemit))
    for event in copies:
        at = next(i for i, e in enumerate(ordered) if e is event)
        ordered.insert(rng.randint(at + 1, len(ordered)), list(event))
    return AlertWorkload(spaces, ordered, len(copies))


async def produce_events(settings: Settings, events: Sequence[list[Crossing]],
                         batches: int, pause_s: float) -> None:
    """Publish ``events`` in ``batches`` (whole events), ``pause_s`` apart: a stream."""
    size = max(1, -(-len(events) // batches))
    for start in range(0, len(events), size):
        chunk = [c for event in events[start:start + size] for c in event]
        await asyncio.to_thread(publish_crossings, settings, chunk)
        if start + size < len(events):
            await asyncio.sleep(pause_s)


# ---- waiting -------------------------------------------------------------------------------

async def wait_progress(count: Callable[[], int], goal: int, process: AlertsProcess, *,
                        quiet_s: float = 30.0, timeout_s: float = 300.0) -> bool:
    """Until ``count()`` reaches ``goal`` (True), or it stalls (False): it has not moved for
    ``quiet_s`` while the consumer owns its partitions, as when crossings were lost.
    The report then names what is missing; a deadline still guards against hangs."""
    deadline = time.monotonic() + timeout_s
    last, since = count(), time.monotonic()
    while (now := count()) < goal:
        process.check()
        if now != last or not process.assigned():
            last, since = now, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return False
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {goal} deliveries (at {now})")
        await asyncio.sleep(0.05)
    return True


async def wait_records(settings: Settings, keys: Sequence[tuple[str, str]], *,
                       timeout_s: float, process: AlertsProcess
                       ) -> list[dict[str, Any]]:
    """alerting.deliveries, once every key has a final outcome there."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = await asyncio.to_thread(read_deliveries, settings)
        final = {(r["alert_id"], r["channel"]) for r in records
                 if r["status"] in ("delivered", "failed", "superseded", "muted")}
        if all(k in final for k in keys):
            return records
        process.check()
        if time.monotonic() > deadline:
            return records  # the report names what is missing
        await asyncio.sleep(0.5)


# ---- the result ----------------------------------------------------------------------------

@dataclass
class ChannelCount:
    expected: int = 0
    distinct: int = 0  # distinct alert ids the receiver accepted
    accepted: int = 0  # accepted requests, repeats included
    requests: int = 0  # every request that reached the receiver (refused answers too)

    @property
    def duplicates(self) -> int:
        return self.accepted - self.distinct


@dataclass
class AlertReport(PrintedReport):
    """The table each alerting fault test prints."""

    name: str
    crossings_in: int
    distinct_ids: int
    events_in: int
    reemitted: int
    workspaces: int
    lives: int = 0
    kills: int = 0
    channels: dict[str, ChannelCount] = field(default_factory=dict)
    signatures: tuple[int, int] = (0, 0)  # verified, webhook requests
    records: Counter[str] = field(default_factory=Counter)
    repeats_explained: Counter[str] = field(default_factory=Counter)
    differed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    expected_ids: dict[str, set[str]] = field(default_factory=dict)  # per channel
    delivered_ids: dict[str, set[str]] = field(default_factory=dict)  # accepted, per channel

    def render(self) -> str:
        def row(label: str, values: Callable[[ChannelCount], int]) -> tuple[str, str]:
            return label, "".join(f"{values(self.channels[ch]):>9,}" for ch in CHANNELS)

        rows = [
            ("crossings in", f"{self.crossings_in:,} records, {self.distinct_ids:,} distinct ids "
                             f"({self.events_in:,} events, {self.reemitted} of them re-emitted; "
                             f"{self.workspaces} workspaces)"),
            ("consumer lives / SIGKILLs", f"{self.lives} / {self.kills}"),
            ("", "".join(f"{ch:>9}" for ch in CHANNELS)),
            row("expected deliveries (distinct ids)", lambda c: c.expected),
            row("delivered distinct ids", lambda c: c.distinct),
            row("accepted deliveries", lambda c: c.accepted),
            row("duplicate deliveries (same id)", lambda c: c.duplicates),
            row("requests seen (failures too)", lambda c: c.requests),
            ("webhook signatures verified", f"{self.signatures[0]:,} of {self.signatures[1]:,}"),
            ("repeats explained by",
             ", ".join(f"{k} {v}" for k, v in sorted(self.repeats_explained.items()))
             or "no repeats"),
            ("alerting.deliveries records",
             ", ".join(f"{k} {v:,}" for k, v in sorted(self.records.items()))),
            ("what differed", "nothing" if not self.differed else
             f"{len(self.differed)}: " + "; ".join(self.differed[:6])),
        ] + [("note", note) for note in self.notes]
        return render_rows(self.name, rows)


def analyse(name: str, workload: AlertWorkload, hits: Mapping[str, Sequence[Hit]],
            records: Sequence[dict[str, Any]], process: AlertsProcess,
            allowed_repeat_causes: Sequence[str] = ("resent", "timed out")) -> AlertReport:
    """Receivers and alerting.deliveries against the workload: every crossing reached every
    configured channel, exactly once by id; repeats are identical and explained."""
    report = AlertReport(name, len(workload.crossings),
                         len({c.alert_id for c in workload.crossings}), len(workload.events),
                         workload.reemitted, len(workload.workspaces), process.lives,
                         process.kills)
    expected = workload.expected()
    outcomes = workload.outcomes()
    report.expected_ids = expected
    diff = report.differed
    by_key: defaultdict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_key[(r["alert_id"], r["channel"])].append(r)
        report.records[r["status"]] += 1

    for channel in CHANNELS:
        got = list(hits.get(channel, ()))
        accepted = [h for h in got if h.accepted]
        ids = {h.alert_id for h in accepted}
        report.delivered_ids[channel] = ids
        report.channels[channel] = ChannelCount(len(expected[channel]), len(ids), len(accepted),
                                                len(got))
        diff += [f"{channel}: never delivered {i}" for i in sorted(expected[channel] - ids)]
        diff += [f"{channel}: delivered {i}, which is not due there"
                 for i in sorted(ids - expected[channel])]
        diff += [f"{channel}: {h.problem}" for h in got if h.problem]
        contents: defaultdict[str, set[str]] = defaultdict(set)
        message_ids: defaultdict[str, set[str | None]] = defaultdict(set)
        counts: Counter[str] = Counter()
        for h in accepted:
            contents[h.alert_id].add(h.content)
            message_ids[h.alert_id].add(h.message_id)
            counts[h.alert_id] += 1
        diff += [f"{channel}: the repeats of {i} differ ({len(c)} versions)"
                 for i, c in contents.items() if len(c) > 1]
        diff += [f"{channel}: the repeats of {i} carry {len(m)} different Message-IDs"
                 for i, m in message_ids.items() if len(m) > 1]
        for alert_id, n in counts.items():
            if n < 2:
                continue
            history = by_key.get((alert_id, channel), [])
            causes = [cause for cause in allowed_repeat_causes if any(
                (r["detail"] or "").startswith("resent:") if cause == "resent" else
                r["status"] == "retrying" and cause in (r["detail"] or "") for r in history)]
            if causes:
                report.repeats_explained[causes[0]] += n - 1
            else:
                diff.append(f"{channel}: {alert_id} accepted {n} times, no crash window or "
                            f"timeout recorded for it")

    webhook_hits = list(hits.get("webhook", ()))
    report.signatures = (sum(1 for h in webhook_hits if h.verified), len(webhook_hits))
    diff += [f"webhook signature of {h.alert_id} did not verify" for h in webhook_hits
             if not h.verified]

    for key, status in sorted(outcomes.items()):
        history = by_key.get(key, [])
        finals = {r["status"] for r in history} & {"delivered", "failed", "superseded",
                                                   "muted"}
        if finals != {status}:
            diff.append(f"deliveries record {sorted(finals) or 'no outcome'} for {key[0]} "
                        f"via {key[1]}, expected {status}")
    strays = sorted(k for k in by_key if k not in outcomes)
    diff += [f"deliveries has records for {a} via {c}, not a configured channel"
             for a, c in strays]
    twice = sum(1 for history in by_key.values()
                if sum(r["status"] == "delivered" for r in history) > 1)
    if twice:
        report.notes.append(f"{twice} (alert, channel) keys with more than one delivered record")

    done, ends = process.committed_vs_end()
    if done != ends:
        diff.append(f"committed offsets {done} are not the end of quota.thresholds {ends}")
    return report
