"""``meter alerts``: consume ``quota.thresholds`` and deliver every crossing.

Flow per crossing (partition p, offset o):
1. the collapse planner decides send / superseded / muted (``alerting.planning``);
2. each enabled channel runs in its lane ``(workspace, channel)``: lanes are
   sequential, different lanes run concurrently (up to ``max_in_flight`` sends);
3. a send records ``attempted`` (acked) first, then ``delivered``, ``retrying``
   or ``failed``; superseded and muted are recorded without an attempt;
4. when every channel of the crossing has a final outcome, o is finished; the
   committed offset never passes an unfinished crossing (``alerting.offsets``).

Exactly-once per (alert_id, channel) comes from the ledger (``alerting.ledger``),
rebuilt from ``alerting.deliveries`` on start and on every partition assignment.
The one window: a crash after ``attempted`` was recorded and before the outcome
was: the next owner sends again, with a detail saying so.

The service is given its edges (``alerting.edges``): the crossings' source, the
delivery records' writer, the followed settings and deliveries topics, the HTTP and
SMTP senders and a clock. ``AlertService.from_config`` builds the real ones (Kafka,
aiohttp, smtplib, the system clock).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import NamedTuple

from aiohttp import web

from alerting.channels import Channels, Prepared
from alerting.config import AlertingConfig
from alerting.directory import Directory, WorkspaceChannels
from alerting.edges import (
    Clock,
    Consumed,
    CrossingSource,
    DeliveryWriter,
    FollowedRecord,
    FollowedTopics,
    SystemClock,
)
from alerting.http_client import HttpSender
from alerting.kafka_io import AckedProducer, KafkaCrossings, TopicTail
from alerting.ledger import Ledger
from alerting.metrics import AlertMetrics
from alerting.offsets import OffsetTracker
from alerting.planning import Action, CollapsePlanner, Decision
from alerting.records import Channel, Status, delivery_record, target_of
from alerting.retry import Kind, RetryPolicy
from alerting.smtp_client import SmtpConfig
from schemas.codec import decode_event, decode_record, encode_record
from schemas.events import AlertSettingsEvent, PlanEvent
from schemas.validation import InvalidEvent
from streams.core.quotas import PRUNE_TARGET_PERCENT
from streams.core.quotas import ThresholdCrossing as Crossing

log = logging.getLogger("meter.alerts")

THRESHOLDS_TOPIC = "quota.thresholds"
DELIVERIES_TOPIC = "alerting.deliveries"
SETTINGS_TOPIC = "alerting.settings"
PLANS_TOPIC = "quota.plans"


class Tag(NamedTuple):
    """Where a crossing came from, and when it was consumed (monotonic seconds)."""

    partition: int
    offset: int
    received: float


class Closing(Exception):
    """The crossing's partition is being released: leave it unfinished for the next owner."""


