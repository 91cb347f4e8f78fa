"""Retry policy: what an attempt's result means and how long to wait (pure).

Retried: timeouts, connection errors, HTTP 5xx and 429 (and SMTP 4xx); a
``Retry-After`` is honoured (capped). Not retried: other 4xx, redirects,
refused URLs, SMTP 5xx. Backoff is exponential with "equal jitter": attempt n
waits between half and all of ``min(cap, base * 2**(n-1))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import NamedTuple


class Kind(StrEnum):
    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


class AttemptResult(NamedTuple):
    """What one send produced: a kind, a short reason (never a secret), a Retry-After."""

    kind: Kind
    reason: str
    retry_after_s: float | None = None

    @classmethod
    def delivered(cls, reason: str = "ok") -> AttemptResult:
        return cls(Kind.DELIVERED, reason)

    @classmethod
    def retryable(cls, reason: str, retry_after_s: float | None = None) -> AttemptResult:
        return cls(Kind.RETRYABLE, reason, retry_after_s)

    @classmethod
    def permanent(cls, reason: str) -> AttemptResult:
        return cls(Kind.PERMANENT, reason)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 12  # the defaults of groundwork/settings.py
    base_s: float = 1.0
    cap_s: float = 300.0
    retry_after_cap_s: float = 300.0

    def backoff(self, attempt: int, rand01: float) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based); ``rand01`` in [0, 1)."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + ceiling / 2 * rand01

    def delay(self, attempt: int, result: AttemptResult, rand01: float) -> float:
        """The wait before the next attempt: the backoff, or longer if the server asked."""
        wait = self.backoff(attempt, rand01)
        if result.retry_after_s is not None:
            wait = max(wait, min(result.retry_after_s, self.retry_after_cap_s))
        return wait

    def should_retry(self, attempt: int, result: AttemptResult) -> bool:
        return result.kind is Kind.RETRYABLE and attempt < self.max_attempts


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now_s)


def classify_http(status: int, retry_after: str | None, now_s: float,
                  body_excerpt: str = "") -> AttemptResult:
    """An HTTP response as an attempt result."""
    suffix = f": {body_excerpt}" if body_excerpt else ""
    if 200 <= status < 300:
        return AttemptResult.delivered(f"HTTP {status}")
    if status == 429 or status >= 500:
        return AttemptResult.retryable(f"HTTP {status}{suffix}",
                                       parse_retry_after(retry_after, now_s))
    if 300 <= status < 400:
        return AttemptResult.permanent(f"HTTP {status}: redirects are not followed")
    return AttemptResult.permanent(f"HTTP {status}{suffix}")


def classify_smtp(code: int, message: str) -> AttemptResult:
    """An SMTP error reply: 4xx is transient, 5xx permanent."""
    text = f"SMTP {code} {message}".strip()
    return AttemptResult.retryable(text) if 400 <= code < 500 else AttemptResult.permanent(text)
