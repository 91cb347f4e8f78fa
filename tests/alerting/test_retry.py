"""Retry policy: what is retried, how long to wait, and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from alerting.retry import (
    AttemptResult,
    Kind,
    RetryPolicy,
    classify_http,
    classify_smtp,
    parse_retry_after,
)


@pytest.mark.parametrize(("status", "kind"), [
    (200, Kind.DELIVERED), (204, Kind.DELIVERED),
    (429, Kind.RETRYABLE), (500, Kind.RETRYABLE), (502, Kind.RETRYABLE), (503, Kind.RETRYABLE),
    (400, Kind.PERMANENT), (401, Kind.PERMANENT), (404, Kind.PERMANENT), (410, Kind.PERMANENT),
    (301, Kind.PERMANENT), (302, Kind.PERMANENT),
])
def test_http_statuses(status: int, kind: Kind) -> None:
    assert classify_http(status, None, 0).kind is kind


def test_smtp_4xx_is_transient_and_5xx_is_not() -> None:
    assert classify_smtp(451, "try later").kind is Kind.RETRYABLE
    assert classify_smtp(550, "no such user").kind is Kind.PERMANENT


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_s=1.0, cap_s=8.0)
    assert [policy.backoff(n, 0.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [policy.backoff(n, 0.999999) for n in (1, 2, 3, 4, 5)] == pytest.approx(
        [1.0, 2.0, 4.0, 8.0, 8.0], rel=1e-5)


def test_retry_after_is_honoured_in_seconds_and_as_a_date_up_to_a_cap() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(format_datetime(datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC),
                                             usegmt=True), now) == 30.0
    assert parse_retry_after("soon", now) is None
    policy = RetryPolicy(base_s=0.1, cap_s=1.0, retry_after_cap_s=60.0)
    throttled = classify_http(429, "7", now)
    assert throttled.retry_after_s == 7.0
    assert policy.delay(1, throttled, 0.5) == 7.0
    assert policy.delay(1, classify_http(429, "3600", now), 0.5) == 60.0


def test_retries_stop_at_max_attempts_and_never_for_permanent_failures() -> None:
    policy = RetryPolicy(max_attempts=3)
    transient = AttemptResult.retryable("timed out")
    assert policy.should_retry(1, transient) and policy.should_retry(2, transient)
    assert not policy.should_retry(3, transient)
    assert not policy.should_retry(1, AttemptResult.permanent("HTTP 400"))
