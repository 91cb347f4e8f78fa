"""The worker's garbage-collection policy: keep full collections short.

CPython's cycle collector scans every tracked object on a full (generation 2) collection.
A worker holds thousands of decoded workspaces, so each full collection stopped it for
about 200 ms and up to 509 ms (2,000 events/s over 10,000 workspaces, 2026-12-05: 16
of them in 6 minutes, 3.4 s in all), and those stops are crossing latency. The state is
long-lived and freed by reference counting when a workspace leaves the cache, never by
the cycle collector, so ``HeapPolicy`` moves what has lived a while into the permanent
generation (``gc.freeze``), where full collections no longer scan it. A young
collection runs first, so recent cyclic garbage is not frozen; and every
``RECLAIM_INTERVAL_S`` the heap is unfrozen and collected whole once, so cyclic garbage
that did get frozen is bounded rather than kept forever.
"""

from __future__ import annotations

import gc
import time
from typing import Final

FREEZE_INTERVAL_S: Final = 30.0
RECLAIM_INTERVAL_S: Final = 600.0


class FullCollections:
    """Counts full (generation 2) collections and the time stopped in them; a ``gc``
    callback while installed."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.max_seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.count += 1
        self.seconds += pause
        self.max_seconds = max(self.max_seconds, pause)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


class HeapPolicy:
    """Call ``tick`` between batches (never inside one: a reclaim is a full pause)."""

    def __init__(self, now: float) -> None:
        self._freeze_due = now + FREEZE_INTERVAL_S
        self._reclaim_due = now + RECLAIM_INTERVAL_S
        self.freezes = 0
        self.reclaims = 0

    def tick(self, now: float) -> None:
        if now >= self._reclaim_due:
            self._reclaim_due = now + RECLAIM_INTERVAL_S
            gc.unfreeze()
            gc.collect()
            self.reclaims += 1
        if now >= self._freeze_due:
            self._freeze_due = now + FREEZE_INTERVAL_S
            gc.collect(1)
            gc.freeze()
            self.freezes += 1
