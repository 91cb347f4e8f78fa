"""Whole topics read back decoded: for summaries and tests that need "everything on this
topic" (the demo's summary, integration tests), not for services, which commit and follow."""

from __future__ import annotations

from typing import Any

from groundwork.kafka import read_raw
from groundwork.settings import Settings
from schemas.codec import decode_record


def read_all(settings: Settings, base: str, timeout_s: float = 30.0
             ) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every committed record of a topic up to its current end, decoded: [(key, record)].

    Tombstones are skipped (see ``groundwork.kafka.read_raw``).
    """
    return [(key, decode_record(value)[1])
            for _, _, key, value in read_raw(settings, base, timeout_s) if value is not None]