class AlertService:
    """Delivers the crossings ``crossings`` yields; see the module's docstring.

    ``run`` owns the collaborators' lifetimes: it starts the followed topics, enters
    ``http`` and closes everything when it returns.
    """

    def __init__(self, config: AlertingConfig, *, crossings: CrossingSource,
                 deliveries: DeliveryWriter, settings_topics: FollowedTopics,
                 deliveries_topic: FollowedTopics, http: HttpSender, smtp: SmtpConfig,
                 clock: Clock | None = None, jitter: Callable[[], float] = random.random,
                 drain_s: float = 10.0, max_pending: int = 20_000) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._crossings = crossings
        self._writer = deliveries
        self._settings_tail = settings_topics
        self._deliveries_tail = deliveries_topic
        self._http = http
        self._smtp = smtp
        self._jitter = jitter  # in [0, 1): the retry backoff's jitter
        self.settings = config.settings
        self.directory = Directory()
        self.ledger = Ledger()
        self.metrics = AlertMetrics()
        self.offsets = OffsetTracker()
        self.planner: CollapsePlanner[Tag] = CollapsePlanner(int(config.collapse_wait_s * 1000))
        self.policy = RetryPolicy(self.settings.delivery_max_attempts, config.backoff_base_s,
                                  config.backoff_max_s, config.retry_after_max_s)
        self.metrics_port: int | None = None
        self._drain_s = drain_s
        self._max_pending = max_pending
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._aborted = False
        self._tasks: defaultdict[int, set[asyncio.Task[None]]] = defaultdict(set)
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._lanes: dict[tuple[str, str], asyncio.Lock] = {}
        self._send_slots = asyncio.Semaphore(config.max_in_flight)
        self._paused = False
        self.assigned: set[int] = set()  # partitions of quota.thresholds owned now
        self._closing: set[int] = set()  # partitions being revoked
        self._closing_all = False
        self._close_signal = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consuming = False  # the source is subscribed and not closed
        self._channels: Channels | None = None

    @classmethod
    def from_config(cls, config: AlertingConfig, *, drain_s: float = 10.0,
                    max_pending: int = 20_000) -> AlertService:
        """The service on its real edges: Kafka, aiohttp, SMTP and the system clock."""
        s = config.settings
        return cls(
            config,
            crossings=KafkaCrossings(s, config.group_id, s.topic(THRESHOLDS_TOPIC)),
            deliveries=AckedProducer(s),
            settings_topics=TopicTail(s, [s.topic(SETTINGS_TOPIC), s.topic(PLANS_TOPIC)],
                                      "alerts-settings"),
            deliveries_topic=TopicTail(s, [s.topic(DELIVERIES_TOPIC)], "alerts-deliveries"),
            http=HttpSender(config.allow_hosts, s.delivery_timeout_s),
            smtp=SmtpConfig.from_settings(s),
            drain_s=drain_s, max_pending=max_pending)

    # ---- lifecycle -------------------------------------------------------------------

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def stop(self) -> None:
        """Graceful: stop consuming, let deliveries finish (up to ``drain_s``), commit."""
        self._stopping.set()

    async def abort(self) -> None:
        """Crash-like: cancel everything at once, commit nothing more (tests, benchmarks)."""
        self._aborted = True
        self._cancel_partitions(list(self._tasks))
        self._stopping.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        metrics_runner: web.AppRunner | None = None
        try:
            self._settings_tail.start(self._on_settings, self._loop)
            self._deliveries_tail.start(self._on_deliveries, self._loop)
            await asyncio.gather(self._settings_tail.caught_up(),
                                 self._deliveries_tail.caught_up())
            log.info("alerting: %d workspaces' settings, %d delivery keys rebuilt",
                     self.directory.updates, len(self.ledger))
            metrics_runner = await self._serve_metrics()
            async with self._http as http:
                # the storage prune target the worker's prune requests use
                self._channels = Channels(http, self._smtp,
                                          prune_target_ratio=PRUNE_TARGET_PERCENT / 100)
                await self._consume()
        finally:
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            self._settings_tail.close()
            self._deliveries_tail.close()
            self._writer.close(0 if self._aborted else 10)

    async def _serve_metrics(self) -> web.AppRunner | None:
        if self.config.metrics_port is None:
            return None

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(text=self.metrics.render(),
                                content_type="text/plain", charset="utf-8",
                                headers={"X-Prometheus-Format": "0.0.4"})

        async def health(_request: web.Request) -> web.Response:
            return web.json_response({"ready": self._ready.is_set(),
                                      "in_flight": self.metrics.in_flight})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.config.metrics_host, self.config.metrics_port).start()
        # the bound (host, port, ...) of the one site: the port asked for, or the one
        # the system chose for port 0
        self.metrics_port = int(runner.addresses[0][1]) if runner.addresses else None
        return runner

    # ---- the consumer loop -------------------------------------------------------------

    async def _consume(self) -> None:
        source, clock = self._crossings, self.clock
        source.subscribe(self._assign_cb, self._revoke_cb, self._lost_cb)
        self._consuming = True
        self._ready.set()
        last_commit = clock.monotonic()
        try:
            while not self._stopping.is_set():
                records = await asyncio.to_thread(source.consume, 500, 0.05)
                for record in records:
                    self._on_crossing(record)
                self._dispatch(self.planner.expire(clock.now_ms()))
                await self._backpressure()
                self.metrics.in_flight = self.offsets.pending()
                if clock.monotonic() - last_commit >= 0.2:
                    await self._commit_finished()
                    last_commit = clock.monotonic()
            if not self._aborted:
                await self._drain(list(self._tasks), everything=True)
                await self._commit_finished()
        finally:
            self._cancel_partitions(list(self._tasks))
            await asyncio.to_thread(source.close)
            self._consuming = False

    async def _backpressure(self) -> None:
        pending = self.offsets.pending()
        if not self._paused and pending >= self._max_pending:
            await asyncio.to_thread(self._crossings.pause)
            self._paused = True
        elif self._paused and pending < self._max_pending // 2:
            await asyncio.to_thread(self._crossings.resume)
            self._paused = False

    async def _commit_finished(self) -> None:
        positions = self.offsets.to_commit()
        if positions and not self._aborted and await asyncio.to_thread(self._commit, positions):
            self.offsets.committed(positions)

    def _commit(self, positions: dict[int, int]) -> bool:
        """Commit positions (in the consumer's thread or a worker thread, never both)."""
        if not self._consuming or not positions:
            return False
        return self._crossings.commit(positions)

    def _on_crossing(self, consumed: Consumed) -> None:
        partition, offset = consumed.partition, consumed.offset
        self.offsets.start(partition, offset)
        self.metrics.crossings_consumed += 1
        try:
            _topic, record = decode_record(consumed.value or b"")
            crossing = Crossing.from_record(record)
        except (InvalidEvent, KeyError, TypeError) as exc:
            log.error("skipping undecodable crossing at %s/%d: %s", partition, offset, exc)
            self.offsets.finish(partition, offset)
            return
        ws = self.directory.channels(crossing.workspace_id)
        tag = Tag(partition, offset, self.clock.monotonic())
        self._dispatch(self.planner.offer(crossing, ws.muted, self.clock.now_ms(), tag,
                                          ws.muted_forecasts))

    def _dispatch(self, decisions: Sequence[Decision[Tag]]) -> None:
        for decision in decisions:
            partition = decision.tag.partition
            task = asyncio.create_task(self._handle(decision))
            self._tasks[partition].add(task)
            task.add_done_callback(self._tasks[partition].discard)

    async def _handle(self, decision: Decision[Tag]) -> None:
        crossing, tag = decision.crossing, decision.tag
        ws = self.directory.channels(crossing.workspace_id)
        try:
            await asyncio.gather(*(self._channel(decision, ch, ws) for ch in ws.channels))
        except Closing:
            return  # not finished: the offset stays uncommitted, the next owner delivers it
        self.offsets.finish(tag.partition, tag.offset)

    async def _channel(self, decision: Decision[Tag], channel: Channel,
                       ws: WorkspaceChannels) -> None:
        crossing = decision.crossing
        key = (crossing.alert_id, channel)
        if self.ledger.state(*key).done:
            return
        running = self._inflight.get(key)
        if running is not None:  # the same alert re-emitted while its first copy is in flight
            await running
            if not self.ledger.state(*key).done:
                raise Closing
            return
        assert self._loop is not None
        self._inflight[key] = done = self._loop.create_future()
        try:
            if decision.action is Action.SEND:
                await self._deliver(crossing, channel, ws, decision.tag)
                if not self.ledger.state(*key).done:
                    raise Closing
            else:
                status: Status = "muted" if decision.action is Action.MUTED else "superseded"
                url = ws.slack_webhook_url if channel == "slack" else ws.webhook_url
                await self._record(crossing, channel, status, 0, decision.detail,
                                   target_of(channel, url=url, owners=ws.owners))
        finally:
            del self._inflight[key]
            if not done.done():
                done.set_result(None)

    # ---- one delivery ------------------------------------------------------------------

    async def _deliver(self, crossing: Crossing, channel: Channel, ws: WorkspaceChannels,
                       tag: Tag) -> None:
        assert self._channels is not None
        prepared: Prepared = self._channels.prepare(channel, crossing, ws)
        lane_key = (crossing.workspace_id, channel)
        lane = self._lanes.setdefault(lane_key, asyncio.Lock())
        async with lane:
            state = self.ledger.state(crossing.alert_id, channel)
            if state.done:
                return
            attempt = state.attempts
            if prepared.send is None:
                await self._record(crossing, channel, "failed", attempt + 1, prepared.refusal,
                                   prepared.target)
                return
            resend_of = state.open_attempt
            while not self._is_closing(tag.partition):
                attempt += 1
                note = (f"resent: attempt {resend_of} has no recorded outcome (crash window)"
                        if resend_of else None)
                resend_of = None
                await self._record(crossing, channel, "attempted", attempt, note,
                                   prepared.target)
                self.metrics.attempt(channel)
                async with self._send_slots:
                    result = await prepared.send()
                if result.kind is Kind.DELIVERED:
                    await self._record(crossing, channel, "delivered", attempt, result.reason,
                                       prepared.target)
                    self.metrics.latency(channel, self.clock.monotonic() - tag.received)
                    return
                if not self.policy.should_retry(attempt, result):
                    detail = result.reason if result.kind is Kind.PERMANENT else (
                        f"{result.reason}; gave up after attempt {attempt}")
                    await self._record(crossing, channel, "failed", attempt, detail,
                                       prepared.target)
                    return
                delay = self.policy.delay(attempt, result, self._jitter())
                await self._record(crossing, channel, "retrying", attempt,
                                   f"{result.reason}; next attempt in {delay:.2f} s",
                                   prepared.target)
                self.metrics.retry_queue_depth += 1
                try:
                    await self._backoff(delay, tag.partition)
                finally:
                    self.metrics.retry_queue_depth -= 1

    def _is_closing(self, partition: int) -> bool:
        return self._closing_all or partition in self._closing

    async def _backoff(self, delay: float, partition: int) -> None:
        """Sleep ``delay`` seconds, or less if the partition is being released."""
        clock = self.clock
        deadline = clock.monotonic() + delay
        while not self._is_closing(partition):
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return
            if self._close_signal.is_set():  # another partition is closing
                await clock.sleep(min(remaining, 0.05))
                continue
            await clock.wait(self._close_signal, remaining)

    async def _record(self, crossing: Crossing, channel: Channel, status: Status, attempt: int,
                      detail: str | None, target: str | None) -> None:
        """Publish one delivery record and wait for the broker's ack, then apply it."""
        record = delivery_record(crossing, channel, status, attempt, detail, target,
                                 self.clock.now_ms())
        value = encode_record(DELIVERIES_TOPIC, record)
        topic = self.settings.topic(DELIVERIES_TOPIC)
        while True:
            try:
                await self._writer.send(topic, crossing.workspace_id.encode(), value)
                break
            except Exception as exc:  # the broker is away: keep the record, try again
                log.warning("could not record %s for %s/%s (%s); retrying", status,
                            crossing.alert_id, channel, exc)
                await self.clock.sleep(1.0)
        self.ledger.apply(record)
        if status != "attempted":
            self.metrics.outcome(channel, status)
        log.info("%s %s via %s (attempt %d)%s", status, crossing.alert_id, channel, attempt,
                 f": {detail}" if detail else "")

    # ---- compacted topics and the ledger -----------------------------------------------

    def _on_settings(self, batch: Sequence[FollowedRecord]) -> None:
        settings_topic = self.settings.topic(SETTINGS_TOPIC)
        for message in batch:
            workspace_id = (message.key or b"").decode("utf-8", "replace")
            value = message.value
            is_settings = message.topic == settings_topic
            if value is None:
                if is_settings:
                    self.directory.apply_settings(workspace_id, None)
                else:
                    self.directory.apply_plan(workspace_id, None)
                continue
            try:
                event = decode_event(value)
            except InvalidEvent as exc:
                log.warning("ignoring an invalid %s record of %s: %s", message.topic,
                            workspace_id, exc)
                continue
            if isinstance(event, AlertSettingsEvent):
                self.directory.apply_settings(event.workspace_id, event)
            elif isinstance(event, PlanEvent):
                self.directory.apply_plan(event.workspace_id, event)

    def _on_deliveries(self, batch: Sequence[FollowedRecord]) -> None:
        for message in batch:
            value = message.value
            if value is None:
                continue
            try:
                _topic, record = decode_record(value)
            except InvalidEvent:
                continue
            self.ledger.apply(record)

    # ---- rebalances (called from the consumer's thread, inside consume) ---------------

    def _assign_cb(self, numbers: list[int]) -> None:
        assert self._loop is not None
        log.info("assigned partitions %s", numbers)
        # The previous owner's records must be in the ledger before we consume.
        asyncio.run_coroutine_threadsafe(self._deliveries_tail.caught_up(), self._loop).result()
        self.assigned.update(numbers)

    def _revoke_cb(self, numbers: list[int]) -> None:
        assert self._loop is not None
        log.info("revoking partitions %s", numbers)
        if not self._aborted:
            positions = asyncio.run_coroutine_threadsafe(
                self._drain_for_commit(numbers), self._loop).result()
            self._commit(positions)
        asyncio.run_coroutine_threadsafe(self._forget(numbers), self._loop).result()

    def _lost_cb(self, numbers: list[int]) -> None:
        assert self._loop is not None
        log.warning("lost partitions %s", numbers)
        asyncio.run_coroutine_threadsafe(self._forget(numbers), self._loop).result()

    async def _drain(self, partitions: Sequence[int], *, everything: bool = False) -> None:
        """Let sends in progress on ``partitions`` finish (up to ``drain_s``); start no more."""
        self._closing.update(partitions)
        self._closing_all = self._closing_all or everything
        self._close_signal.set()
        tasks = [t for p in partitions for t in self._tasks.get(p, ())]
        if tasks:
            await asyncio.wait(tasks, timeout=self._drain_s)

    async def _drain_for_commit(self, partitions: Sequence[int]) -> dict[int, int]:
        await self._drain(partitions)
        return {p: o for p, o in self.offsets.to_commit().items() if p in partitions}

    async def _forget(self, partitions: Sequence[int]) -> None:
        cancelled = self._cancel_partitions(partitions)
        if cancelled:
            await asyncio.wait(cancelled)
        gone = set(partitions)
        self.assigned.difference_update(gone)
        self.planner.drop(lambda tag: tag.partition not in gone)
        for p in partitions:
            self.offsets.drop(p)
        self._closing.difference_update(partitions)
        if not self._closing and not self._closing_all:
            self._close_signal.clear()

    def _cancel_partitions(self, partitions: Sequence[int]) -> list[asyncio.Task[None]]:
        cancelled = []
        for p in partitions:
            for task in list(self._tasks.get(p, ())):
                if not task.done():
                    task.cancel()
                    cancelled.append(task)
        return cancelled

