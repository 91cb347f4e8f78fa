"""Records for people (``meter tail``): times as RFC 3339, bytes as base64, secrets redacted."""

from __future__ import annotations

import base64
from functools import cache
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from schemas.jsonl import format_ms
from schemas.registry import default_registry
from schemas.validation import InvalidEvent

REDACTED: Final = "<redacted>"


def redact_url(url: str) -> str:
    """Scheme and host only for secret-bearing URLs (a Slack webhook's path is its token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if not parts.scheme or not parts.hostname:
        return REDACTED
    return f"{parts.scheme}://{parts.hostname}/{REDACTED}"


def strip_query(url: str) -> str:
    """A URL without query, fragment or credentials (webhook URLs may carry tokens there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact_secrets(obj: dict[str, Any]) -> dict[str, Any]:
    """Alert settings for display: the webhook secret and Slack URL never shown."""
    shown = dict(obj)
    if shown.get("webhook_secret") is not None:
        shown["webhook_secret"] = REDACTED
    if isinstance(shown.get("slack_webhook_url"), str):
        shown["slack_webhook_url"] = redact_url(shown["slack_webhook_url"])
    if isinstance(shown.get("webhook_url"), str):
        shown["webhook_url"] = strip_query(shown["webhook_url"])
    return shown


@cache
def _time_paths(topic: str) -> frozenset[tuple[str, ...]]:
    """Paths (field names, '*' for array items) of timestamp-millis fields of a topic."""
    found: set[tuple[str, ...]] = set()

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, path)
        elif isinstance(node, dict):
            if node.get("logicalType") == "timestamp-millis":
                found.add(path)
            elif node.get("type") == "record":
                for field in node["fields"]:
                    walk(field["type"], (*path, field["name"]))
            elif node.get("type") == "array":
                walk(node["items"], (*path, "*"))

    walk(default_registry().current[topic].load(), ())
    return frozenset(found)


def _convert(value: Any, path: tuple[str, ...], times: frozenset[tuple[str, ...]]) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if path in times and type(value) is int:
        return format_ms(value)
    if isinstance(value, dict):
        return {k: _convert(v, (*path, k), times) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(v, (*path, "*"), times) for v in value]
    return value


def record_to_json(topic: str, record: dict[str, Any]) -> dict[str, Any]:
    """A decoded record of ``topic`` for people (times RFC 3339, bytes base64, no secrets)."""
    shown: dict[str, Any] = _convert(record, (), _time_paths(topic))
    if topic == "alerting.settings":
        shown = redact_secrets(shown)
    if topic == "alerting.deliveries" and isinstance(shown.get("target"), str):
        shown["target"] = strip_query(shown["target"])
    return shown


def invalid_to_json(exc: InvalidEvent, raw: bytes) -> dict[str, Any]:
    """What ``meter tail`` shows for bytes that are not a valid record."""
    return {"invalid": exc.reason, "detail": exc.detail,
            "original": base64.b64encode(raw).decode("ascii")}
