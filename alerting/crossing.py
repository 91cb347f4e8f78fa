"""A threshold crossing (a ``quota.thresholds`` record) as the alerting consumer sees it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class Crossing(NamedTuple):
    """One crossing; times are int epoch ms UTC, as in every decoded record."""

    alert_id: str
    workspace_id: str
    quota: str
    threshold: int
    arm: int
    highest_in_event: bool
    current: int
    limit: int
    cycle_start: int
    cycle_ends_at: int
    crossed_at: int
    event_id: str
    enforcement: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Crossing:
        """From a decoded ``quota.thresholds`` dict; raises ``KeyError``/``TypeError`` if off."""
        values = {name: record[name] for name in cls._fields}
        for name in ("threshold", "arm", "current", "limit", "cycle_start", "cycle_ends_at",
                     "crossed_at"):
            if type(values[name]) is not int:
                raise TypeError(f"{name}: expected an integer, got {values[name]!r}")
        return cls(**values)
