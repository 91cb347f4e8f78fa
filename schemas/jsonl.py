"""JSON lines: one ``type``-tagged event object per line (``meter publish``, ``meter replay``).

``parse_line`` turns one line into an event or raises ``InvalidEvent`` (bad JSON is
``undecodable``); ``event_to_json`` is the inverse, with times as RFC 3339 UTC strings.
Blank lines are the caller's to skip (``is_blank``); ``read_lines`` does it and numbers
the lines from 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

from schemas.events import AlertSettingsEvent, Event, PlanEvent, type_of
from schemas.validation import InvalidEvent, validate

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def parse_line(
    raw: bytes | str, *, now_ms: int | None, line: int | None = None
) -> Event:
    """The event on one JSON line; ``InvalidEvent`` (with ``line`` set) when it is not one."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("undecodable", f"not valid JSON: {exc}", None, line=line) from None
    if type(obj) is not dict:
        raise InvalidEvent("undecodable", "a line must hold one JSON object", None, line=line)
    type_name = obj.get("type")
    try:
        if type(type_name) is not str:
            if "type" not in obj:
                raise InvalidEvent("missing_field", "type: required field is missing", "type")
            raise InvalidEvent("wrong_type", "type: expected a string", "type")
        return validate(type_name, obj, now_ms=now_ms)
    except InvalidEvent as exc:
        exc.line = line
        raise


def is_blank(raw: bytes | str) -> bool:
    """Blank lines are skipped (S12)."""
    return not raw.strip()


def read_lines(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """``(line number from 1, line without its newline)`` for every non-blank line."""
    for number, raw in enumerate(lines, start=1):
        stripped = raw.rstrip(b"\r\n")
        if stripped.strip():
            yield number, stripped


def format_ms(ms: int) -> str:
    """RFC 3339 UTC (``2025-05-05T05:05:05Z``, ``.123`` only when milliseconds are set)."""
    moment = (_EPOCH + timedelta(milliseconds=ms)).replace(tzinfo=None)
    if ms % 1000:
        return moment.isoformat(timespec="milliseconds") + "Z"
    return moment.isoformat(timespec="seconds") + "Z"


def event_to_json(event: Event) -> dict[str, Any]:
    """The ``type``-tagged JSON object of an event (``parse_line`` gives the event back)."""
    obj: dict[str, Any] = {"type": type_of(event)}
    obj.update(event._asdict())
    obj["occurred_at"] = format_ms(event.occurred_at)
    if isinstance(event, PlanEvent):
        obj["cycle_anchor"] = format_ms(event.cycle_anchor)
        obj["limits"] = event.limits._asdict()
        obj["owners"] = list(event.owners)
    elif isinstance(event, AlertSettingsEvent):
        obj["muted"] = [m._asdict() for m in event.muted]
        obj["forecasts"] = [f._asdict() for f in event.forecasts]
        obj["muted_forecasts"] = list(event.muted_forecasts)
    return obj


def dumps_event(event: Event) -> bytes:
    """One JSON line (with its newline) for an event."""
    return orjson.dumps(event_to_json(event)) + b"\n"
