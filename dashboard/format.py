"""Readable numbers with units, times and durations (pure).

Counts and tokens use decimal prefixes (``1.2 k``, ``3.4 M``, ``5.6 B``); bytes use
decimal units (``kB``, ``MB``, ``GB``, ``TB``: 1 GB = 10^9 bytes). Below 1000 a value
is exact. One decimal under 100 of a unit, none from 100 up (``12.3 M``, ``123 M``).
Exact values with thousands separators (``exact``) go into tooltips.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

_COUNT_UNITS: Final = ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k"))
_BYTE_UNITS: Final = ((10**15, "PB"), (10**12, "TB"), (10**9, "GB"), (10**6, "MB"),
                      (10**3, "kB"))

# metric -> its unit word (storage_bytes is written with byte units instead)
UNITS: Final[dict[str, str]] = {
    "machines": "machines",
    "ai_tokens": "tokens",
    "storage_bytes": "bytes",
    "schedule_runs": "runs",
    "api_requests_per_minute": "req/min",
    "api_requests_per_cycle": "requests",
    "commands": "commands",
    "skill_invocations": "invocations",
    "chat_tokens": "tokens",
    "input_tokens": "tokens",
    "output_tokens": "tokens",
    "invocations": "invocations",
    "cache_hits": "hits",
}

LABELS: Final[dict[str, str]] = {
    "machines": "Machines",
    "ai_tokens": "AI tokens",
    "cost_micros": "AI cost (USD)",
    "storage_bytes": "Storage",
    "schedule_runs": "Schedule runs",
    "api_requests_per_minute": "API requests / minute",
    "api_requests_per_cycle": "API requests / cycle",
    "commands": "Commands",
    "skill_invocations": "Skill invocations",
    "chat_tokens": "Chat tokens",
    "input_tokens": "Input tokens",
    "output_tokens": "Output tokens",
    "invocations": "Invocations",
    "cache_hits": "Cache hits",
}


def count(value: int) -> str:
    """``950``, ``1.2 k``, ``12.3 M``, ``123 M``, ``4.5 B``."""
    return _with_units(value, _COUNT_UNITS)


def byte_size(value: int) -> str:
    """``512 B``, ``1.5 kB``, ``3.4 GB`` (decimal units)."""
    if abs(value) < 1000:
        return f"{value} B"
    return _with_units(value, _BYTE_UNITS)


def _with_units(value: int, units: tuple[tuple[int, str], ...]) -> str:
    """``value`` in the largest unit of ``units`` (largest first) not above it."""
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    for index, (size, suffix) in enumerate(units):
        if magnitude < size:
            continue
        scaled = magnitude / size
        text = f"{scaled:.1f}" if scaled < 99.95 else f"{scaled:.0f}"
        if text == "1000" and index > 0:  # 999.96 k reads 1.0 M
            size, suffix = units[index - 1]
            text = f"{magnitude / size:.1f}"
        return f"{sign}{text} {suffix}"
    return f"{sign}{magnitude}"


def amount(metric: str, value: int | None) -> str:
    """A value of ``metric`` with its unit: ``1.2 M tokens``, ``3.4 GB``, ``1 run``."""
    if value is None:
        return "unlimited"
    if metric == "storage_bytes":
        return byte_size(value)
    unit = UNITS.get(metric, "")
    if value == 1 and unit.endswith("s"):
        unit = unit[:-1]
    return f"{count(value)} {unit}".rstrip()


def unit_word(metric: str) -> str:
    """The word after a short value (``tokens``); empty for bytes (``GB`` says it)."""
    return "" if metric == "storage_bytes" else UNITS.get(metric, "")


def short(metric: str, value: int | None) -> str:
    """A value without its unit word (bytes keep theirs): ``1.2 M``, ``3.4 GB``."""
    if value is None:
        return "∞"
    return byte_size(value) if metric == "storage_bytes" else count(value)


def exact(value: int | None) -> str:
    """``1,234,567`` (tooltips, CSV-like precision)."""
    return "unlimited" if value is None else f"{value:,}"


def usd(micros: int) -> str:
    """Micro-dollars, short: ``$1.23``, ``$12.3k``, ``$0.0004`` (exact text in tooltips)."""
    value = micros / 1_000_000  # display only: the figures stay integers
    if value >= 10_000:
        return f"${value / 1000:,.1f}k"
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.4f}".rstrip("0") if value >= 0.0001 else "<$0.0001"


def label(metric: str) -> str:
    return LABELS.get(metric, metric.replace("_", " ").capitalize())


def percent(part: int, whole: int) -> str:
    """``42 %``, ``0.4 %`` under 1 %, ``–`` of nothing."""
    if whole <= 0:
        return "–"
    share = part * 100 / whole
    if 0 < share < 1:
        return f"{share:.1f} %"
    return f"{share:.0f} %"


def utc(ms: int) -> str:
    """``2026-03-01 00:00 UTC``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def moment(ms: int) -> str:
    """``1 May 00:00 UTC`` (a time within the year, short)."""
    at = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return f"{at.day} {at.strftime('%b %H:%M')} UTC"


def day(ms: int) -> str:
    """``1 Mar 2026``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return f"{moment.day} {moment.strftime('%b %Y')}"


def month_label(ms: int) -> str:
    """``Mar 26`` (a cycle's start on a chart axis)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%b %y")


def duration(ms: int) -> str:
    """``12 d 4 h``, ``3 h 20 min``, ``45 min``, ``under a minute``."""
    if ms < 60_000:
        return "under a minute"
    minutes = ms // 60_000
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


def ends_in(cycle_ends_at: int, now_ms: int) -> str:
    """``ends in 12 d 4 h`` or ``ended 3 d ago``."""
    if cycle_ends_at > now_ms:
        return f"ends in {duration(cycle_ends_at - now_ms)}"
    return f"ended {duration(now_ms - cycle_ends_at)} ago"


def _digits(value: int, decimals: int, units: tuple[tuple[int, str], ...]) -> str:
    magnitude = abs(value)
    for size, suffix in units:
        if magnitude >= size:
            return f"{'-' if value < 0 else ''}{magnitude / size:.{decimals}f} {suffix}"
    return str(value)


def pair(metric: str, used: int, limit: int) -> tuple[str, str]:
    """``used`` and ``limit`` short enough to read and precise enough to differ:
    ``1.23 M`` of ``1.25 M`` (not ``1.2 M`` of ``1.2 M``), unless they are equal."""
    first, second = short(metric, used), short(metric, limit)
    if used == limit or first != second:
        return first, second
    units = _BYTE_UNITS if metric == "storage_bytes" else _COUNT_UNITS
    for decimals in (2, 3):
        first, second = _digits(used, decimals, units), _digits(limit, decimals, units)
        if first != second:
            return first, second
    suffix = " B" if metric == "storage_bytes" else ""
    return f"{used:,}{suffix}", f"{limit:,}{suffix}"
