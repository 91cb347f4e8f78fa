"""Event ids: UUIDv7 (RFC 9562), time-ordered, for events published without one."""

from __future__ import annotations

import os
import time
import uuid


def uuid7(ms: int | None = None) -> str:
    """A UUIDv7 string: 48-bit Unix ms, version 7, 74 random bits, RFC 4122 variant."""
    unix_ms = int(time.time() * 1000) if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 used
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b, 62 bits
    return str(uuid.UUID(int=value))


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000
