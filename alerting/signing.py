"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure.

``webhook-signature`` is ``v1,<base64 HMAC-SHA256>`` of ``{id}.{timestamp}.{body}``
under each valid secret, space-separated. During a rotation a workspace sets
``webhook_secret`` to two secrets separated by one space (``"whsec_NEW whsec_OLD"``):
both sign, so a receiver that still holds the old secret verifies, and one that
already holds the new one does too. Publishing the new secret alone ends the rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Final

SECRET_PREFIX: Final = "whsec_"
MAX_SECRETS: Final = 2


class InvalidSecret(ValueError):
    """``webhook_secret`` is not one or two ``whsec_`` base64 secrets (message has no secret)."""


def parse_secrets(value: str) -> tuple[bytes, ...]:
    """The HMAC keys of a ``webhook_secret`` value: one secret, or two during a rotation."""
    parts = value.split()
    if not parts:
        raise InvalidSecret("webhook_secret is empty")
    if len(parts) > MAX_SECRETS:
        raise InvalidSecret(f"webhook_secret holds {len(parts)} secrets; at most "
                            f"{MAX_SECRETS} (new and old) are valid at once")
    keys = []
    for index, part in enumerate(parts, start=1):
        if not part.startswith(SECRET_PREFIX):
            raise InvalidSecret(f"webhook_secret #{index} does not start with {SECRET_PREFIX!r}")
        try:
            key = base64.b64decode(part[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidSecret(f"webhook_secret #{index} is not base64") from None
        if not key:
            raise InvalidSecret(f"webhook_secret #{index} is empty")
        keys.append(key)
    return tuple(keys)


def signature(key: bytes, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(msg_id: str, timestamp_s: int, body: bytes,
                 keys: tuple[bytes, ...]) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent now."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(signature(k, msg_id, timestamp_s, body) for k in keys),
    }
