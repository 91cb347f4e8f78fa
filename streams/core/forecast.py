"""Cycle forecasts of counter quotas: usage at cycle end, and when 100 % is reached.

Method (the same everywhere: ``meter usage``, the check API's quota listing, backtests):

- **Rate**: the cycle's mean rate so far, ``used / (now - cycle_start)``. A counter's
  usage so far is all a reader has (``quota.state``, history), and the mean over the
  whole elapsed cycle is robust to bursts: a burst moves it by its share of the cycle,
  not by its peak.
- **Guard** against the first hours of a cycle: no forecast (status
  ``insufficient_data``) until ``MIN_ELAPSED_MS`` (24 h) of the cycle have passed *and*
  at least ``MIN_USED`` units were used; a rate from a few minutes of a fresh cycle
  would project nonsense.
- **Projection**: ``projected = used + rate x (cycle_end - now)`` (integer, floor);
  100 % is reached at ``now + (limit - used) / rate`` when that is before the cycle
  ends (``exhausted_at``), else it is not reached this cycle (``None``).

Tolerance (tests/streams/core/test_forecast.py, bench/bench_forecast.py): exact for a
constant rate; for bursty usage, off by at most one burst period x (remaining /
elapsed); a rising rate is projected late (the mean lags the current rate): for a rate
that doubles over the cycle, forecast at a third of it, by up to a third of the time
left until 100 %.

Counter quotas: ai_tokens, schedule_runs, api_requests_per_cycle. Gauges (machines,
storage) and the per-minute rate are not forecast.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from schemas.quotas import CYCLE_COUNTER_NAMES

COUNTER_QUOTAS: Final = CYCLE_COUNTER_NAMES
MIN_ELAPSED_MS: Final = 24 * 3_600_000
MIN_USED: Final = 1

# statuses
OK: Final = "ok"  # projected; exhausted_at set when 100 % comes before the cycle ends
REACHED: Final = "reached"  # usage is at or above the limit already
INSUFFICIENT: Final = "insufficient_data"  # the guard: too early in the cycle, or no usage
UNLIMITED: Final = "unlimited"  # projected usage only (no limit to reach)


class Forecast(NamedTuple):
    status: str
    projected: int | None  # usage at cycle end at this pace
    exhausted_at: int | None  # epoch ms when 100 % is reached this cycle, else None


def forecast(used: int, limit: int | None, cycle_start: int, cycle_end: int,
             now_ms: int) -> Forecast:
    """The forecast of one counter quota at ``now_ms`` (see the module docstring)."""
    if limit is not None and used >= limit:
        return Forecast(REACHED, None, None)
    now = min(max(now_ms, cycle_start), cycle_end)
    elapsed = now - cycle_start
    if elapsed < MIN_ELAPSED_MS or used < MIN_USED:
        return Forecast(INSUFFICIENT, None, None)
    remaining = cycle_end - now
    projected = used + used * remaining // elapsed
    if limit is None:
        return Forecast(UNLIMITED, projected, None)
    # (limit - used) / (used / elapsed), rounded up to the millisecond it is reached
    to_limit = -(-(limit - used) * elapsed // used)
    exhausted_at = now + to_limit if to_limit < remaining else None
    return Forecast(OK, projected, exhausted_at)
