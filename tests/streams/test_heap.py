"""The worker's garbage-collection policy (streams/heap.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streams.heap import FREEZE_INTERVAL_S, RECLAIM_INTERVAL_S, FullCollections, HeapPolicy


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_full_collections_are_counted_and_timed_young_ones_are_not() -> None:
    recorder = FullCollections()
    recorder.install()
    try:
        gc.collect(0)
        gc.collect(1)
        assert recorder.count == 0
        gc.collect()
        gc.collect()
    finally:
        recorder.uninstall()
    gc.collect()
    assert recorder.count == 2
    assert 0 < recorder.max_seconds <= recorder.seconds


def test_long_lived_objects_are_frozen_only_when_the_interval_has_passed() -> None:
    policy = HeapPolicy(now=0.0)
    kept = [{"workspace": i} for i in range(1000)]
    policy.tick(FREEZE_INTERVAL_S - 0.1)
    assert gc.get_freeze_count() == 0
    policy.tick(FREEZE_INTERVAL_S)
    assert gc.get_freeze_count() >= len(kept)
    assert policy.freezes == 1


def test_cyclic_garbage_that_was_frozen_is_reclaimed_at_the_reclaim_interval() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    policy = HeapPolicy(now=0.0)
    garbage = weakref.ref(Node())  # a cycle: only the cycle collector frees it
    gc.freeze()
    gc.collect()
    assert garbage() is not None  # frozen: full collections no longer see it
    policy.tick(RECLAIM_INTERVAL_S - 0.1)
    assert garbage() is not None
    policy.tick(RECLAIM_INTERVAL_S)
    assert policy.reclaims == 1
    assert garbage() is None
