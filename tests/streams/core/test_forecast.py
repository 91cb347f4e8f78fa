"""Cycle forecasts on synthetic cycles with known constant, bursty and rising rates."""

from __future__ import annotations

from collections.abc import Callable

from streams.core.forecast import (
    INSUFFICIENT,
    MIN_ELAPSED_MS,
    OK,
    REACHED,
    UNLIMITED,
    forecast,
)

HOUR = 3_600_000
DAY = 24 * HOUR
START = 1_764_547_200_000  # 2025-12-01T00:00:00Z
END = START + 30 * DAY


def used_at(rate: Callable[[int], float], t: int) -> int:
    """Usage at ``t`` for an hourly rate function of the hour index (summed per hour)."""
    hours = (t - START) // HOUR
    return int(sum(rate(h) for h in range(hours)))


def test_the_guard_gives_no_forecast_in_the_first_hours_or_without_usage() -> None:
    assert forecast(10_000, 100_000, START, END, START + 6 * HOUR).status == INSUFFICIENT
    assert forecast(0, 100_000, START, END, START + 10 * DAY).status == INSUFFICIENT
    assert forecast(10_000, 100_000, START, END, START + MIN_ELAPSED_MS).status == OK


def test_a_constant_rate_is_projected_exactly() -> None:
    # 100 per hour; limit 48,000 is reached after 480 hours = day 20
    now = START + 10 * DAY
    f = forecast(used_at(lambda h: 100, now), 48_000, START, END, now)
    assert f == (OK, 72_000, START + 20 * DAY)
    # a limit above the projection is not reached this cycle
    assert forecast(24_000, 100_000, START, END, now) == (OK, 72_000, None)
    assert forecast(24_000, None, START, END, now) == (UNLIMITED, 72_000, None)
    assert forecast(48_000, 48_000, START, END, now).status == REACHED


def test_a_bursty_rate_is_projected_within_the_burst_share() -> None:
    # 2,400 units in one burst a day at 09:00 (mean 100/h): at 08:00 of day 10 nine
    # bursts happened over 9 days 8 h; off by at most a burst period x remaining / elapsed
    def rate(h: int) -> float:
        return 2_400 if h % 24 == 9 else 0

    now = START + 9 * DAY + 8 * HOUR
    f = forecast(used_at(rate, now), 48_000, START, END, now)
    true_at = START + 19 * DAY + 10 * HOUR  # the 20th burst
    assert f.status == OK and f.exhausted_at is not None
    # the documented tolerance: one burst period, scaled by remaining / elapsed time
    assert abs(f.exhausted_at - true_at) <= DAY * (END - now) // (now - START)


def test_a_rising_rate_is_projected_late_by_the_documented_margin() -> None:
    # the hourly rate doubles over the cycle (50 -> 100): the mean lags behind
    def rate(h: int) -> float:
        return 50 + 50 * h / 720

    now = START + 10 * DAY
    limit = used_at(rate, START + 22 * DAY)
    f = forecast(used_at(rate, now), limit, START, END, now)
    true_at = START + 22 * DAY
    assert f.status == OK and f.exhausted_at is not None
    late = f.exhausted_at - true_at
    assert 0 < late <= (true_at - now) // 3  # late, by at most a third of the time left
