"""Dead letters for people: read them, count them, show them, and replay them.

A replay re-publishes a dead letter's original bytes to its source topic with its
original key, through the platform publisher (idempotent, murmur2_random), so the
worker processes it on the normal path: counted once if its cause is gone, deduplicated
by S6 if it was counted already, dead-lettered again (a new dead letter) if not.

What a replay sent is recorded on ``usage.deadletter.replays`` (JSON naming the dead
letter's ``partition:offset`` on ``usage.deadletter``, keyed like it) after the re-published records
were acknowledged. A crash between the two leaves records sent but not noted: a later
replay sends them again, which S6 makes harmless.
"""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from groundwork.errors import UserError
from groundwork.settings import Settings
from schemas.deadletter import TOPIC, decode_dead_letter

REPLAYS_TOPIC: Final = "usage.deadletter.replays"
_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNIT_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True, slots=True)
class Letter:
    """One record of ``usage.deadletter`` and where it lies."""

    partition: int
    offset: int
    key: bytes | None
    source_topic: str
    source_partition: int
    source_offset: int
    reason: str
    detail: str
    original: bytes
    seen_at: int

    @property
    def ref(self) -> str:
        """Its id: partition and offset on ``usage.deadletter``."""
        return f"{self.partition}:{self.offset}"

    @property
    def workspace(self) -> str:
        return (self.key or b"").decode(errors="replace")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command is about (every field optional)."""

    reason: str | None = None
    workspace: str | None = None
    topic: str | None = None
    since_ms: int | None = None

    def matches(self, letter: Letter) -> bool:
        return ((self.reason is None or letter.reason == self.reason)
                and (self.workspace is None or letter.workspace == self.workspace)
                and (self.topic is None or letter.source_topic == self.topic)
                and (self.since_ms is None or letter.seen_at >= self.since_ms))


def parse_since(text: str, now_ms: int | None = None) -> int:
    """``--since``: RFC 3339, epoch milliseconds, or an age like ``30m``, ``2h``, ``7d``."""
    from schemas.validation import InvalidEvent, parse_rfc3339_ms

    text = text.strip()
    if text.isdigit():
        return int(text)
    relative = _RELATIVE.match(text)
    if relative:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return now - int(relative.group(1)) * _UNIT_MS[relative.group(2)]
    try:
        return parse_rfc3339_ms(text, "since")
    except InvalidEvent:
        raise UserError(f"--since {text!r}: expected a time like 2026-12-05T10:00:00Z, "
                        "epoch milliseconds, or an age like 30m, 2h, 7d") from None


@dataclass(frozen=True)
class LetterScan:
    """The dead-letter topic read whole: the letters, oldest first, and where records lie
    that are not dead letters of this schema (``PARTITION:OFFSET``), so they are named,
    never silently passed over."""

    letters: list[Letter]
    unreadable: list[str]


def read_letters(settings: Settings) -> LetterScan:
    """Every dead letter on the topic now, and the refs of records that do not decode."""
    from groundwork.kafka import read_raw
    from schemas.validation import InvalidEvent

    letters, unreadable = [], []
    for partition, offset, key, value in read_raw(settings, TOPIC):
        if value is None:
            continue
        try:
            r = decode_dead_letter(value)
        except InvalidEvent:
            unreadable.append(f"{partition}:{offset}")
            continue
        letters.append(Letter(partition, offset, key, r["source_topic"], r["partition"],
                              r["offset"], r["reason"], r["detail"], bytes(r["original"]),
                              r["seen_at"]))
    letters.sort(key=lambda letter: (letter.seen_at, letter.partition, letter.offset))
    return LetterScan(letters, unreadable)


def read_replays(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """What replays sent, by dead letter ref, oldest first."""
    from groundwork.kafka import read_raw

    replays: dict[str, list[dict[str, Any]]] = {}
    for _, _, _, value in read_raw(settings, REPLAYS_TOPIC):
        if value is None:
            continue
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        replays.setdefault(str(record.get("deadletter")), []).append(record)
    return replays


def summarize(letters: Iterable[Letter], replays: dict[str, list[dict[str, Any]]]
              ) -> list[tuple[str, str, str, int, int]]:
    """Rows of (reason, source topic, workspace, dead letters, replayed), largest first."""
    total: Counter[tuple[str, str, str]] = Counter()
    replayed: Counter[tuple[str, str, str]] = Counter()
    for letter in letters:
        group = (letter.reason, letter.source_topic, letter.workspace)
        total[group] += 1
        replayed[group] += letter.ref in replays
    return [(*group, n, replayed[group])
            for group, n in sorted(total.items(), key=lambda item: (-item[1], item[0]))]


def decoded_original(letter: Letter) -> dict[str, Any]:
    """The original bytes decoded where possible: the event, an Avro record, JSON, text,
    or else base64."""
    from schemas.codec import decode_event, decode_record
    from schemas.jsonl import event_to_json
    from schemas.validation import InvalidEvent

    raw = letter.original
    if not raw:
        return {"empty": True}
    try:
        return {"event": event_to_json(decode_event(raw))}
    except InvalidEvent:
        pass
    try:
        schema, record = decode_record(raw)
        shown = {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v
                 for k, v in record.items()}
        return {"avro": {"schema": schema, "record": shown}}
    except InvalidEvent:
        pass
    try:
        return {"json": orjson.loads(raw)}
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8")
        if text.isprintable():
            return {"text": text}
    except UnicodeDecodeError:
        pass
    return {"base64": base64.b64encode(raw).decode("ascii")}


def letter_to_json(letter: Letter, replays: dict[str, list[dict[str, Any]]]
                   ) -> dict[str, Any]:
    from streams.core.timefmt import utc_text

    return {
        "deadletter": letter.ref,
        "reason": letter.reason,
        "detail": letter.detail,
        "workspace": letter.workspace,
        "source": f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}",
        "seen_at": utc_text(letter.seen_at),
        "replayed_at": [utc_text(r["replayed_at"]) for r in replays.get(letter.ref, [])],
        "original": decoded_original(letter),
    }


@dataclass
class ReplayResult:
    sent: list[Letter]
    already_replayed: int
    empty: int


def replay(settings: Settings, letters: list[Letter],
           replays: dict[str, list[dict[str, Any]]], *, again: bool = False,
           dry_run: bool = False) -> ReplayResult:
    """Re-publish the letters' original bytes to their source topics (same key), then
    record what was sent. Letters replayed before are skipped unless ``again``; empty
    originals (tombstones) are never sent."""
    from schemas.publisher import Publisher, PublishError

    chosen = [letter for letter in letters if letter.original
              and (again or letter.ref not in replays)]
    result = ReplayResult(chosen, already_replayed=sum(
        1 for letter in letters if letter.original and not again and letter.ref in replays),
        empty=sum(1 for letter in letters if not letter.original))
    if dry_run or not chosen:
        return result
    from meter.commands.events import require_topics

    sources = sorted({letter.source_topic for letter in chosen})
    require_topics(settings, [*sources, REPLAYS_TOPIC])
    publisher = Publisher(settings, client_id="meter-deadletter-replay")
    try:
        for letter in chosen:
            publisher.produce(letter.source_topic, letter.key, letter.original)
        publisher.flush()  # acknowledged before they are noted as sent
        now = int(time.time() * 1000)
        for letter in chosen:
            publisher.produce(REPLAYS_TOPIC, letter.key, orjson.dumps({
                "deadletter": letter.ref, "reason": letter.reason,
                "workspace": letter.workspace, "source_topic": letter.source_topic,
                "source_partition": letter.source_partition,
                "source_offset": letter.source_offset, "replayed_at": now,
            }))
        publisher.close()
    except PublishError as exc:
        raise UserError(f"replay failed: {exc}; check the broker with `meter kafka status` "
                        "(sending again is harmless: S6 drops what was counted)") from None
    return result
