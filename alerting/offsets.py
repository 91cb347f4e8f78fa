"""Which offsets may be committed: only below the first crossing without an outcome (pure)."""

from __future__ import annotations

from collections import deque


class _Partition:
    def __init__(self) -> None:
        self.order: deque[int] = deque()
        self.done: set[int] = set()
        self.next_offset: int | None = None  # committable position
        self.committed: int | None = None


class OffsetTracker:
    """Per partition: offsets in consumption order, and which have finished."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partition] = {}

    def start(self, partition: int, offset: int) -> None:
        self._parts.setdefault(partition, _Partition()).order.append(offset)

    def finish(self, partition: int, offset: int) -> None:
        part = self._parts.get(partition)
        if part is None:
            return  # revoked meanwhile
        part.done.add(offset)
        while part.order and part.order[0] in part.done:
            first = part.order.popleft()
            part.done.discard(first)
            part.next_offset = first + 1

    def pending(self, partition: int | None = None) -> int:
        parts = self._parts.values() if partition is None else (
            [self._parts[partition]] if partition in self._parts else [])
        return sum(len(p.order) for p in parts)

    def to_commit(self) -> dict[int, int]:
        """Positions to commit now (changed since the last ``committed`` call)."""
        return {n: p.next_offset for n, p in self._parts.items()
                if p.next_offset is not None and p.next_offset != p.committed}

    def committed(self, positions: dict[int, int]) -> None:
        for n, offset in positions.items():
            if n in self._parts:
                self._parts[n].committed = offset

    def drop(self, partition: int) -> None:
        self._parts.pop(partition, None)
