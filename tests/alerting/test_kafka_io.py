"""``TopicTail`` on transactional partitions: ``caught_up`` returns although offsets
are never delivered (commit and abort markers, aborted records, often the last offset of
a partition), waits no longer than an open transaction's start, and the handler sees
committed records only."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from alerting.edges import FollowedRecord
from alerting.kafka_io import TopicTail
from groundwork.settings import Settings
from schemas.codec import decode_record
from tests.meter.transactions import TransactionalWriter, state_item

pytestmark = pytest.mark.kafka


def test_a_tail_catches_up_past_markers_aborted_records_and_up_to_an_open_transaction(
        meter_settings: Settings) -> None:
    writer = TransactionalWriter(meter_settings, "quota.state")
    seen: list[tuple[str, int]] = []

    def handle(batch: Sequence[FollowedRecord]) -> None:
        for msg in batch:
            record = decode_record(msg.value or b"")[1]
            seen.append((record["workspace_id"], record["version"]))

    async def caught_up(tail: TopicTail) -> list[tuple[str, int]]:
        await asyncio.wait_for(tail.caught_up(), 20)
        return sorted(seen)

    async def scenario() -> None:
        writer.commit([state_item(0, "wa", 1)])
        writer.abort([state_item(1, "wb", 99)])  # partition 1 holds aborted records only
        tail = TopicTail(meter_settings, [writer.topic], "test-tail")
        tail.start(handle, asyncio.get_running_loop())
        try:
            assert await caught_up(tail) == [("wa", 1)]
            writer.commit([state_item(1, "wb", 1)])
            writer.abort([state_item(0, "wa", 98)])
            assert await caught_up(tail) == [("wa", 1), ("wb", 1)]
            with writer.open([state_item(0, "wa", 2)]):
                assert await caught_up(tail) == [("wa", 1), ("wb", 1)]
            assert await caught_up(tail) == [("wa", 1), ("wa", 2), ("wb", 1)]
        finally:
            tail.close()

    asyncio.run(scenario())
