"""What was delivered: the fold of ``alerting.deliveries`` records (pure).

Rebuilt from the topic on start and on every partition assignment, and fed
with the records this process writes; applying a record twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alerting.records import FINAL_STATUSES


@dataclass
class KeyState:
    """One ``(alert_id, channel)``: highest attempt, its outcome state, a final status."""

    attempts: int = 0
    final: str | None = None
    open_attempt: int | None = None  # attempted, no outcome recorded (the crash window)

    @property
    def done(self) -> bool:
        return self.final is not None


class Ledger:
    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], KeyState] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def state(self, alert_id: str, channel: str) -> KeyState:
        return self._keys.get((alert_id, channel)) or KeyState()

    def apply(self, record: Mapping[str, Any]) -> None:
        key = (str(record["alert_id"]), str(record["channel"]))
        state = self._keys.setdefault(key, KeyState())
        status = str(record["status"])
        attempt = int(record["attempt"])
        if status in FINAL_STATUSES:
            state.final = state.final or status
        if attempt > state.attempts:
            state.attempts = attempt
            state.open_attempt = attempt if status == "attempted" else None
        elif attempt == state.attempts and status != "attempted":
            state.open_attempt = None
