"""The check API's hot routes, ``POST /v1/check`` and ``POST /v1/check/batch``, as plain
functions from a request body to a status and a JSON body.

They validate by hand instead of through a pydantic model: a gateway calls them on every
request, and model validation was a good part of each answer's time. The rules are the
documented ``CheckRequest`` schema's (streams/api.py), strictly: an amount is a JSON
integer, not a string or a float.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from schemas.events import QUOTAS
from streams.quota_view import QuotaView, UnknownWorkspace

MAX_BATCH: Final = 100
MAX_AMOUNT: Final = (1 << 53) - 1  # the largest integer every JSON parser reads exactly
MAX_BODY_BYTES: Final = 1 << 20
_QUOTAS: Final = frozenset(QUOTAS)
_FIELDS: Final = frozenset(("workspace_id", "quota", "amount", "machine_id"))


class BadItem(ValueError):
    """A check that does not follow the ``CheckRequest`` schema; the message names the field."""


def _malformed(detail: str) -> dict[str, str]:
    return {"error": "malformed_request", "detail": detail}


def parse_item(item: Any) -> tuple[str, str, int, str | None]:
    """``(workspace_id, quota, amount, machine_id)`` from one decoded JSON check."""
    if not isinstance(item, dict):
        raise BadItem("body: a JSON object is required")
    workspace_id = item.get("workspace_id")
    if not isinstance(workspace_id, str) or not workspace_id:
        raise BadItem("workspace_id: a non-empty string is required")
    quota = item.get("quota")
    if not isinstance(quota, str) or quota not in _QUOTAS:
        raise BadItem(f"quota: one of {', '.join(QUOTAS)} is required")
    amount = item.get("amount", 1)
    if isinstance(amount, float) and amount.is_integer():
        amount = int(amount)  # JSON Schema's integer includes 5.0
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= MAX_AMOUNT:
        raise BadItem(f"amount: an integer from 0 to {MAX_AMOUNT} is required")
    machine_id = item.get("machine_id")
    if machine_id is not None and (not isinstance(machine_id, str) or not machine_id):
        raise BadItem("machine_id: a non-empty string or null is required")
    return workspace_id, quota, amount, machine_id


def check_item(view: QuotaView, item: Any) -> tuple[int, dict[str, Any]]:
    """One check's status and body: 200 with the decision, 404 or 422 with an error."""
    try:
        workspace_id, quota, amount, machine_id = parse_item(item)
    except BadItem as exc:
        return 422, _malformed(str(exc))
    try:
        return 200, view.check(workspace_id, quota, amount, machine_id).to_json()
    except UnknownWorkspace as exc:
        return 404, {"error": "unknown_workspace", "detail": str(exc)}


def _decode(body: bytes) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise BadItem(f"body: larger than {MAX_BODY_BYTES} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadItem(f"body: not JSON ({exc})") from None


def answer_check(view: QuotaView, body: bytes) -> tuple[int, bytes]:
    """``POST /v1/check``."""
    try:
        item = _decode(body)
    except BadItem as exc:
        return 422, orjson.dumps(_malformed(str(exc)))
    status, answer = check_item(view, item)
    return status, orjson.dumps(answer)


def answer_batch(view: QuotaView, body: bytes) -> tuple[int, bytes]:
    """``POST /v1/check/batch``: ``{"items": [check, ...]}``, up to ``MAX_BATCH`` checks.

    Each item gets its own answer, in order: a decision, or ``{"error", "detail"}`` for
    an item that is malformed or names an unknown workspace. Only a body that is not
    such a list fails the call (422).
    """
    try:
        request = _decode(body)
        items = request.get("items") if isinstance(request, dict) else None
        if not isinstance(items, list):
            raise BadItem("items: a JSON array of checks is required")
        if len(items) > MAX_BATCH:
            raise BadItem(f"items: at most {MAX_BATCH} checks per call, got {len(items)}")
    except BadItem as exc:
        return 422, orjson.dumps(_malformed(str(exc)))
    return 200, orjson.dumps({"results": [check_item(view, item)[1] for item in items]})
