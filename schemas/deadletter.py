"""Dead letters (``usage.deadletter``): what could not be processed, with its original bytes.

The stream worker (the one consumer of event topics) builds its dead letters with
``deadletter_record`` inside its batch's transaction (``streams.processor``). A consumer
of event topics outside a transaction would use the helper that never raises:

    outcome = decode_or_dead_letter(value, source_topic=msg.topic, partition=msg.partition,
                                    offset=msg.offset, key=msg.key)
    if isinstance(outcome, DeadLetter):
        send(settings.topic("usage.deadletter"), key=outcome.key, value=outcome.value)
    else:
        process(outcome)

and ``dead_letter(...)`` for a refusal of its own.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any, Final

from schemas.codec import decode_event, decode_record, encode_record
from schemas.events import Event
from schemas.validation import REASONS, InvalidEvent

TOPIC: Final = "usage.deadletter"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter ready to produce to ``settings.topic('usage.deadletter')``."""

    key: bytes | None
    value: bytes
    reason: str
    detail: str


def deadletter_record(
    source_topic: str,
    partition: int,
    offset: int,
    reason: str,
    detail: str,
    raw: bytes,
    seen_at_ms: int,
) -> dict[str, Any]:
    """The ``usage.deadletter`` record (partition and offset -1 when not read from Kafka)."""
    if reason not in REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}, expected one of {REASONS}")
    return {
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "reason": reason,
        "detail": detail,
        "original": bytes(raw),
        "seen_at": seen_at_ms,
    }


def dead_letter(
    reason: str,
    detail: str,
    raw: bytes,
    *,
    source_topic: str,
    partition: int = -1,
    offset: int = -1,
    key: bytes | None = None,
    seen_at_ms: int | None = None,
) -> DeadLetter:
    """Encode a dead letter (``seen_at`` defaults to the wall clock now)."""
    seen = int(time.time() * 1000) if seen_at_ms is None else seen_at_ms
    record = deadletter_record(source_topic, partition, offset, reason, detail, raw, seen)
    return DeadLetter(key, encode_record(TOPIC, record), reason, detail)


def decode_or_dead_letter(
    raw: bytes | None,
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None = None,
    topic: str | None = None,
    now_ms: int | None = None,
    seen_at_ms: int | None = None,
) -> Event | DeadLetter:
    """The valid event in ``raw``, or the dead letter to send instead (never raises).

    ``topic`` (base name) checks the record belongs to the topic it came from.
    """
    if raw is None:
        return dead_letter("undecodable", "empty message (tombstone)", b"",
                           source_topic=source_topic, partition=partition, offset=offset,
                           key=key, seen_at_ms=seen_at_ms)
    try:
        return decode_event(raw, now_ms=now_ms, topic=topic)
    except InvalidEvent as exc:
        return dead_letter(exc.reason, exc.detail, raw, source_topic=source_topic,
                           partition=partition, offset=offset, key=key, seen_at_ms=seen_at_ms)


def decode_dead_letter(value: bytes) -> dict[str, Any]:
    """A ``usage.deadletter`` record back as a dict (``original`` as bytes)."""
    topic, record = decode_record(value)
    if topic != TOPIC:
        raise InvalidEvent("undecodable", f"a {topic} record is not a dead letter")
    return record


def dead_letter_to_json(record: dict[str, Any]) -> dict[str, Any]:
    """A dead letter for people: ``original`` in base64 (it may be any bytes)."""
    shown = dict(record)
    shown["original"] = base64.b64encode(record["original"]).decode("ascii")
    return shown
