"""``alerting.deliveries`` records and the redaction of their targets (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from streams.core.quotas import ThresholdCrossing as Crossing

Channel = Literal["email", "slack", "webhook"]
CHANNELS: Final[tuple[Channel, ...]] = ("email", "slack", "webhook")

Status = Literal["attempted", "delivered", "failed", "superseded", "muted", "retrying"]
FINAL_STATUSES: Final = frozenset({"delivered", "failed", "superseded", "muted"})


def delivery_id(alert_id: str, channel: str, attempt: int, status: str) -> str:
    return f"{alert_id}|{channel}|{attempt}|{status}"


def delivery_record(crossing: Crossing, channel: Channel, status: Status, attempt: int,
                    detail: str | None, target: str | None, recorded_at: int) -> dict[str, Any]:
    """One record; ``attempt`` is 0 for muted and superseded (nothing was sent)."""
    return {
        "delivery_id": delivery_id(crossing.alert_id, channel, attempt, status),
        "alert_id": crossing.alert_id,
        "workspace_id": crossing.workspace_id,
        "channel": channel,
        "status": status,
        "attempt": attempt,
        "detail": detail,
        "target": target,
        "quota": crossing.quota,
        "threshold": crossing.threshold,
        "recorded_at": recorded_at,
    }


def redact_url(url: str, *, keep_path: bool) -> str:
    """Scheme, host, port (and path if ``keep_path``): no user info, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}{port}" if parts.scheme else "(invalid URL)"
    if keep_path:
        return origin + parts.path
    return origin + ("/…" if parts.path not in ("", "/") else "")


def target_of(channel: Channel, *, url: str | None = None,
              owners: Sequence[str] = ()) -> str | None:
    """What a record names as the destination: owners for email, a redacted URL otherwise.

    Slack's incoming-webhook path is its secret, so only the origin is kept.
    """
    if channel == "email":
        return ", ".join(owners) or None
    if url is None:
        return None
    return redact_url(url, keep_path=channel == "webhook")
