"""The publisher platform services use: validated events to their topics, keyed by workspace.

    from schemas.publisher import Publisher

    with Publisher(load_settings()) as pub:
        pub.tokens("w1", member_id="alice", provider="openai", model="gpt-4o",
                   input_tokens=120, output_tokens=30, surface="chat")
        pub.publish({"type": "api", "workspace_id": "w1", "protocol": "rest"})
    # leaving the block flushes; PublishError if any delivery failed

- Every event is validated (``schemas.validation``) before it is sent; an invalid one
  raises ``InvalidEvent`` at the call, nothing is sent.
- ``event_id`` defaults to a fresh UUIDv7 and ``occurred_at`` to now when not given.
- Producer: idempotent, ``acks=all``, ``murmur2_random`` partitioner (the Java client's,
  so every producer puts a workspace on the same partition), key ``workspace_id``,
  batching with a short linger and lz4.
- A background thread serves delivery reports (failures only: a Python callback per
  acknowledged message would cost more than sending it). Failed deliveries are kept
  in ``errors`` (and passed to ``on_error``); ``flush``/``close`` raise
  ``PublishError`` when any delivery failed or messages are still undelivered at the
  timeout. ``sent`` counts messages handed to the producer.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from groundwork.kafka import producer_config
from groundwork.settings import Settings
from schemas.codec import encode_event, event_record, topic_of
from schemas.events import Event, type_of
from schemas.ids import now_ms, uuid7
from schemas.validation import InvalidEvent, validate

# Throughput tuning on top of ``groundwork.kafka.producer_config`` (idempotent, acks=all,
# murmur2_random, lz4).
PRODUCER_DEFAULTS: Final[dict[str, Any]] = {
    "linger.ms": 10,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
    "message.timeout.ms": 120_000,
}
MAX_ERRORS_KEPT: Final = 1000


class PublishError(Exception):
    """Deliveries failed or did not finish; ``errors`` holds ``(topic, key, message)``."""

    def __init__(self, message: str, errors: list[tuple[str, bytes | None, str]]) -> None:
        super().__init__(message)
        self.errors = errors


class Publisher:
    """A thread-safe publisher of events (one per process is plenty)."""

    def __init__(
        self,
        settings: Settings,
        *,
        config: Mapping[str, Any] | None = None,
        on_error: Callable[[str, bytes | None, str], None] | None = None,
        client_id: str = "meter-publisher",
    ) -> None:
        from confluent_kafka import Producer

        self.settings = settings
        conf = producer_config(settings, client_id, **{**PRODUCER_DEFAULTS, **(config or {})})
        conf["partitioner"] = "murmur2_random"  # the one rule every producer follows
        # reports for failures only: a Python callback per success costs more than the send
        conf["delivery.report.only.error"] = True
        conf["on_delivery"] = self._delivered
        self._producer = Producer(conf)
        self._on_error = on_error
        self._lock = threading.Lock()
        self.errors: list[tuple[str, bytes | None, str]] = []
        self.failed = 0
        self.sent = 0
        self._topics: dict[str, str] = {}
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="publisher-poll",
                                        daemon=True)
        self._poller.start()

    # --- delivery reports -----------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            return
        topic, key, text = msg.topic(), msg.key(), str(err)
        with self._lock:
            self.failed += 1
            if len(self.errors) < MAX_ERRORS_KEPT:
                self.errors.append((topic, key, text))
        if self._on_error is not None:
            self._on_error(topic, key, text)

    # --- sending ---------------------------------------------------------------------------

    def topic(self, base: str) -> str:
        """The real topic name (``settings.topic``), cached."""
        name = self._topics.get(base)
        if name is None:
            name = self._topics[base] = self.settings.topic(base)
        return name

    def produce(self, base_topic: str, key: bytes | None, value: bytes) -> None:
        """Send pre-encoded bytes; waits (serving reports) while the local queue is full."""
        topic = self.topic(base_topic)
        while True:
            try:
                self._producer.produce(topic, value, key)
                self.sent += 1
                return
            except BufferError:
                self._producer.poll(0.05)

    def publish_valid(self, event: Event) -> None:
        """Send an event that came out of ``validate``/``parse_line`` (not validated again)."""
        self.produce(topic_of(event), event.workspace_id.encode(), encode_event(event))

    def publish(self, event: Event | Mapping[str, Any]) -> Event:
        """Validate and send one event; returns the event sent (with its generated id).

        ``event`` is a typed event or its ``type``-tagged JSON form; a mapping without
        ``event_id`` gets a UUIDv7, without ``occurred_at`` the wall clock now.
        Raises ``InvalidEvent`` (nothing sent) when it is not a valid event.
        """
        if isinstance(event, Mapping):
            type_name = event.get("type")
            if type(type_name) is not str:
                raise InvalidEvent("missing_field" if type_name is None else "wrong_type",
                                   "type: the event's type tag is required", "type")
            fields = dict(event)
            if fields.get("event_id") is None:
                fields["event_id"] = uuid7()
            if fields.get("occurred_at") is None:
                fields["occurred_at"] = now_ms()
        else:
            type_name, fields = type_of(event), event_record(event)
        valid = validate(type_name, fields, now_ms=now_ms())
        self.publish_valid(valid)
        return valid

    def _publish_fields(self, type_name: str, workspace_id: str, fields: dict[str, Any]) -> Event:
        return self.publish({"type": type_name, "workspace_id": workspace_id, **fields})

    # --- convenience, one per event type ----------------------------------------------------

    def tokens(self, workspace_id: str, *, member_id: str, provider: str, model: str,
               input_tokens: int, output_tokens: int, surface: str,
               machine_id: str | None = None, skill: str | None = None,
               event_id: str | None = None, occurred_at: int | str | None = None) -> Event:
        """AI tokens of one model call."""
        return self._publish_fields("tokens", workspace_id, dict(
            member_id=member_id, provider=provider, model=model, input_tokens=input_tokens,
            output_tokens=output_tokens, surface=surface, machine_id=machine_id, skill=skill,
            event_id=event_id, occurred_at=occurred_at))

    def command(self, workspace_id: str, *, member_id: str, machine_id: str, command: str,
                event_id: str | None = None, occurred_at: int | str | None = None) -> Event:
        """One command run on a machine."""
        return self._publish_fields("command", workspace_id, dict(
            member_id=member_id, machine_id=machine_id, command=command, event_id=event_id,
            occurred_at=occurred_at))

    def schedule_run(self, workspace_id: str, *, member_id: str, schedule_id: str,
                     machine_id: str | None = None, event_id: str | None = None,
                     occurred_at: int | str | None = None) -> Event:
        """One run of a schedule."""
        return self._publish_fields("schedule_run", workspace_id, dict(
            member_id=member_id, schedule_id=schedule_id, machine_id=machine_id,
            event_id=event_id, occurred_at=occurred_at))

    def skill(self, workspace_id: str, *, member_id: str, skill: str, cache_hit: bool,
              machine_id: str | None = None, event_id: str | None = None,
              occurred_at: int | str | None = None) -> Event:
        """One skill invocation."""
        return self._publish_fields("skill", workspace_id, dict(
            member_id=member_id, skill=skill, cache_hit=cache_hit, machine_id=machine_id,
            event_id=event_id, occurred_at=occurred_at))

    def storage(self, workspace_id: str, *, category: str, delta_bytes: int | None = None,
                total_bytes: int | None = None, event_id: str | None = None,
                occurred_at: int | str | None = None) -> Event:
        """A storage change (``delta_bytes``) or reading (``total_bytes``): exactly one."""
        return self._publish_fields("storage", workspace_id, dict(
            category=category, delta_bytes=delta_bytes, total_bytes=total_bytes,
            event_id=event_id, occurred_at=occurred_at))

    def api(self, workspace_id: str, *, protocol: str, requests: int = 1,
            member_id: str | None = None, event_id: str | None = None,
            occurred_at: int | str | None = None) -> Event:
        """Requests through the API gateway."""
        return self._publish_fields("api", workspace_id, dict(
            protocol=protocol, requests=requests, member_id=member_id, event_id=event_id,
            occurred_at=occurred_at))

    def machine(self, workspace_id: str, *, machine_id: str, action: str,
                event_id: str | None = None, occurred_at: int | str | None = None) -> Event:
        """A machine registered or removed."""
        return self._publish_fields("machine", workspace_id, dict(
            machine_id=machine_id, action=action, event_id=event_id, occurred_at=occurred_at))

    def plan(self, workspace_id: str, *, plan: str, cycle_anchor: int | str,
             limits: Mapping[str, int | None], owners: list[str], timezone: str = "UTC",
             event_id: str | None = None, occurred_at: int | str | None = None) -> Event:
        """Set a workspace's plan."""
        return self._publish_fields("plan", workspace_id, dict(
            plan=plan, cycle_anchor=cycle_anchor, limits=dict(limits), owners=list(owners),
            timezone=timezone, event_id=event_id, occurred_at=occurred_at))

    def topup(self, workspace_id: str, *, quota: str, amount: int,
              event_id: str | None = None, occurred_at: int | str | None = None) -> Event:
        """Grant extra quota for the cycle containing ``occurred_at``."""
        return self._publish_fields("topup", workspace_id, dict(
            quota=quota, amount=amount, event_id=event_id, occurred_at=occurred_at))

    def alert_settings(self, workspace_id: str, *, email: bool | None = None,
                       slack_webhook_url: str | None = None, webhook_url: str | None = None,
                       webhook_secret: str | None = None,
                       muted: list[Mapping[str, Any]] | None = None,
                       forecasts: list[Mapping[str, Any]] | None = None,
                       muted_forecasts: list[str] | None = None,
                       event_id: str | None = None,
                       occurred_at: int | str | None = None) -> Event:
        """Replace a workspace's alert channels, mutes and forecast opt-ins (``{quota,
        lead_days}``; ``None`` clears a channel)."""
        return self._publish_fields("alert_settings", workspace_id, dict(
            email=email, slack_webhook_url=slack_webhook_url, webhook_url=webhook_url,
            webhook_secret=webhook_secret, muted=[dict(m) for m in muted or []],
            forecasts=[dict(f) for f in forecasts or []],
            muted_forecasts=list(muted_forecasts or []),
            event_id=event_id, occurred_at=occurred_at))

    # --- flushing ----------------------------------------------------------------------------

    def pending(self) -> int:
        """Messages not yet delivered (or failed)."""
        return len(self._producer)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every message's delivery report; ``PublishError`` if any failed or is left."""
        left = self._producer.flush(timeout_s)
        self.raise_errors(undelivered=left)

    def raise_errors(self, undelivered: int = 0) -> None:
        """``PublishError`` when deliveries failed (since the last call) or are undelivered."""
        with self._lock:
            errors, failed = self.errors, self.failed
            self.errors, self.failed = [], 0
        if failed or undelivered:
            first = f"; first: {errors[0][2]} on {errors[0][0]}" if errors else ""
            raise PublishError(
                f"{failed} deliveries failed and {undelivered} are undelivered{first}", errors
            )

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush, stop the report thread, close the producer's connections (a producer
        left to the garbage collector logs connection failures once the broker stops).
        Raises ``PublishError`` like ``flush``; a second call does nothing."""
        if self._closed.is_set():
            return
        try:
            self.flush(timeout_s)
        finally:
            self._closed.set()
            self._poller.join()
            self._producer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
        else:  # do not hide the original error behind a delivery error
            with contextlib.suppress(PublishError):
                self.close()
