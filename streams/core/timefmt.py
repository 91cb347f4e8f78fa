"""UTC instants as the outputs write them (S2: ``YYYY-MM-DDTHH:MM:SSZ``).

Cycle starts are formatted many times (every alert id, every usage row), so the
formatting of a given instant is memoised; the cache is bounded because a
workspace only ever has a handful of live cycle bounds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MS: Final = timedelta(milliseconds=1)
MINUTE_MS: Final = 60_000
DAY_MS: Final = 86_400_000


def datetime_of_ms(ms: int) -> datetime:
    """The aware UTC datetime of epoch milliseconds (exact: no float round trip)."""
    return EPOCH + timedelta(milliseconds=ms)


def ms_of_datetime(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (uses its ``utcoffset``, so ``fold`` counts)."""
    return (moment - EPOCH) // MS


@lru_cache(maxsize=4096)
def utc_text(ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (S2; sub-second digits are dropped, as in the spec's ids)."""
    return datetime_of_ms(ms).strftime("%Y-%m-%dT%H:%M:%SZ")
